using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.SafeTensors;
using LayerFusion.WeightsLoader.Tiny;

namespace LayerFusion.Tests.Checkpoints;

public class ValidationTests
{
    static List<WeightTensor> Copy(SafeTensorsFile f) =>
        f.Tensors.Select(t => (WeightTensor)new ArrayWeightTensor(t.Name, t.DType, t.Shape, t.Bytes.ToArray())).ToList();

    static void Rewrite(string file, Func<List<WeightTensor>, IEnumerable<WeightTensor>> edit)
    {
        List<WeightTensor> tensors;
        IReadOnlyDictionary<string, string> meta;
        using (var f = SafeTensorsFile.Open(file))
        {
            tensors = Copy(f);
            meta = f.Metadata.ToDictionary();
        }
        SafeTensorsWriter.Write(file, edit(tensors).ToList(), meta);
    }

    static ArrayWeightTensor Extra(string name) => ArrayWeightTensor.FromFloat32(name, [2], [1f, 2f], DType.F16);

    [Fact]
    public void MissingAndUnexpectedKeysAreOneErrorWithCountsAndNames()
    {
        using var tmp = new TempDir();
        string d = Fixtures.WriteTiny(tmp, "d", CheckpointLayout.DiffusersFolder, 1);
        string file = Path.Combine(d, "unet", "diffusion_pytorch_model.safetensors");
        string[] dropped = ["conv_in.bias", "mid_block.attentions.0.proj_out.weight", "up_blocks.1.resnets.2.conv2.weight"];
        Rewrite(file, ts => ts.Where(t => !dropped.Contains(t.Name)).Append(Extra("bogus.a")).Append(Extra("bogus.b")));
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(d));
        Assert.Contains("unet", e.Message);
        Assert.Contains("3 missing and 2 unexpected", e.Message);
        foreach (var name in dropped.Append("bogus.a").Append("bogus.b")) Assert.Contains(name, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void OnlyTheFirstFewNamesAreListed()
    {
        using var tmp = new TempDir();
        string d = Fixtures.WriteTiny(tmp, "d", CheckpointLayout.DiffusersFolder, 1);
        Rewrite(Path.Combine(d, "vae", "diffusion_pytorch_model.safetensors"), ts => ts.Where(t => !t.Name.StartsWith("decoder.", StringComparison.Ordinal)));
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(d));
        Assert.Matches(@"vae .*: \d+ missing and 0 unexpected tensors", e.Message);
        Assert.Contains("more)", e.Message);
        Assert.Contains("unexpected: none", e.Message);
    }

    [Fact]
    public void ShapeContradictingTheConfigNamesKeyExpectedAndFound()
    {
        using var tmp = new TempDir();
        string d = Fixtures.WriteTiny(tmp, "d", CheckpointLayout.DiffusersFolder, 1);
        string cfgPath = Path.Combine(d, "unet", "config.json");
        var cfg = JsonNode.Parse(File.ReadAllText(cfgPath))!.AsObject();
        cfg["cross_attention_dim"] = 48;
        File.WriteAllText(cfgPath, cfg.ToJsonString());
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(d));
        Assert.Contains("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight", e.Message);
        Assert.Contains("has shape [64, 64], the config needs [64, 48]", e.Message);
    }

    [Fact]
    public void PositionIdsBufferIsTolerated()
    {
        using var tmp = new TempDir();
        string d = Fixtures.WriteTiny(tmp, "d", CheckpointLayout.DiffusersFolder, 1);
        Rewrite(Path.Combine(d, "text_encoder", "model.safetensors"),
            ts => ts.Append(new ArrayWeightTensor(ClipTextSchema.PositionIdsBuffer, DType.I64, [1, 77], new byte[77 * 8])));
        using var ckpt = Checkpoint.Open(d);
        Assert.False(ckpt.TextEncoder.Weights.ContainsKey(ClipTextSchema.PositionIdsBuffer));
    }

    [Fact]
    public void SingleFileMissingAndUnexpectedUseLdmNames()
    {
        using var tmp = new TempDir();
        string s = Fixtures.WriteTiny(tmp, "s", CheckpointLayout.SingleFile, 1);
        string file = Path.Combine(s, TinyCheckpoint.SingleFileName);
        string gone = LdmKeyMap.VaePrefix + "decoder.mid.attn_1.proj_out.bias";
        Rewrite(file, ts => ts.Where(t => t.Name != gone).Append(Extra(LdmKeyMap.VaePrefix + "decoder.extra")));
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(file));
        Assert.Contains("vae", e.Message);
        Assert.Contains("1 missing and 1 unexpected", e.Message);
        Assert.Contains(gone, e.Message);
        Assert.Contains("first_stage_model.decoder.extra", e.Message);
    }

    [Fact]
    public void SingleFileStrayTopLevelKeyIsUnexpected()
    {
        using var tmp = new TempDir();
        string s = Fixtures.WriteTiny(tmp, "s", CheckpointLayout.SingleFile, 1);
        string file = Path.Combine(s, TinyCheckpoint.SingleFileName);
        Rewrite(file, ts => ts.Append(Extra("cond_stage_model.something")).Append(Extra("denoiser.sigmas")));
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(file));
        Assert.Contains("0 missing and 1 unexpected", e.Message);
        Assert.Contains("cond_stage_model.something", e.Message);
        Assert.DoesNotContain("denoiser", e.Message);
    }

    [Fact]
    public void SingleFileShapeErrorNamesLdmKey()
    {
        using var tmp = new TempDir();
        string s = Fixtures.WriteTiny(tmp, "s", CheckpointLayout.SingleFile, 1);
        string file = Path.Combine(s, TinyCheckpoint.SingleFileName);
        string key = LdmKeyMap.ClipGPrefix + "transformer.resblocks.0.attn.in_proj_bias";
        Rewrite(file, ts => ts.Select(t => t.Name == key ? ArrayWeightTensor.FromFloat32(key, [95], new float[95], DType.F16) : t));
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(file));
        Assert.Contains($"'{key}' has shape [95], the config needs [96]", e.Message);
    }

    [Fact]
    public void SingleFileWithoutMetadataUsesShapesAndSdxlHeadDim()
    {
        // No layerfusion.configs: dimensions come from shapes, head counts from 64-wide heads, which
        // the tiny widths (32, 64) cannot satisfy for the UNet, so the error says what to add.
        using var tmp = new TempDir();
        string s = Fixtures.WriteTiny(tmp, "s", CheckpointLayout.SingleFile, 1);
        string file = Path.Combine(s, TinyCheckpoint.SingleFileName);
        List<WeightTensor> tensors;
        using (var f = SafeTensorsFile.Open(file)) tensors = Copy(f);
        SafeTensorsWriter.Write(file, tensors);
        var e = Assert.Throws<UserInputException>(() => Checkpoint.Open(file));
        Assert.Contains("unknown", e.Message);
        Assert.Contains(Checkpoint.SingleFileConfigsKey, e.Message);
    }

    [Fact]
    public void SingleFileWithoutMetadataInfersEveryDimensionFromShapes()
    {
        // 64-wide heads and 32 norm groups (SDXL's, which shapes cannot show) hold for these widths,
        // so with no metadata the inferred configs must equal the ones written.
        var c = TinyCheckpoint.DefaultConfigs();
        c.Unet["block_out_channels"] = new JsonArray(64, 128);
        c.Unet["attention_head_dim"] = new JsonArray(1, 2);
        c.Unet["transformer_layers_per_block"] = new JsonArray(1, 3);
        c.Unet["norm_num_groups"] = 32;
        c.Unet["sample_size"] = 128;
        c.Unet["cross_attention_dim"] = 128;
        c.Unet["addition_time_embed_dim"] = 4;
        c.Unet["projection_class_embeddings_input_dim"] = 48 + 6 * 4;
        c.Vae["norm_num_groups"] = 32;
        c.Vae["sample_size"] = 1024;
        c.Vae["layers_per_block"] = 2;
        foreach (var te in new[] { c.TextEncoder, c.TextEncoder2 })
        {
            te["hidden_size"] = 64;
            te["num_attention_heads"] = 1;
            te["intermediate_size"] = 96;
            te["num_hidden_layers"] = 3;
        }
        c.TextEncoder["projection_dim"] = 768; // CLIPTextModel has no projection; SDXL's config says 768
        c.TextEncoder2["projection_dim"] = 48;
        using var tmp = new TempDir();
        TinyCheckpoint.Write(tmp.Sub("s"), CheckpointLayout.SingleFile, 4, DType.F16, c);
        string file = Path.Combine(tmp.Sub("s"), TinyCheckpoint.SingleFileName);
        List<WeightTensor> tensors;
        using (var f = SafeTensorsFile.Open(file)) tensors = Copy(f);
        SafeTensorsWriter.Write(file, tensors);
        using var ckpt = Checkpoint.Open(file);
        static string J(object o) => System.Text.Json.JsonSerializer.Serialize(o, o.GetType());
        Assert.Equal(J(c.UnetConfig), J(ckpt.Unet.Config));
        Assert.Equal(J(c.VaeConfig), J(ckpt.Vae.Config));
        Assert.Equal(J(c.TextEncoderConfig), J(ckpt.TextEncoder.Config));
        Assert.Equal(J(c.TextEncoder2Config), J(ckpt.TextEncoder2.Config));
    }

    [Fact]
    public void MissingComponentAndBadPathsAreClear()
    {
        using var tmp = new TempDir();
        string d = Fixtures.WriteTiny(tmp, "d", CheckpointLayout.DiffusersFolder, 1);
        Directory.Delete(Path.Combine(d, "tokenizer_2"), true);
        Assert.Contains("tokenizer_2", Assert.Throws<UserInputException>(() => Checkpoint.Open(d)).Message);
        Directory.Delete(Path.Combine(d, "vae"), true);
        Assert.Contains("vae: component folder", Assert.Throws<UserInputException>(() => Checkpoint.Open(d)).Message);
        Assert.Contains("no such file or folder", Assert.Throws<UserInputException>(() => Checkpoint.Open(tmp.Sub("nothing"))).Message);
        Directory.CreateDirectory(tmp.Sub("empty"));
        Assert.Contains("not a checkpoint", Assert.Throws<UserInputException>(() => Checkpoint.Open(tmp.Sub("empty"))).Message);
    }
}
