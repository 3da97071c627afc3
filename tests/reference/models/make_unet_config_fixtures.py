"""UNet parity fixtures for config fields beyond SDXL's defaults (issue 10's held-out comparison).

unet_fields: center_input_sample, time_embedding_act_fn, timestep_post_act and mid_block_scale_factor
  set (all implemented), plus resnet_out_scale_factor, resnet_skip_time_act and
  mid_block_only_cross_attention set to non-defaults that diffusers v0.25 ignores for these block types.
unet_odd: attention_head_dim (3, 6, 2) with 32 channels at the DownBlock2D level (3 does not divide 32;
  that level has no attention), downsample_padding 0 on an odd 9x7 latent (the skips are 9x7, 4x3, 2x1,
  so the up path interpolates 2x1 -> 4x3 and 4x3 -> 9x7 with nearest, not 2x).

Same weights/inputs scheme as make_fixtures.py (imported). Run (shared/reference/README.md):
  PYTHONPATH=<diffusers-0.25>/src:<shared>/reference/pyshims /usr/bin/python3 make_unet_config_fixtures.py
"""
import make_fixtures as mf

UNET_FIELDS = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), mid_block_type="UNetMidBlock2DCrossAttn",
    attention_head_dim=(2, 4), transformer_layers_per_block=(1, 1), cross_attention_dim=12, norm_num_groups=4,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=6,
    projection_class_embeddings_input_dim=10 + 6 * 6,
    center_input_sample=True, time_embedding_act_fn="gelu", timestep_post_act="swish", mid_block_scale_factor=1.7,
    resnet_out_scale_factor=3.0, resnet_skip_time_act=True, mid_block_only_cross_attention=True,
)

UNET_ODD = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(32, 12, 8),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), mid_block_type="UNetMidBlock2DCrossAttn",
    attention_head_dim=(3, 6, 2), transformer_layers_per_block=(1, 1, 1), cross_attention_dim=12, norm_num_groups=4,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=6,
    projection_class_embeddings_input_dim=10 + 6 * 6, downsample_padding=0,
)

if __name__ == "__main__":
    mf.make_unet("unet_fields", 6000, UNET_FIELDS, h=8, w=6, seq=4, text_dim=10, timestep=611.0)
    mf.make_unet("unet_odd", 7000, UNET_ODD, h=9, w=7, seq=4, text_dim=10, timestep=233.0)
