using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Tiny;

namespace LayerFusion.Tests.Checkpoints;

public class TinyTests
{
    static Dictionary<string, byte[]> AllFiles(string dir) => Directory.GetFiles(dir, "*", SearchOption.AllDirectories)
        .ToDictionary(f => Path.GetRelativePath(dir, f), File.ReadAllBytes);

    [Theory]
    [InlineData(CheckpointLayout.DiffusersFolder)]
    [InlineData(CheckpointLayout.SingleFile)]
    public void SameSeedSameBytesOtherSeedOtherWeights(CheckpointLayout layout)
    {
        using var tmp = new TempDir();
        var a = AllFiles(Fixtures.WriteTiny(tmp, "a", layout, 42));
        var b = AllFiles(Fixtures.WriteTiny(tmp, "b", layout, 42));
        var c = AllFiles(Fixtures.WriteTiny(tmp, "c", layout, 43));
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, bytes) in a) Assert.True(bytes.AsSpan().SequenceEqual(b[name]), name);
        var weights = a.Keys.Where(k => k.EndsWith(".safetensors", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(weights);
        foreach (var w in weights) Assert.False(a[w].AsSpan().SequenceEqual(c[w]), w);
    }

    [Fact]
    public void DtypeOptionIsHonoured()
    {
        using var tmp = new TempDir();
        using var ckpt = Checkpoint.Open(Fixtures.WriteTiny(tmp, "d", CheckpointLayout.DiffusersFolder, 1, DType.BF16));
        Assert.All(ckpt.Components.SelectMany(c => c.Weights.Values), t => Assert.Equal(DType.BF16, t.DType));
    }

    [Fact]
    public void WeightsHaveSensibleScale()
    {
        var configs = TinyCheckpoint.DefaultConfigs();
        var weights = TinyCheckpoint.RandomWeights("unet", TinyCheckpoint.SchemaOf(configs, "unet"), 9, DType.F32)
            .ToDictionary(t => t.Name);
        static (double Mean, double Std) Stats(float[] v)
        {
            double m = v.Average(x => (double)x);
            return (m, Math.Sqrt(v.Average(x => (x - m) * (x - m))));
        }
        var ff = Stats(weights["down_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"].ToFloat32()); // [512, 64]
        Assert.InRange(ff.Std, 0.9 / 8, 1.1 / 8);
        Assert.InRange(Math.Abs(ff.Mean), 0, 0.01);
        var conv = Stats(weights["up_blocks.0.resnets.0.conv1.weight"].ToFloat32()); // [64, 128, 3, 3]
        Assert.InRange(conv.Std, 0.9 / Math.Sqrt(128 * 9), 1.1 / Math.Sqrt(128 * 9));
        var norm = Stats(weights["up_blocks.0.resnets.0.norm1.weight"].ToFloat32()); // [128]
        Assert.InRange(norm.Mean, 0.95, 1.05);
        Assert.InRange(norm.Std, 0.05, 0.15);
        var bias = Stats(weights["conv_in.bias"].ToFloat32());
        Assert.InRange(bias.Std, 0.01, 0.1);
    }

    [Fact]
    public void TinyConfigsAreSdxlShapedWithTwoTextEncodersFeedingCrossAttention()
    {
        var c = TinyCheckpoint.DefaultConfigs();
        var unet = c.UnetConfig;
        Assert.Equal(c.TextEncoderConfig.HiddenSize + c.TextEncoder2Config.HiddenSize, unet.CrossAttentionDim);
        Assert.Equal(c.TextEncoder2Config.ProjectionDim + 6 * unet.AdditionTimeEmbedDim, unet.ProjectionClassEmbeddingsInputDim);
        Assert.Equal("text_time", unet.AdditionEmbedType);
        Assert.False(c.TextEncoderConfig.WithProjection);
        Assert.True(c.TextEncoder2Config.WithProjection);
        Assert.Equal(TinyTokenizer.VocabSize(), c.TextEncoderConfig.VocabSize);
    }

    [Fact]
    public void TokenizerFilesHaveClipLayout()
    {
        using var tmp = new TempDir();
        TinyTokenizer.Write(tmp.Sub("tok"), "!");
        var vocab = JsonNode.Parse(File.ReadAllText(Path.Combine(tmp.Sub("tok"), "vocab.json")))!.AsObject();
        var merges = File.ReadAllLines(Path.Combine(tmp.Sub("tok"), "merges.txt"));
        Assert.StartsWith("#version", merges[0]);
        int m = merges.Length - 1;
        Assert.Equal(TinyTokenizer.DefaultMerges, m);
        Assert.Equal(512 + m + 2, vocab.Count);
        var byId = vocab.ToDictionary(kv => kv.Value!.GetValue<int>(), kv => kv.Key);
        Assert.Equal(Enumerable.Range(0, vocab.Count), byId.Keys.Order());
        // GPT-2 bytes_to_unicode order: '!' first, 'Ā' (byte 0) right after the 188 printable bytes.
        Assert.Equal("!", byId[0]);
        Assert.Equal("\u0100", byId[188]);
        Assert.Equal("!</w>", byId[256]);
        for (int i = 0; i < m; i++) Assert.Equal(merges[i + 1].Replace(" ", ""), byId[512 + i]);
        Assert.Equal("<|startoftext|>", byId[vocab.Count - 2]);
        Assert.Equal("<|endoftext|>", byId[vocab.Count - 1]);
        var special = JsonNode.Parse(File.ReadAllText(Path.Combine(tmp.Sub("tok"), "special_tokens_map.json")))!;
        Assert.Equal("!", special["pad_token"]!.GetValue<string>());
        // Every merge joins two tokens that exist before it (a valid BPE merge list).
        var known = new HashSet<string>(Enumerable.Range(0, 512).Select(i => byId[i]));
        foreach (var line in merges.Skip(1))
        {
            var parts = line.Split(' ');
            Assert.Equal(2, parts.Length);
            Assert.Contains(parts[0], known);
            Assert.Contains(parts[1], known);
            known.Add(parts[0] + parts[1]);
        }
    }
}
