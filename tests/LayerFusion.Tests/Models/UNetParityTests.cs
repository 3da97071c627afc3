using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Models.Unet;
using LayerFusion.WeightsLoader.Configs;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Models;

/// <summary>One UNet call (CFG batch of 2) against diffusers v0.25 on two tiny SDXL-shaped configs:
/// A (2 levels, both cross-attention, linear projections, flip_sin_to_cos false / freq_shift 1) and
/// B (3 levels with DownBlock2D first, one resnet per level, conv projections, transformer depths 1/1/2,
/// odd 7x5 latent); and two configs of tests/reference/models/make_unet_config_fixtures.py (fields beyond
/// SDXL's defaults, see <see cref="UNetConfigFieldTests"/>).</summary>
public class UNetParityTests
{
    [Theory]
    [InlineData("unet_a")]
    [InlineData("unet_b")]
    [InlineData("unet_fields")]   // center_input_sample, time_embedding_act_fn, timestep_post_act, mid_block_scale_factor (make_unet_config_fixtures.py)
    [InlineData("unet_odd")]      // heads (3, 6, 2) with 32 channels at a DownBlock2D level, downsample_padding 0 on 9x7
    public void MatchesDiffusers(string name)
    {
        using var fx = new ModelFixture(name);
        var ops = new CpuBackend();
        var config = UNet2DConditionModel.ReadConfig(fx.Config);
        var unet = new UNet2DConditionModel(fx.Store(ops, "unet"), config);
        using var sample = fx.Input(ops, "sample");
        using var ehs = fx.Input(ops, "encoder_hidden_states");
        using var textEmbeds = fx.Input(ops, "text_embeds");
        using var y = unet.Forward(sample, fx.Values("timestep"), ehs, textEmbeds, fx.Values("time_ids"));
        Assert.Equal(fx.Shape("out"), y.Shape);
        ModelFixture.AssertClose(ops.ToHost(y), fx.Values("out"));

        // the same call on sample * 1e-3: the first GroupNorms see variances near eps (see make_fixtures.py)
        using var small = ops.Affine(sample, 1e-3f);
        using var ySmall = unet.Forward(small, fx.Values("timestep"), ehs, textEmbeds, fx.Values("time_ids"));
        ModelFixture.AssertClose(ops.ToHost(ySmall), fx.Values("out_small"), what: "out_small");
    }

    [Fact]
    public void ConfigsDifferInShape()
    {
        // guards the fixtures' purpose: nothing may be tuned to one shape
        using var a = new ModelFixture("unet_a");
        using var b = new ModelFixture("unet_b");
        var ca = UNet2DConditionModel.ReadConfig(a.Config);
        var cb = UNet2DConditionModel.ReadConfig(b.Config);
        Assert.NotEqual(ca.Levels, cb.Levels);
        Assert.NotEqual(ca.TransformerLayersPerBlock, cb.TransformerLayersPerBlock);
        Assert.NotEqual(ca.UseLinearProjection, cb.UseLinearProjection);
        Assert.NotEqual(ca.LayersPerBlock, cb.LayersPerBlock);
    }

    [Fact]
    public void MismatchedCheckpointIsAUserError()
    {
        using var fx = new ModelFixture("unet_a");
        var ops = new CpuBackend();
        var config = UNet2DConditionModel.ReadConfig(fx.Config) with { CrossAttentionDim = 20 };
        var unet = new UNet2DConditionModel(fx.Store(ops, "unet"), config);
        using var sample = fx.Input(ops, "sample");
        using var ehs = ops.FromHost(new float[2 * 5 * 20], 2, 5, 20);
        using var textEmbeds = fx.Input(ops, "text_embeds");
        var e = Assert.Throws<LayerFusion.WeightsLoader.UserInputException>(() =>
            unet.Forward(sample, fx.Values("timestep"), ehs, textEmbeds, fx.Values("time_ids")));
        Assert.Contains("to_k.weight", e.Message);
    }
}
