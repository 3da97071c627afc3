using LayerFusion.Cli;
using LayerFusion.Core.Imaging;
using LayerFusion.Tests.Pipelines;

namespace LayerFusion.Tests.Cli;

public sealed class SdxlCliTests(TinySdxl tiny) : IClassFixture<TinySdxl>
{
    /// <summary>Runs the CLI in-process. Commands that take --backend run on the CPU unless the test
    /// names a backend: the automatic choice adds a note line where no GPU is usable (tested separately).</summary>
    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        if (args.Length > 0 && args[0] is "sdxl" or "run" or "generate" && !args.Contains("--backend"))
            args = [.. args, "--backend", "cpu"];
        return RunExactly(args);
    }

    internal static (int Code, string Out, string Err) RunExactly(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static string[] Lines(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    string Out(string name) => Path.Combine(tiny.Root, name);

    [Fact]
    public void WritesAValidPngOfTheRequestedSizeByteIdenticalAcrossRuns()
    {
        foreach (var (w, h) in new[] { (64, 48), (72, 56) })
        {
            string a = Out($"a{w}.png"), b = Out($"b{w}.png");
            string[] args = ["sdxl", "--model", tiny.Default, "--prompt", "a lighthouse at dusk", "--negative", "fog",
                "--steps", "2", "--cfg", "4.5", "--seed", "123", "--width", $"{w}", "--height", $"{h}"];
            var r1 = Run([.. args, "--out", a]);
            Assert.True(r1.Code == 0, r1.Err);
            Assert.Equal("", r1.Err); // redirected: no progress line
            var r2 = Run([.. args, "--out", b]);
            Assert.Equal(0, r2.Code);
            var bytes = File.ReadAllBytes(a);
            Assert.Equal(bytes, File.ReadAllBytes(b));

            var image = PngFile.Read(a);
            Assert.Equal((w, h, 3), (image.Width, image.Height, image.Channels));
            Assert.Contains(image.Pixels, p => p != image.Pixels[0]);
            var text = PngFile.ReadText(bytes, a).ToDictionary(kv => kv.Key, kv => kv.Value);
            Assert.Equal("a lighthouse at dusk", text["layerfusion:prompt"]);
            Assert.Equal("fog", text["layerfusion:negative_prompt"]);
            Assert.Equal("123", text["layerfusion:seed"]);
            Assert.Equal("2", text["layerfusion:steps"]);
            Assert.Equal("4.5", text["layerfusion:cfg"]);
            Assert.Equal("euler", text["layerfusion:sampler"]);
            Assert.Equal($"{w}x{h}", text["layerfusion:size"]);
            Assert.Equal(Path.GetFileName(tiny.Default), text["layerfusion:model"]); // the name, never the local path
            Assert.DoesNotContain("prompt", text.Keys); // ComfyUI's workflow key
            Assert.DoesNotContain(Path.GetFullPath(tiny.Default), string.Join("\n", text.Values));
        }
        // another seed, other bytes; the sampler switch is honoured
        var other = Run("sdxl", "--model", tiny.Default, "--prompt", "a lighthouse at dusk", "--steps", "2", "--seed", "124",
            "--width", "64", "--height", "48", "--sampler", "dpmpp-2m-karras", "--out", Out("c.png"));
        Assert.Equal(0, other.Code);
        Assert.NotEqual(File.ReadAllBytes(Out("a64.png")), File.ReadAllBytes(Out("c.png")));
        Assert.Equal("dpmpp-2m-karras", PngFile.ReadText(File.ReadAllBytes(Out("c.png")), "c").Single(kv => kv.Key == "layerfusion:sampler").Value);
        Assert.Empty(Directory.GetFiles(tiny.Root, "*.tmp")); // atomic writes leave no temporaries
        Assert.Empty(Directory.GetFileSystemEntries(tiny.Root, ".lftmp-*"));
    }

    [Fact]
    public void PromptFileGivesTheSameImageAsThePromptItself()
    {
        File.WriteAllText(Out("prompt.txt"), "a lighthouse at dusk\n");
        var a = Run("sdxl", "--model", tiny.Default, "--prompt-file", Out("prompt.txt"), "--steps", "1", "--width", "32", "--height", "32", "--out", Out("pf.png"));
        var b = Run("sdxl", "--model", tiny.Default, "--prompt", "a lighthouse at dusk", "--steps", "1", "--width", "32", "--height", "32", "--out", Out("pp.png"));
        Assert.Equal(0, a.Code);
        Assert.Equal(0, b.Code);
        Assert.Equal(PngFile.Read(Out("pf.png")).Pixels, PngFile.Read(Out("pp.png")).Pixels);
    }

    [Fact]
    public void ErrorPathsExitTwoWithOneLineAndNoStackTrace()
    {
        string broken = Path.Combine(tiny.Root, "no-vae");
        if (!Directory.Exists(broken))
        {
            Directory.CreateDirectory(broken);
            foreach (var f in Directory.GetFiles(tiny.Default)) File.Copy(f, Path.Combine(broken, Path.GetFileName(f)));
            foreach (var d in new[] { "unet", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler" })
            {
                Directory.CreateDirectory(Path.Combine(broken, d));
                foreach (var f in Directory.GetFiles(Path.Combine(tiny.Default, d))) File.Copy(f, Path.Combine(broken, d, Path.GetFileName(f)));
            }
        }
        string png = Out("err.png");
        File.WriteAllBytes(Out("not-utf8.txt"), [0x61, 0x20, 0xff, 0xfe, 0xfa, 0x20, 0x62]);
        var cases = new (string[] Args, string Expect)[]
        {
            (["sdxl", "--model", tiny.Default, "--prompt", "x", "--width", "70", "--out", png], "multiple of 8"),
            (["sdxl", "--model", tiny.Default, "--prompt", "x", "--height", "0", "--out", png], "multiple of 8"),
            (["sdxl", "--model", broken, "--prompt", "x", "--out", png], "vae"),
            (["sdxl", "--model", Out("does-not-exist"), "--prompt", "x", "--out", png], "no such file or folder"),
            (["sdxl", "--model", tiny.Default, "--prompt-file", Out("missing.txt"), "--out", png], "--prompt-file"),
            (["sdxl", "--model", tiny.Default, "--prompt-file", tiny.Root, "--out", png], "is a folder"),
            (["sdxl", "--model", tiny.Default, "--prompt-file", Out("not-utf8.txt"), "--out", png], "not UTF-8 text"),
            (["sdxl", "--model", tiny.Default, "--prompt", "x", "--sampler", "heun", "--out", png], "unknown sampler 'heun'"),
            (["sdxl", "--model", tiny.Default, "--prompt", "x", "--backend", "tpu", "--out", png], "--backend"),
            (["sdxl", "--model", tiny.Default, "--out", png], "prompt"),
            (["sdxl", "--model", tiny.Default, "--prompt", "x", "--out", Path.Combine(tiny.Root, "nope", "x.png")], "does not exist"),
            (["sdxl", "--model", tiny.Default, "--prompt", "x", "--out", ""], "--out must name a .png file"),
            (["sdxl", "--model", tiny.Default, "--prompt", "a\0b", "--steps", "1", "--out", png], "NUL"),
            (["sdxl", "--model", tiny.Default, "--prompt", "x", "--negative-prompt", "\0", "--out", png], "NUL"),
            (["sdxl", "--model", tiny.Default, "--prompt", "x", "--width", "abc", "--out", png], "--width must be an integer, got 'abc'"),
            (["sdxl", "--model", tiny.Default, "--prompt", "x", "--steps", "1.5", "--out", png], "--steps must be an integer"),
            (["sdxl", "--model", tiny.Default, "--prompt", "x", "--seed", "12345678901234567890123", "--out", png], "--seed must be an integer"),
            (["sdxl", "--model", tiny.Default, "--prompt", "x", "--seed", $"{long.MaxValue}", "-b", "2", "--out", png], "runs past the largest seed"),
            (["sdxl", "--model", tiny.Default, "--prompt", "x", "-b", "0", "--out", png], "--batch-count must be 1..10000"),
            (["sdxl", "--model", Path.Combine(tiny.Default, "model_index.json"), "--prompt", "x", "--out", png], "is a JSON file, not an SDXL checkpoint"),
        };
        foreach (var (args, expect) in cases)
        {
            var r = Run(args);
            Assert.True(r.Code == 2, $"{string.Join(' ', args)} -> {r.Code}: {r.Err}");
            var lines = Lines(r.Err);
            Assert.Single(lines);
            Assert.StartsWith("error: ", lines[0]);
            Assert.Contains(expect, lines[0]);
            Assert.DoesNotContain("   at ", r.Err);
            Assert.False(File.Exists(png));
        }
    }

    [Fact]
    public void PromptPast77TokensIsTruncatedWithAWarningLineOnStderr()
    {
        string prompt = string.Join(" ", Enumerable.Repeat("a lighthouse at dusk", 40));
        string[] args = ["sdxl", "--model", tiny.Default, "--steps", "1", "--width", "32", "--height", "32"];
        var r = Run([.. args, "--prompt", prompt, "--out", Out("long.png")]);
        Assert.True(r.Code == 0, r.Err);
        var line = Assert.Single(Lines(r.Err));
        Assert.StartsWith("warning: ", line);
        Assert.Contains("truncated", line);
        Assert.Contains("77 tokens", line);
        Assert.True(File.Exists(Out("long.png")));

        // the same for the negative prompt, and a prompt that fits says nothing
        var n = Run([.. args, "--prompt", "a lighthouse", "--negative", prompt, "--out", Out("longneg.png")]);
        Assert.True(n.Code == 0, n.Err);
        Assert.StartsWith("warning: ", Assert.Single(Lines(n.Err)));
        var fits = Run([.. args, "--prompt", "a lighthouse", "--out", Out("short.png")]);
        Assert.Equal(0, fits.Code);
        Assert.Equal("", fits.Err);
    }

    [Fact]
    public void WithoutBackendACudaDeviceIsUsedWhenUsableElseCpuSaidOnce()
    {
        var cuda = LayerFusion.Cuda.CudaOps.TryCreate(LayerFusion.Cuda.Runtime.StorageType.F16, out var reason);
        cuda?.Dispose();
        string png = Out("auto-backend.png");
        var r = RunExactly("sdxl", "--model", tiny.Default, "--prompt", "x", "--steps", "1", "--out", png);
        Assert.True(r.Code == 0, r.Err);
        var notes = Lines(r.Err).Where(l => l.Contains("using the CPU backend")).ToArray();
        if (cuda is null)
        {
            Assert.Single(notes);
            Assert.StartsWith("note: ", notes[0]);
        }
        else Assert.Empty(notes);
        Assert.True(File.Exists(png));
    }

    [Fact]
    public void ExplicitCudaWithoutAUsableDeviceIsOneLineExitTwo()
    {
        if (LayerFusion.Tests.Cuda.EmulatedCuda.RanWithoutTheStandIns("LayerFusion.Tests.Cli.SdxlCliTests", nameof(ExplicitCudaWithoutAUsableDeviceIsOneLineExitTwo))) return;
        var cuda = LayerFusion.Cuda.CudaOps.TryCreate(LayerFusion.Cuda.Runtime.StorageType.F16, out _);
        if (cuda is not null)
        {
            cuda.Dispose();
            Assert.Skip("a CUDA device is usable here: --backend cuda succeeds, so its error path cannot be exercised");
        }
        string png = Out("cuda.png");
        var r = RunExactly("sdxl", "--model", tiny.Default, "--prompt", "x", "--backend", "cuda", "--out", png);
        Assert.Equal(2, r.Code);
        var line = Assert.Single(Lines(r.Err));
        Assert.StartsWith("error: --backend cuda: ", line);
        Assert.False(File.Exists(png));
    }

    [Fact]
    public void WithoutModelTheBuiltInDemoModelIsUsedAtItsTrainingSize()
    {
        var r = Run("sdxl", "--prompt", "a green field", "--steps", "1", "--out", Out("builtin.png"));
        Assert.True(r.Code == 0, r.Err);
        var note = Assert.Single(Lines(r.Err));
        Assert.StartsWith("note: no --model given: using the built-in demo model", note);
        Assert.True(File.Exists(Path.Combine(LayerFusion.Cli.Shared.BuiltInModel.Folder(), "ld_diffusers_sdxl_vae_transparent_decoder.safetensors")));
        var image = PngFile.Read(Out("builtin.png"));
        Assert.Equal((64, 64), (image.Width, image.Height)); // the demo UNet's sample_size x its VAE factor
    }
}
