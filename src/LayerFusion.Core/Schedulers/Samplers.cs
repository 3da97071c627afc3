using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Schedulers;

/// <summary>
/// The samplers the CLI offers, built from the checkpoint's scheduler config the way diffusers users
/// switch samplers: <c>XScheduler.from_config(pipe.scheduler.config, ...)</c>, so spacing, offset
/// and betas come from the checkpoint and only the sampler-specific switches are set here.
/// </summary>
public static class Samplers
{
    public const string Euler = "euler";
    public const string DpmPP2MKarras = "dpmpp-2m-karras";
    public const string DpmPP2M = "dpmpp-2m";
    public const string Ddim = "ddim";

    public static IReadOnlyList<string> Names { get; } = [Euler, DpmPP2MKarras, DpmPP2M, Ddim];

    /// <summary>The checkpoint's own sampler (scheduler_config.json's _class_name), with diffusers' defaults
    /// for the fields SchedulerConfig does not carry (DPM-Solver: order 2, dpmsolver++, midpoint).</summary>
    public static IScheduler FromConfig(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.ClassName switch
        {
            "EulerDiscreteScheduler" => new EulerDiscreteScheduler(config),
            "DPMSolverMultistepScheduler" => new DpmSolverMultistepScheduler(config),
            "DDIMScheduler" => new DdimScheduler(config),
            _ => throw new UserInputException(
                $"scheduler config: _class_name '{config.ClassName}' is not supported; choose a sampler ({string.Join(", ", Names)})"),
        };
    }

    public static IScheduler Create(string sampler, SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return sampler switch
        {
            Euler => new EulerDiscreteScheduler(config),
            // LayerDiffuse: DPMSolverMultistepScheduler(use_karras_sigmas=True, algorithm_type="dpmsolver++")
            DpmPP2MKarras => new DpmSolverMultistepScheduler(config with { UseKarrasSigmas = true }),
            DpmPP2M => new DpmSolverMultistepScheduler(config with { UseKarrasSigmas = false }),
            Ddim => new DdimScheduler(config),
            _ => throw new UserInputException($"unknown sampler '{sampler}' (one of: {string.Join(", ", Names)})"),
        };
    }
}

/// <summary>Classifier-free guidance over a CFG batch laid out [uncond, cond].</summary>
public static class Guidance
{
    /// <summary>noise = uncond + scale * (cond - uncond), float32 in torch's order.</summary>
    public static void Apply(ReadOnlySpan<float> uncond, ReadOnlySpan<float> cond, float scale, Span<float> destination)
    {
        if (uncond.Length != cond.Length || destination.Length != cond.Length)
            throw new ArgumentException($"CFG: uncond ({uncond.Length}), cond ({cond.Length}) and destination ({destination.Length}) lengths differ");
        for (int i = 0; i < cond.Length; i++) destination[i] = uncond[i] + scale * (cond[i] - uncond[i]);
    }

    /// <summary>Splits a [uncond; cond] model output (first half uncond) and combines the halves.</summary>
    public static float[] Combine(ReadOnlySpan<float> batchedOutput, float scale)
    {
        if (batchedOutput.Length % 2 != 0)
            throw new ArgumentException($"CFG: batched model output length {batchedOutput.Length} is odd");
        int half = batchedOutput.Length / 2;
        var r = new float[half];
        Apply(batchedOutput[..half], batchedOutput[half..], scale, r);
        return r;
    }
}

/// <summary>SDXL micro-conditioning: add_time_ids = original_size + crops_coords_top_left + target_size.</summary>
public static class SdxlTimeIds
{
    public static float[] Create(int originalHeight, int originalWidth, int cropTop, int cropLeft, int targetHeight, int targetWidth)
    {
        if (originalHeight <= 0 || originalWidth <= 0 || targetHeight <= 0 || targetWidth <= 0)
            throw new ArgumentOutOfRangeException(nameof(originalHeight), "SDXL time ids: sizes must be positive");
        if (cropTop < 0 || cropLeft < 0)
            throw new ArgumentOutOfRangeException(nameof(cropTop), "SDXL time ids: crop coordinates must be non-negative");
        return [originalHeight, originalWidth, cropTop, cropLeft, targetHeight, targetWidth];
    }

    /// <summary>The pipeline default: original = target = (height, width), crop (0, 0).</summary>
    public static float[] ForSize(int height, int width) => Create(height, width, 0, 0, height, width);

    /// <summary>Time ids for a CFG batch: <paramref name="batch"/> copies of <paramref name="ids"/> ([batch, 6] flat).</summary>
    public static float[] Repeat(float[] ids, int batch)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Length != 6) throw new ArgumentException("SDXL time ids have 6 entries");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        var r = new float[6 * batch];
        for (int b = 0; b < batch; b++) ids.CopyTo(r, 6 * b);
        return r;
    }
}
