using LayerFusion.Core.Models.Transparent;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Models.Vae;
using LayerFusion.WeightsLoader.Configs;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Models;

/// <summary>
/// The models under a backend that frees storage on Dispose: no use after dispose, no double or
/// view dispose, inputs and weights untouched, results equal to the plain CPU run, and every
/// intermediate released (only the inputs and the one result stay alive); and every tensor of the
/// checkpoint is used.
/// </summary>
public class LifetimeTests
{
    [Theory]
    [InlineData("unet_a")]
    [InlineData("unet_b")]
    public void UNetReleasesEveryIntermediate(string name)
    {
        using var fx = new ModelFixture(name);
        var ops = new LifetimeCheckingOps(new CpuBackend());
        var unet = new UNet2DConditionModel(fx.Store(ops, "unet"), UNet2DConditionModel.ReadConfig(fx.Config));
        using var sample = fx.Input(ops, "sample");
        using var ehs = fx.Input(ops, "encoder_hidden_states");
        using var te = fx.Input(ops, "text_embeds");
        for (int run = 0; run < 2; run++) // the second run reuses the cached weights: none may have been freed
        {
            using var y = unet.Forward(sample, fx.Values("timestep"), ehs, te, fx.Values("time_ids"));
            Assert.Equal(4, ops.LiveCount);
            ModelFixture.AssertClose(ops.ToHost(y), fx.Values("out"));
        }
        Assert.Equal(3, ops.LiveCount);
        Assert.Equal(fx.Values("sample"), ops.ToHost(sample));
        // every checkpoint tensor takes part: no layer of diffusers' model is missing from the graph
        Assert.Equal(fx.Weights.Keys.Order(), ops.Uploaded.Order());
    }

    [Fact]
    public void VaeReleasesEveryIntermediate()
    {
        using var fx = new ModelFixture("vae");
        var ops = new LifetimeCheckingOps(new CpuBackend());
        var vae = new AutoencoderKL(fx.Store(ops, "vae"), AutoencoderKL.ReadConfig(fx.Config));
        using var z = fx.Input(ops, "latent");
        using (var y = vae.Decode(z))
        {
            Assert.Equal(2, ops.LiveCount);
        Assert.Equal(fx.Weights.Keys.Order(), ops.Uploaded.Order());
            ModelFixture.AssertClose(ops.ToHost(y), fx.Values("out"));
        }
        Assert.Equal(1, ops.LiveCount);
        Assert.Equal(fx.Weights.Keys.Order(), ops.Uploaded.Order());
    }

    [Fact]
    public void TransparentDecoderReleasesEveryIntermediate()
    {
        using var fx = new ModelFixture("transparent");
        var ops = new LifetimeCheckingOps(new CpuBackend());
        var model = new UNet1024(fx.Store(ops, "transparent_decoder"), TransparentDecoderConfig.Read(fx.Config));
        using var pixel = fx.Input(ops, "pixel");
        using var latent = fx.Input(ops, "latent");
        using (var y = model.Forward(pixel, latent))
        {
            Assert.Equal(3, ops.LiveCount);
            ModelFixture.AssertClose(ops.ToHost(y), fx.Values("out"));
        }
        using (var y = new TransparentVaeDecoder(model).Decode(pixel, latent))
        {
            Assert.Equal(3, ops.LiveCount);
            ModelFixture.AssertClose(ops.ToHost(y), fx.Values("augmented"));
        }
        Assert.Equal(2, ops.LiveCount);
        Assert.Equal(fx.Weights.Keys.Order(), ops.Uploaded.Order());
    }
}
