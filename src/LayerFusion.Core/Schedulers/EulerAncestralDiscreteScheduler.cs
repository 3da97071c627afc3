using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Schedulers;

/// <summary>
/// diffusers v0.25 EulerAncestralDiscreteScheduler ("Euler a", eta = 1): an Euler step down to
/// sigma_down, then fresh noise times sigma_up, drawn on every step (the last one too, where
/// sigma_up is 0). Its schedule is EulerDiscreteScheduler's with linear interpolation and no Karras
/// sigmas: v0.25's constructor has neither switch, so from_config(SDXL config) ignores them and so
/// do we. prediction_type "sample" is refused, as diffusers raises NotImplementedError for it.
/// </summary>
public sealed class EulerAncestralDiscreteScheduler : IScheduler
{
    private readonly SchedulerConfig _config;
    private readonly EulerDiscreteScheduler _schedule;

    public EulerAncestralDiscreteScheduler(SchedulerConfig config)
    {
        _config = config ?? throw new ArgumentNullException(nameof(config));
        if (config.PredictionType is not ("epsilon" or "v_prediction"))
            throw new UserInputException(
                $"scheduler config: prediction_type '{config.PredictionType}' is not supported by EulerAncestralDiscreteScheduler (epsilon, v_prediction)");
        _schedule = new EulerDiscreteScheduler(config with { UseKarrasSigmas = false, InterpolationType = "linear" });
    }

    public string Name => Samplers.EulerAncestral;
    public NoiseSchedule Schedule => _schedule.Schedule;
    public bool IsStochastic => true;
    public int StepCount => _schedule.StepCount;
    public IReadOnlyList<float> Timesteps => _schedule.Timesteps;
    public IReadOnlyList<float> Sigmas => _schedule.Sigmas;
    public float InitNoiseSigma => _schedule.InitNoiseSigma;

    public void SetTimesteps(int numInferenceSteps) => _schedule.SetTimesteps(numInferenceSteps);

    public void ScaleModelInput(ReadOnlySpan<float> sample, int stepIndex, Span<float> destination) =>
        _schedule.ScaleModelInput(sample, stepIndex, destination);

    public void Step(ReadOnlySpan<float> modelOutput, int stepIndex, ReadOnlySpan<float> sample, Span<float> destination, INoiseSource? noise = null)
    {
        SchedulerExtensions.CheckStep(this, stepIndex, modelOutput.Length, sample.Length, destination.Length);
        // drawn before anything is written: destination may alias sample
        var z = SchedulerExtensions.DrawStepNoise(this, noise, sample.Length);
        var sigmas = _schedule.Sigmas;
        float sigma = sigmas[stepIndex], sigmaTo = sigmas[stepIndex + 1];
        // float32 0-d tensor arithmetic in diffusers' order (** 2 is x * x, ** 0.5 is sqrt in torch)
        float from2 = sigma * sigma, to2 = sigmaTo * sigmaTo;
        float sigmaUp = MathF.Sqrt(to2 * (from2 - to2) / from2);
        float sigmaDown = MathF.Sqrt(to2 - sigmaUp * sigmaUp);
        float dt = sigmaDown - sigma;
        if (_config.PredictionType == "epsilon")
        {
            for (int i = 0; i < sample.Length; i++)
            {
                float x = sample[i];
                float x0 = x - sigma * modelOutput[i];
                float d = (x - x0) / sigma;
                float prev = x + d * dt;
                destination[i] = prev + z[i] * sigmaUp;
            }
        }
        else
        {
            float s2p1 = sigma * sigma + 1f;
            float c = -sigma / MathF.Sqrt(s2p1);
            for (int i = 0; i < sample.Length; i++)
            {
                float x = sample[i];
                float x0 = modelOutput[i] * c + x / s2p1;
                float d = (x - x0) / sigma;
                float prev = x + d * dt;
                destination[i] = prev + z[i] * sigmaUp;
            }
        }
    }
}
