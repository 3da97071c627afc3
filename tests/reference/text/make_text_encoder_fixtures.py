"""Reference outputs of two tiny CLIP text encoders for the C# parity test (tests/LayerFusion.Tests/Text).

The reference model is built from openai/CLIP's clip/model.py classes (Transformer,
ResidualAttentionBlock: pre-LN blocks, nn.MultiheadAttention, QuickGELU, causal -inf mask; not
committed: point OPENAI_CLIP at a checkout's `clip/` folder), with seeded random weights. The
weights are written in transformers' CLIPTextModel(WithProjection) key layout (the one diffusers'
text_encoder/ folders use) with a transformers-style config.json, so the C# engine loads them the
way it loads a real checkpoint. Computation runs in float64 on the float32 weights.

Outputs per config, in <name>/reference.safetensors:
  input_ids [B, T] (int32), hidden_penultimate [B, T, C] (= transformers hidden_states[-2], no final
  LN), last_hidden_state [B, T, C] (final LN applied), pooled [B, C] (final-LN'd row at the EOS
  position), and for the projection config text_embeds [B, P] = pooled @ text_projection.weight^T.

Configs: "vitl_like" (quick_gelu, no projection, eos_token_id 2 = legacy argmax pooling, padded
with EOS) and "bigg_like" (gelu, with projection, eos_token_id set to a small id so the first
occurrence of it differs from the argmax, padded with "!" = 0, a non-4x intermediate size).

Run: PYTHONPATH=/work/shared/reference/pyshims OPENAI_CLIP=/tmp/openai-clip/clip /usr/bin/python3 make_text_encoder_fixtures.py
"""
import json
import os
import sys
from collections import OrderedDict

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("OPENAI_CLIP", "/tmp/openai-clip/clip"))
import model as openai_clip_model  # noqa: E402  (openai CLIP)
from model import Transformer  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


CONFIGS = {
    "vitl_like": dict(vocab_size=64, hidden_size=32, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                      projection_dim=None, bos_token_id=62, eos_token_id=2, eos_id_in_vocab=63,
                      pad_id=63, seed=1234),
    "bigg_like": dict(vocab_size=80, hidden_size=48, intermediate_size=80, num_hidden_layers=4,
                      num_attention_heads=3, max_position_embeddings=20, hidden_act="gelu",
                      projection_dim=40, bos_token_id=78, eos_token_id=7, eos_id_in_vocab=7,
                      pad_id=0, seed=4321),
}


# openai's LayerNorm subclass casts its input to float32 (for fp16 models); the reference computes in
# float64, so use torch's LayerNorm forward unchanged (same eps 1e-5, same math).
openai_clip_model.LayerNorm.forward = nn.LayerNorm.forward


def causal_mask(n):
    mask = torch.empty(n, n, dtype=torch.float64)
    mask.fill_(float("-inf"))
    mask.triu_(1)
    return mask


def build(cfg):
    torch.manual_seed(cfg["seed"])
    C, T = cfg["hidden_size"], cfg["max_position_embeddings"]
    tr = Transformer(C, cfg["num_hidden_layers"], cfg["num_attention_heads"], attn_mask=causal_mask(T))
    for blk in tr.resblocks:
        act = nn.GELU() if cfg["hidden_act"] == "gelu" else blk.mlp.gelu  # monkeypatch for gelu configs
        blk.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(C, cfg["intermediate_size"])),
            ("gelu", act),
            ("c_proj", nn.Linear(cfg["intermediate_size"], C)),
        ]))
    # Random weights at a scale that keeps activations O(1); LayerNorm affine and biases random too
    # so a wrong one is visible.
    with torch.no_grad():
        for name, p in tr.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)
    tok = torch.randn(cfg["vocab_size"], C)
    pos = 0.3 * torch.randn(T, C)
    ln_w = 1 + 0.2 * torch.randn(C)
    ln_b = 0.1 * torch.randn(C)
    proj = torch.randn(C, cfg["projection_dim"]) / C ** 0.5 if cfg["projection_dim"] else None  # openai: x @ P
    return tr, tok, pos, ln_w, ln_b, proj


def to_transformers_keys(tr, tok, pos, ln_w, ln_b, proj):
    C = tr.width
    sd = {
        "text_model.embeddings.token_embedding.weight": tok,
        "text_model.embeddings.position_embedding.weight": pos,
        "text_model.final_layer_norm.weight": ln_w,
        "text_model.final_layer_norm.bias": ln_b,
    }
    for i, blk in enumerate(tr.resblocks):
        p = f"text_model.encoder.layers.{i}."
        w, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
        for j, n in enumerate(["q_proj", "k_proj", "v_proj"]):
            sd[p + f"self_attn.{n}.weight"] = w[j * C:(j + 1) * C]
            sd[p + f"self_attn.{n}.bias"] = b[j * C:(j + 1) * C]
        sd[p + "self_attn.out_proj.weight"] = blk.attn.out_proj.weight
        sd[p + "self_attn.out_proj.bias"] = blk.attn.out_proj.bias
        sd[p + "layer_norm1.weight"], sd[p + "layer_norm1.bias"] = blk.ln_1.weight, blk.ln_1.bias
        sd[p + "layer_norm2.weight"], sd[p + "layer_norm2.bias"] = blk.ln_2.weight, blk.ln_2.bias
        sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"] = blk.mlp.c_fc.weight, blk.mlp.c_fc.bias
        sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"] = blk.mlp.c_proj.weight, blk.mlp.c_proj.bias
    if proj is not None:
        sd["text_projection.weight"] = proj.t()
    return {k: v.detach().float().contiguous().clone() for k, v in sd.items()}


def input_ids(cfg, gen):
    """Two sequences: BOS, random tokens (never BOS/EOS), EOS, padding; different lengths."""
    T, V = cfg["max_position_embeddings"], cfg["vocab_size"]
    bos, eos, pad = cfg["bos_token_id"], cfg["eos_id_in_vocab"], cfg["pad_id"]
    rows = []
    for n in (5, T - 2):
        body = []
        while len(body) < n:
            t = int(torch.randint(0, V, (1,), generator=gen))
            if t not in (bos, eos, pad):
                body.append(t)
        row = [bos] + body + [eos]
        rows.append(row + [pad] * (T - len(row)))
    return torch.tensor(rows, dtype=torch.int64)


def eos_positions(cfg, ids):
    if cfg["eos_token_id"] == 2:  # transformers' legacy rule
        return ids.argmax(dim=-1)
    return (ids == cfg["eos_token_id"]).int().argmax(dim=-1)


def run(cfg, tr, tok, pos, ln_w, ln_b, proj, ids):
    tr = tr.double()
    for blk in tr.resblocks:
        blk.attn_mask = causal_mask(ids.shape[1])
    x = tok.double()[ids] + pos.double()[: ids.shape[1]]
    x = x.permute(1, 0, 2)  # NLD -> LND, as openai's encode_text
    hidden = [x]
    for blk in tr.resblocks:
        x = blk(x)
        hidden.append(x)
    hidden = [h.permute(1, 0, 2) for h in hidden]
    last = nn.functional.layer_norm(hidden[-1], (tr.width,), ln_w.double(), ln_b.double(), eps=1e-5)
    pooled = last[torch.arange(ids.shape[0]), eos_positions(cfg, ids)]
    out = {"input_ids": ids.int(), "hidden_penultimate": hidden[-2].float(), "last_hidden_state": last.float(),
           "pooled": pooled.float()}
    if proj is not None:
        out["text_embeds"] = (pooled @ proj.double()).float()
    return out


def config_json(cfg):
    c = {
        "architectures": ["CLIPTextModelWithProjection" if cfg["projection_dim"] else "CLIPTextModel"],
        "vocab_size": cfg["vocab_size"], "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"], "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"],
        "max_position_embeddings": cfg["max_position_embeddings"], "hidden_act": cfg["hidden_act"],
        "layer_norm_eps": 1e-05, "bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"],
        "pad_token_id": 1, "model_type": "clip_text_model", "torch_dtype": "float32",
    }
    if cfg["projection_dim"]:
        c["projection_dim"] = cfg["projection_dim"]
    return c


def main():
    for name, cfg in CONFIGS.items():
        out_dir = os.path.join(HERE, name)
        os.makedirs(out_dir, exist_ok=True)
        tr, tok, pos, ln_w, ln_b, proj = build(cfg)
        weights = to_transformers_keys(tr, tok, pos, ln_w, ln_b, proj)
        save_file(weights, os.path.join(out_dir, "model.safetensors"))
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(config_json(cfg), f, indent=2)
        # The reference runs on exactly the float32 weights the engine loads.
        fp32 = lambda t: t.float()  # noqa: E731
        gen = torch.Generator().manual_seed(cfg["seed"] + 1)
        ids = input_ids(cfg, gen)
        ref = run(cfg, tr.float(), fp32(tok), fp32(pos), fp32(ln_w), fp32(ln_b),
                  fp32(proj) if proj is not None else None, ids)
        save_file(ref, os.path.join(out_dir, "reference.safetensors"))
        print(name, {k: list(v.shape) for k, v in ref.items()}, "eos at", eos_positions(cfg, ids).tolist())


if __name__ == "__main__":
    main()
