"""ldm (sgm) <-> diffusers names of the UNet's transformer attentions, as diffusers v0.25's own
converter (convert_from_ckpt.convert_ldm_unet_checkpoint) assigns them, for the C# layout test.

The ldm key list is built independently of the C# code, by following the construction loop of
sgm's UNetModel (input_blocks / middle_block / output_blocks with ResBlock, SpatialTransformer,
Downsample, Upsample); every fake tensor carries its own id so the converter's output names can be
traced back to the ldm key they came from.

Run: PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 \
         tests/reference/unet_attention_ldm_names.py OUT.json [DIFFUSERS_UNET_CONFIG_JSON]
"""
import ast
import json
import os
import sys

import diffusers
import torch


def _load_converter():
    """diffusers v0.25's convert_ldm_unet_checkpoint and the helpers it calls, executed from the
    installed diffusers source. The module itself imports transformers (for its text-encoder
    converters) at top level, which this environment lacks, so only these functions are taken."""
    src = os.path.join(os.path.dirname(diffusers.__file__), "pipelines", "stable_diffusion", "convert_from_ckpt.py")
    with open(src) as f:
        tree = ast.parse(f.read(), src)
    wanted = {"shave_segments", "renew_resnet_paths", "renew_attention_paths", "assign_to_checkpoint",
              "conv_attn_to_linear", "convert_ldm_unet_checkpoint"}
    tree.body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    ns = {"torch": torch, "logger": diffusers.utils.logging.get_logger("convert")}
    exec(compile(tree, src, "exec"), ns)
    return ns["convert_ldm_unet_checkpoint"]


convert_ldm_unet_checkpoint = _load_converter()

SDXL = {
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 2, 10],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "addition_embed_type": "text_time",
    "class_embed_type": None,
}
PROJ = ["to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias"]


def ldm_keys(cfg):
    n = len(cfg["block_out_channels"])
    lpb = cfg["layers_per_block"]
    tlpb = cfg["transformer_layers_per_block"]
    attn_down = ["CrossAttn" in t for t in cfg["down_block_types"]]
    keys, attention = [], []

    def res(prefix):
        keys.append(f"{prefix}.in_layers.0.weight")

    def transformer(prefix, depth):
        for t in range(depth):
            for a in ("attn1", "attn2"):
                for p in PROJ:
                    k = f"{prefix}.transformer_blocks.{t}.{a}.{p}"
                    keys.append(k)
                    attention.append(k)

    keys += ["time_embed.0.weight", "time_embed.0.bias", "time_embed.2.weight", "time_embed.2.bias",
             "label_emb.0.0.weight", "label_emb.0.0.bias", "label_emb.0.2.weight", "label_emb.0.2.bias",
             "input_blocks.0.0.weight", "input_blocks.0.0.bias",
             "out.0.weight", "out.0.bias", "out.2.weight", "out.2.bias"]
    idx = 1
    for level in range(n):
        for _ in range(lpb):
            res(f"input_blocks.{idx}.0")
            if attn_down[level]:
                transformer(f"input_blocks.{idx}.1", tlpb[level])
            idx += 1
        if level != n - 1:
            keys += [f"input_blocks.{idx}.0.op.weight", f"input_blocks.{idx}.0.op.bias"]
            idx += 1
    res("middle_block.0")
    if cfg["mid_block_type"] == "UNetMidBlock2DCrossAttn":
        transformer("middle_block.1", tlpb[-1])
    res("middle_block.2")
    idx = 0
    for level in reversed(range(n)):
        for i in range(lpb + 1):
            res(f"output_blocks.{idx}.0")
            layer = 1
            if attn_down[level]:
                transformer(f"output_blocks.{idx}.1", tlpb[level])
                layer = 2
            if level and i == lpb:
                keys += [f"output_blocks.{idx}.{layer}.conv.weight", f"output_blocks.{idx}.{layer}.conv.bias"]
            idx += 1
    return keys, attention


def main():
    cfg = dict(SDXL)
    if len(sys.argv) > 2:
        cfg.update(json.loads(sys.argv[2]))
    keys, attention = ldm_keys(cfg)
    state = {k: torch.tensor([float(i)]) for i, k in enumerate(keys)}
    converted = convert_ldm_unet_checkpoint(dict(state), cfg, skip_extract_state_dict=True)
    by_id = {int(v.item()): k for k, v in converted.items()}
    pairs = sorted([keys[i], d] for i, d in by_id.items() if keys[i] in set(attention))
    assert len(pairs) == len(attention), (len(pairs), len(attention))
    modules = {}
    for ldm, diff in pairs:
        # the converter renames only the attention module's path; the rest of the key is unchanged
        lm, rest = ldm.split(".transformer_blocks.", 1)
        dm, rest2 = diff.split(".transformer_blocks.", 1)
        assert rest == rest2, (ldm, diff)
        assert modules.setdefault(lm, dm) == dm
    with open(sys.argv[1], "w") as f:
        f.write('{"config": ' + json.dumps(cfg) + ',\n"attention_keys": ' + str(len(pairs)) + ',\n"modules": [\n')
        f.write(",\n".join(json.dumps([l, d]) for l, d in sorted(modules.items())))
        f.write("\n]}\n")
    print(f"{len(pairs)} attention keys in {len(modules)} modules")


if __name__ == "__main__":
    main()
