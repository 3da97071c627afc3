using System.IO.Compression;
using System.Text.Json.Nodes;
using LayerFusion.Core.Models;
using LayerFusion.Cuda.Bench;
using LayerFusion.Core.Models.Transparent;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Models.Vae;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.Models;

/// <summary>
/// The REAL-size graphs (SDXL UNet and VAE decoder, LayerDiffuse's UNet1024) built from their released
/// configs and run through a shape-only backend against diffusers' parameter listings
/// (tests/reference/models/list_layouts.py): every listed tensor is read, nothing else, each with the
/// shape the config implies, and every op's shapes are consistent.
/// </summary>
public class RealLayoutTests
{
    sealed class ShapeOnlyWeight(string name, long[] shape) : WeightTensor(name, DType.F32, shape)
    {
        public override ReadOnlySpan<byte> Bytes => throw new InvalidOperationException("shape-only weight");
    }

    /// <summary>A released model's config and a shape-only weight per tensor of diffusers' listing.</summary>
    internal static (ConfigReader Config, Dictionary<string, WeightTensor> Weights) Layout(string name)
    {
        using var fx = new ModelFixture("unet_a"); // for the fixture root
        var path = Path.Combine(Path.GetDirectoryName(fx.Dir)!, "layouts", name + ".json.gz");
        using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var reader = new StreamReader(gz);
        var doc = JsonNode.Parse(reader.ReadToEnd())!.AsObject();
        var weights = doc["tensors"]!.AsObject().ToDictionary(
            kv => kv.Key,
            kv => (WeightTensor)new ShapeOnlyWeight(kv.Key, kv.Value!.AsArray().Select(d => (long)d!).ToArray()));
        return (new ConfigReader(doc["config"]!.AsObject(), name), weights);
    }

    static void AssertSameLayout(Dictionary<string, WeightTensor> listing, ShapeOps ops)
    {
        Assert.Equal(listing.Keys.Order(), ops.Uploaded.Keys.Order());
        foreach (var (name, shape) in ops.Uploaded) Assert.Equal(listing[name].Shape, shape);
    }

    [Fact]
    public void SdxlUNet()
    {
        var (config, weights) = Layout("sdxl_unet");
        var ops = new ShapeOps();
        var c = UNet2DConditionModel.ReadConfig(config);
        var unet = new UNet2DConditionModel(new ParameterStore(ops, weights, "unet"), c);
        // 1024x1024 -> 128x128 latent; SDXL's text encoders give 77 x 2048 and a 1280 pooled embedding
        using var sample = ops.Zeros(2, 4, 128, 128);
        using var ehs = ops.Zeros(2, 77, 2048);
        using var te = ops.Zeros(2, 1280);
        using var y = unet.Forward(sample, [999f], ehs, te, new float[12]);
        Assert.Equal(new[] { 2, 4, 128, 128 }, y.Shape);
        AssertSameLayout(weights, ops);
        Assert.Equal(140, unet.AttentionSites.Count);
        var f = ops.Flops;
        double total = f.Values.Sum() / 2; // per image
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"SDXL UNet 1024x1024 per image: {total / 1e12:F2} TFLOP; linear {f["linear"] / 2e12:F2}, conv {f["conv"] / 2e12:F2}, " +
            $"attention {f["attention"] / 2e12:F2} (cross {ops.AttentionFlopsByKeys[77] / 2e12:F3})");
        // DESIGN.md §6's cost model: about 6.8 TFLOP per evaluation
        Assert.InRange(total / 1e12, 6.5, 7.1);
    }

    [Fact]
    public void SdxlVaeDecoder()
    {
        var (config, weights) = Layout("sdxl_vae");
        var ops = new ShapeOps();
        var vae = new AutoencoderKL(new ParameterStore(ops, weights, "vae"), AutoencoderKL.ReadConfig(config));
        Assert.Equal(0.13025, vae.Config.ScalingFactor);
        using var z = ops.Zeros(1, 4, 128, 128);
        using var y = vae.Decode(z);
        Assert.Equal(new[] { 1, 3, 1024, 1024 }, y.Shape);
        AssertSameLayout(weights, ops);
    }

    [Fact]
    public void LayerDiffuseTransparentDecoder()
    {
        var (config, weights) = Layout("transparent_decoder");
        var ops = new ShapeOps();
        var c = TransparentDecoderConfig.Read(config);
        Assert.Equal(new TransparentDecoderConfig().BlockOutChannels, c.BlockOutChannels); // the released architecture is the default
        var model = new UNet1024(new ParameterStore(ops, weights, "transparent_decoder"), c);
        using var pixel = ops.Zeros(1, 3, 1024, 1024);
        using var latent = ops.Zeros(1, 4, 128, 128);
        using var y = model.Forward(pixel, latent);
        Assert.Equal(new[] { 1, 4, 1024, 1024 }, y.Shape);
        AssertSameLayout(weights, ops);
    }
}
