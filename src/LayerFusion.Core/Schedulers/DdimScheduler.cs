using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Schedulers;

/// <summary>
/// diffusers v0.25 DDIMScheduler with eta = 0 (deterministic), no thresholding. SDXL's config has
/// set_alpha_to_one = false, so the last step lands on alphas_cumprod[0], not 1. The previous
/// timestep is t - num_train // n for every spacing, as diffusers computes it.
/// </summary>
public sealed class DdimScheduler : IScheduler
{
    /// <summary>diffusers' clip_sample_range default (not in SchedulerConfig).</summary>
    public const float ClipSampleRange = 1f;

    private readonly SchedulerConfig _config;
    private readonly NoiseSchedule _schedule;
    private readonly float _finalAlphaCumprod;
    private float[] _timesteps = [];
    private int _numInferenceSteps;

    public DdimScheduler(SchedulerConfig config)
    {
        _config = config ?? throw new ArgumentNullException(nameof(config));
        _schedule = new NoiseSchedule(config);
        PredictionTypes.Validate(config.PredictionType, "DDIMScheduler", allowSample: false);
        _finalAlphaCumprod = config.SetAlphaToOne ? 1f : _schedule.AlphasCumprod[0];
    }

    public string Name => "ddim";
    public NoiseSchedule Schedule => _schedule;
    public bool IsStochastic => false;
    public int StepCount => _timesteps.Length;
    public IReadOnlyList<float> Timesteps => _timesteps;
    public IReadOnlyList<float> Sigmas => [];
    public float InitNoiseSigma => 1f;

    public void SetTimesteps(int numInferenceSteps)
    {
        int n = numInferenceSteps, nt = _schedule.NumTrainTimesteps;
        NoiseSchedule.ValidateSteps(n, nt);
        var ts = NoiseSchedule.SpacedTimesteps(_config.TimestepSpacing, nt, n, _config.StepsOffset, roundLinspace: true);
        foreach (var t in ts)
            if (t < 0 || t > nt - 1)
                throw new UserInputException($"scheduler config: steps_offset {_config.StepsOffset} puts timestep {t} outside 0..{nt - 1}");
        _timesteps = new float[n];
        for (int i = 0; i < n; i++) _timesteps[i] = (float)ts[i];
        _numInferenceSteps = n;
    }

    public void ScaleModelInput(ReadOnlySpan<float> sample, int stepIndex, Span<float> destination)
    {
        SchedulerExtensions.CheckStep(this, stepIndex, sample.Length, sample.Length, destination.Length);
        sample.CopyTo(destination);
    }

    public void Step(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, Span<float> destination, INoiseSource? noise = null)
    {
        SchedulerExtensions.CheckStep(this, stepIndex, modelOutput.Length, sample.Length, destination.Length);
        int t = (int)_timesteps[stepIndex];
        int prevT = t - _schedule.NumTrainTimesteps / _numInferenceSteps;
        float alphaProdT = _schedule.AlphasCumprod[t];
        float alphaProdPrev = prevT >= 0 ? _schedule.AlphasCumprod[prevT] : _finalAlphaCumprod;
        float betaProdT = 1f - alphaProdT;
        float sqrtA = MathF.Sqrt(alphaProdT), sqrtB = MathF.Sqrt(betaProdT);
        // eta = 0: std_dev_t = 0 and the direction coefficient is (1 - alpha_prev - 0) ** 0.5
        float dirCoef = MathF.Sqrt(1f - alphaProdPrev - 0f);
        float sqrtPrev = MathF.Sqrt(alphaProdPrev);
        bool clip = _config.ClipSample;
        for (int i = 0; i < sample.Length; i++)
        {
            float x = sample[i], m = modelOutput[i];
            float x0, eps;
            switch (_config.PredictionType)
            {
                case "epsilon":
                    x0 = (x - sqrtB * m) / sqrtA;
                    eps = m;
                    break;
                case "v_prediction":
                    x0 = sqrtA * x - sqrtB * m;
                    eps = sqrtA * m + sqrtB * x;
                    break;
                default: // "sample"
                    x0 = m;
                    eps = (x - sqrtA * x0) / sqrtB;
                    break;
            }
            if (clip) x0 = Math.Clamp(x0, -ClipSampleRange, ClipSampleRange);
            destination[i] = sqrtPrev * x0 + dirCoef * eps;
        }
    }
}
