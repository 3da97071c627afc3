"""Parameter schema (name, shape) of LayerDiffuse's transparent decoder (UNet1024), built from
diffusers v0.25's own blocks, for the C# schema test (tests/LayerFusion.Tests/LayerDiffuse).

Run (Debian python + CPU torch, diffusers v0.25 on the path):
  PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 \
      tests/reference/transparent_decoder_schema.py OUT.json [CONFIG_JSON]

CONFIG_JSON uses TransparentDecoderConfig's JSON field names; absent fields take the released
model's values. The module tree follows the released UNet1024 (LayerDiffuse_DiffusersCLI,
lib_layerdiffuse/vae.py): conv_in, a zero-initialised 1x1 latent_conv_in whose output is added to
the input of down block `latent_inject_level`, diffusers down/mid/up blocks with no time
embedding, up blocks with layers_per_block + 1 resnets, conv_norm_out, conv_out.
"""
import json
import sys

import torch
from diffusers.models.unet_2d_blocks import UNetMidBlock2D, get_down_block, get_up_block

DEFAULTS = {
    "in_channels": 3,
    "out_channels": 4,
    "latent_channels": 4,
    "block_out_channels": [32, 32, 64, 128, 256, 512, 512],
    "layers_per_block": 2,
    "norm_num_groups": 4,
    "attention_head_dim": 8,
    "latent_inject_level": 3,
}
DOWN_TYPES = ["DownBlock2D"] * 4 + ["AttnDownBlock2D"] * 3
UP_TYPES = ["AttnUpBlock2D"] * 3 + ["UpBlock2D"] * 4


def build(cfg):
    boc = cfg["block_out_channels"]
    lpb = cfg["layers_per_block"]
    groups = cfg["norm_num_groups"]
    head_dim = cfg["attention_head_dim"]
    m = torch.nn.Module()
    m.conv_in = torch.nn.Conv2d(cfg["in_channels"], boc[0], kernel_size=3, padding=1)
    inject = cfg["latent_inject_level"]
    m.latent_conv_in = torch.nn.Conv2d(cfg["latent_channels"], boc[max(inject - 1, 0)], kernel_size=1)
    m.down_blocks = torch.nn.ModuleList()
    out_ch = boc[0]
    for i, t in enumerate(DOWN_TYPES):
        in_ch, out_ch = out_ch, boc[i]
        m.down_blocks.append(get_down_block(
            t, num_layers=lpb, in_channels=in_ch, out_channels=out_ch, temb_channels=None,
            add_downsample=i != len(boc) - 1, resnet_eps=1e-5, resnet_act_fn="silu",
            resnet_groups=groups, attention_head_dim=head_dim, downsample_padding=1,
            resnet_time_scale_shift="default", downsample_type="conv", dropout=0.0))
    m.mid_block = UNetMidBlock2D(
        in_channels=boc[-1], temb_channels=None, dropout=0.0, resnet_eps=1e-5, resnet_act_fn="silu",
        output_scale_factor=1, resnet_time_scale_shift="default", attention_head_dim=head_dim,
        resnet_groups=groups, attn_groups=None, add_attention=True)
    m.up_blocks = torch.nn.ModuleList()
    rev = list(reversed(boc))
    out_ch = rev[0]
    for i, t in enumerate(UP_TYPES):
        prev, out_ch = out_ch, rev[i]
        in_ch = rev[min(i + 1, len(boc) - 1)]
        m.up_blocks.append(get_up_block(
            t, num_layers=lpb + 1, in_channels=in_ch, out_channels=out_ch, prev_output_channel=prev,
            temb_channels=None, add_upsample=i != len(boc) - 1, resnet_eps=1e-5, resnet_act_fn="silu",
            resnet_groups=groups, attention_head_dim=head_dim, resnet_time_scale_shift="default",
            upsample_type="conv", dropout=0.0))
    m.conv_norm_out = torch.nn.GroupNorm(num_channels=boc[0], num_groups=groups, eps=1e-5)
    m.conv_out = torch.nn.Conv2d(boc[0], cfg["out_channels"], kernel_size=3, padding=1)
    return m


def main():
    cfg = dict(DEFAULTS)
    if len(sys.argv) > 2:
        cfg.update(json.loads(sys.argv[2]))
    model = build(cfg)
    params = [{"name": k, "shape": list(v.shape)} for k, v in model.state_dict().items()]
    with open(sys.argv[1], "w") as f:
        # one tensor a line keeps the fixture diff-friendly
        f.write('{"config": ' + json.dumps(cfg) + ',\n"parameters": [\n')
        f.write(",\n".join(json.dumps(p) for p in params))
        f.write("\n]}\n")
    print(f"{len(params)} tensors, {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main()
