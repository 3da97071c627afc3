using LayerFusion.Core.Schedulers;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.Schedulers;

/// <summary>Our samplers against what diffusers v0.25.0 computed (see SchedulerFixtures).</summary>
public class DiffusersParityTests
{
    private const double RelTol = 1e-5;

    public static TheoryData<int, string> Cases()
    {
        var d = new TheoryData<int, string>();
        foreach (var c in SchedulerFixtures.Instance.Cases) d.Add(c.Index, c.Label);
        return d;
    }

    [Fact]
    public void FixtureCoversTheBriefsStepCountsSpacingsAndSamplers()
    {
        var cases = SchedulerFixtures.Instance.Cases;
        foreach (var sampler in new[] { "euler", "dpmpp_2m", "ddim" })
            foreach (var spacing in new[] { "leading", "linspace", "trailing" })
                foreach (var n in new[] { 1, 4, 20, 30, 50 })
                    Assert.Contains(cases, c => c.Sampler == sampler && c.Config.TimestepSpacing == spacing && c.Steps == n);
        Assert.Contains(cases, c => c.Sampler == "dpmpp_2m" && c.Config.UseKarrasSigmas && c.Steps == 30);
    }

    [Theory]
    [InlineData("scaled_linear")]
    [InlineData("linear")]
    public void TrainingTablesMatchTorchFloat32(string schedule)
    {
        var t = SchedulerFixtures.Instance.Tables.Single(x => x.BetaSchedule == schedule);
        var ns = new NoiseSchedule(new SchedulerConfig
        {
            BetaSchedule = schedule, BetaStart = t.BetaStart, BetaEnd = t.BetaEnd, NumTrainTimesteps = t.NumTrainTimesteps,
        });
        // bit for bit: torch's float32 linspace and double-accumulated cumprod are mirrored exactly
        Assert.Equal(t.Betas, ns.Betas);
        Assert.Equal(t.AlphasCumprod, ns.AlphasCumprod);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ScheduleMatchesDiffusers(int index, string label)
    {
        var c = SchedulerFixtures.Instance.Cases[index];
        Assert.Equal(label, c.Label);
        var s = c.Create();
        s.SetTimesteps(c.Steps);
        AssertTimesteps(c.Timesteps, s.Timesteps, continuous: c.Sampler == "euler" && c.Config.UseKarrasSigmas);
        if (c.Sigmas is null) Assert.Empty(s.Sigmas);
        else AssertClose(c.Sigmas, s.Sigmas.Select(x => (double)x).ToArray(), RelTol, "sigmas");
        AssertClose([c.InitNoiseSigma], [s.InitNoiseSigma], RelTol, "init_noise_sigma");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FullDenoisingRunMatchesDiffusers(int index, string label)
    {
        var c = SchedulerFixtures.Instance.Cases[index];
        Assert.Equal(label, c.Label);
        var s = c.Create();
        s.SetTimesteps(c.Steps);
        Assert.Equal(c.ModelOutputs.Length, s.StepCount);
        // our own trajectory end to end: errors would compound exactly as they would in a pipeline
        var x = (float[])c.InitialSample.Clone();
        for (int i = 0; i < s.StepCount; i++)
        {
            var scaled = s.ScaleModelInput(x, i);
            AssertClose(c.ScaledInputs[i], scaled, RelTol, $"scaled input, step {i}");
            x = s.Step(c.ModelOutputs[i], i, x);
            AssertClose(c.SamplesAfterStep[i], x, RelTol, $"sample after step {i}");
        }
    }

    [Fact]
    public void EulerAndDdimTrajectoriesAreBitExact()
    {
        // only +, -, *, / and sqrt in float32, in torch's order: nothing should differ at all
        int checkedCases = 0;
        foreach (var c in SchedulerFixtures.Instance.Cases.Where(c => c.Sampler != "dpmpp_2m" && c.Config.InterpolationType == "linear"))
        {
            var s = c.Create();
            s.SetTimesteps(c.Steps);
            var x = (float[])c.InitialSample.Clone();
            for (int i = 0; i < s.StepCount; i++)
            {
                Assert.Equal(c.ScaledInputs[i], s.ScaleModelInput(x, i));
                x = s.Step(c.ModelOutputs[i], i, x);
                Assert.Equal(c.SamplesAfterStep[i], x);
            }
            checkedCases++;
        }
        Assert.True(checkedCases >= 50, $"only {checkedCases} cases checked");
    }

    [Theory]
    [InlineData(30)]
    [InlineData(20)]
    public void DpmPP2MKarrasFromTheSdxlConfigIsTheFixturesKarrasCase(int steps)
    {
        var c = SchedulerFixtures.Instance.Cases.Single(k => k.Sampler == "dpmpp_2m" && k.Config.UseKarrasSigmas
            && k.Config.PredictionType == "epsilon" && k.Steps == steps);
        var s = Samplers.Create(Samplers.DpmPP2MKarras, new SchedulerConfig()); // SDXL defaults
        s.SetTimesteps(steps);
        AssertTimesteps(c.Timesteps, s.Timesteps, continuous: false);
        AssertClose(c.Sigmas!, s.Sigmas.Select(x => (double)x).ToArray(), RelTol, "sigmas");
    }

    /// <summary>
    /// Discrete timesteps (every spacing, DDIM, DPM-Solver incl. Karras after rounding) must be equal.
    /// Euler's Karras timesteps are continuous and go through numpy's float32 log of the sigma table,
    /// whose SIMD implementation is not correctly rounded (and differs between CPUs), so those
    /// may differ in the last float32 bits.
    /// </summary>
    internal static void AssertTimesteps(double[] expected, IReadOnlyList<float> actual, bool continuous)
    {
        Assert.Equal(expected.Length, actual.Count);
        for (int i = 0; i < expected.Length; i++)
        {
            if (!continuous)
                Assert.True(expected[i] == actual[i], $"timestep {i}: expected {expected[i]}, got {actual[i]:R}");
            else
                Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-6 * Math.Abs(expected[i]),
                    $"continuous timestep {i}: expected {expected[i]:R}, got {actual[i]:R}");
        }
    }

    internal static void AssertClose(IReadOnlyList<float> expected, IReadOnlyList<float> actual, double rel, string what) =>
        AssertClose(expected.Select(x => (double)x).ToArray(), actual.Select(x => (double)x).ToArray(), rel, what);

    /// <summary>
    /// Element-wise relative error, floored at a tenth of the vector's largest magnitude: a latent
    /// element near zero is a difference of larger terms, so its error is an ulp of those terms.
    /// (Euler and DDIM reproduce diffusers bit for bit; DPM-Solver differs by ~1e-7 of the scale
    /// because torch evaluates log/exp of its 0-d step coefficients with SLEEF's vector functions,
    /// which are not correctly rounded, where we call the C library's.)
    /// </summary>
    internal static void AssertClose(double[] expected, double[] actual, double rel, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Length == 0 ? 0 : expected.Max(Math.Abs);
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            Assert.False(double.IsNaN(a), $"{what}[{i}] is NaN");
            double err = Math.Abs(a - e);
            double bound = rel * Math.Max(Math.Abs(e), 0.1 * scale);
            Assert.True(err <= bound, $"{what}[{i}]: expected {e:R}, got {a:R} (rel err {err / Math.Max(Math.Abs(e), 1e-300):E2})");
        }
    }
}
