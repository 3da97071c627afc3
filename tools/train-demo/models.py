"""The demo model's configs (diffusers config.json contents) and torch modules. Every model class
is diffusers v0.25's (UNet2DConditionModel, AutoencoderKL, its blocks for the transparent
decoder); LoRA on the attention projections is ours (a few lines, LayerDiffuse's offsets)."""
import copy

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unet_2d_blocks import UNetMidBlock2D, get_down_block, get_up_block
from diffusers.models.unet_2d_condition import UNet2DConditionModel


def _attention_scores(self, query, key, attention_mask=None):
    # diffusers' get_attention_scores uses baddbmm(beta=0) on torch.empty, which leaks NaN on this
    # torch build (tests/reference/models/make_fixtures.py); same math without it
    scores = torch.bmm(query, key.transpose(-1, -2)) * self.scale
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = scores.softmax(dim=-1)
    if SCORE_HOOK is not None:
        SCORE_HOOK(self, probs)
    return probs


# grounding.AttentionRecorder while the FG offsets' grounding loss records the attention maps
SCORE_HOOK = None


Attention.get_attention_scores = _attention_scores

SIZE = 64
UNET = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8, "attention_head_dim": [2, 4], "block_out_channels": [32, 64],
    "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": 64,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "downsample_padding": 1,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 8, "out_channels": 4,
    "projection_class_embeddings_input_dim": 32 + 6 * 8, "sample_size": SIZE // 8,
    "transformer_layers_per_block": [2, 2], "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": False, "use_linear_projection": True,
}
VAE = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [8, 16, 32, 64],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "force_upcast": True, "in_channels": 3, "latent_channels": 4,
    "layers_per_block": 1, "norm_num_groups": 2, "out_channels": 3, "sample_size": SIZE, "scaling_factor": 1.0,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
DECODER = {
    "in_channels": 3, "out_channels": 4, "latent_channels": 4, "block_out_channels": [8, 8, 16, 16, 32, 32, 32],
    "layers_per_block": 2, "norm_num_groups": 4, "attention_head_dim": 8, "latent_inject_level": 3,
}


def _kwargs(cfg):
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def make_unet(cfg=UNET):
    return UNet2DConditionModel(**_kwargs(cfg))


def make_vae(cfg=VAE):
    return AutoencoderKL(**_kwargs(cfg))


class TransparentDecoder(torch.nn.Module):
    """LayerDiffuse's UNet1024 (lib_layerdiffuse/vae.py) from diffusers' blocks, with the module
    names tests/reference/transparent_decoder_schema.py and our C# schema use."""

    def __init__(self, cfg=DECODER):
        super().__init__()
        boc, lpb, groups, hd = cfg["block_out_channels"], cfg["layers_per_block"], cfg["norm_num_groups"], cfg["attention_head_dim"]
        self.inject = cfg["latent_inject_level"]
        self.conv_in = torch.nn.Conv2d(cfg["in_channels"], boc[0], 3, padding=1)
        self.latent_conv_in = torch.nn.Conv2d(cfg["latent_channels"], boc[max(self.inject - 1, 0)], 1)
        torch.nn.init.zeros_(self.latent_conv_in.weight)
        torch.nn.init.zeros_(self.latent_conv_in.bias)
        n = len(boc)
        self.down_blocks = torch.nn.ModuleList()
        out_ch = boc[0]
        for i in range(n):
            in_ch, out_ch = out_ch, boc[i]
            self.down_blocks.append(get_down_block(
                "DownBlock2D" if i < n - 3 else "AttnDownBlock2D", num_layers=lpb, in_channels=in_ch, out_channels=out_ch,
                temb_channels=None, add_downsample=i != n - 1, resnet_eps=1e-5, resnet_act_fn="silu", resnet_groups=groups,
                attention_head_dim=hd, downsample_padding=1, resnet_time_scale_shift="default", downsample_type="conv", dropout=0.0))
        self.mid_block = UNetMidBlock2D(
            in_channels=boc[-1], temb_channels=None, dropout=0.0, resnet_eps=1e-5, resnet_act_fn="silu", output_scale_factor=1,
            resnet_time_scale_shift="default", attention_head_dim=hd, resnet_groups=groups, attn_groups=None, add_attention=True)
        self.up_blocks = torch.nn.ModuleList()
        rev = list(reversed(boc))
        out_ch = rev[0]
        for i in range(n):
            prev, out_ch = out_ch, rev[i]
            in_ch = rev[min(i + 1, n - 1)]
            self.up_blocks.append(get_up_block(
                "AttnUpBlock2D" if i < 3 else "UpBlock2D", num_layers=lpb + 1, in_channels=in_ch, out_channels=out_ch,
                prev_output_channel=prev, temb_channels=None, add_upsample=i != n - 1, resnet_eps=1e-5, resnet_act_fn="silu",
                resnet_groups=groups, attention_head_dim=hd, resnet_time_scale_shift="default", upsample_type="conv", dropout=0.0))
        self.conv_norm_out = torch.nn.GroupNorm(num_channels=boc[0], num_groups=groups, eps=1e-5)
        self.conv_out = torch.nn.Conv2d(boc[0], cfg["out_channels"], 3, padding=1)

    def forward(self, pixel, latent):
        lat = self.latent_conv_in(latent)
        h = self.conv_in(pixel)
        skips = (h,)
        for i, block in enumerate(self.down_blocks):
            if i == self.inject:
                h = h + lat
            h, res = block(hidden_states=h, temb=None)
            skips += res
        h = self.mid_block(h, None)
        for block in self.up_blocks:
            res = skips[-len(block.resnets):]
            skips = skips[: -len(block.resnets)]
            h = block(h, res, temb=None)
        return self.conv_out(torch.nn.functional.silu(self.conv_norm_out(h)))


class LoraLinear(torch.nn.Module):
    """y = W x + b + (up @ down) x: LayerDiffuse's attention offset dW = up @ down (alpha = rank)."""

    def __init__(self, base, rank):
        super().__init__()
        self.base = base
        self.down = torch.nn.Parameter(torch.randn(rank, base.in_features) / base.in_features ** 0.5)
        self.up = torch.nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x, *_):
        # diffusers passes a LoRA scale as a second argument; ours is fixed (alpha = rank)
        return self.base(x) + torch.nn.functional.linear(torch.nn.functional.linear(x, self.down), self.up)


def attention_projections():
    """(diffusers module path of each attn1/attn2 to_q/to_k/to_v/to_out.0, its ldm name) for UNET,
    numbered as weights-loader/LayerDiffuse/UNetAttentionLayout.cs (diffusers' convert_from_ckpt)."""
    lpb, n = UNET["layers_per_block"], len(UNET["block_out_channels"])
    tl = UNET["transformer_layers_per_block"]
    out = []

    def add(diff, ldm, depth):
        for t in range(depth):
            for attn in ("attn1", "attn2"):
                for p in ("to_q", "to_k", "to_v", "to_out.0"):
                    s = f".transformer_blocks.{t}.{attn}.{p}"
                    out.append((diff + s, ldm + s))

    for lvl, kind in enumerate(UNET["down_block_types"]):
        if kind.startswith("CrossAttn"):
            for j in range(lpb):
                add(f"down_blocks.{lvl}.attentions.{j}", f"input_blocks.{lvl * (lpb + 1) + j + 1}.1", tl[lvl])
    add("mid_block.attentions.0", "middle_block.1", tl[-1])
    for lvl, kind in enumerate(UNET["up_block_types"]):
        if kind.startswith("CrossAttn"):
            for j in range(lpb + 1):
                add(f"up_blocks.{lvl}.attentions.{j}", f"output_blocks.{lvl * (lpb + 1) + j}.1", tl[n - 1 - lvl])
    return out


def add_lora(unet, rank):
    loras = {}
    for path, ldm in attention_projections():
        parent_path, name = path.rsplit(".", 1)
        parent = unet.get_submodule(parent_path)
        base = getattr(parent, name)
        lora = LoraLinear(base, min(rank, base.in_features, base.out_features))
        setattr(parent, name, lora)
        loras[(path, ldm)] = lora
    return loras


def deepcopy_unet(unet):
    return copy.deepcopy(unet)
