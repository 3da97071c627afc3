using LayerFusion.Core.Models.Transparent;
using LayerFusion.Core.Models.Vae;
using LayerFusion.WeightsLoader.Configs;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Models;

public class VaeTransparentParityTests
{
    [Fact]
    public void VaeDecodeMatchesDiffusers()
    {
        using var fx = new ModelFixture("vae");
        var ops = new CpuBackend();
        var vae = new AutoencoderKL(fx.Store(ops, "vae"), AutoencoderKLConfig.Read(fx.Config));
        using var z = fx.Input(ops, "latent");
        using var y = vae.Decode(z);
        Assert.Equal(fx.Shape("out"), y.Shape);
        ModelFixture.AssertClose(ops.ToHost(y), fx.Values("out"));
        // latent * 1e-3: the decoder's norms see variances near their eps 1e-6
        using var zSmall = ops.Affine(z, 1e-3f);
        using var ySmall = vae.Decode(zSmall);
        ModelFixture.AssertClose(ops.ToHost(ySmall), fx.Values("out_small"), what: "out_small");
    }

    static UNet1024 Decoder(ModelFixture fx, CpuBackend ops) =>
        new(fx.Store(ops, "transparent_decoder"), TransparentDecoderConfig.Read(fx.Config));

    [Fact]
    public void TransparentDecoderSinglePassMatchesReference()
    {
        using var fx = new ModelFixture("transparent");
        var ops = new CpuBackend();
        var model = Decoder(fx, ops);
        using var pixel = fx.Input(ops, "pixel");
        using var latent = fx.Input(ops, "latent");
        using var y = model.Forward(pixel, latent);
        Assert.Equal(fx.Shape("out"), y.Shape);
        ModelFixture.AssertClose(ops.ToHost(y), fx.Values("out"));
        // pixel * 1e-3: the first norms see variances near eps 1e-5
        using var pSmall = ops.Affine(pixel, 1e-3f);
        using var ySmall = model.Forward(pSmall, latent);
        ModelFixture.AssertClose(ops.ToHost(ySmall), fx.Values("out_small"), what: "out_small");
    }

    [Fact]
    public void TransparentDecoderEightWayMedianMatchesReference()
    {
        using var fx = new ModelFixture("transparent");
        var ops = new CpuBackend();
        var decoder = new TransparentVaeDecoder(Decoder(fx, ops));
        using var pixel = fx.Input(ops, "pixel");
        using var latent = fx.Input(ops, "latent");
        using var y = decoder.Decode(pixel, latent, augment: true);
        var got = ops.ToHost(y);
        var expected = fx.Values("augmented");
        ModelFixture.AssertClose(got, expected, what: "augmented");
        // the median must differ from a single clipped pass, or this test would not see the wrapper
        using var single = decoder.Decode(pixel, latent, augment: false);
        var one = ops.ToHost(single);
        Assert.All(one, v => Assert.InRange(v, 0f, 1f));
        Assert.True(ModelFixture.RelErr(one, expected) > 1e-2, "single pass equals the 8-way median: the fixture cannot tell them apart");
    }

    [Theory]
    [InlineData(false, 0)]
    [InlineData(false, 1)]
    [InlineData(false, 3)]
    [InlineData(true, 1)]
    [InlineData(true, 2)]
    public void TransformRoundTripsAndRot90MatchesTorch(bool flip, int k)
    {
        const int c = 2, h = 3, w = 5;
        var x = Enumerable.Range(0, c * h * w).Select(i => (float)i + 1).ToArray();
        var (t, th, tw) = TransparentVaeDecoder.Transform(x, c, h, w, flip, k);
        Assert.Equal(k % 2 == 1 ? (w, h) : (h, w), (th, tw));
        Assert.Equal(x, TransparentVaeDecoder.Untransform(t, c, th, tw, flip, k));
        if (!flip && k == 1)
        {
            // torch.rot90(x, 1, (1, 2)) of [[1..5],[6..10],[11..15]] starts with the last column: 5, 10, 15
            Assert.Equal(new float[] { 5, 10, 15, 4, 9, 14 }, t.Take(6).ToArray());
        }
    }
}
