using LayerFusion.Core.Schedulers;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.Configs;

/// <summary>Config values a model would compute garbage from are refused by name, not run into black images.</summary>
public class ConfigValueTests
{
    static ConfigReader R(string json) => ConfigReader.FromText(json, "cfg");

    [Theory]
    [InlineData("{\"scaling_factor\": 0}", "scaling_factor")]
    [InlineData("{\"scaling_factor\": -0.13}", "scaling_factor")]
    public void VaeScalingFactorMustBePositive(string json, string field)
    {
        var e = Assert.Throws<UserInputException>(() => AutoencoderKLConfig.Read(R(json)));
        Assert.StartsWith($"cfg: field '{field}' is ", e.Message);
        Assert.Equal(0.13025, AutoencoderKLConfig.Read(R("{\"scaling_factor\": 0.13025}")).ScalingFactor);
    }

    [Theory]
    [InlineData("{\"layer_norm_eps\": -1e-5}")]
    [InlineData("{\"layer_norm_eps\": 0}")]
    [InlineData("{\"layer_norm_eps\": 5}")]
    public void ClipLayerNormEpsMustBePositive(string json)
    {
        var e = Assert.Throws<UserInputException>(() => ClipTextConfig.Read(R(json)));
        Assert.Contains("field 'layer_norm_eps'", e.Message);
        Assert.Equal(1e-5, ClipTextConfig.Read(R("{\"layer_norm_eps\": 1e-5}")).LayerNormEps);
    }

    [Fact]
    public void UNetNormEpsMustBePositive()
    {
        var e = Assert.Throws<UserInputException>(() => UNetConfig.Read(R("{\"norm_eps\": -1}")));
        Assert.Contains("field 'norm_eps' is -1, outside (0, 1]", e.Message);
    }

    [Theory]
    [InlineData("{\"beta_start\": 0}", "beta_start")]
    [InlineData("{\"beta_end\": 1.5}", "beta_end")]
    [InlineData("{\"thresholding\": true}", "thresholding")]
    [InlineData("{\"rescale_betas_zero_snr\": true}", "rescale_betas_zero_snr")]
    [InlineData("{\"timestep_type\": \"continuous\"}", "timestep_type")]
    [InlineData("{\"sigma_min\": 0.1}", "sigma_min")]
    [InlineData("{\"trained_betas\": [0.1, \"x\"]}", "trained_betas")]
    public void SchedulerFieldsWeDoNotImplementOrCannotUseAreRefused(string json, string field)
    {
        var e = Assert.Throws<UserInputException>(() => SchedulerConfig.Read(R(json)));
        Assert.Contains($"field '{field}'", e.Message);
    }

    [Fact]
    public void TrainedBetasReplaceTheScheduleAsInDiffusers()
    {
        var sdxl = SchedulerConfig.Read(R("{}"));
        var reference = new NoiseSchedule(sdxl);
        // the same betas given explicitly (float32 values, as torch.tensor(trained_betas, dtype=float32) holds them)
        var trained = sdxl with { TrainedBetas = reference.Betas.Select(b => (double)b).ToArray(), BetaSchedule = "linear", BetaStart = 0.5, BetaEnd = 0.6 };
        var s = new NoiseSchedule(trained);
        Assert.Equal(reference.Betas, s.Betas);
        Assert.Equal(reference.AlphasCumprod, s.AlphasCumprod);
        Assert.Equal(reference.Sigmas, s.Sigmas);

        // other betas: alphas_cumprod against a float64 product of the float32 betas
        var rng = new Random(3);
        var betas = Enumerable.Range(0, 1000).Select(_ => 1e-4 + 0.02 * rng.NextDouble()).ToArray();
        var custom = new NoiseSchedule(sdxl with { TrainedBetas = betas });
        double acc = 1;
        for (int i = 0; i < 1000; i++)
        {
            acc *= 1 - (double)(float)betas[i];
            Assert.Equal(acc, custom.AlphasCumprod[i], acc * 1e-6);
        }
        Assert.NotEqual(reference.Sigmas[500], custom.Sigmas[500]);
        // read from JSON
        var json = "{\"trained_betas\": [" + string.Join(", ", betas.Select(b => b.ToString("R", System.Globalization.CultureInfo.InvariantCulture))) + "]}";
        Assert.Equal(custom.Sigmas, new NoiseSchedule(SchedulerConfig.Read(R(json))).Sigmas);
    }

    [Fact]
    public void TrainedBetasMustMatchTheTrainingStepsAndLieInZeroOne()
    {
        var sdxl = SchedulerConfig.Read(R("{}"));
        Assert.Contains("trained_betas has 3 entries, num_train_timesteps is 1000",
            Assert.Throws<UserInputException>(() => new NoiseSchedule(sdxl with { TrainedBetas = [0.1, 0.2, 0.3] })).Message);
        var bad = Enumerable.Repeat(0.01, 1000).ToArray();
        bad[7] = 1.0;
        Assert.Contains("trained_betas must lie in (0, 1)",
            Assert.Throws<UserInputException>(() => new NoiseSchedule(sdxl with { TrainedBetas = bad })).Message);
    }
}
