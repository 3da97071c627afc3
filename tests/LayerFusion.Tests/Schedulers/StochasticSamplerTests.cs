using LayerFusion.Core.Schedulers;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.Schedulers;

/// <summary>Euler ancestral and DPM++ 2M SDE (Karras) against diffusers v0.25.0 fed our noise (see StochasticFixtures).</summary>
public class StochasticSamplerTests
{
    private const double RelTol = 1e-5;

    public static TheoryData<int, string> Cases()
    {
        var d = new TheoryData<int, string>();
        foreach (var c in StochasticFixtures.Instance.Cases) d.Add(c.Index, c.Label);
        return d;
    }

    [Fact]
    public void FixtureCoversBothSamplersSpacingsAndTheLowerOrderFinalSwitch()
    {
        var cases = StochasticFixtures.Instance.Cases;
        foreach (var sampler in new[] { "euler_a", "dpmpp_2m_sde" })
            foreach (var spacing in new[] { "leading", "linspace", "trailing" })
                foreach (var n in new[] { 1, 4, 14, 20, 30 }) // < 15 and >= 15: lower_order_final on and off
                    Assert.Contains(cases, c => c.Sampler == sampler && c.Config.TimestepSpacing == spacing && c.Steps == n);
        Assert.Contains(cases, c => c.Sampler == "dpmpp_2m_sde" && c.Config.UseKarrasSigmas && c.Config.PredictionType == "epsilon" && c.Steps == 30);
        Assert.Contains(cases, c => c.Sampler == "euler_a" && c.Config.PredictionType == "v_prediction");
    }

    [Fact]
    public void TheFixturesNoiseIsOurGaussianNoiseStream()
    {
        // the script's port of GaussianNoise agrees with ours, so "the same noise" is our generator's
        Assert.Equal(new GaussianNoise(42).Next(4), StochasticFixtures.Instance.NoiseSeed42);
        foreach (var c in StochasticFixtures.Instance.Cases)
        {
            var g = new GaussianNoise(c.Seed);
            Assert.Equal(c.UnitNoise, g.Next(c.UnitNoise.Length));
            Assert.Equal(c.Steps, c.StepNoise.Length);
            foreach (var z in c.StepNoise) Assert.Equal(z, g.Next(z.Length)); // the stream continues step by step
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ScheduleMatchesDiffusers(int index, string label)
    {
        var c = StochasticFixtures.Instance.Cases[index];
        Assert.Equal(label, c.Label);
        var s = c.Create();
        Assert.True(s.IsStochastic);
        s.SetTimesteps(c.Steps);
        DiffusersParityTests.AssertTimesteps(c.Timesteps, s.Timesteps, continuous: false);
        DiffusersParityTests.AssertClose(c.Sigmas, s.Sigmas.Select(x => (double)x).ToArray(), RelTol, "sigmas");
        DiffusersParityTests.AssertClose([c.InitNoiseSigma], [s.InitNoiseSigma], RelTol, "init_noise_sigma");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FullDenoisingRunMatchesDiffusers(int index, string label)
    {
        var c = StochasticFixtures.Instance.Cases[index];
        Assert.Equal(label, c.Label);
        var s = c.Create();
        s.SetTimesteps(c.Steps);
        // as the pipelines do: one stream, the initial latent first, then each step's noise
        var noise = new GaussianNoise(c.Seed);
        var x = noise.Next(c.InitialSample.Length).Select(v => v * s.InitNoiseSigma).ToArray();
        DiffusersParityTests.AssertClose(c.InitialSample, x, RelTol, "initial sample");
        for (int i = 0; i < s.StepCount; i++)
        {
            var scaled = s.ScaleModelInput(x, i);
            DiffusersParityTests.AssertClose(c.ScaledInputs[i], scaled, RelTol, $"scaled input, step {i}");
            x = s.Step(c.ModelOutputs[i], i, x, noise);
            DiffusersParityTests.AssertClose(c.SamplesAfterStep[i], x, RelTol, $"sample after step {i}");
        }
        Assert.Equal((ulong)(c.InitialSample.Length * (c.Steps + 1)), noise.Position);
    }

    [Fact]
    public void EulerAncestralIsBitExact()
    {
        // +, -, *, / and sqrt in float32 in torch's order (the 0-d ** 2 and ** 0.5 are x * x and sqrt)
        int checkedCases = 0;
        foreach (var c in StochasticFixtures.Instance.Cases.Where(c => c.Sampler == "euler_a"))
        {
            var s = c.Create();
            s.SetTimesteps(c.Steps);
            var noise = new ArrayNoise(c.StepNoise);
            var x = (float[])c.InitialSample.Clone();
            for (int i = 0; i < s.StepCount; i++)
            {
                Assert.Equal(c.ScaledInputs[i], s.ScaleModelInput(x, i));
                x = s.Step(c.ModelOutputs[i], i, x, noise);
                Assert.Equal(c.SamplesAfterStep[i], x);
            }
            checkedCases++;
        }
        Assert.True(checkedCases >= 25, $"only {checkedCases} cases checked");
    }

    [Theory]
    [InlineData(Samplers.EulerAncestral)]
    [InlineData(Samplers.DpmPP2MSdeKarras)]
    [InlineData(Samplers.DpmPP2MSde)]
    public void WithoutANoiseSourceAStepFailsAndChangesNothing(string name)
    {
        var s = Samplers.Create(name, new SchedulerConfig());
        s.SetTimesteps(6);
        var x = new GaussianNoise(1).Next(16);
        var eps = new GaussianNoise(2).Next(16);
        var ex = Assert.Throws<InvalidOperationException>(() => s.Step(eps, 0, x));
        Assert.Contains("noise source", ex.Message);
        // the failed call left no history behind: step 0 is still the next step and gives the reference result
        var fresh = Samplers.Create(name, new SchedulerConfig());
        fresh.SetTimesteps(6);
        Assert.Equal(fresh.Step(eps, 0, x, new GaussianNoise(3)), s.Step(eps, 0, x, new GaussianNoise(3)));
    }

    [Fact]
    public void DeterministicSamplersIgnoreANoiseSource()
    {
        foreach (var info in Samplers.All.Where(i => !i.Stochastic))
        {
            var a = Samplers.Create(info.Name, new SchedulerConfig());
            var b = Samplers.Create(info.Name, new SchedulerConfig());
            a.SetTimesteps(5); b.SetTimesteps(5);
            var x = new GaussianNoise(5).Next(8);
            var eps = new GaussianNoise(6).Next(8);
            var noise = new GaussianNoise(7);
            Assert.Equal(a.Step(eps, 0, x), b.Step(eps, 0, x, noise));
            Assert.Equal(0UL, noise.Position);
        }
    }

    /// <summary>
    /// Data concentrated at 0 with the exact denoiser: an ancestral/SDE step from noise level s to t
    /// must leave the sample with variance exactly t^2 (Euler a: sigma_down^2 + sigma_up^2 = sigma_to^2;
    /// DPM++ SDE in VP form: (sigma_t/sigma_s)^2 e^-2h sigma_s^2 + sigma_t^2 (1 - e^-2h) = sigma_t^2). Checks
    /// that the noise enters with the right scale on every step, independently of the fixtures.
    /// </summary>
    [Theory]
    [InlineData(Samplers.EulerAncestral)]
    [InlineData(Samplers.DpmPP2MSdeKarras)]
    public void OnPureNoiseDataEveryStepKeepsTheMarginalVarianceOnSchedule(string name)
    {
        var s = Samplers.Create(name, new SchedulerConfig());
        s.SetTimesteps(12);
        bool vp = name != Samplers.EulerAncestral; // DPM-Solver samples are alpha x0 + sigma_vp eps
        double Level(int k) { double sg = s.Sigmas[k]; return vp ? sg / Math.Sqrt(sg * sg + 1) : sg; }
        const int n = 200_000;
        var noise = new GaussianNoise(99);
        var x = noise.Next(n).Select(v => (float)(v * Level(0))).ToArray();
        for (int i = 0; i < s.StepCount; i++)
        {
            double level = Level(i);
            var eps = x.Select(v => (float)(v / level)).ToArray(); // exact epsilon for x0 = 0
            x = s.Step(eps, i, x, noise);
            double want = Level(i + 1);
            double var = x.Average(v => (double)v * v);
            if (want == 0) { Assert.True(var < 1e-12, $"step {i}: variance {var:E4} at noise level 0"); continue; }
            // 200k samples: the variance's relative standard error is sqrt(2 / n) = 0.3%
            Assert.True(Math.Abs(var / (want * want) - 1) < 0.015, $"step {i}: variance {var:E4}, expected {want * want:E4}");
        }
    }

    [Fact]
    public void EulerAncestralIgnoresKarrasAndLogLinearAsFromConfigDoes()
    {
        var plain = Samplers.Create(Samplers.EulerAncestral, new SchedulerConfig());
        var odd = Samplers.Create(Samplers.EulerAncestral, new SchedulerConfig { UseKarrasSigmas = true, InterpolationType = "log_linear" });
        plain.SetTimesteps(10); odd.SetTimesteps(10);
        Assert.Equal(plain.Sigmas, odd.Sigmas);
        Assert.Equal(plain.Timesteps, odd.Timesteps);
        // diffusers raises NotImplementedError for prediction_type "sample"
        Assert.Throws<UserInputException>(() => Samplers.Create(Samplers.EulerAncestral, new SchedulerConfig { PredictionType = "sample" }));
    }

    [Fact]
    public void SameSeedSameTrajectoryOtherSeedOtherTrajectory()
    {
        float[] Run(ulong seed)
        {
            var s = Samplers.Create(Samplers.DpmPP2MSdeKarras, new SchedulerConfig());
            s.SetTimesteps(8);
            var noise = new GaussianNoise(seed);
            var x = noise.Next(64);
            for (int i = 0; i < s.StepCount; i++) x = s.Step(x.Select(v => 0.5f * v).ToArray(), i, x, noise);
            return x;
        }
        Assert.Equal(Run(3), Run(3));
        Assert.NotEqual(Run(3), Run(4));
    }

    /// <summary>Hands out the fixture's per-step noise rows, checking each draw's size.</summary>
    private sealed class ArrayNoise(float[][] rows) : INoiseSource
    {
        private int _next;

        public void Fill(Span<float> destination)
        {
            var row = rows[_next++];
            Assert.Equal(row.Length, destination.Length);
            row.CopyTo(destination);
        }
    }
}
