using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.Checkpoints;

/// <summary>Configs and folders crafted to crash, hang or mislead the loaders: each must end in one UserInputException.</summary>
public class HostileInputTests
{
    static List<WeightTensor> Copy(SafeTensorsFile f) =>
        f.Tensors.Select(t => (WeightTensor)new ArrayWeightTensor(t.Name, t.DType, t.Shape, t.Bytes.ToArray())).ToList();

    [Fact]
    public void DuplicateConfigFieldIsAUserErrorNamingTheFile()
    {
        using var tmp = new TempDir();
        string d = Fixtures.WriteTiny(tmp, "d", CheckpointLayout.DiffusersFolder, 1);
        string cfg = Path.Combine(d, "unet", "config.json");
        // Duplicates of a field the reader uses and of one it ignores: both refused, before any field is read.
        File.WriteAllText(cfg, File.ReadAllText(cfg).TrimEnd().TrimEnd('}') + ", \"sample_size\": 64, \"zzz\": 1, \"zzz\": 2}");
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(d));
        Assert.Contains(cfg, e.Message);
        Assert.Contains("Duplicate", e.Message);
        Assert.Contains("sample_size", e.Message);
    }

    [Fact]
    public void DuplicateNamesInTextConfigsAreRefused()
    {
        var e = Assert.Throws<UserInputException>(() => ConfigReader.FromText("{\"a\": 1, \"a\": 2}", "src"));
        Assert.StartsWith("src: not valid JSON", e.Message);
        Assert.Equal(1, ConfigReader.FromText("{\"a\": 1, \"b\": {\"a\": 2}}", "src").Int("a", 0));
    }

    [Fact]
    public void OversizedConfigTextIsRefusedBeforeParsing()
    {
        string big = "{\"a\": \"" + new string('x', 5 << 20) + "\"}";
        var e = Assert.Throws<UserInputException>(() => ConfigReader.FromText(big, "meta"));
        Assert.Contains("more than the", e.Message);
    }

    static JsonArray Repeat<T>(T value) => new([.. Enumerable.Range(0, 64).Select(_ => (JsonNode?)JsonValue.Create(value))]);

    /// <summary>Each bound is modest, their product is not: this ~1 KB config once enumerated ~38M tensors.</summary>
    [Fact]
    public void ConfigImplyingMillionsOfTensorsIsRefused()
    {
        var unet = SdxlDefaults.UNet();
        unet["block_out_channels"] = Repeat(64);
        unet["attention_head_dim"] = Repeat(1);
        unet["transformer_layers_per_block"] = Repeat(256);
        unet["down_block_types"] = Repeat("CrossAttnDownBlock2D");
        unet["up_block_types"] = Repeat("CrossAttnUpBlock2D");
        unet["layers_per_block"] = 64;
        unet["norm_num_groups"] = 32;
        var e = Assert.Throws<UserInputException>(() => UNetConfig.Read(ConfigJson.Reader(unet, "hostile unet")));
        Assert.Contains("hostile unet: field 'transformer_layers_per_block'", e.Message);
        Assert.Contains($"{UNetConfig.MaxTransformerBlocks} allowed", e.Message);

        // The bound admits SDXL itself (70 blocks) with room to spare.
        var sdxl = UNetConfig.Read(ConfigJson.Reader(SdxlDefaults.UNet(), "sdxl"));
        Assert.Equal(70, UNetSchema.Parameters(sdxl).Count(p => p.Name.EndsWith(".attn1.to_q.weight", StringComparison.Ordinal)));
    }

    [Fact]
    public void ConfigAtTheBlockBoundStillLoads()
    {
        // Deep but legal: (2 * 1 + 1) * (1 + 256) + 256 = 1027 blocks at most.
        var unet = SdxlDefaults.UNet();
        unet["block_out_channels"] = new JsonArray(32, 64);
        unet["attention_head_dim"] = new JsonArray(2, 4);
        unet["down_block_types"] = new JsonArray("DownBlock2D", "CrossAttnDownBlock2D");
        unet["up_block_types"] = new JsonArray("CrossAttnUpBlock2D", "UpBlock2D");
        unet["layers_per_block"] = 1;
        unet["norm_num_groups"] = 8;
        unet["transformer_layers_per_block"] = new JsonArray(1, 256);
        Assert.Equal(256, UNetConfig.Read(ConfigJson.Reader(unet, "ok")).TransformerLayersPerBlock[1]);
        unet["layers_per_block"] = 64;
        // (2 * 64 + 1) * 257 + 256 = 33409 > 4096
        Assert.Throws<UserInputException>(() => UNetConfig.Read(ConfigJson.Reader(unet, "too many")));
    }

    static string Shard(TempDir tmp, out string unetDir, out List<WeightTensor> tensors)
    {
        string d = Fixtures.WriteTiny(tmp, "d", CheckpointLayout.DiffusersFolder, 5);
        unetDir = Path.Combine(d, "unet");
        string whole = Path.Combine(unetDir, "diffusion_pytorch_model.safetensors");
        using (var f = SafeTensorsFile.Open(whole)) tensors = Copy(f);
        File.Delete(whole);
        return d;
    }

    static void WriteIndex(string unetDir, IEnumerable<(string Tensor, string File)> entries)
    {
        var map = new JsonObject();
        foreach (var (t, f) in entries) map[t] = f;
        File.WriteAllText(Path.Combine(unetDir, "diffusion_pytorch_model.safetensors.index.json"),
            new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());
    }

    [Theory]
    [InlineData("../outside.safetensors")]
    [InlineData("/tmp/outside.safetensors")]
    [InlineData("sub/inside.safetensors")]
    [InlineData("..")]
    [InlineData("")]
    public void ShardIndexCannotPointOutsideTheFolder(string target)
    {
        using var tmp = new TempDir();
        string d = Shard(tmp, out var unetDir, out var tensors);
        // The file exists where the traversal points, so only the path rule can refuse it.
        SafeTensorsWriter.Write(Path.Combine(d, "outside.safetensors"), tensors);
        WriteIndex(unetDir, tensors.Select((t, i) => (t.Name, i == 3 ? target : "a.safetensors")));
        SafeTensorsWriter.Write(Path.Combine(unetDir, "a.safetensors"), tensors);
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(d));
        Assert.Contains($"weight_map entry '{tensors[3].Name}' must name a shard file in the same folder", e.Message);
    }

    [Fact]
    public void ShardIndexNamingAMissingShardNamesIt()
    {
        using var tmp = new TempDir();
        string d = Shard(tmp, out var unetDir, out var tensors);
        SafeTensorsWriter.Write(Path.Combine(unetDir, "a.safetensors"), tensors);
        WriteIndex(unetDir, tensors.Select((t, i) => (t.Name, i == 7 ? "b.safetensors" : "a.safetensors")));
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(d));
        Assert.Contains("b.safetensors': no such file", e.Message);
    }

    [Fact]
    public void ShardTensorTheIndexDoesNotListIsUnexpected()
    {
        using var tmp = new TempDir();
        string d = Shard(tmp, out var unetDir, out var tensors);
        SafeTensorsWriter.Write(Path.Combine(unetDir, "a.safetensors"),
            [.. tensors, ArrayWeightTensor.FromFloat32("smuggled.weight", [2], [1f, 2f], DType.F16)]);
        WriteIndex(unetDir, tensors.Select(t => (t.Name, "a.safetensors")));
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(d));
        Assert.Contains("0 missing and 1 unexpected", e.Message);
        Assert.Contains("smuggled.weight", e.Message);
    }

    [Fact]
    public void ShardHoldingATensorTheIndexPutsElsewhereIsAnError()
    {
        using var tmp = new TempDir();
        string d = Shard(tmp, out var unetDir, out var tensors);
        SafeTensorsWriter.Write(Path.Combine(unetDir, "a.safetensors"), tensors);
        SafeTensorsWriter.Write(Path.Combine(unetDir, "b.safetensors"), tensors.Take(2));
        WriteIndex(unetDir, tensors.Select((t, i) => (t.Name, i < 2 ? "b.safetensors" : "a.safetensors")));
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(d));
        Assert.Contains("weight_map puts it in 'b.safetensors'", e.Message);
    }

    [Fact]
    public void SingleFileWithTooManyInferredLevelsIsRefusedBeforeScanning()
    {
        using var tmp = new TempDir();
        const string P = LdmKeyMap.UNetPrefix;
        static WeightTensor T(string name, params long[] shape) =>
            ArrayWeightTensor.FromFloat32(name, shape, new float[shape.Aggregate(1L, (a, b) => a * b)]);
        // Just enough of both text encoders for their configs to be inferred (they are inferred first).
        const string G = LdmKeyMap.ClipGPrefix, CL = LdmKeyMap.ClipLPrefix + "text_model.";
        var tensors = new List<WeightTensor>
        {
            T(G + "token_embedding.weight", 1, 64), T(G + "positional_embedding", 77, 64),
            T(G + "transformer.resblocks.0.mlp.c_fc.weight", 4, 64), T(G + "text_projection", 64, 8),
            T(CL + "embeddings.token_embedding.weight", 1, 64), T(CL + "embeddings.position_embedding.weight", 77, 64),
            T(CL + "encoder.layers.0.mlp.fc1.weight", 4, 64),
            T(P + "input_blocks.0.0.weight", 1, 1, 1, 1),
        };
        // A downsampler at input_blocks.2 makes layers_per_block 1, so 130 blocks each way mean 65 levels.
        tensors.Add(ArrayWeightTensor.FromFloat32(P + "input_blocks.2.0.op.weight", [1], [1f]));
        for (int i = 1; i < 130; i++) tensors.Add(ArrayWeightTensor.FromFloat32($"{P}input_blocks.{i}.0.x", [1], [1f]));
        for (int i = 0; i < 130; i++) tensors.Add(ArrayWeightTensor.FromFloat32($"{P}output_blocks.{i}.0.x", [1], [1f]));
        string file = Path.Combine(tmp.Path, "levels.safetensors");
        SafeTensorsWriter.Write(file, tensors);
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(file));
        Assert.Contains("65 UNet levels", e.Message);
    }

    [Fact]
    public void SingleFileDuplicateNamesInConfigsMetadataAreRefused()
    {
        using var tmp = new TempDir();
        string s = Fixtures.WriteTiny(tmp, "s", CheckpointLayout.SingleFile, 2);
        string file = Path.Combine(s, WeightsLoader.Tiny.TinyCheckpoint.SingleFileName);
        List<WeightTensor> tensors;
        Dictionary<string, string> meta;
        using (var f = SafeTensorsFile.Open(file))
        {
            tensors = Copy(f);
            meta = f.Metadata.ToDictionary();
        }
        string configs = meta[Checkpoint.SingleFileConfigsKey];
        meta[Checkpoint.SingleFileConfigsKey] = configs[..^1] + ", \"vae\": {}}";
        SafeTensorsWriter.Write(file, tensors, meta);
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(file));
        Assert.Contains(Checkpoint.SingleFileConfigsKey, e.Message);
    }

    [Theory]
    [InlineData("up_block_types", "[-1, 2]", "entry 0 must be a string")]
    [InlineData("up_block_types", "-9223372036854775808", "must be an array of at most 64 strings")]
    [InlineData("down_block_types", "[\"DownEncoderBlock2D\"]", "must have one entry per block_out_channels (2)")]
    [InlineData("down_block_types", "[\"DownEncoderBlock2D\", \"AttnDownEncoderBlock2D\"]", "entry 1 'AttnDownEncoderBlock2D' is not supported")]
    public void VaeBlockTypesOfTheWrongTypeOrKindAreRefused(string field, string value, string expected)
    {
        using var tmp = new TempDir();
        string d = Fixtures.WriteTiny(tmp, "d", CheckpointLayout.DiffusersFolder, 1);
        string cfg = Path.Combine(d, "vae", "config.json");
        var json = JsonNode.Parse(File.ReadAllText(cfg))!.AsObject();
        json[field] = JsonNode.Parse(value);
        File.WriteAllText(cfg, json.ToJsonString());
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(d));
        Assert.Contains($"{cfg}: field '{field}'", e.Message);
        Assert.Contains(expected, e.Message);
    }
}
