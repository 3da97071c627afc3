using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;

namespace LayerFusion.Tests.Checkpoints;

public class LayoutTests
{
    static string ConfigText(object config) => JsonSerializer.Serialize(config, config.GetType());

    [Fact]
    public void BothTinyLayoutsLoadIntoIdenticalViews()
    {
        using var tmp = new TempDir();
        string d = Fixtures.WriteTiny(tmp, "d", CheckpointLayout.DiffusersFolder, 11);
        string s = Fixtures.WriteTiny(tmp, "s", CheckpointLayout.SingleFile, 11);
        using var a = Checkpoint.Open(d);
        using var b = Checkpoint.Open(s);
        Assert.Equal(CheckpointLayout.DiffusersFolder, a.Layout);
        Assert.Equal(CheckpointLayout.SingleFile, b.Layout);
        Assert.Equal(4, a.Components.Count);
        for (int i = 0; i < a.Components.Count; i++)
        {
            var x = a.Components[i];
            var y = b.Components[i];
            Assert.Equal(x.Name, y.Name);
            Assert.Equal(x.ClassName, y.ClassName);
            Assert.Equal(ConfigText(x.ConfigObject), ConfigText(y.ConfigObject));
            Assert.True(JsonNode.DeepEquals(x.RawConfig, y.RawConfig), $"{x.Name}: raw configs differ");
            Assert.Equal(x.Weights.Keys, y.Weights.Keys);
            Assert.Equal(x.Schema.Select(p => p.Name), x.Weights.Keys);
            foreach (var (name, t) in x.Weights)
            {
                var u = y.Weights[name];
                Assert.Equal(name, t.Name);
                Assert.Equal(name, u.Name);
                Assert.Equal(t.DType, u.DType);
                Assert.Equal(t.Shape, u.Shape);
                Assert.True(t.Bytes.SequenceEqual(u.Bytes), $"{x.Name}: bytes of '{name}' differ");
            }
        }
        Assert.Equal(ConfigText(a.Scheduler), ConfigText(b.Scheduler));
        Assert.NotNull(b.Tokenizer);
        Assert.NotNull(b.Tokenizer2);
        Assert.Equal(File.ReadAllBytes(a.Tokenizer!.VocabJson), File.ReadAllBytes(b.Tokenizer!.VocabJson));
        Assert.Equal(File.ReadAllBytes(a.Tokenizer2!.SpecialTokensMapJson!), File.ReadAllBytes(b.Tokenizer2!.SpecialTokensMapJson!));
        // The folder holding one single-file checkpoint (plus LayerDiffuse files) opens too.
        using var c = Checkpoint.Open(Path.Combine(s, WeightsLoader.Tiny.TinyCheckpoint.SingleFileName));
        Assert.Equal(b.SourcePath, c.SourcePath);
    }

    [Fact]
    public void SingleFileConvertsAsDiffusersOwnConverterDoes()
    {
        // Fixture: diffusers v0.25 convert_from_ckpt.py run on `make-tiny --layout single-file --seed 7`
        // (tests/reference/ldm_conversion_check.py): names, shapes and SHA-256 of every converted tensor.
        var reference = JsonNode.Parse(Fixtures.Read("ldm_conversion_seed7.json"))!["components"]!.AsObject();
        using var tmp = new TempDir();
        using var ckpt = Checkpoint.Open(Fixtures.WriteTiny(tmp, "s", CheckpointLayout.SingleFile, 7));
        foreach (var (component, entries) in reference)
        {
            var weights = ckpt.Component(component).Weights;
            var expected = entries!.AsArray().Select(e => (e![0]!.GetValue<string>(), string.Join(",", e[1]!.AsArray().Select(v => v!.GetValue<long>())), e[2]!.GetValue<string>()));
            var ours = weights.OrderBy(kv => kv.Key, StringComparer.Ordinal)
                .Select(kv => (kv.Key, string.Join(",", kv.Value.Shape), Convert.ToHexStringLower(SHA256.HashData(kv.Value.Bytes))[..16]));
            Assert.Equal(expected, ours);
        }
        Assert.Equal(4, reference.Count);
    }

    [Fact]
    public void OpenClipProjectionsAreZeroCopyRowsOfTheFusedTensor()
    {
        using var tmp = new TempDir();
        string s = Fixtures.WriteTiny(tmp, "s", CheckpointLayout.SingleFile, 3);
        using var raw = WeightsLoader.SafeTensors.SafeTensorsFile.Open(Path.Combine(s, WeightsLoader.Tiny.TinyCheckpoint.SingleFileName));
        using var ckpt = Checkpoint.Open(s);
        var fused = raw[LdmKeyMap.ClipGPrefix + "transformer.resblocks.1.attn.in_proj_weight"];
        var k = ckpt.TextEncoder2["text_model.encoder.layers.1.self_attn.k_proj.weight"];
        int h = ckpt.TextEncoder2.Config.HiddenSize;
        Assert.Equal(new long[] { 3 * h, h }, fused.Shape);
        Assert.True(fused.Bytes.Slice(h * h * 2, h * h * 2).SequenceEqual(k.Bytes));
        var proj = raw[LdmKeyMap.ClipGPrefix + "text_projection"].ToFloat32();
        var projT = ckpt.TextEncoder2["text_projection.weight"].ToFloat32();
        int p = ckpt.TextEncoder2.Config.ProjectionDim;
        for (int i = 0; i < h; i++)
            for (int j = 0; j < p; j++)
                Assert.Equal(proj[i * p + j], projT[j * h + i]);
    }

    [Fact]
    public void ShardedDiffusersWeightsLoadLikeOneFile()
    {
        using var tmp = new TempDir();
        string d = Fixtures.WriteTiny(tmp, "d", CheckpointLayout.DiffusersFolder, 5);
        string unetDir = Path.Combine(d, "unet");
        Dictionary<string, byte[]> before;
        using (var whole = WeightsLoader.SafeTensors.SafeTensorsFile.Open(Path.Combine(unetDir, "diffusion_pytorch_model.safetensors")))
        {
            before = whole.Tensors.ToDictionary(t => t.Name, t => t.Bytes.ToArray());
            var tensors = whole.Tensors.Select(t => (WeightTensor)new ArrayWeightTensor(t.Name, t.DType, t.Shape, t.Bytes.ToArray())).ToList();
            int half = tensors.Count / 2;
            WeightsLoader.SafeTensors.SafeTensorsWriter.Write(Path.Combine(unetDir, "diffusion_pytorch_model-00001-of-00002.safetensors"), tensors.Take(half));
            WeightsLoader.SafeTensors.SafeTensorsWriter.Write(Path.Combine(unetDir, "diffusion_pytorch_model-00002-of-00002.safetensors"), tensors.Skip(half));
            var map = new JsonObject();
            for (int i = 0; i < tensors.Count; i++) map[tensors[i].Name] = i < half ? "diffusion_pytorch_model-00001-of-00002.safetensors" : "diffusion_pytorch_model-00002-of-00002.safetensors";
            File.WriteAllText(Path.Combine(unetDir, "diffusion_pytorch_model.safetensors.index.json"), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());
        }
        File.Delete(Path.Combine(unetDir, "diffusion_pytorch_model.safetensors"));
        using var ckpt = Checkpoint.Open(d);
        Assert.Equal(2, ckpt.Unet.Files.Count);
        Assert.Equal(before.Count, ckpt.Unet.Weights.Count);
        foreach (var (name, bytes) in before) Assert.True(ckpt.Unet[name].Bytes.SequenceEqual(bytes), name);
    }
}
