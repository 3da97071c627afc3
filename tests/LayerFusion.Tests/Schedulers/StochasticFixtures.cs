using System.Text.Json;
using LayerFusion.Core.Schedulers;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.Schedulers;

/// <summary>
/// tests/reference/schedulers/stochastic_v0.25.json, produced by make_stochastic_fixtures.py with
/// diffusers v0.25.0 on torch 1.13 (CPU), diffusers' randn_tensor replaced by our GaussianNoise stream.
/// </summary>
internal sealed class StochasticFixtures
{
    public const string RelativePath = "tests/reference/schedulers/stochastic_v0.25.json";

    public sealed record Case(
        int Index, string Sampler, SchedulerConfig Config, int Steps, ulong Seed, double[] Timesteps, double[] Sigmas,
        double InitNoiseSigma, float[] UnitNoise, float[] InitialSample, float[][] ModelOutputs, float[][] StepNoise,
        float[][] ScaledInputs, float[][] SamplesAfterStep)
    {
        public string Label =>
            $"{Sampler}/{Config.TimestepSpacing}/off{Config.StepsOffset}/{Config.PredictionType}" +
            $"{(Config.UseKarrasSigmas ? "/karras" : "")}/n{Steps}";

        /// <summary>The registry's sampler for this case, built from the case's config as the pipelines do.</summary>
        public IScheduler Create() => Sampler switch
        {
            "euler_a" => Samplers.Create(Samplers.EulerAncestral, Config),
            "dpmpp_2m_sde" => Samplers.Create(Config.UseKarrasSigmas ? Samplers.DpmPP2MSdeKarras : Samplers.DpmPP2MSde, Config),
            _ => throw new InvalidOperationException(Sampler),
        };
    }

    public required IReadOnlyList<Case> Cases { get; init; }
    public required float[] NoiseSeed42 { get; init; }

    private static readonly Lazy<StochasticFixtures> s_instance = new(Load);
    public static StochasticFixtures Instance => s_instance.Value;

    private static float[] F32(JsonElement e) => SchedulerFixtures.F32(e);
    private static double[] F64(JsonElement e) => SchedulerFixtures.F64(e);
    private static float[][] Rows(JsonElement e) => e.EnumerateArray().Select(F32).ToArray();

    private static StochasticFixtures Load()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(SchedulerFixtures.FindRepoFile(RelativePath)));
        var root = doc.RootElement;
        var cases = new List<Case>();
        int index = 0;
        foreach (var c in root.GetProperty("cases").EnumerateArray())
        {
            var config = SchedulerFixtures.ReadConfig(c.GetProperty("config"), ddimFields: false);
            cases.Add(new Case(
                index++, c.GetProperty("sampler").GetString()!, config, c.GetProperty("steps").GetInt32(),
                c.GetProperty("seed").GetUInt64(), F64(c.GetProperty("timesteps")), F64(c.GetProperty("sigmas")),
                c.GetProperty("init_noise_sigma").GetDouble(), F32(c.GetProperty("unit_noise")), F32(c.GetProperty("initial_sample")),
                Rows(c.GetProperty("model_outputs")), Rows(c.GetProperty("step_noise")),
                Rows(c.GetProperty("scaled_inputs")), Rows(c.GetProperty("samples_after_step"))));
        }
        return new StochasticFixtures { Cases = cases, NoiseSeed42 = F32(root.GetProperty("noise_seed42")) };
    }
}
