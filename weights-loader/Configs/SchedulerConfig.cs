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
    /// <summary>diffusers' trained_betas: when given, the betas themselves (beta_schedule, beta_start and beta_end unused).</summary>
    public double[]? TrainedBetas { get; init; }

    public static SchedulerConfig Read(ConfigReader r)
    {
        var d = new SchedulerConfig();
        // Fields of diffusers' schedulers that change the computation and that no sampler here
        // implements: refused unless they hold diffusers' defaults.
        r.Require(!r.Bool("rescale_betas_zero_snr", false), "rescale_betas_zero_snr", "true is not supported");
        r.Require(!r.Bool("thresholding", false), "thresholding", "true is not supported (dynamic thresholding)");
        r.Require(r.String("timestep_type", "discrete") == "discrete", "timestep_type", "must be \"discrete\" (continuous timesteps are not supported)");
        foreach (var key in new[] { "sigma_min", "sigma_max" })
            r.Require(!r.Json.TryGetPropertyValue(key, out var v) || v is null, key, "is not supported (the Karras sigma range comes from the training schedule)");
        return new SchedulerConfig
        {
            ClassName = r.String("_class_name", d.ClassName),
            NumTrainTimesteps = r.Int("num_train_timesteps", d.NumTrainTimesteps, 1, 100_000),
            BetaStart = r.Double("beta_start", d.BetaStart, 0, 1, minExclusive: true),
            BetaEnd = r.Double("beta_end", d.BetaEnd, 0, 1, minExclusive: true),
            BetaSchedule = r.String("beta_schedule", d.BetaSchedule),
            PredictionType = r.String("prediction_type", d.PredictionType),
            TimestepSpacing = r.String("timestep_spacing", d.TimestepSpacing),
            StepsOffset = r.Int("steps_offset", d.StepsOffset, 0, 100_000),
            SetAlphaToOne = r.Bool("set_alpha_to_one", d.SetAlphaToOne),
            ClipSample = r.Bool("clip_sample", d.ClipSample),
            UseKarrasSigmas = r.Bool("use_karras_sigmas", d.UseKarrasSigmas),
            InterpolationType = r.String("interpolation_type", d.InterpolationType),
            TrainedBetas = r.OptionalDoubles("trained_betas", 100_000),
        };
    }
}
