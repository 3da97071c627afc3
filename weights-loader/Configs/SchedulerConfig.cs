namespace LayerFusion.WeightsLoader.Configs;

/// <summary>The scheduler/scheduler_config.json fields our samplers read; defaults are SDXL base's.</summary>
public sealed record SchedulerConfig
{
    public string ClassName { get; init; } = "EulerDiscreteScheduler";
    public int NumTrainTimesteps { get; init; } = 1000;
    public double BetaStart { get; init; } = 0.00085;
    public double BetaEnd { get; init; } = 0.012;
    public string BetaSchedule { get; init; } = "scaled_linear";
    public string PredictionType { get; init; } = "epsilon";
    public string TimestepSpacing { get; init; } = "leading";
    public int StepsOffset { get; init; } = 1;
    public bool SetAlphaToOne { get; init; }
    public bool ClipSample { get; init; }
    public bool UseKarrasSigmas { get; init; }
    public string InterpolationType { get; init; } = "linear";

    public static SchedulerConfig Read(ConfigReader r)
    {
        var d = new SchedulerConfig();
        return new SchedulerConfig
        {
            ClassName = r.String("_class_name", d.ClassName),
            NumTrainTimesteps = r.Int("num_train_timesteps", d.NumTrainTimesteps, 1, 100_000),
            BetaStart = r.Double("beta_start", d.BetaStart),
            BetaEnd = r.Double("beta_end", d.BetaEnd),
            BetaSchedule = r.String("beta_schedule", d.BetaSchedule),
            PredictionType = r.String("prediction_type", d.PredictionType),
            TimestepSpacing = r.String("timestep_spacing", d.TimestepSpacing),
            StepsOffset = r.Int("steps_offset", d.StepsOffset, 0, 100_000),
            SetAlphaToOne = r.Bool("set_alpha_to_one", d.SetAlphaToOne),
            ClipSample = r.Bool("clip_sample", d.ClipSample),
            UseKarrasSigmas = r.Bool("use_karras_sigmas", d.UseKarrasSigmas),
            InterpolationType = r.String("interpolation_type", d.InterpolationType),
        };
    }
}
