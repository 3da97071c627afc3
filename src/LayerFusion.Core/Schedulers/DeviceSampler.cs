using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Schedulers;

/// <summary>
/// A sampler's per-step arithmetic on backend tensors, so the denoising loop keeps its latents on the
/// device. Every supported step is linear in (sample, model output[, the previous x0]) with scalar
/// coefficients from the schedule the host scheduler built (its sigma/alpha tables); the coefficients
/// travel as kernel arguments, nothing is copied. The host <see cref="IScheduler"/> stays the
/// reference (float32 in torch's operation order); this form reassociates those products, so it
/// matches to float32 rounding, not bit for bit.
/// Covered: Euler (epsilon, v_prediction, sample), DPM-Solver++ 1S/2M (epsilon, v_prediction), DDIM
/// with eta = 0 (epsilon, v_prediction, sample) without clip_sample. <see cref="TryCreate"/> returns
/// null for anything else (e.g. clip_sample, whose clamp has no op), and the caller keeps the host step.
/// A stochastic sampler (Euler ancestral, SDE solvers) fits the same shape with its per-step noise
/// uploaded once as a [steps, ...] table before the loop and sliced per step.
/// </summary>
public sealed class DeviceSampler : IDisposable
{
    enum Kind { Euler, Dpm, Ddim }

    readonly IScheduler _host;
    readonly Kind _kind;
    readonly string _prediction;
    readonly int _order;
    readonly SchedulerConfig _config;
    Tensor? _previousX0;
    int _lowerOrderNums, _nextStep;

    DeviceSampler(IScheduler host, Kind kind, SchedulerConfig config, int order)
    {
        _host = host;
        _kind = kind;
        _config = config;
        _prediction = config.PredictionType;
        _order = order;
    }

    /// <summary>The device form of <paramref name="scheduler"/> (after SetTimesteps), or null when it has none.
    /// <paramref name="config"/> is the config the scheduler was built from (its prediction type and DDIM flags).</summary>
    public static DeviceSampler? TryCreate(IScheduler scheduler, SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(scheduler);
        ArgumentNullException.ThrowIfNull(config);
        // stochastic samplers (Euler ancestral, the SDE solvers) keep the host step until their
        // per-step noise has a device form; DpmSolverMultistepScheduler is one class for both kinds
        if (scheduler.IsStochastic) return null;
        return scheduler switch
        {
            EulerDiscreteScheduler => new DeviceSampler(scheduler, Kind.Euler, config, 1),
            DpmSolverMultistepScheduler d when config.PredictionType is "epsilon" or "v_prediction" =>
                new DeviceSampler(scheduler, Kind.Dpm, config, d.Name.StartsWith("dpmpp-2m", StringComparison.Ordinal) ? 2 : 1),
            DdimScheduler when !config.ClipSample => new DeviceSampler(scheduler, Kind.Ddim, config, 1),
            _ => null,
        };
    }

    public IScheduler Host => _host;

    static Tensor Combine(Tensor x, float a, Tensor y, float b)
    {
        var ops = x.Ops;
        using var ax = ops.Affine(x, a);
        using var by = ops.Affine(y, b);
        return ops.Add(ax, by);
    }

    /// <summary>The UNet input for step <paramref name="stepIndex"/> (a new tensor).</summary>
    public Tensor ScaleModelInput(Tensor sample, int stepIndex)
    {
        Check(stepIndex);
        if (_kind != Kind.Euler) return sample.Ops.Affine(sample, 1f);
        float sigma = _host.Sigmas[stepIndex];
        return sample.Ops.Affine(sample, 1f / MathF.Sqrt(sigma * sigma + 1f));
    }

    void Check(int stepIndex)
    {
        if (_host.StepCount == 0) throw new InvalidOperationException($"{_host.Name}: call SetTimesteps before stepping");
        if ((uint)stepIndex >= (uint)_host.StepCount)
            throw new ArgumentOutOfRangeException(nameof(stepIndex), $"{_host.Name}: step {stepIndex} outside 0..{_host.StepCount - 1}");
    }

    /// <summary>One denoising step on the device: the sample at the next noise level (a new tensor).</summary>
    public Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample)
    {
        Check(stepIndex);
        if (!modelOutput.Shape.AsSpan().SequenceEqual(sample.Shape))
            throw new ArgumentException($"{_host.Name}: model output {ShapeUtil.Format(modelOutput.Shape)} and sample {ShapeUtil.Format(sample.Shape)} differ");
        return _kind switch
        {
            Kind.Euler => EulerStep(modelOutput, stepIndex, sample),
            Kind.Dpm => DpmStep(modelOutput, stepIndex, sample),
            _ => DdimStep(modelOutput, stepIndex, sample),
        };
    }

    Tensor EulerStep(Tensor m, int i, Tensor x)
    {
        float sigma = _host.Sigmas[i], dt = _host.Sigmas[i + 1] - sigma;
        switch (_prediction)
        {
            case "epsilon":
                // x0 = x - sigma m; d = (x - x0) / sigma = m
                return Combine(x, 1f, m, dt);
            case "v_prediction":
            {
                float s2p1 = sigma * sigma + 1f, c = -sigma / MathF.Sqrt(s2p1);
                // x0 = c m + x / s2p1; x + (x - x0) / sigma * dt
                return Combine(x, 1f + dt / sigma * (1f - 1f / s2p1), m, -c * dt / sigma);
            }
            default:
                return Combine(x, 1f + dt / sigma, m, -dt / sigma);
        }
    }

    static (float Alpha, float Sigma) AlphaSigma(float sigma)
    {
        float alpha = 1f / MathF.Sqrt(sigma * sigma + 1f);
        return (alpha, sigma * alpha);
    }

    Tensor DpmStep(Tensor m, int i, Tensor x)
    {
        if (i != _nextStep)
            throw new InvalidOperationException($"{_host.Name} is a multistep sampler: expected step {_nextStep}, got {i}");
        var s = _host.Sigmas;
        int count = _host.StepCount;
        bool lowerOrderFinal = i == count - 1 && count < 15;
        var (alphaS0, sigmaS0) = AlphaSigma(s[i]);
        var x0 = _prediction == "epsilon" ? Combine(x, 1f / alphaS0, m, -sigmaS0 / alphaS0) : Combine(x, alphaS0, m, -sigmaS0);
        var (alphaT, sigmaT) = AlphaSigma(s[i + 1]);
        float h = MathF.Log(alphaT) - MathF.Log(sigmaT) - (MathF.Log(alphaS0) - MathF.Log(sigmaS0));
        float ratio = sigmaT / sigmaS0;
        float c0 = alphaT * (MathF.Exp(-h) - 1f);
        Tensor y;
        if (_order == 1 || _lowerOrderNums < 1 || lowerOrderFinal)
            y = Combine(x, ratio, x0, -c0);
        else
        {
            var (alphaS1, sigmaS1) = AlphaSigma(s[i - 1]);
            float h0 = MathF.Log(alphaS0) - MathF.Log(sigmaS0) - (MathF.Log(alphaS1) - MathF.Log(sigmaS1));
            float invR0 = h / h0, c1 = 0.5f * c0;
            // ratio x - c0 x0 - c1 invR0 (x0 - m1)
            using var a = Combine(x, ratio, x0, -c0 - c1 * invR0);
            y = Combine(a, 1f, _previousX0!, c1 * invR0);
        }
        _previousX0?.Dispose();
        _previousX0 = x0;
        if (_lowerOrderNums < _order) _lowerOrderNums++;
        _nextStep++;
        return y;
    }

    Tensor DdimStep(Tensor m, int i, Tensor x)
    {
        var ddim = (DdimScheduler)_host;
        var schedule = ddim.Schedule;
        int t = (int)_host.Timesteps[i];
        int prevT = t - schedule.NumTrainTimesteps / _host.StepCount;
        float finalAlpha = _config.SetAlphaToOne ? 1f : schedule.AlphasCumprod[0];
        float alphaProdT = schedule.AlphasCumprod[t];
        float alphaProdPrev = prevT >= 0 ? schedule.AlphasCumprod[prevT] : finalAlpha;
        float sqrtA = MathF.Sqrt(alphaProdT), sqrtB = MathF.Sqrt(1f - alphaProdT);
        float dirCoef = MathF.Sqrt(1f - alphaProdPrev), sqrtPrev = MathF.Sqrt(alphaProdPrev);
        return _prediction switch
        {
            // x0 = (x - sqrtB m) / sqrtA, eps = m
            "epsilon" => Combine(x, sqrtPrev / sqrtA, m, dirCoef - sqrtPrev * sqrtB / sqrtA),
            // x0 = sqrtA x - sqrtB m, eps = sqrtA m + sqrtB x
            "v_prediction" => Combine(x, sqrtPrev * sqrtA + dirCoef * sqrtB, m, dirCoef * sqrtA - sqrtPrev * sqrtB),
            // x0 = m, eps = (x - sqrtA m) / sqrtB
            _ => Combine(x, dirCoef / sqrtB, m, sqrtPrev - dirCoef * sqrtA / sqrtB),
        };
    }

    /// <summary>Moves the multistep history out of a step arena (see <see cref="IStepArena"/>).</summary>
    public void PersistHistory(IStepArena arena)
    {
        if (_previousX0 is null) return;
        var kept = arena.Persist(_previousX0);
        _previousX0.Dispose();
        _previousX0 = kept;
    }

    public void Dispose()
    {
        _previousX0?.Dispose();
        _previousX0 = null;
    }
}

/// <summary>Classifier-free guidance on backend tensors: uncond + scale * (cond - uncond).</summary>
public static class DeviceGuidance
{
    public static Tensor Combine(Tensor uncond, Tensor cond, float scale)
    {
        var ops = cond.Ops;
        using var diff = ops.Sub(cond, uncond);
        using var scaled = ops.Affine(diff, scale);
        return ops.Add(uncond, scaled);
    }
}
