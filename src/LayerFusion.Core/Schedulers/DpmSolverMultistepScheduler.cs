using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Schedulers;

/// <summary>
/// diffusers v0.25 DPMSolverMultistepScheduler with algorithm_type "dpmsolver++" or
/// "sde-dpmsolver++", solver_type "midpoint", lower_order_final, no thresholding: DPM++ 1S/2M and
/// their SDE variants. With use_karras_sigmas it is "DPM++ 2M Karras" / "DPM++ 2M SDE Karras"
/// (LayerDiffuse's reference samplers). As in v0.25 the Karras schedule ends at sigma_min repeated
/// (not 0), so the last step returns its input unchanged (h = 0: the SDE adds no noise there either).
/// The SDE variant draws sample.Length noise values on every step, the last one included.
/// </summary>
public sealed class DpmSolverMultistepScheduler : IScheduler
{
    private readonly SchedulerConfig _config;
    private readonly NoiseSchedule _schedule;
    private readonly int _solverOrder;
    private readonly bool _lowerOrderFinal;
    private readonly bool _sde;
    private float[] _timesteps = [];
    private float[] _sigmas = [];
    // x0 predictions of the previous step(s), the multistep history
    private float[]? _previousX0;
    private int _lowerOrderNums;
    private int _nextStep;

    /// <param name="sde">algorithm_type "sde-dpmsolver++" (true) or "dpmsolver++" (false).</param>
    public DpmSolverMultistepScheduler(SchedulerConfig config, int solverOrder = 2, bool lowerOrderFinal = true, bool sde = false)
    {
        _config = config ?? throw new ArgumentNullException(nameof(config));
        if (solverOrder is not (1 or 2)) throw new ArgumentOutOfRangeException(nameof(solverOrder), "solver order 1 or 2");
        _schedule = new NoiseSchedule(config);
        PredictionTypes.Validate(config.PredictionType, "DPMSolverMultistepScheduler", allowSample: false);
        _solverOrder = solverOrder;
        _lowerOrderFinal = lowerOrderFinal;
        _sde = sde;
    }

    public string Name => (_solverOrder == 2 ? "dpmpp-2m" : "dpmpp-1s") + (_sde ? "-sde" : "") + (_config.UseKarrasSigmas ? "-karras" : "");
    public bool IsStochastic => _sde;
    public NoiseSchedule Schedule => _schedule;
    public int StepCount => _timesteps.Length;
    public IReadOnlyList<float> Timesteps => _timesteps;
    public IReadOnlyList<float> Sigmas => _sigmas;
    public float InitNoiseSigma => 1f;

    public void SetTimesteps(int numInferenceSteps)
    {
        int n = numInferenceSteps, nt = _schedule.NumTrainTimesteps;
        NoiseSchedule.ValidateSteps(n, nt);
        // lambda_min_clipped = -inf: nothing clipped, last_timestep = num_train_timesteps
        int last = nt;
        double[] ts;
        switch (_config.TimestepSpacing)
        {
            case "linspace":
            {
                var l = NoiseSchedule.NumpyLinspace(0, last - 1, n + 1);
                ts = new double[n];
                for (int i = 0; i < n; i++) ts[i] = NoiseSchedule.NpRound(l[n - i]);
                break;
            }
            case "leading":
            {
                int ratio = last / (n + 1);
                ts = new double[n];
                for (int i = 0; i < n; i++) ts[i] = (double)(n - i) * ratio + _config.StepsOffset;
                break;
            }
            case "trailing":
            {
                var a = NoiseSchedule.NumpyArange(last, 0, -(nt / (double)n));
                ts = new double[a.Length];
                for (int i = 0; i < a.Length; i++) ts[i] = NoiseSchedule.NpRound(a[i]) - 1;
                break;
            }
            default:
                throw new UserInputException($"scheduler config: timestep_spacing '{_config.TimestepSpacing}' is not supported (leading, linspace, trailing)");
        }

        var full = _schedule.Sigmas;
        float[] sigmas;
        if (_config.UseKarrasSigmas)
        {
            var k = NoiseSchedule.KarrasSigmas(full[0], full[^1], n);
            ts = new double[n];
            for (int i = 0; i < n; i++) ts[i] = NoiseSchedule.NpRound(_schedule.SigmaToT(k[i]));
            sigmas = new float[n + 1];
            for (int i = 0; i < n; i++) sigmas[i] = (float)k[i];
            sigmas[n] = (float)k[n - 1];
        }
        else
        {
            foreach (var t in ts)
                if (t < 0 || t > nt - 1)
                    throw new UserInputException($"scheduler config: steps_offset {_config.StepsOffset} puts timestep {t} outside 0..{nt - 1}");
            sigmas = new float[ts.Length + 1];
            for (int i = 0; i < ts.Length; i++) sigmas[i] = (float)NoiseSchedule.InterpAtIndex(ts[i], full);
            float a0 = _schedule.AlphasCumprod[0];
            sigmas[^1] = MathF.Sqrt((1f - a0) / a0);
        }
        _timesteps = new float[ts.Length];
        for (int i = 0; i < ts.Length; i++) _timesteps[i] = (float)(long)ts[i];
        _sigmas = sigmas;
        _previousX0 = null;
        _lowerOrderNums = 0;
        _nextStep = 0;
    }

    public void ScaleModelInput(ReadOnlySpan<float> sample, int stepIndex, Span<float> destination)
    {
        SchedulerExtensions.CheckStep(this, stepIndex, sample.Length, sample.Length, destination.Length);
        sample.CopyTo(destination);
    }

    private static (float Alpha, float Sigma) AlphaSigma(float sigma)
    {
        float alpha = 1f / MathF.Sqrt(sigma * sigma + 1f);
        return (alpha, sigma * alpha);
    }

    private static float Lambda(float alpha, float sigma) => MathF.Log(alpha) - MathF.Log(sigma);

    public void Step(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, Span<float> destination, INoiseSource? noise = null)
    {
        SchedulerExtensions.CheckStep(this, stepIndex, modelOutput.Length, sample.Length, destination.Length);
        if (stepIndex != _nextStep)
            throw new InvalidOperationException($"{Name} is a multistep sampler: expected step {_nextStep}, got {stepIndex} (call SetTimesteps to restart)");
        if (_previousX0 is not null && _previousX0.Length != sample.Length)
            throw new ArgumentException($"{Name}: sample length changed from {_previousX0.Length} to {sample.Length} between steps");
        // drawn before any state changes: a missing source leaves the history untouched
        var z = _sde ? SchedulerExtensions.DrawStepNoise(this, noise, sample.Length) : null;
        int count = _timesteps.Length;
        bool lowerOrderFinal = stepIndex == count - 1 && _lowerOrderFinal && count < 15;

        // convert_model_output: the x0 prediction (dpmsolver++ works on data predictions)
        var (alphaS0, sigmaS0) = AlphaSigma(_sigmas[stepIndex]);
        var x0 = new float[sample.Length];
        if (_config.PredictionType == "epsilon")
            for (int i = 0; i < x0.Length; i++) x0[i] = (sample[i] - sigmaS0 * modelOutput[i]) / alphaS0;
        else if (_config.PredictionType == "v_prediction")
            for (int i = 0; i < x0.Length; i++) x0[i] = alphaS0 * sample[i] - sigmaS0 * modelOutput[i];
        else
            modelOutput.CopyTo(x0);

        var (alphaT, sigmaT) = AlphaSigma(_sigmas[stepIndex + 1]);
        float lambdaT = Lambda(alphaT, sigmaT), lambdaS0 = Lambda(alphaS0, sigmaS0);
        float h = lambdaT - lambdaS0;
        float ratio = sigmaT / sigmaS0;
        float c0 = alphaT * (MathF.Exp(-h) - 1f);
        bool firstOrder = _solverOrder == 1 || _lowerOrderNums < 1 || lowerOrderFinal;

        if (z is not null)
            SdeUpdate(sample, x0, z, firstOrder ? null : _previousX0!, stepIndex, sigmaT, sigmaS0, alphaT, lambdaS0, h, destination);
        else if (firstOrder)
        {
            for (int i = 0; i < x0.Length; i++) destination[i] = ratio * sample[i] - c0 * x0[i];
        }
        else
        {
            var (alphaS1, sigmaS1) = AlphaSigma(_sigmas[stepIndex - 1]);
            float lambdaS1 = Lambda(alphaS1, sigmaS1);
            float h0 = lambdaS0 - lambdaS1;
            float r0 = h0 / h;
            float invR0 = 1f / r0;
            float c1 = 0.5f * c0;
            var m1 = _previousX0!;
            for (int i = 0; i < x0.Length; i++)
            {
                float d1 = invR0 * (x0[i] - m1[i]);
                destination[i] = ratio * sample[i] - c0 * x0[i] - c1 * d1;
            }
        }
        _previousX0 = x0;
        if (_lowerOrderNums < _solverOrder) _lowerOrderNums++;
        _nextStep++;
    }

    /// <summary>
    /// sde-dpmsolver++ (midpoint), float32 0-d coefficients in diffusers' order:
    /// x_t = (sigma_t / sigma_s0 * e^-h) x + alpha_t (1 - e^-2h) D0 [+ 0.5 alpha_t (1 - e^-2h) D1]
    ///       + sigma_t sqrt(1 - e^-2h) z, with D1 = (1 / r0)(m0 - m1) for the second-order step.
    /// </summary>
    private void SdeUpdate(ReadOnlySpan<float> sample, float[] x0, float[] z, float[]? m1, int stepIndex,
        float sigmaT, float sigmaS0, float alphaT, float lambdaS0, float h, Span<float> destination)
    {
        float a = sigmaT / sigmaS0 * MathF.Exp(-h);
        float oneMinusE2h = 1f - MathF.Exp(-2f * h);
        float b = alphaT * oneMinusE2h;
        float c = sigmaT * MathF.Sqrt(oneMinusE2h);
        if (m1 is null)
        {
            for (int i = 0; i < x0.Length; i++) destination[i] = a * sample[i] + b * x0[i] + c * z[i];
            return;
        }
        var (alphaS1, sigmaS1) = AlphaSigma(_sigmas[stepIndex - 1]);
        float h0 = lambdaS0 - Lambda(alphaS1, sigmaS1);
        float invR0 = 1f / (h0 / h);
        float c1 = 0.5f * b;
        for (int i = 0; i < x0.Length; i++)
        {
            float d1 = invR0 * (x0[i] - m1[i]);
            destination[i] = a * sample[i] + b * x0[i] + c1 * d1 + c * z[i];
        }
    }
}
