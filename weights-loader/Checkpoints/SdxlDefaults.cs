using System.Text.Json.Nodes;

namespace LayerFusion.WeightsLoader.Checkpoints;

/// <summary>
/// SDXL base 1.0's config.json contents (diffusers layout), used for what a single-file checkpoint's
/// tensor shapes cannot tell (head counts, norm groups, scaling factor, scheduler).
/// </summary>
public static class SdxlDefaults
{
    public static JsonObject UNet() => Parse("""
        {"_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
         "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
         "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": 2048,
         "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "downsample_padding": 1,
         "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
         "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4,
         "projection_class_embeddings_input_dim": 2816, "sample_size": 128, "transformer_layers_per_block": [1, 2, 10],
         "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "upcast_attention": false,
         "use_linear_projection": true}
        """);

    public static JsonObject Vae() => Parse("""
        {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
         "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
         "force_upcast": true, "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
         "out_channels": 3, "sample_size": 1024, "scaling_factor": 0.13025,
         "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}
        """);

    public static JsonObject TextEncoder() => Parse("""
        {"architectures": ["CLIPTextModel"], "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "quick_gelu",
         "hidden_size": 768, "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
         "model_type": "clip_text_model", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
         "projection_dim": 768, "vocab_size": 49408}
        """);

    public static JsonObject TextEncoder2() => Parse("""
        {"architectures": ["CLIPTextModelWithProjection"], "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "gelu",
         "hidden_size": 1280, "intermediate_size": 5120, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
         "model_type": "clip_text_model", "num_attention_heads": 20, "num_hidden_layers": 32, "pad_token_id": 1,
         "projection_dim": 1280, "vocab_size": 49408}
        """);

    public static JsonObject Scheduler() => Parse("""
        {"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
         "beta_start": 0.00085, "clip_sample": false, "interpolation_type": "linear", "num_train_timesteps": 1000,
         "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": false, "skip_prk_steps": true,
         "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": null, "use_karras_sigmas": false}
        """);

    /// <summary>sgm's SDXL UNet uses num_head_channels = 64: heads per level = channels / 64.</summary>
    public const int UNetHeadDim = 64;

    /// <summary>Both SDXL text encoders use 64-wide heads (ViT-L 768/12, bigG 1280/20).</summary>
    public const int ClipHeadDim = 64;

    static JsonObject Parse(string json) => (JsonObject)JsonNode.Parse(json)!;
}
