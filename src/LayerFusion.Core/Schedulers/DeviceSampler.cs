using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Schedulers;

/// <summary>
/// A sampler's per-step arithmetic on backend tensors, so the denoising loop keeps its latents on the
/// device. Every supported step is linear in (sample, model output[, the previous x0]) with scalar
/// coefficients from the schedule the host scheduler built (its sigma/alpha tables). The
/// coefficients of every step are written once into the generation's <see cref="StepScalars"/> table
/// (<see cref="WriteColumns"/>) and read on the backend at its step counter, so a step uploads nothing
/// and issues the same work every step (a multistep sampler's lower-order steps weigh the history by
/// 0), which lets a step be captured once as a graph and replayed. The host <see cref="IScheduler"/>
/// stays the reference (float32 in torch's operation order); this form reassociates those products,
/// so it matches to float32 rounding, not bit for bit.
/// Covered: every sampler of <see cref="Samplers"/> and every prediction type its host scheduler
/// accepts: Euler (epsilon, v_prediction, sample, original_sample), Euler ancestral (epsilon, v_prediction),
/// DPM-Solver++ 1S/2M and their SDE variants (epsilon, v_prediction, sample), DDIM with eta = 0 (epsilon,
/// v_prediction, sample; clip_sample as a clamp of x0 on the backend). The stochastic samplers' per-step
/// noise (Euler ancestral, the SDE solvers) is drawn before the loop from the generation's
/// <see cref="INoiseSource"/> (the same values, in the same order, as the host step draws them),
/// uploaded once as a [steps, ...] table and selected at the step counter. <see cref="TryCreate"/>
/// returns null for a scheduler it does not know, and the caller keeps the host step.
/// </summary>
public sealed class DeviceSampler : IDisposable
{
    enum Kind { Euler, Dpm, Ddim, EulerAncestral, DdimClip }

    // the columns of one sampler's block in the step table
    const int Scale = 0, A = 1, B = 2;                      // Euler, DDIM: a x + b m
    const int Noise = 3, Unit = 4;                          // Euler ancestral: (a x + b m) + sigma_up z
    const int X0x = 1, X0m = 2, Yx = 3, Yx0 = 4, Yprev = 5, One = 6;  // DPM: x0 = .. x + .. m; y = (.. x + .. x0) + .. prev
    const int SdeNoise = 7;                                 // DPM SDE: y + sigma_t sqrt(1 - e^-2h) z
    const int Ex = 3, Em = 4, P = 5, D = 6;                 // DDIM clip: eps = .. x + .. m; y = P clamp(x0) + D eps

    readonly IScheduler _host;
    readonly Kind _kind;
    readonly string _prediction;
    readonly int _order;
    readonly SchedulerConfig _config;
    readonly bool _sde;
    StepScalars? _table;
    int _first;
    Tensor? _history, _noise;
    int _nextStep;

    DeviceSampler(IScheduler host, Kind kind, SchedulerConfig config, int order, bool sde = false)
    {
        _host = host;
        _kind = kind;
        _config = config;
        _prediction = config.PredictionType;
        _order = order;
        _sde = sde;
    }

    /// <summary>The device form of <paramref name="scheduler"/> (after SetTimesteps), or null when it has none.
    /// <paramref name="config"/> is the config the scheduler was built from (its prediction type and DDIM flags).</summary>
    public static DeviceSampler? TryCreate(IScheduler scheduler, SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(scheduler);
        ArgumentNullException.ThrowIfNull(config);
        return scheduler switch
        {
            EulerAncestralDiscreteScheduler when config.PredictionType is "epsilon" or "v_prediction" =>
                new DeviceSampler(scheduler, Kind.EulerAncestral, config, 1),
            EulerDiscreteScheduler => new DeviceSampler(scheduler, Kind.Euler, config, 1),
            // one class for DPM++ and DPM++ SDE (IsStochastic)
            DpmSolverMultistepScheduler d =>
                new DeviceSampler(scheduler, Kind.Dpm, config, d.Name.StartsWith("dpmpp-2m", StringComparison.Ordinal) ? 2 : 1, d.IsStochastic),
            DdimScheduler => new DeviceSampler(scheduler, config.ClipSample ? Kind.DdimClip : Kind.Ddim, config, 1),
            _ => null,
        };
    }

    public IScheduler Host => _host;

    /// <summary>How many per-step columns of the step table this sampler reads.</summary>
    public int Columns => _kind switch { Kind.Dpm => _sde ? 8 : 7, Kind.EulerAncestral => 5, Kind.DdimClip => 7, _ => 3 };

    /// <summary>Whether <see cref="Bind"/> needs the generation's noise source (a stochastic sampler).</summary>
    public bool NeedsNoise => _kind == Kind.EulerAncestral || _sde;

    /// <summary>Writes this sampler's coefficients of every step into columns [first, first + Columns) of a row-major [steps, stride] table.</summary>
    public void WriteColumns(Span<float> table, int stride, int first)
    {
        int steps = _host.StepCount;
        if (steps == 0) throw new InvalidOperationException($"{_host.Name}: call SetTimesteps before building the step table");
        if (first < 0 || first + Columns > stride || table.Length != steps * stride)
            throw new ArgumentException($"{_host.Name}: columns [{first}, {first + Columns}) do not fit a [{steps}, {stride}] table");
        for (int i = 0; i < steps; i++)
        {
            var row = table.Slice(i * stride + first, Columns);
            switch (_kind)
            {
                case Kind.Euler: EulerRow(i, row); break;
                case Kind.Dpm: DpmRow(i, row); break;
                case Kind.EulerAncestral: AncestralRow(i, row); break;
                case Kind.DdimClip: DdimClipRow(i, row); break;
                default: DdimRow(i, row); break;
            }
        }
    }

    /// <summary>
    /// Reads the coefficients from <paramref name="table"/> (written by <see cref="WriteColumns"/> at
    /// <paramref name="first"/>) from now on. Call before the loop, outside any step: a multistep
    /// sampler allocates its history of <paramref name="sampleShape"/> here (zeros, weighed 0 until it holds an x0),
    /// a stochastic one draws every step's noise from <paramref name="noise"/> (in the order its host
    /// step would) and uploads it.
    /// </summary>
    public void Bind(IOps ops, StepScalars table, int first, int[] sampleShape, INoiseSource? noise = null)
    {
        ArgumentNullException.ThrowIfNull(ops);
        ArgumentNullException.ThrowIfNull(table);
        if (table.Steps != _host.StepCount) throw new ArgumentException($"{_host.Name}: the step table has {table.Steps} steps, the schedule {_host.StepCount}");
        table.CheckRun(table.Column(first), Columns, _host.Name);
        _table = table;
        _first = first;
        _history?.Dispose();
        _history = _kind == Kind.Dpm && _order == 2 ? ops.Zeros(sampleShape) : null;
        _noise?.Dispose();
        _noise = null;
        if (NeedsNoise)
        {
            if (noise is null) throw new InvalidOperationException($"{_host.Name} is a stochastic sampler: Bind needs the generation's noise source");
            long n = ShapeUtil.ElementCount(sampleShape);
            var z = new float[checked((int)(n * _host.StepCount))];
            // the stream's values depend only on their position, so one fill equals the host's per-step fills
            noise.Fill(z);
            _noise = ops.FromHost(z, [_host.StepCount, .. sampleShape]);
        }
        _nextStep = 0;
    }

    StepScalar Col(int c) => (_table ?? throw new InvalidOperationException($"{_host.Name}: Bind a step table before stepping")).Column(_first + c);

    /// <summary>The UNet input for step <paramref name="stepIndex"/> (a new tensor).</summary>
    public Tensor ScaleModelInput(Tensor sample, int stepIndex)
    {
        Check(stepIndex);
        return sample.Ops.StepScale(sample, Col(Scale));
    }

    void Check(int stepIndex)
    {
        if (_host.StepCount == 0) throw new InvalidOperationException($"{_host.Name}: call SetTimesteps before stepping");
        if ((uint)stepIndex >= (uint)_host.StepCount)
            throw new ArgumentOutOfRangeException(nameof(stepIndex), $"{_host.Name}: step {stepIndex} outside 0..{_host.StepCount - 1}");
    }

    /// <summary>
    /// One denoising step on the device: the sample at the next noise level (a new tensor). The
    /// coefficients are those of the step table's current step (the loop advances the table once per
    /// step, after every stream's sampler has stepped); <paramref name="stepIndex"/> is checked on the host.
    /// </summary>
    public Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample)
    {
        Check(stepIndex);
        if (!modelOutput.Shape.AsSpan().SequenceEqual(sample.Shape))
            throw new ArgumentException($"{_host.Name}: model output {ShapeUtil.Format(modelOutput.Shape)} and sample {ShapeUtil.Format(sample.Shape)} differ");
        var ops = sample.Ops;
        if (_kind == Kind.EulerAncestral)
        {
            using var prev = ops.StepCombine(sample, Col(A), modelOutput, Col(B));
            using var z = ops.StepRow(_noise!, _table!);
            return ops.StepCombine(prev, Col(Unit), z, Col(Noise));
        }
        if (_kind == Kind.DdimClip)
        {
            using var x0Raw = ops.StepCombine(sample, Col(X0x), modelOutput, Col(X0m));
            using var x0Clipped = ops.Clamp(x0Raw, -DdimScheduler.ClipSampleRange, DdimScheduler.ClipSampleRange);
            // eps from the unclipped prediction, as diffusers computes it before clipping
            using var eps = ops.StepCombine(sample, Col(Ex), modelOutput, Col(Em));
            return ops.StepCombine(x0Clipped, Col(P), eps, Col(D));
        }
        if (_kind != Kind.Dpm) return ops.StepCombine(sample, Col(A), modelOutput, Col(B));
        if (stepIndex != _nextStep)
            throw new InvalidOperationException($"{_host.Name} is a multistep sampler: expected step {_nextStep}, got {stepIndex}");
        _nextStep++;
        var x0 = ops.StepCombine(sample, Col(X0x), modelOutput, Col(X0m));
        if (_history is null)
            using (x0)
            {
                var first = ops.StepCombine(sample, Col(Yx), x0, Col(Yx0));
                return _sde ? AddSdeNoise(ops, first) : first;
            }
        Tensor y;
        using (var a = ops.StepCombine(sample, Col(Yx), x0, Col(Yx0)))
            y = ops.StepCombine(a, Col(One), _history, Col(Yprev));
        if (_sde) y = AddSdeNoise(ops, y);
        if (ops is IStepArena arena)
        {
            // the history keeps its memory: a captured step reads and writes the same buffer every replay
            arena.CopyInto(_history, x0);
            x0.Dispose();
        }
        else
        {
            _history.Dispose();
            _history = x0;
        }
        return y;
    }

    /// <summary>y + c z with this step's noise row (consumes y).</summary>
    Tensor AddSdeNoise(IOps ops, Tensor y)
    {
        using (y)
        using (var z = ops.StepRow(_noise!, _table!))
            return ops.StepCombine(y, Col(One), z, Col(SdeNoise));
    }

    void EulerRow(int i, Span<float> row)
    {
        float sigma = _host.Sigmas[i], dt = _host.Sigmas[i + 1] - sigma;
        row[Scale] = 1f / MathF.Sqrt(sigma * sigma + 1f);
        switch (_prediction)
        {
            case "epsilon":
                // x0 = x - sigma m; d = (x - x0) / sigma = m
                (row[A], row[B]) = (1f, dt);
                break;
            case "v_prediction":
            {
                float s2p1 = sigma * sigma + 1f, c = -sigma / MathF.Sqrt(s2p1);
                // x0 = c m + x / s2p1; x + (x - x0) / sigma * dt
                (row[A], row[B]) = (1f + dt / sigma * (1f - 1f / s2p1), -c * dt / sigma);
                break;
            }
            default:
                (row[A], row[B]) = (1f + dt / sigma, -dt / sigma);
                break;
        }
    }

    void AncestralRow(int i, Span<float> row)
    {
        var sigmas = _host.Sigmas;
        float sigma = sigmas[i], sigmaTo = sigmas[i + 1];
        // the host step's float32 order (EulerAncestralDiscreteScheduler.Step)
        float from2 = sigma * sigma, to2 = sigmaTo * sigmaTo;
        float sigmaUp = MathF.Sqrt(to2 * (from2 - to2) / from2);
        float sigmaDown = MathF.Sqrt(to2 - sigmaUp * sigmaUp);
        float dt = sigmaDown - sigma;
        row[Scale] = 1f / MathF.Sqrt(sigma * sigma + 1f);
        row[Noise] = sigmaUp;
        row[Unit] = 1f;
        if (_prediction == "epsilon") (row[A], row[B]) = (1f, dt);
        else
        {
            float s2p1 = sigma * sigma + 1f, c = -sigma / MathF.Sqrt(s2p1);
            (row[A], row[B]) = (1f + dt / sigma * (1f - 1f / s2p1), -c * dt / sigma);
        }
    }

    static (float Alpha, float Sigma) AlphaSigma(float sigma)
    {
        float alpha = 1f / MathF.Sqrt(sigma * sigma + 1f);
        return (alpha, sigma * alpha);
    }

    static float Lambda((float Alpha, float Sigma) a) => MathF.Log(a.Alpha) - MathF.Log(a.Sigma);

    void DpmRow(int i, Span<float> row)
    {
        var s = _host.Sigmas;
        int count = _host.StepCount;
        bool lowerOrderFinal = i == count - 1 && count < 15;
        var (alphaS0, sigmaS0) = AlphaSigma(s[i]);
        row[Scale] = 1f;
        row[One] = 1f;
        (row[X0x], row[X0m]) = _prediction switch
        {
            "epsilon" => (1f / alphaS0, -sigmaS0 / alphaS0),
            "v_prediction" => (alphaS0, -sigmaS0),
            _ => (0f, 1f),  // sample: the model predicts x0
        };
        var (alphaT, sigmaT) = AlphaSigma(s[i + 1]);
        float lambdaS0 = Lambda((alphaS0, sigmaS0));
        float h = Lambda((alphaT, sigmaT)) - lambdaS0;
        float ratio = sigmaT / sigmaS0;
        float c0 = alphaT * (MathF.Exp(-h) - 1f);
        // the multistep history holds an x0 from step 1 on (lower_order_nums >= 1)
        bool firstOrder = _order == 1 || i == 0 || lowerOrderFinal;
        // the previous step's lambda gap, read only by the second-order updates
        float h0 = firstOrder ? float.NaN : lambdaS0 - Lambda(AlphaSigma(s[i - 1]));
        if (_sde)
        {
            // the host's SdeUpdate: a x + b x0 [+ 0.5 b / r0 (x0 - m1)] + c z
            float a = sigmaT / sigmaS0 * MathF.Exp(-h);
            float oneMinusE2h = 1f - MathF.Exp(-2f * h);
            float b = alphaT * oneMinusE2h;
            row[SdeNoise] = sigmaT * MathF.Sqrt(oneMinusE2h);
            if (firstOrder) (row[Yx], row[Yx0], row[Yprev]) = (a, b, 0f);
            else
            {
                float invR0 = 1f / (h0 / h), c1 = 0.5f * b;
                (row[Yx], row[Yx0], row[Yprev]) = (a, b + c1 * invR0, -c1 * invR0);
            }
            return;
        }
        if (firstOrder)
            (row[Yx], row[Yx0], row[Yprev]) = (ratio, -c0, 0f);
        else
        {
            float invR0 = h / h0, c1 = 0.5f * c0;
            // ratio x - c0 x0 - c1 invR0 (x0 - m1)
            (row[Yx], row[Yx0], row[Yprev]) = (ratio, -c0 - c1 * invR0, c1 * invR0);
        }
    }

    void DdimRow(int i, Span<float> row)
    {
        var (sqrtA, sqrtB, sqrtPrev, dirCoef) = DdimCoefficients(i);
        row[Scale] = 1f;
        (row[A], row[B]) = _prediction switch
        {
            // x0 = (x - sqrtB m) / sqrtA, eps = m
            "epsilon" => (sqrtPrev / sqrtA, dirCoef - sqrtPrev * sqrtB / sqrtA),
            // x0 = sqrtA x - sqrtB m, eps = sqrtA m + sqrtB x
            "v_prediction" => (sqrtPrev * sqrtA + dirCoef * sqrtB, dirCoef * sqrtA - sqrtPrev * sqrtB),
            // x0 = m, eps = (x - sqrtA m) / sqrtB
            _ => (dirCoef / sqrtB, sqrtPrev - dirCoef * sqrtA / sqrtB),
        };
    }

    void DdimClipRow(int i, Span<float> row)
    {
        var (sqrtA, sqrtB, sqrtPrev, dirCoef) = DdimCoefficients(i);
        row[Scale] = 1f;
        // x0 and eps as the host computes them, then y = sqrtPrev clamp(x0) + dirCoef eps
        (row[X0x], row[X0m], row[Ex], row[Em]) = _prediction switch
        {
            "epsilon" => (1f / sqrtA, -sqrtB / sqrtA, 0f, 1f),
            "v_prediction" => (sqrtA, -sqrtB, sqrtB, sqrtA),
            _ => (0f, 1f, 1f / sqrtB, -sqrtA / sqrtB),
        };
        (row[P], row[D]) = (sqrtPrev, dirCoef);
    }

    (float SqrtA, float SqrtB, float SqrtPrev, float DirCoef) DdimCoefficients(int i)
    {
        var ddim = (DdimScheduler)_host;
        var schedule = ddim.Schedule;
        int t = (int)_host.Timesteps[i];
        int prevT = t - schedule.NumTrainTimesteps / _host.StepCount;
        float finalAlpha = _config.SetAlphaToOne ? 1f : schedule.AlphasCumprod[0];
        float alphaProdT = schedule.AlphasCumprod[t];
        float alphaProdPrev = prevT >= 0 ? schedule.AlphasCumprod[prevT] : finalAlpha;
        return (MathF.Sqrt(alphaProdT), MathF.Sqrt(1f - alphaProdT), MathF.Sqrt(alphaProdPrev), MathF.Sqrt(1f - alphaProdPrev));
    }

    public void Dispose()
    {
        _history?.Dispose();
        _history = null;
        _noise?.Dispose();
        _noise = null;
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
