"""Parity fixtures for the UNet, the VAE decoder and the transparent decoder.

Builds diffusers v0.25 models with tiny configs and seeded random weights, runs one forward pass on
CPU in float32, and writes, per model, a directory in diffusers layout (config.json + weights) plus
io.safetensors with the inputs and the reference output.

Run (see /work/shared/reference/README.md):
  PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 make_fixtures.py
Outputs go to tests/reference/models/fixtures/ next to this script.
"""
import json
import math
import os

import torch
from safetensors.torch import save_file

from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from diffusers.models.unet_2d_blocks import UNetMidBlock2D, get_down_block, get_up_block

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

torch.set_grad_enabled(False)


def _attention_scores(self, query, key, attention_mask=None):
    """diffusers' Attention.get_attention_scores without its torch.empty + baddbmm(beta=0): on this
    torch 1.13 build, NaN garbage in the uninitialized buffer leaks into the scores (seen as NaN
    outputs that change from run to run). Same math: softmax(scale * q k^T + mask)."""
    dtype = query.dtype
    if self.upcast_attention:
        query, key = query.float(), key.float()
    scores = torch.bmm(query, key.transpose(-1, -2)) * self.scale
    if attention_mask is not None:
        scores = scores + attention_mask
    if self.upcast_softmax:
        scores = scores.float()
    return scores.softmax(dim=-1).to(dtype)


Attention.get_attention_scores = _attention_scores


# Biases of the layers that feed the first norms: kept tiny so that the second, down-scaled input of
# each fixture ("*_small") reaches those norms with a variance near eps, which makes the norm epsilons
# observable (with O(1) activations a 10x wrong eps moves outputs by < 1e-4).
SMALL_BIAS = {"conv_in.bias", "post_quant_conv.bias", "decoder.conv_in.bias"}
SMALL = 1e-3


def randomize(model, seed):
    """Seeded weights of O(1) effect per layer: default inits leave zeros (norm biases, some zero_module
    convs) that would hide bugs, so every tensor is redrawn with fan-in scaling."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        if p.dim() == 1:
            if "norm" in name and name.endswith("weight"):
                v = 1.0 + 0.2 * torch.randn(p.shape, generator=g)
            elif name in SMALL_BIAS:
                v = 1e-4 * torch.randn(p.shape, generator=g)
            else:
                v = 0.2 * torch.randn(p.shape, generator=g)
        else:
            fan_in = p[0].numel()
            v = torch.randn(p.shape, generator=g) * (1.2 / math.sqrt(fan_in))
        p.copy_(v)


def save_dir(name, config, weights, io):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=1, sort_keys=True)
    save_file({k: v.float().contiguous() for k, v in weights.items()},
              os.path.join(d, "diffusion_pytorch_model.safetensors"))
    save_file({k: v.float().contiguous() for k, v in io.items()}, os.path.join(d, "io.safetensors"))
    n = sum(v.numel() for v in weights.values())
    print(f"{name}: {n} parameters, output {tuple(io['out'].shape)} std {io['out'].std():.3f}")


def plain_config(model):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(model.config).items() if not k.startswith("_")}


def make_unet(name, seed, cfg, h, w, seq, text_dim, timestep):
    model = UNet2DConditionModel(**cfg).eval()
    randomize(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    sample = torch.randn(2, cfg["in_channels"], h, w, generator=g)
    ehs = torch.randn(2, seq, cfg["cross_attention_dim"], generator=g)
    text_embeds = torch.randn(2, text_dim, generator=g)
    time_ids = torch.tensor([[h * 8, w * 8, 0, 0, h * 8, w * 8], [h * 8 + 16, w * 8, 8, 0, h * 8, w * 8]], dtype=torch.float32)
    t = torch.tensor([timestep], dtype=torch.float32)
    run = lambda x: model(x, t, encoder_hidden_states=ehs,
                          added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
    save_dir(name, plain_config(model), model.state_dict(),
             {"sample": sample, "timestep": t, "encoder_hidden_states": ehs, "text_embeds": text_embeds,
              "time_ids": time_ids, "out": run(sample), "out_small": run(sample * SMALL)})


# A: two levels, both with attention, linear projections, non-default timestep flip/shift.
UNET_A = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), mid_block_type="UNetMidBlock2DCrossAttn",
    attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2), cross_attention_dim=24, norm_num_groups=4,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=20 + 6 * 8, flip_sin_to_cos=False, freq_shift=1,
)
# B: three levels like SDXL (plain DownBlock2D first), conv projections, odd latent size (forces
# diffusers' upsample_size path), deeper transformer at the last level, one resnet per level (other skip counts).
UNET_B = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(8, 8, 16),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), mid_block_type="UNetMidBlock2DCrossAttn",
    attention_head_dim=(2, 2, 4), transformer_layers_per_block=(1, 1, 2), cross_attention_dim=12, norm_num_groups=4,
    use_linear_projection=False, addition_embed_type="text_time", addition_time_embed_dim=6,
    projection_class_embeddings_input_dim=10 + 6 * 6, flip_sin_to_cos=True, freq_shift=0,
)

VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 8, 16), layers_per_block=1,
    latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.13025,
)


def make_vae(name, seed, h, w):
    model = AutoencoderKL(**VAE).eval()
    randomize(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    z = torch.randn(2, VAE["latent_channels"], h, w, generator=g) * 2.0
    weights = {k: v for k, v in model.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}
    save_dir(name, plain_config(model), weights,
             {"latent": z, "out": model.decode(z).sample, "out_small": model.decode(z * SMALL).sample})


class UNet1024(torch.nn.Module):
    """LayerDiffuse's transparent decoder, assembled from diffusers v0.25 blocks exactly as
    lllyasviel/LayerDiffuse_DiffusersCLI lib_layerdiffuse/vae.py does (default arguments: conv
    down/upsampling, padding 1, no time embedding, up blocks with layers_per_block + 1 resnets,
    latent_conv_in added before down block 3)."""

    def __init__(self, block_out_channels, layers_per_block, norm_num_groups, attention_head_dim,
                 in_channels=3, out_channels=4):
        super().__init__()
        down_types = ("DownBlock2D",) * 4 + ("AttnDownBlock2D",) * 3
        up_types = ("AttnUpBlock2D",) * 3 + ("UpBlock2D",) * 4
        eps = 1e-5
        self.conv_in = torch.nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=(1, 1))
        self.latent_conv_in = torch.nn.Conv2d(4, block_out_channels[2], kernel_size=1)
        self.down_blocks = torch.nn.ModuleList([])
        self.up_blocks = torch.nn.ModuleList([])
        output_channel = block_out_channels[0]
        for i, t in enumerate(down_types):
            input_channel = output_channel
            output_channel = block_out_channels[i]
            self.down_blocks.append(get_down_block(
                t, num_layers=layers_per_block, in_channels=input_channel, out_channels=output_channel,
                temb_channels=None, add_downsample=i != len(block_out_channels) - 1, resnet_eps=eps,
                resnet_act_fn="silu", resnet_groups=norm_num_groups, attention_head_dim=attention_head_dim,
                downsample_padding=1, resnet_time_scale_shift="default", downsample_type="conv", dropout=0.0))
        self.mid_block = UNetMidBlock2D(
            in_channels=block_out_channels[-1], temb_channels=None, dropout=0.0, resnet_eps=eps,
            resnet_act_fn="silu", output_scale_factor=1, resnet_time_scale_shift="default",
            attention_head_dim=attention_head_dim, resnet_groups=norm_num_groups, attn_groups=None, add_attention=True)
        rev = list(reversed(block_out_channels))
        output_channel = rev[0]
        for i, t in enumerate(up_types):
            prev_output_channel = output_channel
            output_channel = rev[i]
            input_channel = rev[min(i + 1, len(block_out_channels) - 1)]
            self.up_blocks.append(get_up_block(
                t, num_layers=layers_per_block + 1, in_channels=input_channel, out_channels=output_channel,
                prev_output_channel=prev_output_channel, temb_channels=None,
                add_upsample=i != len(block_out_channels) - 1, resnet_eps=eps, resnet_act_fn="silu",
                resnet_groups=norm_num_groups, attention_head_dim=attention_head_dim,
                resnet_time_scale_shift="default", upsample_type="conv", dropout=0.0))
        self.conv_norm_out = torch.nn.GroupNorm(num_channels=block_out_channels[0], num_groups=norm_num_groups, eps=eps)
        self.conv_act = torch.nn.SiLU()
        self.conv_out = torch.nn.Conv2d(block_out_channels[0], out_channels, kernel_size=3, padding=1)

    def forward(self, x, latent):
        sample_latent = self.latent_conv_in(latent)
        sample = self.conv_in(x)
        res = (sample,)
        for i, block in enumerate(self.down_blocks):
            if i == 3:
                sample = sample + sample_latent
            sample, r = block(hidden_states=sample, temb=None)
            res += r
        sample = self.mid_block(sample, None)
        for block in self.up_blocks:
            r = res[-len(block.resnets):]
            res = res[:-len(block.resnets)]
            sample = block(sample, r, None)
        return self.conv_out(self.conv_act(self.conv_norm_out(sample)))


def augmented(model, pixel, latent):
    """LayerDiffuse's estimate_augmented: 8 passes (flip x rot90), each clipped to [0,1] and
    transformed back, per-pixel torch.median (the lower middle value of 8)."""
    outs = []
    for flip in (False, True):
        for k in range(4):
            p, l = pixel, latent
            if flip:
                p, l = torch.flip(p, dims=(3,)), torch.flip(l, dims=(3,))
            p, l = torch.rot90(p, k=k, dims=(2, 3)), torch.rot90(l, k=k, dims=(2, 3))
            y = model(p, l).clip(0, 1)
            y = torch.rot90(y, k=-k, dims=(2, 3))
            if flip:
                y = torch.flip(y, dims=(3,))
            outs.append(y)
    return torch.median(torch.stack(outs, 0), dim=0).values


TD = dict(block_out_channels=[4, 4, 8, 8, 8, 8, 8], layers_per_block=2, norm_num_groups=4, attention_head_dim=4)


def make_transparent(name, seed, h, w):
    model = UNet1024(**TD).eval()
    randomize(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pixel = torch.rand(1, 3, h, w, generator=g)
    latent = torch.randn(1, 4, h // 8, w // 8, generator=g) * 2.0
    out = model(pixel, latent)
    med = augmented(model, pixel, latent)
    config = dict(TD, in_channels=3, out_channels=4, latent_channels=4, latent_inject_level=3)
    save_dir(name, config, model.state_dict(), {"pixel": pixel, "latent": latent, "out": out, "augmented": med,
                                                "out_small": model(pixel * SMALL, latent)})


def make_blocks(name, seed):
    """Transformer2DModel alone (linear and conv projections), with a tiny-variance input and a small
    GroupNorm scale so its GroupNorm (eps 1e-6) and the blocks' LayerNorms (eps 1e-5) both see
    variances near their eps: a wrong epsilon changes the output by far more than the tolerance."""
    from diffusers.models.transformer_2d import Transformer2DModel
    weights, io = {}, {}
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(2, 8, 3, 4, generator=g) * SMALL
    ehs = torch.randn(2, 3, 6, generator=g)
    io["x"], io["encoder_hidden_states"] = x, ehs
    for i, linear in enumerate((True, False)):
        tag = "t_lin" if linear else "t_conv"
        m = Transformer2DModel(num_attention_heads=2, attention_head_dim=4, in_channels=8, num_layers=2,
                               cross_attention_dim=6, norm_num_groups=4, use_linear_projection=linear).eval()
        randomize(m, seed + 10 * i)
        m.norm.weight.mul_(0.01)
        m.norm.bias.mul_(0.01)
        m.proj_in.bias.mul_(0.01)
        weights.update({f"{tag}.{k}": v for k, v in m.state_dict().items()})
        io[f"out_{tag}"] = m(x, encoder_hidden_states=ehs).sample
    config = {"num_attention_heads": 2, "attention_head_dim": 4, "in_channels": 8, "num_layers": 2,
              "cross_attention_dim": 6, "norm_num_groups": 4}
    io["out"] = io["out_t_lin"]
    save_dir(name, config, weights, io)


if __name__ == "__main__":
    make_unet("unet_a", 1000, UNET_A, h=8, w=8, seq=5, text_dim=20, timestep=421.0)
    make_unet("unet_b", 2000, UNET_B, h=7, w=5, seq=4, text_dim=10, timestep=17.0)
    make_vae("vae", 3000, h=5, w=6)
    make_transparent("transparent", 4000, h=64, w=64)
    make_blocks("blocks", 5000)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"total fixture size {total / 1e6:.2f} MB")
