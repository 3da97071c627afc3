namespace LayerFusion.Core.Schedulers;

/// <summary>
/// A denoising sampler over host-side float32 latents (see docs/decisions.md: latents are small,
/// and keeping the arithmetic on the host lets us repeat diffusers' float32 operation order).
/// Buffers are flat; every element is independent, so a buffer may hold a whole batch (CFG halves
/// already combined) or several streams' latents back to back.
/// Usage, as diffusers' pipelines do: SetTimesteps(n); latents = noise * InitNoiseSigma; for each
/// i: x = ScaleModelInput(latents, i); eps = model(x, Timesteps[i]); latents = Step(eps, i, latents, noise).
/// Stochastic samplers (<see cref="IsStochastic"/>) draw sample.Length fresh values from the noise
/// source on every step, the last one included, as diffusers' randn_tensor(model_output.shape) does.
/// </summary>
public interface IScheduler
{
    /// <summary>Sampler name as the CLI spells it.</summary>
    string Name { get; }

    /// <summary>Builds the inference schedule and resets any multistep history.</summary>
    void SetTimesteps(int numInferenceSteps);

    /// <summary>Number of denoising steps (Timesteps.Count) after <see cref="SetTimesteps"/>.</summary>
    int StepCount { get; }

    /// <summary>The model's timestep input per step (float32, as diffusers feeds the UNet).</summary>
    IReadOnlyList<float> Timesteps { get; }

    /// <summary>Noise level per step plus the final one (Euler, DPM-Solver); empty for DDIM.</summary>
    IReadOnlyList<float> Sigmas { get; }

    /// <summary>Factor applied to unit Gaussian noise to form the initial latents.</summary>
    float InitNoiseSigma { get; }

    /// <summary>True when <see cref="Step"/> adds fresh noise (ancestral and SDE samplers) and so needs a noise source.</summary>
    bool IsStochastic => false;

    /// <summary>The UNet input for step <paramref name="stepIndex"/>, written into <paramref name="destination"/>.</summary>
    void ScaleModelInput(ReadOnlySpan<float> sample, int stepIndex, Span<float> destination);

    /// <summary>One denoising step: the sample at the next (lower) noise level, into <paramref name="destination"/>
    /// (which may alias <paramref name="sample"/>). Multistep samplers require steps in order 0, 1, 2, ...
    /// <paramref name="noise"/>: required by stochastic samplers (sample.Length values are drawn), ignored by the others.</summary>
    void Step(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, Span<float> destination, INoiseSource? noise = null);
}

public static class SchedulerExtensions
{
    public static float[] ScaleModelInput(this IScheduler s, ReadOnlySpan<float> sample, int stepIndex)
    {
        var r = new float[sample.Length];
        s.ScaleModelInput(sample, stepIndex, r);
        return r;
    }

    public static float[] Step(this IScheduler s, ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, INoiseSource? noise = null)
    {
        var r = new float[sample.Length];
        s.Step(modelOutput, stepIndex, sample, r, noise);
        return r;
    }

    /// <summary>This step's noise: sample.Length values from <paramref name="noise"/> (a stochastic sampler without one is a caller bug).</summary>
    internal static float[] DrawStepNoise(IScheduler s, INoiseSource? noise, int length)
    {
        if (noise is null)
            throw new InvalidOperationException($"{s.Name} is a stochastic sampler: Step needs a noise source (e.g. the GaussianNoise that drew the initial latents)");
        var r = new float[length];
        noise.Fill(r);
        return r;
    }

    internal static void CheckStep(IScheduler s, int stepIndex, int outputLength, int sampleLength, int destinationLength)
    {
        if (s.StepCount == 0) throw new InvalidOperationException($"{s.Name}: call SetTimesteps before stepping");
        if ((uint)stepIndex >= (uint)s.StepCount)
            throw new ArgumentOutOfRangeException(nameof(stepIndex), $"{s.Name}: step {stepIndex} outside 0..{s.StepCount - 1}");
        if (outputLength != sampleLength || destinationLength != sampleLength)
            throw new ArgumentException($"{s.Name}: model output ({outputLength}), sample ({sampleLength}) and destination ({destinationLength}) lengths differ");
    }
}
