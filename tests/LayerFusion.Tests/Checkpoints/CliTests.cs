using System.Text.Json.Nodes;
using LayerFusion.Cli;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.Tiny;

namespace LayerFusion.Tests.Checkpoints;

public class CliTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void MakeTinyAndInspectBothLayouts()
    {
        using var tmp = new TempDir();
        Assert.Equal(0, Run("make-tiny", tmp.Sub("d"), "--seed", "3").Code);
        Assert.Equal(0, Run("make-tiny", tmp.Sub("s"), "--layout", "single-file", "--seed", "3").Code);

        var d = Run("inspect", tmp.Sub("d"));
        Assert.Equal(0, d.Code);
        Assert.Contains("layout: diffusers", d.Out);
        Assert.Contains("unet (UNet2DConditionModel)", d.Out);
        Assert.Contains("tokenizer_2:", d.Out);
        var s = Run("inspect", tmp.Sub("s"));
        Assert.Equal(0, s.Code);
        Assert.Contains("layout: single-file", s.Out);
        // Same seed: the same component lines (counts, params, bytes, dtypes, config summary).
        static IEnumerable<string> Lines(string o) => o.Split('\n').Where(l => l.StartsWith("unet") || l.StartsWith("vae") || l.StartsWith("text_encoder") || l.StartsWith("  ") || l.StartsWith("total"));
        Assert.Equal(Lines(d.Out), Lines(s.Out));

        foreach (var dir in new[] { tmp.Sub("d"), tmp.Sub("s") })
        {
            var j = Run("inspect", dir, "--json");
            Assert.Equal(0, j.Code);
            var report = JsonNode.Parse(j.Out)!.AsObject();
            Assert.Equal("sdxl-checkpoint", report["kind"]!.GetValue<string>());
            var comps = report["components"]!.AsArray();
            Assert.Equal(["unet", "vae", "text_encoder", "text_encoder_2"], comps.Select(c => c!["name"]!.GetValue<string>()));
            long total = comps.Sum(c => c!["parameters"]!.GetValue<long>());
            Assert.Equal(total, report["total"]!["parameters"]!.GetValue<long>());
            Assert.True(total > 0);
            Assert.Equal(32, comps[2]!["config"]!["hidden_size"]!.GetValue<int>());
        }
    }

    [Fact]
    public void MakeTinyCliIsDeterministic()
    {
        using var tmp = new TempDir();
        Run("make-tiny", tmp.Sub("a"), "--layout", "single-file", "--seed", "8");
        Run("make-tiny", tmp.Sub("b"), "--layout", "single-file", "--seed", "8");
        foreach (var f in Directory.GetFiles(tmp.Sub("a")))
            Assert.Equal(File.ReadAllBytes(f), File.ReadAllBytes(Path.Combine(tmp.Sub("b"), Path.GetFileName(f))));
    }

    [Fact]
    public void InspectLayerDiffuseFiles()
    {
        using var tmp = new TempDir();
        Assert.Equal(0, Run("make-tiny", tmp.Sub("d"), "--seed", "2").Code);
        var dense = Run("inspect", Path.Combine(tmp.Sub("d"), LayerDiffuseTiny.DenseAttentionFileName), "--json");
        Assert.Equal(0, dense.Code);
        var dj = JsonNode.Parse(dense.Out)!;
        Assert.Equal("layerdiffuse-attention", dj["kind"]!.GetValue<string>());
        Assert.StartsWith("dense", dj["format"]!.GetValue<string>());
        var lora = Run("inspect", Path.Combine(tmp.Sub("d"), LayerDiffuseTiny.LoraAttentionFileName), "--json");
        Assert.Equal(0, lora.Code);
        var lj = JsonNode.Parse(lora.Out)!;
        Assert.StartsWith("lora", lj["format"]!.GetValue<string>());
        Assert.Equal(dj["offsets"]!.GetValue<int>(), lj["offsets"]!.GetValue<int>());
        var plain = Run("inspect", Path.Combine(tmp.Sub("d"), "vae", "diffusion_pytorch_model.safetensors"), "--json");
        Assert.Equal(0, plain.Code);
        var pj = JsonNode.Parse(plain.Out)!;
        Assert.Equal("safetensors", pj["kind"]!.GetValue<string>());
        Assert.Equal(124, pj["tensors"]!["tensors"]!.GetValue<int>());
        var dec = Run("inspect", Path.Combine(tmp.Sub("d"), LayerDiffuseTiny.TransparentDecoderFileName));
        Assert.Equal(0, dec.Code);
        Assert.Contains("kind: layerdiffuse-transparent-decoder", dec.Out);
        Assert.Contains("UNet1024", dec.Out);
    }

    [Fact]
    public void BadPathsAndFilesExitTwoWithOneLine()
    {
        using var tmp = new TempDir();
        var missing = Run("inspect", tmp.Sub("nope"));
        Assert.Equal(2, missing.Code);
        Assert.Single(missing.Err.TrimEnd('\n').Split('\n'));
        Assert.Contains("no such file or folder", missing.Err);

        File.WriteAllText(tmp.Sub("junk.safetensors"), "not a safetensors file at all");
        var junk = Run("inspect", tmp.Sub("junk.safetensors"));
        Assert.Equal(2, junk.Code);
        Assert.Single(junk.Err.TrimEnd('\n').Split('\n'));
        Assert.Contains("junk.safetensors", junk.Err);

        Directory.CreateDirectory(tmp.Sub("empty"));
        var empty = Run("inspect", tmp.Sub("empty"));
        Assert.Equal(2, empty.Code);
        Assert.Contains("not a checkpoint", empty.Err);

        var layout = Run("make-tiny", tmp.Sub("x"), "--layout", "zip");
        Assert.Equal(2, layout.Code);
        Assert.Contains("--layout", layout.Err);
    }

    [Fact]
    public void SingleFileNameIsStable() => Assert.Equal("sdxl_tiny.safetensors", TinyCheckpoint.SingleFileName);
}
