using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.LayerDiffuse;

public class TransparentDecoderSchemaTests
{
    /// <summary>The fixtures list what diffusers v0.25's blocks build (tests/reference/transparent_decoder_schema.py).</summary>
    [Theory]
    [InlineData("transparent_decoder_schema_real.json")]
    [InlineData("transparent_decoder_schema_tiny.json")]
    public void SchemaMatchesDiffusersBlocks(string fixture)
    {
        var root = JsonNode.Parse(File.ReadAllText(Path.Combine(LayerDiffuseTestSupport.FixtureDir(), fixture)))!.AsObject();
        var config = TransparentDecoderConfig.Read(ConfigReader.FromText(root["config"]!.ToJsonString(), fixture));
        var expected = root["parameters"]!.AsArray()
            .Select(p => (Name: (string)p!["name"]!, Shape: string.Join(",", p["shape"]!.AsArray().Select(x => (long)x!))))
            .ToList();
        var actual = TransparentDecoderSchema.Enumerate(config).Select(p => (p.Name, Shape: string.Join(",", p.Shape))).ToList();

        Assert.True(expected.Count > 100, "fixture unexpectedly small");
        Assert.Equal(expected.Count, actual.Count);
        Assert.Equal(actual.Count, actual.Select(a => a.Name).Distinct().Count());
        Assert.Equal(expected.OrderBy(e => e.Name, StringComparer.Ordinal), actual.OrderBy(a => a.Name, StringComparer.Ordinal));
    }

    [Fact]
    public void RealConfigHasReleasedArchitecture()
    {
        var schema = TransparentDecoderSchema.Enumerate(new TransparentDecoderConfig()).ToDictionary(s => s.Name, s => s.Shape);
        Assert.Equal([64L, 4, 1, 1], schema["latent_conv_in.weight"]);
        Assert.Equal([4L, 32, 3, 3], schema["conv_out.weight"]);
        Assert.Equal([512L, 512], schema["mid_block.attentions.0.to_q.weight"]);
    }

    [Fact]
    public void TinyFileLoadsWithItsConfigFromMetadata()
    {
        using var tmp = new TempDir();
        var files = LayerDiffuseTiny.WriteAll(tmp.Path, LayerDiffuseTestSupport.TinyUNet(), seed: 3);
        using var decoder = TransparentDecoderFile.Load(files.TransparentDecoder);
        Assert.Equal(LayerDiffuseTiny.TinyDecoderConfig.BlockOutChannels, decoder.Config.BlockOutChannels);
        Assert.Equal(LayerDiffuseTiny.TinyDecoderConfig.NormNumGroups, decoder.Config.NormNumGroups);
        var schema = TransparentDecoderSchema.Enumerate(decoder.Config);
        Assert.Equal(schema.Count, decoder.Tensors.Count);
        foreach (var s in schema)
        {
            var t = decoder.Tensors[s.Name];
            Assert.Equal(s.Shape, t.Shape);
            Assert.Equal(DType.F16, t.DType);
        }
        // sensible scale: GroupNorm gains near 1, conv weights ~ 1/sqrt(fan_in), nothing degenerate
        var gain = decoder.Tensors["conv_norm_out.weight"].ToFloat32();
        Assert.All(gain, g => Assert.InRange(g, 0.5f, 1.5f));
        var w = decoder.Tensors["down_blocks.4.attentions.0.to_q.weight"].ToFloat32();
        double rms = Math.Sqrt(w.Average(x => (double)x * x));
        Assert.InRange(rms, 0.5 / Math.Sqrt(32), 2.0 / Math.Sqrt(32));
    }

    [Fact]
    public void WithoutMetadataTheReleasedConfigIsAssumed()
    {
        using var tmp = new TempDir();
        var files = LayerDiffuseTiny.WriteAll(tmp.Path, LayerDiffuseTestSupport.TinyUNet(), seed: 4);
        using (var f = SafeTensorsFile.Open(files.TransparentDecoder))
            SafeTensorsWriter.Write(tmp.File("nometa.safetensors"), f.Tensors.Select(Copy));
        var e = Assert.Throws<UserInputException>(() => TransparentDecoderFile.Load(tmp.File("nometa.safetensors")));
        // the released widths need 1x1 shortcuts (64 -> 128 at down level 3) that the narrow tiny decoder has no use for
        Assert.Contains("missing (first: 'down_blocks.3.resnets.0.conv_shortcut.weight'", e.Message);
    }

    [Fact]
    public void MissingAndUnexpectedTensorsAreCountedAndNamed()
    {
        using var tmp = new TempDir();
        var files = LayerDiffuseTiny.WriteAll(tmp.Path, LayerDiffuseTestSupport.TinyUNet(), seed: 5);
        IReadOnlyDictionary<string, string> meta;
        List<WeightTensor> tensors;
        using (var f = SafeTensorsFile.Open(files.TransparentDecoder))
        {
            meta = f.Metadata.ToDictionary();
            tensors = f.Tensors.Where(t => t.Name != "mid_block.resnets.1.conv2.bias").Select(Copy).ToList();
        }
        tensors.Add(ArrayWeightTensor.FromFloat32("mid_block.extra.weight", [2], [1f, 2f]));
        SafeTensorsWriter.Write(tmp.File("bad.safetensors"), tensors, meta);
        var e = Assert.Throws<UserInputException>(() => TransparentDecoderFile.Load(tmp.File("bad.safetensors")));
        Assert.Contains("1 missing (first: 'mid_block.resnets.1.conv2.bias')", e.Message);
        Assert.Contains("1 unexpected (first: 'mid_block.extra.weight')", e.Message);
    }

    [Fact]
    public void BadConfigInMetadataIsReported()
    {
        using var tmp = new TempDir();
        SafeTensorsWriter.Write(tmp.File("cfg.safetensors"), [ArrayWeightTensor.FromFloat32("conv_in.weight", [1], [1f])],
            new Dictionary<string, string> { [TransparentDecoderFile.ConfigMetadataKey] = "{\"block_out_channels\": [8, 8, 8]}" });
        var e = Assert.Throws<UserInputException>(() => TransparentDecoderFile.Load(tmp.File("cfg.safetensors")));
        Assert.Contains("block_out_channels", e.Message);
    }

    internal static WeightTensor Copy(WeightTensor t) => new ArrayWeightTensor(t.Name, t.DType, t.Shape, t.Bytes.ToArray());
}
