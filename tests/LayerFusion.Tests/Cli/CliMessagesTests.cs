using LayerFusion.Cli;
using LayerFusion.Cli.Commands;
using LayerFusion.Cli.Shared;
using LayerFusion.Core.Schedulers;
using LayerFusion.Tests.Checkpoints;
using LayerFusion.Tests.Pipelines;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.Cli;

/// <summary>Issue 13 items 1 and 8, issue 12 items 1 and 6: messages that say what is wrong, before any work.</summary>
public sealed class CliMessagesTests(TinySdxl tiny) : IClassFixture<TinySdxl>, IDisposable
{
    readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    static (int Code, string Out, string Err) Run(params string[] args) => SdxlCliTests.Run(args);

    static string OneError((int Code, string Out, string Err) r, string context)
    {
        Assert.True(r.Code == 2, $"{context}: exit {r.Code}: {r.Err}");
        var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", line);
        Assert.DoesNotContain("   at ", r.Err);
        return line;
    }

    [Theory]
    [InlineData("--width", "abc", "--width must be an integer, got 'abc'")]
    [InlineData("--height", "1e3", "--height must be an integer, got '1e3'")]
    [InlineData("--steps", "", "--steps")]
    [InlineData("--cfg-scale", "inf", "--cfg-scale must be a finite number, got 'inf'")]
    [InlineData("--cfg-scale", "1e39", "--cfg-scale must be a finite number, got '1e39'")]
    [InlineData("--cfg-scale", "NaN", "--cfg-scale must be a finite number, got 'NaN'")]
    [InlineData("--cfg", "-Infinity", "--cfg-scale must be a finite number, got '-Infinity'")]
    [InlineData("--cfg-scale", "x", "--cfg-scale must be a finite number, got 'x'")]
    [InlineData("--seed", "1.5", "--seed must be an integer")]
    [InlineData("-b", "many", "--batch-count must be an integer, got 'many'")]
    public void NumberErrorsNameTheOptionAndNeverADotNetType(string option, string value, string expect)
    {
        var line = OneError(Run("sdxl", "-m", tiny.Default, "-p", "x", option, value, "-o", _tmp.Sub("x.png")), $"{option} {value}");
        Assert.Contains(expect, line);
        Assert.DoesNotContain("System.", line);
        Assert.DoesNotContain("`1", line);
    }

    [Fact]
    public void GenerateNumberErrorsAreTheSameKind()
    {
        foreach (var (opt, val) in new[] { ("--mask-boundary", "inf"), ("--d", "1e39"), ("--cfg-scale", "nan") })
        {
            var line = OneError(Run("generate", "-m", tiny.Default, "--fg", "a", "--bg", "b", opt, val, "-o", _tmp.Sub("o")), opt);
            Assert.Contains("must be a finite number", line);
        }
        var compose = OneError(Run("compose", "--fg", "a.png", "--bg", "b.png", "--dx", "inf", "--out", _tmp.Sub("c.png")), "compose --dx inf");
        Assert.Contains("--dx must be a finite number", compose);
    }

    [Fact]
    public void HelpListsSamplerChoicesFromTheRegistryAndMarksRequiredOptions()
    {
        foreach (var cmd in new[] { "sdxl", "generate" })
        {
            var o = new StringWriter();
            Assert.Equal(0, Program.Run([cmd, "--help"], o, new StringWriter()));
            var help = o.ToString();
            foreach (var name in Samplers.Names) Assert.Contains(name, help);
            foreach (var alias in new[] { "--sampling-method", "--cfg-scale", "-s, --seed", "-b, --batch-count", "-W, --width", "-H, --height", "-o, --out", "-n, --negative", "--negative-prompt" })
                Assert.Contains(alias, help);
            Assert.Contains("REQUIRED", help, StringComparison.OrdinalIgnoreCase);
            Assert.Contains("diffusers' SDXL default", help); // one default CFG, said where it comes from
        }
        var g = new StringWriter();
        Program.Run(["generate", "--help"], g, new StringWriter());
        Assert.Contains("--mask-boundary, --d", g.ToString().Replace("--d, --mask-boundary", "--mask-boundary, --d"));
        Assert.Contains("--psd", g.ToString());
        var p = new StringWriter();
        Program.Run(["sdxl", "--help"], p, new StringWriter());
        Assert.Contains("-p, --prompt", p.ToString());
    }

    [Fact]
    public void BothCommandsShareOneDefaultCfg()
    {
        Assert.Equal(5f, CliOptions.DefaultCfg);
        // library callers get the same default as the CLI, so a request built in code and a command line agree
        Assert.Equal(CliOptions.DefaultCfg, new LayerFusion.Core.Pipelines.SdxlRequest { Prompt = "x" }.GuidanceScale);
        Assert.Equal(CliOptions.DefaultCfg, new LayerFusion.Core.Fusion.LayerFusionRequest { Foreground = "x", Background = "y" }.GuidanceScale);
        var r = Run("sdxl", "-m", tiny.Default, "-p", "x", "--steps", "1", "-W", "32", "-H", "32", "-o", _tmp.Sub("cfg.png"));
        Assert.True(r.Code == 0, r.Err);
        var text = LayerFusion.Core.Imaging.PngFile.ReadText(File.ReadAllBytes(_tmp.Sub("cfg.png")), "cfg").ToDictionary(k => k.Key, k => k.Value);
        Assert.Equal("5", text["layerfusion:cfg"]);
    }

    [Fact]
    public void FilesWhereFoldersAreExpectedAndTheReverseSaySo()
    {
        File.WriteAllText(_tmp.Sub("plain.txt"), "x");
        Directory.CreateDirectory(_tmp.Sub("dir"));
        var cases = new (string[] Args, string Expect)[]
        {
            (["sdxl", "-m", tiny.Default, "--prompt-file", _tmp.Sub("dir"), "-o", _tmp.Sub("a.png")], "is a folder, not a text file"),
            (["sdxl", "-m", tiny.Default, "-p", "x", "-o", _tmp.Sub("dir")], "is a folder; give a .png file name"),
            (["generate", "-m", tiny.Default, "--fg", "a", "--bg", "b", "-o", _tmp.Sub("plain.txt")], "is a file, not a folder"),
            (["make-tiny", _tmp.Sub("plain.txt")], "is a file, not a folder"),
            (["run", "unet", "-m", tiny.Default, "--inputs", _tmp.Sub("dir"), "--out", _tmp.Sub("o.safetensors")], "is a folder, not a .safetensors file"),
            (["sdxl", "-m", _tmp.Sub("plain.txt"), "-p", "x", "-o", _tmp.Sub("a.png")], "is a text file, not an SDXL checkpoint"),
            (["sdxl", "-m", _tmp.Sub("missing"), "-p", "x", "-o", _tmp.Sub("a.png")], "--model '"),
            (["sdxl", "-m", "", "-p", "x", "-o", _tmp.Sub("a.png")], "--model is empty"),
        };
        foreach (var (args, expect) in cases)
            Assert.Contains(expect, OneError(Run(args), string.Join(' ', args)));
    }

    [Fact]
    public async Task DevicesFifosAndBigFilesBehindLinksAreRefusedWithoutHanging()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("Linux devices and FIFOs");
        File.CreateSymbolicLink(_tmp.Sub("zero-link.txt"), "/dev/zero");
        File.WriteAllBytes(_tmp.Sub("big.txt"), new byte[(1 << 20) + 1]);
        File.CreateSymbolicLink(_tmp.Sub("big-link.txt"), _tmp.Sub("big.txt"));
        using (var mk = System.Diagnostics.Process.Start("mkfifo", _tmp.Sub("fifo.safetensors"))) mk.WaitForExit();
        Assert.True(File.Exists(_tmp.Sub("fifo.safetensors")));
        var cases = new (string[] Args, string Expect)[]
        {
            (["sdxl", "-m", tiny.Default, "--prompt-file", _tmp.Sub("zero-link.txt"), "-o", _tmp.Sub("a.png")], "--prompt-file"),
            (["sdxl", "-m", tiny.Default, "--prompt-file", _tmp.Sub("big-link.txt"), "-o", _tmp.Sub("a.png")], "1048576"),
            (["sdxl", "-m", _tmp.Sub("fifo.safetensors"), "-p", "x", "-o", _tmp.Sub("a.png")], "fifo.safetensors"),
            (["inspect", _tmp.Sub("fifo.safetensors")], "fifo.safetensors"),
        };
        foreach (var (args, expect) in cases)
        {
            var task = Task.Run(() => Run(args), TestContext.Current.CancellationToken);
            var r = await task.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken); // throws TimeoutException on a hang
            Assert.Contains(expect, OneError(r, string.Join(' ', args)));
        }
    }

    [Fact]
    public void AMissingModelIsReportedAsTheModelNotAsALayerDiffuseFile()
    {
        var line = OneError(Run("generate", "-m", _tmp.Sub("no-model"), "--fg", "a", "--bg", "b", "-o", _tmp.Sub("o")), "missing model");
        Assert.Contains("--model", line);
        Assert.Contains("no such file or folder", line);
        Assert.DoesNotContain("LayerDiffuse", line);
    }

    [Fact]
    public void LayerDiffuseTakesAFolderTheFilesThemselvesOrTheForgeNames()
    {
        string model = _tmp.Sub("m");
        Assert.Equal(0, Run("make-tiny", model).Code);
        string[] common = ["generate", "-m", model, "--fg", "a", "--bg", "b", "--steps", "1", "-W", "32", "-H", "32", "--no-augment", "-s", "2"];
        var byFolder = Run([.. common, "--layerdiffuse", model, "-o", _tmp.Sub("o1")]);
        Assert.True(byFolder.Code == 0, byFolder.Err);
        var byFiles = Run([.. common, "--layerdiffuse", Path.Combine(model, LayerDiffuseTiny.TransparentDecoderFileName),
            "--layerdiffuse", Path.Combine(model, LayerDiffuseTiny.DenseAttentionFileName), "-o", _tmp.Sub("o2")]);
        Assert.True(byFiles.Code == 0, byFiles.Err);
        // the Forge/ComfyUI extensions' names, in a folder of their own
        string forge = _tmp.Sub("forge");
        Directory.CreateDirectory(forge);
        File.Copy(Path.Combine(model, LayerDiffuseTiny.LoraAttentionFileName), Path.Combine(forge, "layer_xl_transparent_attn.safetensors"));
        File.Copy(Path.Combine(model, LayerDiffuseTiny.TransparentDecoderFileName), Path.Combine(forge, "vae_transparent_decoder.safetensors"));
        var byForge = Run([.. common, "--layerdiffuse", forge, "-o", _tmp.Sub("o3")]);
        Assert.True(byForge.Code == 0, byForge.Err);
        string Fg(string o) => Path.Combine(_tmp.Sub(o), "00000-2", "fg.png");
        Assert.Equal(File.ReadAllBytes(Fg("o1")), File.ReadAllBytes(Fg("o2")));
        Assert.True(File.Exists(Fg("o3")));

        File.WriteAllBytes(_tmp.Sub("pic.png"), File.ReadAllBytes(Fg("o1")));
        Assert.Contains("is a PNG image", OneError(Run([.. common, "--layerdiffuse", _tmp.Sub("pic.png"), "-o", _tmp.Sub("o4")]), "png as ld"));
        Assert.Contains("no LayerDiffuse transparent decoder",
            OneError(Run([.. common, "--layerdiffuse", Path.Combine(model, LayerDiffuseTiny.DenseAttentionFileName), "-o", _tmp.Sub("o5")]), "attn only"));
        Assert.Contains("no such file or folder", OneError(Run([.. common, "--layerdiffuse", _tmp.Sub("nowhere"), "-o", _tmp.Sub("o6")]), "missing ld"));
    }

    [Fact]
    public void InspectSaysWhatANonSafetensorsFileIs()
    {
        string png = _tmp.Sub("i.png");
        Assert.Equal(0, Run("sdxl", "-m", tiny.Default, "-p", "an owl", "--steps", "1", "-W", "32", "-H", "32", "-o", png).Code);
        var r = Run("inspect", png);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("kind: png-image", r.Out);
        Assert.Contains("32x32, RGB", r.Out);
        Assert.Contains("an owl", r.Out);
        File.WriteAllBytes(_tmp.Sub("x.jpg"), [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]);
        File.WriteAllBytes(_tmp.Sub("x.ckpt"), [(byte)'P', (byte)'K', 3, 4, 0, 0]);
        File.WriteAllBytes(_tmp.Sub("x.gguf"), "GGUF\u0003\0\0\0"u8.ToArray());
        File.WriteAllBytes(_tmp.Sub("empty.safetensors"), []);
        foreach (var (file, expect) in new[] { ("x.jpg", "a JPEG image"), ("x.ckpt", "a zip archive"), ("x.gguf", "a GGUF file"), ("empty.safetensors", "an empty file") })
            Assert.Contains(expect, OneError(Run("inspect", _tmp.Sub(file)), file));
    }

    [Fact]
    public void RunRefusesZeroSizedAndOversizedInputsBeforeWork()
    {
        string zero = _tmp.Sub("zero.safetensors");
        SafeTensorsWriter.Write(zero,
        [
            ArrayWeightTensor.FromFloat32("sample", [1, 4, 0, 0], []),
            ArrayWeightTensor.FromFloat32("timestep", [], [1f]),
            ArrayWeightTensor.FromFloat32("encoder_hidden_states", [1, 77, 64], new float[77 * 64]),
        ]);
        Assert.Contains("every dimension must be at least 1",
            OneError(Run("run", "unet", "-m", tiny.Default, "--inputs", zero, "--out", _tmp.Sub("z.safetensors")), "zero sample"));
        string ids = _tmp.Sub("ids.safetensors");
        SafeTensorsWriter.Write(ids, [new ArrayWeightTensor("input_ids", DType.I64, [1, 0], [])]);
        Assert.Contains("B, T >= 1", OneError(Run("run", "text-encode", "-m", tiny.Default, "--inputs", ids, "--out", _tmp.Sub("t.safetensors")), "zero ids"));
        string latent = _tmp.Sub("latent.safetensors");
        SafeTensorsWriter.Write(latent, [ArrayWeightTensor.FromFloat32("latent", [1, 0, 4, 4], [])]);
        Assert.Contains("at least 1", OneError(Run("run", "vae-decode", "-m", tiny.Default, "--inputs", latent, "--out", _tmp.Sub("v.safetensors")), "zero latent"));
        Assert.False(File.Exists(_tmp.Sub("z.safetensors")));

        // SDXL's UNet on a 16384x16384 latent: refused with its numbers, not an overflow minutes in
        var sdxl = UNetConfig.Read(ConfigJson.Reader(SdxlDefaults.UNet(), "sdxl"));
        var e = Assert.Throws<UserInputException>(() => RunSizes.CheckUnet([1, 4, 16384, 16384], sdxl));
        Assert.Contains("more than one tensor can hold", e.Message);
        RunSizes.CheckUnet([2, 4, 128, 128], sdxl); // 1024x1024 at CFG batch 2 fits
        Assert.Throws<UserInputException>(() => RunSizes.CheckDecoder("vae-decode", [64, 4, 128, 128], 8, 512));
    }
}
