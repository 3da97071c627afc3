# Dumps parameter names and shapes of diffusers v0.25 models built from the tiny configs that
# `layerfusion make-tiny` writes (and a second, differently shaped UNet/VAE), so the C# schemas
# (weights-loader/Checkpoints/Schemas.cs) are checked against the real library.
# Run: PYTHONPATH=/tmp/diffusers-0.25/src:/work/shared/reference/pyshims /usr/bin/python3 diffusers_schema.py OUT.json
import json, sys
from diffusers import UNet2DConditionModel, AutoencoderKL

unets = {
    "tiny": dict(sample_size=32, in_channels=4, out_channels=4,
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
                 block_out_channels=[32, 64], layers_per_block=2, attention_head_dim=[2, 4],
                 transformer_layers_per_block=[1, 2], cross_attention_dim=64,
                 use_linear_projection=True, addition_embed_type="text_time",
                 addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
                 norm_num_groups=8),
    "three_levels": dict(sample_size=32, in_channels=4, out_channels=4,
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                 block_out_channels=[16, 32, 48], layers_per_block=1, attention_head_dim=[1, 2, 3],
                 transformer_layers_per_block=[1, 1, 3], cross_attention_dim=40,
                 use_linear_projection=True, addition_embed_type="text_time",
                 addition_time_embed_dim=4, projection_class_embeddings_input_dim=48,
                 norm_num_groups=8),
}
vaes = {
    "tiny": dict(in_channels=3, out_channels=3,
                 down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                 block_out_channels=[32, 64], layers_per_block=1, latent_channels=4, norm_num_groups=8),
    "three_levels": dict(in_channels=3, out_channels=3,
                 down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                 block_out_channels=[16, 32, 32], layers_per_block=2, latent_channels=4, norm_num_groups=8),
}

out = {"unet": {}, "vae": {}}
for k, cfg in unets.items():
    m = UNet2DConditionModel(**cfg)
    out["unet"][k] = {"config": cfg, "params": [[n, list(t.shape)] for n, t in m.state_dict().items()]}
for k, cfg in vaes.items():
    m = AutoencoderKL(**cfg)
    out["vae"][k] = {"config": cfg, "params": [[n, list(t.shape)] for n, t in m.state_dict().items()]}
json.dump(out, open(sys.argv[1], "w"), separators=(",", ":"))
