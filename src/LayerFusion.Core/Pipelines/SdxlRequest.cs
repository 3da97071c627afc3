using LayerFusion.Core.Imaging;

namespace LayerFusion.Core.Pipelines;

/// <summary>
/// One text-to-image request, with diffusers v0.25 StableDiffusionXLPipeline's parameter meanings.
/// Defaults: the size comes from the checkpoint (unet sample_size x VAE scale factor, 1024 for SDXL),
/// 30 steps, guidance 5 (diffusers' SDXL default), seed 0, the checkpoint's own scheduler.
/// </summary>
public sealed record SdxlRequest
{
    public required string Prompt { get; init; }
    /// <summary>Null or empty: zero embeddings when the checkpoint sets force_zeros_for_empty_prompt (SDXL does).</summary>
    public string? NegativePrompt { get; init; }
    /// <summary>diffusers' prompt_2 (tokenizer_2 / text_encoder_2); null = <see cref="Prompt"/>.</summary>
    public string? Prompt2 { get; init; }
    public string? NegativePrompt2 { get; init; }
    /// <summary>Image width in pixels (a positive multiple of 8); null = the checkpoint's default size.</summary>
    public int? Width { get; init; }
    public int? Height { get; init; }
    public int Steps { get; init; } = 30;
    /// <summary>Classifier-free guidance scale; at or below 1 no unconditional pass is made (as diffusers).</summary>
    public float GuidanceScale { get; init; } = 5f;
    public ulong Seed { get; init; }
    /// <summary>A <see cref="Schedulers.Samplers"/> name or alias (euler, euler-a, dpmpp-2m-karras, dpmpp-2m-sde-karras, ...;
    /// <see cref="Schedulers.Samplers.Names"/>); null = the checkpoint's scheduler. Stochastic samplers draw each step's
    /// noise from <see cref="Seed"/>'s stream after the initial latents, so a seed still fixes the image.</summary>
    public string? Sampler { get; init; }
    /// <summary>diffusers' num_images_per_prompt: images share one UNet batch and one noise draw.</summary>
    public int NumImages { get; init; } = 1;
    /// <summary>diffusers' clip_skip (0 = hidden_states[-2], SDXL's default).</summary>
    public int ClipSkip { get; init; }
    /// <summary>diffusers' <c>latents</c> argument: unit Gaussian noise [NumImages, C, h, w] used instead of
    /// the seeded draw (still multiplied by init_noise_sigma). Null: <see cref="Seed"/>'s noise. A stochastic
    /// sampler then takes its step noise from <see cref="Seed"/>'s stream from the start, as diffusers' generator.</summary>
    public float[]? InitialNoise { get; init; }
}

/// <summary>Reported after each denoising step.</summary>
/// <param name="Step">Steps completed (1-based).</param>
/// <param name="TotalSteps">Steps in this generation.</param>
/// <param name="Timestep">The model timestep of the step just completed.</param>
/// <param name="Elapsed">Time since the denoising loop started (text encoding excluded).</param>
public readonly record struct StepProgress(int Step, int TotalSteps, float Timestep, TimeSpan Elapsed);

/// <summary>The generated images and what produced them.</summary>
public sealed record SdxlResult
{
    /// <summary>RGB 8-bit images, one per <see cref="SdxlRequest.NumImages"/>.</summary>
    public required IReadOnlyList<Image8> Images { get; init; }
    /// <summary>The final latents (before the division by the VAE scaling factor), [NumImages, C, h, w] row-major.</summary>
    public required float[] Latents { get; init; }
    public required int[] LatentShape { get; init; }
    public required int Width { get; init; }
    public required int Height { get; init; }
    /// <summary>The sampler actually used (CLI spelling).</summary>
    public required string Sampler { get; init; }
    /// <summary>Non-fatal notices (prompts truncated to the tokenizer's length).</summary>
    public required IReadOnlyList<string> Warnings { get; init; }
}
