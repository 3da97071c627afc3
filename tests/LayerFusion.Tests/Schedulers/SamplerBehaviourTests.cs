using CsCheck;
using LayerFusion.Core.Schedulers;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.Schedulers;

public class SamplerBehaviourTests
{
    [Fact]
    public void CfgMatchesFloat64ReferenceOnRandomInputs()
    {
        Gen.Select(Gen.Float[-4f, 4f].Array[1, 300], Gen.Float[0.5f, 15f], Gen.Int[0, 1_000_000]).Sample((u, g, seed) =>
        {
            var rng = new Random(seed);
            var cond = u.Select(_ => (float)(rng.NextDouble() * 8 - 4)).ToArray();
            var batched = u.Concat(cond).ToArray();
            var got = Guidance.Combine(batched, g);
            for (int i = 0; i < u.Length; i++)
            {
                double want = u[i] + (double)g * ((double)cond[i] - u[i]);
                double scale = Math.Abs(u[i]) + g * (Math.Abs(cond[i]) + Math.Abs(u[i]));
                Assert.True(Math.Abs(got[i] - want) <= 1e-6 * scale + 1e-12, $"cfg[{i}] {got[i]} vs {want}");
            }
        });
    }

    [Fact]
    public void CfgRejectsMismatchedHalves()
    {
        Assert.Throws<ArgumentException>(() => Guidance.Combine(new float[5], 7f));
        Assert.Throws<ArgumentException>(() => Guidance.Apply(new float[3], new float[4], 7f, new float[3]));
    }

    [Fact]
    public void SdxlTimeIdsFollowDiffusersOrder()
    {
        Assert.Equal([1024f, 768f, 16f, 32f, 896f, 640f], SdxlTimeIds.Create(1024, 768, 16, 32, 896, 640));
        Assert.Equal([512f, 1024f, 0f, 0f, 512f, 1024f], SdxlTimeIds.ForSize(512, 1024));
        Assert.Equal([8f, 16f, 0f, 0f, 8f, 16f, 8f, 16f, 0f, 0f, 8f, 16f], SdxlTimeIds.Repeat(SdxlTimeIds.ForSize(8, 16), 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => SdxlTimeIds.Create(0, 8, 0, 0, 8, 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => SdxlTimeIds.Create(8, 8, -1, 0, 8, 8));
    }

    [Fact]
    public void NoiseIsDeterministicAndIndependentOfChunking()
    {
        var a = new GaussianNoise(42).Next(1001);
        var n = new GaussianNoise(42);
        var b = n.Next(3).Concat(n.Next(500)).Concat(n.Next(498)).ToArray();
        Assert.Equal(a, b);
        Assert.Equal(1001UL, n.Position);
        Assert.Equal(a[777], new GaussianNoise(42).At(777));
        Assert.NotEqual(a, new GaussianNoise(43).Next(1001));
        Assert.NotEqual(a, new GaussianNoise(42, stream: 1).Next(1001));
        // golden values: a change of generator changes every user's images for a seed; make it loud
        Assert.Equal(GoldenSeed42, a.Take(4).ToArray());
    }

    // recorded from this implementation on 2026-11-23 (x64); the generator's contract is these values
    private static readonly float[] GoldenSeed42 = [-2.1219537f, 0.18421258f, 1.3985987f, 0.050745737f];

    [Fact]
    public void NoiseHasStandardNormalMoments()
    {
        var x = new GaussianNoise(7).Next(400_000);
        double mean = x.Average(v => (double)v);
        double var = x.Average(v => (v - mean) * (v - mean));
        double kurt = x.Average(v => Math.Pow(v - mean, 4)) / (var * var);
        // 400k samples: standard errors ~0.0016 (mean), ~0.0022 (variance), ~0.008 (kurtosis)
        Assert.InRange(mean, -0.01, 0.01);
        Assert.InRange(var, 0.99, 1.01);
        Assert.InRange(kurt, 2.95, 3.05);
        Assert.All(x, v => Assert.True(float.IsFinite(v)));
        // tail mass beyond 3 sigma: 0.27%
        double tail = x.Count(v => Math.Abs(v) > 3) / (double)x.Length;
        Assert.InRange(tail, 0.0022, 0.0032);
    }

    [Fact]
    public void FromConfigPicksTheCheckpointsClass()
    {
        Assert.IsType<EulerDiscreteScheduler>(Samplers.FromConfig(new SchedulerConfig()));
        Assert.IsType<DdimScheduler>(Samplers.FromConfig(new SchedulerConfig { ClassName = "DDIMScheduler" }));
        var dpm = Samplers.FromConfig(new SchedulerConfig { ClassName = "DPMSolverMultistepScheduler", UseKarrasSigmas = true });
        Assert.Equal("dpmpp-2m-karras", dpm.Name);
        Assert.IsType<EulerAncestralDiscreteScheduler>(Samplers.FromConfig(new SchedulerConfig { ClassName = "EulerAncestralDiscreteScheduler" }));
        Assert.Throws<UserInputException>(() => Samplers.FromConfig(new SchedulerConfig { ClassName = "LMSDiscreteScheduler" }));
    }

    [Fact]
    public void EveryRegisteredSamplerIsBuiltUnderItsOwnNameAndStochasticity()
    {
        Assert.Equal(Samplers.All.Count, Samplers.Names.Distinct().Count());
        foreach (var info in Samplers.All)
        {
            var s = Samplers.Create(info.Name, new SchedulerConfig()); // SDXL's config
            Assert.Equal(info.Name, s.Name);
            Assert.Equal(info.Stochastic, s.IsStochastic);
            Assert.Equal(info.DisplayName, Samplers.DisplayName(s.Name));
        }
    }

    [Theory]
    [InlineData("euler-a", "euler-a")]
    [InlineData("euler_a", "euler-a")]
    [InlineData("  Euler A ", "euler-a")]
    [InlineData("Euler a", "euler-a")]
    [InlineData("k_euler_a", "euler-a")]
    [InlineData("euler_ancestral", "euler-a")]
    [InlineData("DPM++ 2M SDE Karras", "dpmpp-2m-sde-karras")]
    [InlineData("dpmpp_2m_sde_karras", "dpmpp-2m-sde-karras")]
    [InlineData("k_dpmpp_2m_sde_ka", "dpmpp-2m-sde-karras")]
    [InlineData("DPM++ 2M Karras", "dpmpp-2m-karras")]
    [InlineData("dpmpp_2m", "dpmpp-2m")]
    [InlineData("DDIM", "ddim")]
    [InlineData("Euler", "euler")]
    public void AliasesAndA1111LabelsResolveToOneCanonicalName(string given, string canonical)
    {
        Assert.Equal(canonical, Samplers.Resolve(given));
        Assert.Equal(canonical, Samplers.Create(given, new SchedulerConfig()).Name);
    }

    [Theory]
    [InlineData("euler", "Euler")]
    [InlineData("euler-a", "Euler a")]
    [InlineData("dpmpp-2m-karras", "DPM++ 2M Karras")]
    [InlineData("dpmpp-2m", "DPM++ 2M")]
    [InlineData("dpmpp-2m-sde-karras", "DPM++ 2M SDE Karras")]
    [InlineData("dpmpp-2m-sde", "DPM++ 2M SDE")]
    [InlineData("ddim", "DDIM")]
    [InlineData("euler-karras", "Euler Karras")]
    [InlineData("dpmpp-1s", "dpmpp-1s")]
    public void DisplayNamesAreA1111s(string name, string display) => Assert.Equal(display, Samplers.DisplayName(name));

    [Fact]
    public void TheCheckpointsOwnKarrasEulerGetsItsDisplayName()
    {
        // Create("euler") keeps the checkpoint's use_karras_sigmas, as from_config does; the name says so
        var s = Samplers.Create(Samplers.Euler, new SchedulerConfig { UseKarrasSigmas = true });
        Assert.Equal(Samplers.EulerKarras, s.Name);
        Assert.Equal("Euler Karras", Samplers.DisplayName(s.Name));
    }

    [Fact]
    public void UnknownSamplerNamesListTheChoices()
    {
        var ex = Assert.Throws<UserInputException>(() => Samplers.Resolve("heun"));
        Assert.Contains("euler-a", ex.Message);
        Assert.Contains("dpmpp-2m-sde-karras", ex.Message);
        Assert.False(Samplers.TryGet(null, out _));
    }

    [Fact]
    public void DpmSolverRequiresStepsInOrderAndRestartsOnSetTimesteps()
    {
        var s = Samplers.Create(Samplers.DpmPP2MKarras, new SchedulerConfig());
        s.SetTimesteps(10);
        var x = new GaussianNoise(1).Next(16);
        var eps = new GaussianNoise(2).Next(16);
        var first = s.Step(eps, 0, x);
        Assert.Throws<InvalidOperationException>(() => s.Step(eps, 2, x));
        s.SetTimesteps(10);
        Assert.Equal(first, s.Step(eps, 0, x));
    }

    [Fact]
    public void StepBeforeSetTimestepsAndBadIndicesAreRejected()
    {
        foreach (var name in Samplers.Names)
        {
            var s = Samplers.Create(name, new SchedulerConfig());
            Assert.Throws<InvalidOperationException>(() => s.Step(new float[4], 0, new float[4]));
            s.SetTimesteps(5);
            Assert.Throws<ArgumentOutOfRangeException>(() => s.Step(new float[4], 5, new float[4]));
            Assert.Throws<ArgumentException>(() => s.Step(new float[3], 0, new float[4]));
        }
    }

    [Fact]
    public void StepMayWriteInPlace()
    {
        foreach (var name in Samplers.Names)
        {
            var s1 = Samplers.Create(name, new SchedulerConfig());
            var s2 = Samplers.Create(name, new SchedulerConfig());
            s1.SetTimesteps(6); s2.SetTimesteps(6);
            var x = new GaussianNoise(3).Next(32);
            var y = (float[])x.Clone();
            GaussianNoise n1 = new(8), n2 = new(8); // stochastic samplers: the same noise on both sides
            for (int i = 0; i < 6; i++)
            {
                var eps = new GaussianNoise(4, (ulong)i).Next(32);
                x = s1.Step(eps, i, x, n1);
                s2.Step(eps, i, y, y, n2);
                Assert.Equal(x, y);
            }
        }
    }

    [Theory]
    [InlineData("karras", "leading")]
    [InlineData("scaled_linear", "bogus")]
    public void BadConfigsAreUserErrors(string betaSchedule, string spacing)
    {
        var cfg = new SchedulerConfig { BetaSchedule = betaSchedule == "karras" ? "bogus" : betaSchedule, TimestepSpacing = spacing };
        var ex = Record.Exception(() => { var s = new EulerDiscreteScheduler(cfg); s.SetTimesteps(10); });
        Assert.IsType<UserInputException>(ex);
        Assert.Throws<UserInputException>(() => Samplers.Create("heun", new SchedulerConfig()));
        Assert.Throws<UserInputException>(() => new EulerDiscreteScheduler(new SchedulerConfig()).SetTimesteps(0));
        Assert.Throws<UserInputException>(() => new DdimScheduler(new SchedulerConfig()).SetTimesteps(1001));
        Assert.Throws<UserInputException>(() => new DdimScheduler(new SchedulerConfig { PredictionType = "flow" }));
    }

    [Fact]
    public void EulerFollowsTheOdeOnAnAnalyticDenoiser()
    {
        // Data = a single point x0: the exact denoiser gives eps = (x - x0) / sigma, and Euler's
        // update lands exactly on x0 + (x - x0) * sigma_next / sigma; after the last step, on x0.
        var s = new EulerDiscreteScheduler(new SchedulerConfig());
        s.SetTimesteps(25);
        var x0 = new GaussianNoise(11).Next(64);
        var x = new GaussianNoise(12).Next(64).Select(v => v * s.InitNoiseSigma).ToArray();
        for (int i = 0; i < s.StepCount; i++)
        {
            float sigma = s.Sigmas[i];
            var eps = x.Select((v, k) => (v - x0[k]) / sigma).ToArray();
            x = s.Step(eps, i, x);
        }
        for (int k = 0; k < x.Length; k++) Assert.True(Math.Abs(x[k] - x0[k]) <= 1e-5 * (1 + Math.Abs(x0[k])), $"{x[k]} vs {x0[k]}");
    }
}
