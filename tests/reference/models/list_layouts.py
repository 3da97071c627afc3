"""Parameter layouts (names and shapes) of the REAL-size models, for a shape-only run of our graphs.

diffusers v0.25 builds SDXL's UNet2DConditionModel and AutoencoderKL, and LayerDiffuse's UNet1024
(as in make_fixtures.py) with their released configs; parameters are moved to the meta device as
they are registered, so nothing of the 2.6 B-parameter UNet is allocated. Writes
fixtures/layouts/<name>.json.gz: {"config": <config.json fields>, "tensors": {name: shape}}.

Run: PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 list_layouts.py
"""
import gzip
import json
import os

import torch

_register = torch.nn.Module.register_parameter


def _register_on_meta(self, name, param):
    if param is not None and param.device.type != "meta":
        param = torch.nn.Parameter(param.data.to("meta"), requires_grad=param.requires_grad)
    return _register(self, name, param)


torch.nn.Module.register_parameter = _register_on_meta

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402

from make_fixtures import UNet1024, plain_config  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "layouts")

# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (non-default fields)
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280],
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], attention_head_dim=[5, 10, 20],
    transformer_layers_per_block=[1, 2, 10], cross_attention_dim=2048, use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    norm_num_groups=32,
)
# stabilityai/stable-diffusion-xl-base-1.0 vae/config.json
SDXL_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4, norm_num_groups=32,
    sample_size=1024, scaling_factor=0.13025, force_upcast=True,
)
# LayerDiffuse's UNet1024 defaults (lib_layerdiffuse/vae.py), out_channels 4 as TransparentVAEDecoder builds it
TD_REAL = dict(block_out_channels=[32, 32, 64, 128, 256, 512, 512], layers_per_block=2, norm_num_groups=4, attention_head_dim=8)


def write(name, config, state_dict):
    os.makedirs(OUT, exist_ok=True)
    doc = {"config": config, "tensors": {k: list(v.shape) for k, v in state_dict.items()}}
    with gzip.GzipFile(os.path.join(OUT, name + ".json.gz"), "wb", mtime=0) as f:
        f.write(json.dumps(doc, sort_keys=True).encode())
    print(name, len(doc["tensors"]), "tensors", sum(v.numel() for v in state_dict.values()), "parameters")


if __name__ == "__main__":
    unet = UNet2DConditionModel(**SDXL_UNET)
    write("sdxl_unet", plain_config(unet), unet.state_dict())
    vae = AutoencoderKL(**SDXL_VAE)
    write("sdxl_vae", plain_config(vae),
          {k: v for k, v in vae.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))})
    td = UNet1024(**TD_REAL)
    write("transparent_decoder", dict(TD_REAL, in_channels=3, out_channels=4, latent_channels=4, latent_inject_level=3),
          td.state_dict())
