using System.Text.Json;
using LayerFusion.Core.Schedulers;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.Schedulers;

/// <summary>
/// tests/reference/schedulers/schedulers_v0.25.json, produced by make_scheduler_fixtures.py with
/// diffusers v0.25.0 on torch 1.13 (CPU).
/// </summary>
internal sealed class SchedulerFixtures
{
    public const string RelativePath = "tests/reference/schedulers/schedulers_v0.25.json";

    public sealed record Case(
        int Index, string Sampler, SchedulerConfig Config, int Steps, double[] Timesteps, double[]? Sigmas,
        double InitNoiseSigma, float[] InitialSample, float[][] ModelOutputs, float[][] ScaledInputs, float[][] SamplesAfterStep)
    {
        public string Label =>
            $"{Sampler}/{Config.TimestepSpacing}/off{Config.StepsOffset}/{Config.PredictionType}/{Config.BetaSchedule}" +
            $"{(Config.UseKarrasSigmas ? "/karras" : "")}{(Config.InterpolationType != "linear" ? "/" + Config.InterpolationType : "")}" +
            $"{(Config.SetAlphaToOne ? "/alpha1" : "")}/n{Steps}";

        public IScheduler Create() => Sampler switch
        {
            "euler" => new EulerDiscreteScheduler(Config),
            "dpmpp_2m" => new DpmSolverMultistepScheduler(Config),
            "ddim" => new DdimScheduler(Config),
            _ => throw new InvalidOperationException(Sampler),
        };
    }

    public sealed record Table(string BetaSchedule, double BetaStart, double BetaEnd, int NumTrainTimesteps, float[] Betas, float[] AlphasCumprod);

    public required IReadOnlyList<Case> Cases { get; init; }
    public required IReadOnlyList<Table> Tables { get; init; }

    private static readonly Lazy<SchedulerFixtures> s_instance = new(Load);
    public static SchedulerFixtures Instance => s_instance.Value;

    public static string FindRepoFile(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var p = Path.Combine(dir.FullName, relative);
            if (File.Exists(p)) return p;
        }
        throw new FileNotFoundException($"{relative} not found above {AppContext.BaseDirectory}");
    }

    internal static float[] F32(JsonElement e) => e.EnumerateArray().Select(x => (float)x.GetDouble()).ToArray();
    internal static double[] F64(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();

    /// <summary>A fixture case's diffusers scheduler config; <paramref name="ddimFields"/>: set_alpha_to_one and clip_sample are required too.</summary>
    internal static SchedulerConfig ReadConfig(JsonElement cfg, bool ddimFields)
    {
        var config = new SchedulerConfig
        {
            NumTrainTimesteps = cfg.GetProperty("num_train_timesteps").GetInt32(),
            BetaStart = cfg.GetProperty("beta_start").GetDouble(),
            BetaEnd = cfg.GetProperty("beta_end").GetDouble(),
            BetaSchedule = cfg.GetProperty("beta_schedule").GetString()!,
            PredictionType = cfg.GetProperty("prediction_type").GetString()!,
            TimestepSpacing = cfg.GetProperty("timestep_spacing").GetString()!,
            StepsOffset = cfg.GetProperty("steps_offset").GetInt32(),
            InterpolationType = cfg.GetProperty("interpolation_type").GetString()!,
            UseKarrasSigmas = cfg.GetProperty("use_karras_sigmas").GetBoolean(),
        };
        return ddimFields
            ? config with { SetAlphaToOne = cfg.GetProperty("set_alpha_to_one").GetBoolean(), ClipSample = cfg.GetProperty("clip_sample").GetBoolean() }
            : config;
    }

    private static SchedulerFixtures Load()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(FindRepoFile(RelativePath)));
        var root = doc.RootElement;
        var cases = new List<Case>();
        int index = 0;
        foreach (var c in root.GetProperty("cases").EnumerateArray())
        {
            var config = ReadConfig(c.GetProperty("config"), ddimFields: true);
            cases.Add(new Case(
                index++, c.GetProperty("sampler").GetString()!, config, c.GetProperty("steps").GetInt32(),
                F64(c.GetProperty("timesteps")),
                c.TryGetProperty("sigmas", out var s) ? F64(s) : null,
                c.GetProperty("init_noise_sigma").GetDouble(),
                F32(c.GetProperty("initial_sample")),
                c.GetProperty("model_outputs").EnumerateArray().Select(F32).ToArray(),
                c.GetProperty("scaled_inputs").EnumerateArray().Select(F32).ToArray(),
                c.GetProperty("samples_after_step").EnumerateArray().Select(F32).ToArray()));
        }
        var tables = root.GetProperty("tables").EnumerateArray().Select(t => new Table(
            t.GetProperty("beta_schedule").GetString()!, t.GetProperty("beta_start").GetDouble(), t.GetProperty("beta_end").GetDouble(),
            t.GetProperty("num_train_timesteps").GetInt32(), F32(t.GetProperty("betas")), F32(t.GetProperty("alphas_cumprod")))).ToList();
        return new SchedulerFixtures { Cases = cases, Tables = tables };
    }
}
