using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Schedulers;

/// <summary>
/// diffusers v0.25 EulerDiscreteScheduler (deterministic: s_churn = 0), SDXL's default sampler.
/// Schedule arithmetic follows diffusers' numpy/torch precisions; the step runs in float32 in
/// torch's operation order.
/// </summary>
public sealed class EulerDiscreteScheduler : IScheduler
{
    private readonly SchedulerConfig _config;
    private readonly NoiseSchedule _schedule;
    private float[] _timesteps = [];
    private float[] _sigmas = [];

    public EulerDiscreteScheduler(SchedulerConfig config)
    {
        _config = config ?? throw new ArgumentNullException(nameof(config));
        _schedule = new NoiseSchedule(config);
        PredictionTypes.Validate(config.PredictionType, "EulerDiscreteScheduler", allowSample: true);
        if (config.InterpolationType is not ("linear" or "log_linear"))
            throw new UserInputException($"scheduler config: interpolation_type '{config.InterpolationType}' is not supported (linear, log_linear)");
    }

    public string Name => _config.UseKarrasSigmas ? "euler-karras" : "euler";
    public NoiseSchedule Schedule => _schedule;
    public bool IsStochastic => false;
    public int StepCount => _timesteps.Length;
    public IReadOnlyList<float> Timesteps => _timesteps;
    public IReadOnlyList<float> Sigmas => _sigmas;
    public float InitNoiseSigma { get; private set; } = 1f;

    public void SetTimesteps(int numInferenceSteps)
    {
        int n = numInferenceSteps, nt = _schedule.NumTrainTimesteps;
        NoiseSchedule.ValidateSteps(n, nt);
        // Euler keeps linspace timesteps fractional (float32), the others round them.
        var ts = NoiseSchedule.SpacedTimesteps(_config.TimestepSpacing, nt, n, _config.StepsOffset, roundLinspace: false);
        foreach (var t in ts)
            if (t < 0 || t > nt - 1)
                throw new UserInputException($"scheduler config: steps_offset {_config.StepsOffset} puts timestep {t} outside 0..{nt - 1}");

        double[] sig;
        if (_config.InterpolationType == "linear")
        {
            sig = new double[n];
            for (int i = 0; i < n; i++) sig[i] = NoiseSchedule.InterpAtIndex(ts[i], _schedule.Sigmas);
        }
        else
        {
            // torch.linspace(log(sigmas[-1]), log(sigmas[0]), n + 1).exp(): n + 1 values in v0.25
            var ls = _schedule.LogSigmas;
            var lin = NoiseSchedule.TorchLinspaceF32(ls[^1], ls[0], n + 1);
            sig = new double[n + 1];
            for (int i = 0; i <= n; i++) sig[i] = MathF.Exp(lin[i]);
        }
        if (_config.UseKarrasSigmas)
        {
            sig = NoiseSchedule.KarrasSigmas(sig[^1], sig[0], n);
            ts = new double[n];
            for (int i = 0; i < n; i++) ts[i] = _schedule.SigmaToT(sig[i]);
        }

        _timesteps = new float[ts.Length];
        for (int i = 0; i < ts.Length; i++) _timesteps[i] = (float)ts[i];
        _sigmas = new float[sig.Length + 1];
        for (int i = 0; i < sig.Length; i++) _sigmas[i] = (float)sig[i];
        _sigmas[^1] = 0f;

        float max = _sigmas.Max();
        InitNoiseSigma = _config.TimestepSpacing is "linspace" or "trailing" ? max : MathF.Sqrt(max * max + 1f);
    }

    public void ScaleModelInput(ReadOnlySpan<float> sample, int stepIndex, Span<float> destination)
    {
        SchedulerExtensions.CheckStep(this, stepIndex, sample.Length, sample.Length, destination.Length);
        float sigma = _sigmas[stepIndex];
        float denom = MathF.Sqrt(sigma * sigma + 1f);
        for (int i = 0; i < sample.Length; i++) destination[i] = sample[i] / denom;
    }

    public void Step(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, Span<float> destination, INoiseSource? noise = null)
    {
        SchedulerExtensions.CheckStep(this, stepIndex, modelOutput.Length, sample.Length, destination.Length);
        float sigma = _sigmas[stepIndex];
        float sigmaHat = sigma; // gamma = 0 without churn
        float dt = _sigmas[stepIndex + 1] - sigmaHat;
        switch (_config.PredictionType)
        {
            case "epsilon":
                for (int i = 0; i < sample.Length; i++)
                {
                    float x = sample[i];
                    float x0 = x - sigmaHat * modelOutput[i];
                    float d = (x - x0) / sigmaHat;
                    destination[i] = x + d * dt;
                }
                break;
            case "v_prediction":
            {
                float s2p1 = sigma * sigma + 1f;
                float c = -sigma / MathF.Sqrt(s2p1);
                for (int i = 0; i < sample.Length; i++)
                {
                    float x = sample[i];
                    float x0 = modelOutput[i] * c + x / s2p1;
                    float d = (x - x0) / sigmaHat;
                    destination[i] = x + d * dt;
                }
                break;
            }
            default: // "sample" / "original_sample"
                for (int i = 0; i < sample.Length; i++)
                {
                    float x = sample[i];
                    float d = (x - modelOutput[i]) / sigmaHat;
                    destination[i] = x + d * dt;
                }
                break;
        }
    }
}

internal static class PredictionTypes
{
    public static void Validate(string predictionType, string scheduler, bool allowSample)
    {
        if (predictionType is "epsilon" or "v_prediction" or "sample") return;
        if (allowSample && predictionType == "original_sample") return;
        throw new UserInputException(
            $"scheduler config: prediction_type '{predictionType}' is not supported by {scheduler} (epsilon, v_prediction, sample)");
    }
}
