"""Attention grounding for the foreground offsets (stage 3): the LayerFusion priors, computed from the
FG model's own attention probabilities exactly as the engine computes them (src/LayerFusion.Core/
Fusion/PriorMath.cs), are pulled towards the object's alpha while the offsets learn to draw it.

Why: the toy UNet (2 heads of 16 channels on an 8x8 grid) does not grow SDXL's segment-like
self-attention by itself. Measured on the model trained without this loss (32 noised FG scenes,
t = 800): the prior layer's sparsity s stayed within 59.4..63.4 of M = 64 keys (near-uniform rows),
corr(s', alpha) was -0.07, and mask_soft was anti-correlated with alpha at every site. Supervising
attention maps with segmentation masks is an established training technique (TokenCompose, Wang et
al., CVPR 2024, grounds cross-attention maps in object masks); here the maps are the priors
themselves:
  s_i  = 1 / sum_j (mean_h p_hij)^2          at the prior layer's attn1 (one 8x8 map)
  s'   = 1 - minmax(s)
  c_i  = mean_h p_hi,EOS                     at every attn2, EOS = the first <|endoftext|> of CLIP-L's ids
  soft = minmax(resize(s') * c)              per transformer block, at its resolution
  loss = MSE(s', alpha@8x8) + mean over blocks MSE(soft, alpha@block resolution)
on the samples that have a prompt (the empty-prompt 10% carry no <EOS> prior in the engine).
alpha@r is the object's alpha max-pooled to r x r; the weight beside the diffusion loss is train.py's
GROUND (--ground).
"""
import torch
import torch.nn.functional as F

import models

PRIOR_LAYER = "up_blocks.1.attentions.2.transformer_blocks.1.attn1"


class AttentionRecorder:
    """Keeps, while active, every Attention module's softmax probabilities ([B*heads, M, N], with
    gradients) by module path; models._attention_scores hands them over."""

    def __init__(self, unet):
        self.paths = {id(m): (name, m.heads) for name, m in unet.named_modules() if type(m).__name__ == "Attention"}
        self.probs = {}
        self.active = False

    def __call__(self, module, probs):
        if self.active and id(module) in self.paths:
            name, heads = self.paths[id(module)]
            self.probs[name] = probs.view(-1, heads, *probs.shape[1:])

    def __enter__(self):
        self.probs, self.active = {}, True
        models.SCORE_HOOK = self
        return self

    def __exit__(self, *_):
        self.active = False
        models.SCORE_HOOK = None


def minmax(x, eps=1e-6):
    lo, hi = x.min(-1, keepdim=True).values, x.max(-1, keepdim=True).values
    return (x - lo) / (hi - lo + eps)


def _side(m):
    side = int(round(m ** 0.5))
    if side * side != m:
        raise ValueError(f"{m} queries are not a square latent grid")
    return side


def _target(alpha, r):
    # max-pooled: a cell the object touches is foreground. Area-mean targets taught masks of the
    # object's core only (blend IoU 0.05 against 0.15, seeds 0-15), as tools/blend-diagnostics'
    # oracle masks had shown (area-mean oracle masks carried no object, max-pooled ones did)
    return F.adaptive_max_pool2d(alpha, r).flatten(1)


def grounding_loss(probs, alpha, eos, keep):
    """probs: the recorder's maps; alpha: [B, 1, H, W] object alpha; eos: [B] <EOS> key index;
    keep: [B] bool, the samples with a prompt. Returns (s' loss, mask loss)."""
    if not bool(keep.any()):
        zero = alpha.sum() * 0
        return zero, zero
    m = probs[PRIOR_LAYER][keep].mean(1)                    # [b, M, M] head-mean
    s = 1.0 / (m ** 2).sum(-1)
    sp = 1 - minmax(s)
    side = _side(sp.shape[-1])
    a = alpha[keep]
    loss_s = F.mse_loss(sp, _target(a, side))
    sp_map = sp.view(-1, 1, side, side)
    rows = torch.arange(int(keep.sum()))
    losses = []
    for name, p in probs.items():
        if not name.endswith("attn2"):
            continue
        c = p[keep].mean(1)[rows, :, eos[keep]]            # [b, M_l]
        r = _side(c.shape[-1])
        spr = F.interpolate(sp_map, size=(r, r), mode="bilinear", align_corners=False).flatten(1)
        soft = minmax(spr * c)
        losses.append(F.mse_loss(soft, _target(a, r)))
    return loss_s, torch.stack(losses).mean()
