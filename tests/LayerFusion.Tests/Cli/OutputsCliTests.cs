using LayerFusion.Cli.Commands;
using LayerFusion.Cli.Shared;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Imaging;
using LayerFusion.Tests.Checkpoints;
using LayerFusion.Tests.Pipelines;

namespace LayerFusion.Tests.Cli;

/// <summary>Issue 12 items 1 and 3, issue 13 items 1 and 6: options users know, batches, A1111 metadata, whole-set outputs.</summary>
public sealed class OutputsCliTests(TinySdxl tiny) : IClassFixture<TinySdxl>, IDisposable
{
    readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    static (int Code, string Out, string Err) Run(params string[] args) => SdxlCliTests.Run(args);

    /// <summary>A make-tiny checkpoint (its transparent decoder matches its VAE, so generate can decode).</summary>
    string TripletModel()
    {
        string dir = _tmp.Sub("tiny-triplet");
        if (!Directory.Exists(dir)) Assert.Equal(0, Run("make-tiny", dir).Code);
        return dir;
    }

    static Dictionary<string, string> Text(string path) =>
        PngFile.ReadText(File.ReadAllBytes(path), path).ToDictionary(kv => kv.Key, kv => kv.Value);

    [Fact]
    public void SdxlWritesA1111ParametersThatPngInfoParsesBack()
    {
        string png = _tmp.Sub("p.png");
        const string prompt = "a lighthouse, at dusk: golden\nsecond line";
        var r = Run("sdxl", "-m", tiny.Default, "-p", prompt, "-n", "fog, rain", "--steps", "2", "--cfg-scale", "4.5",
            "-s", "77", "-W", "32", "-H", "48", "--sampling-method", "dpmpp-2m-karras", "-o", png);
        Assert.True(r.Code == 0, r.Err);
        var text = Text(png);
        var p = A1111Infotext.Parse(text["parameters"]);
        Assert.Equal(prompt, p["Prompt"]);
        Assert.Equal("fog, rain", p["Negative prompt"]);
        Assert.Equal("2", p["Steps"]);
        Assert.Equal("DPM++ 2M Karras", p["Sampler"]);
        Assert.Equal("4.5", p["CFG scale"]);
        Assert.Equal("77", p["Seed"]);
        Assert.Equal(("32", "48"), (p["Size-1"], p["Size-2"]));
        Assert.Equal(Path.GetFileName(tiny.Default), p["Model"]);
        Assert.Equal(Infotext.Version, p["Version"]);
        Assert.StartsWith("layerfusion ", p["Version"]);
        Assert.DoesNotContain("prompt", text.Keys);
        // tagged sRGB, before the image data
        var chunks = PngFile.ParseChunks(File.ReadAllBytes(png), png).Select(c => c.Type).ToList();
        Assert.Contains("sRGB", chunks);
        Assert.True(chunks.IndexOf("sRGB") < chunks.IndexOf("IDAT"));
    }

    [Fact]
    public void EveryTripletFileCarriesItsOwnPromptRoleAndTheLayerFusionOptions()
    {
        string outDir = _tmp.Sub("o");
        var r = Run("generate", "-m", TripletModel(), "--fg", "a red, glass bottle", "--bg", "a beach: noon", "-n", "blur",
            "--steps", "1", "-W", "32", "-H", "32", "-s", "5", "--mask-boundary", "12", "--no-augment", "-o", outDir);
        Assert.True(r.Code == 0, r.Err);
        string set = Path.Combine(outDir, "00000-5");
        var expected = new Dictionary<string, (string Role, string Prompt)>
        {
            ["fg.png"] = ("fg", "a red, glass bottle"),
            ["bg.png"] = ("bg", "a beach: noon"),
            ["blend.png"] = ("blend", "a red, glass bottle, a beach: noon"),
            ["alpha-composite.png"] = ("composite", "a red, glass bottle, a beach: noon"),
        };
        foreach (var (name, (role, prompt)) in expected)
        {
            var text = Text(Path.Combine(set, name));
            var p = A1111Infotext.Parse(text["parameters"]);
            Assert.Equal(prompt, p["Prompt"]);
            Assert.Equal("blur", p["Negative prompt"]);
            Assert.Equal(role, p["LayerFusion role"]);
            Assert.Equal("a red, glass bottle", p["LayerFusion FG prompt"]);
            Assert.Equal("a beach: noon", p["LayerFusion BG prompt"]);
            Assert.Contains("d=12", p["LayerFusion options"]);
            Assert.Equal(("1", "5", "5"), (p["Steps"], p["Seed"], p["CFG scale"]));
            Assert.Equal(role, text["layerfusion:role"]);
            Assert.Equal("a red, glass bottle", text["layerfusion:fg"]);
            Assert.DoesNotContain("prompt", text.Keys);
        }
    }

    [Fact]
    public void SdxlBatchNumbersFilesWithConsecutiveSeedsAndNeverOverwritesSilently()
    {
        string png = _tmp.Sub("b.png");
        string[] args = ["sdxl", "-m", tiny.Default, "-p", "x", "--steps", "1", "-W", "32", "-H", "32", "-s", "40", "-b", "3", "-o", png];
        var r = Run(args);
        Assert.True(r.Code == 0, r.Err);
        string[] files = [png, _tmp.Sub("b_2.png"), _tmp.Sub("b_3.png")];
        for (int i = 0; i < 3; i++) Assert.Equal($"{40 + i}", Text(files[i])["layerfusion:seed"]);
        // seed 41 alone gives b_2's bytes: the batch is s, s+1, ...
        var single = Run("sdxl", "-m", tiny.Default, "-p", "x", "--steps", "1", "-W", "32", "-H", "32", "-s", "41", "-o", _tmp.Sub("s41.png"));
        Assert.Equal(0, single.Code);
        Assert.Equal(PngFile.Read(files[1]).Pixels, PngFile.Read(_tmp.Sub("s41.png")).Pixels);

        var stamp = File.GetLastWriteTimeUtc(files[2]);
        var again = Run(args);
        Assert.Equal(2, again.Code);
        Assert.Contains("already exists", again.Err);
        Assert.Contains("--overwrite", again.Err);
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(files[2]));
        var forced = Run([.. args, "--overwrite"]);
        Assert.True(forced.Code == 0, forced.Err);
    }

    [Fact]
    public void ANegativeSeedPicksARandomOnePrintedAndRecorded()
    {
        string png = _tmp.Sub("r.png");
        var r = Run("sdxl", "-m", tiny.Default, "-p", "x", "--steps", "1", "-W", "32", "-H", "32", "-s", "-1", "-o", png);
        Assert.True(r.Code == 0, r.Err);
        var seed = Text(png)["layerfusion:seed"];
        Assert.Contains($"seed {seed}, random", r.Out);
        Assert.Equal(seed, A1111Infotext.Parse(Text(png)["parameters"])["Seed"]);
        Assert.InRange(ulong.Parse(seed), 0UL, uint.MaxValue);
    }

    [Fact]
    public void GenerateBatchesGoToNumberedFoldersAndLaterRunsContinueTheNumbering()
    {
        string outDir = _tmp.Sub("runs");
        string[] args = ["generate", "-m", TripletModel(), "--fg", "a", "--bg", "b", "--steps", "1", "-W", "32", "-H", "32", "--no-augment", "-o", outDir];
        var r = Run([.. args, "-s", "3", "-b", "2"]);
        Assert.True(r.Code == 0, r.Err);
        var r2 = Run([.. args, "-s", "3"]);
        Assert.True(r2.Code == 0, r2.Err);
        var names = Directory.GetFileSystemEntries(outDir).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(["00000-3", "00001-4", "00002-3"], names);
        // same seed, same triplet; never merged into the earlier folder
        Assert.Equal(File.ReadAllBytes(Path.Combine(outDir, "00000-3", "blend.png")), File.ReadAllBytes(Path.Combine(outDir, "00002-3", "blend.png")));
        foreach (var d in names) Assert.Equal(4, Directory.GetFiles(Path.Combine(outDir, d!)).Length);
    }

    [Fact]
    public void AFailedSetWriteLeavesNothingInTheOutputFolder()
    {
        string outDir = _tmp.Sub("failed");
        Directory.CreateDirectory(outDir);
        var rgb = new Image8(8, 8, 3, new byte[8 * 8 * 3]);
        var rgba = new Image8(8, 8, 4, new byte[8 * 8 * 4]);
        var odd = new Image8(16, 8, 3, new byte[16 * 8 * 3]);
        var parameters = new Dictionary<string, string>
        {
            ["layerfusion:fg"] = "a", ["layerfusion:bg"] = "b", ["layerfusion:blend"] = "a, b", ["layerfusion:steps"] = "1",
            ["layerfusion:cfg"] = "5", ["layerfusion:seed"] = "1", ["layerfusion:size"] = "8x8", ["layerfusion:sampler"] = "euler",
        };
        // the PSD (written after the four PNGs) fails on the mismatched blend layer
        var result = new LayerFusionResult(rgba, rgb, odd, rgb, parameters, [], null);
        Assert.ThrowsAny<ArgumentException>(() => GenerateCommand.WriteSet(outDir, "failed", result, new LayerFusionWriteOptions { Psd = true }, 1, TestContext.Current.CancellationToken));
        Assert.Empty(Directory.GetFileSystemEntries(outDir));
    }

    [Fact]
    public void ALongLegalOutputNameStaysLegalAndNoTemporariesRemain()
    {
        string name = new string('n', 250) + ".png"; // 254 bytes: legal; a longer temporary beside it would not be
        var r = Run("sdxl", "-m", tiny.Default, "-p", "x", "--steps", "1", "-W", "32", "-H", "32", "-o", _tmp.Sub(name));
        Assert.True(r.Code == 0, r.Err);
        Assert.True(File.Exists(_tmp.Sub(name)));
        Assert.Empty(Directory.GetFileSystemEntries(_tmp.Path, ".lftmp-*"));
    }

    [Fact]
    public void OutputChecksHappenBeforeAnyWork()
    {
        File.WriteAllText(_tmp.Sub("afile"), "x");
        foreach (var (args, expect) in new (string[], string)[]
        {
            (["generate", "-m", tiny.Default, "--fg", "a", "--bg", "b", "--out", ""], "--out must name a folder"),
            (["generate", "-m", tiny.Default, "--fg", "a", "--bg", "b", "--out", _tmp.Sub("afile")], "is a file, not a folder"),
            (["generate", "-m", tiny.Default, "--fg", "a", "--bg", "b", "--out", Path.Combine(_tmp.Sub("afile"), "sub")], "--out"),
            (["generate", "-m", tiny.Default, "--fg", "a\0", "--bg", "b", "--out", _tmp.Sub("x")], "--fg contains a NUL"),
            (["generate", "-m", tiny.Default, "--fg", " ", "--bg", "b", "--out", _tmp.Sub("x")], "--fg is empty"),
            (["sdxl", "-m", tiny.Default, "-p", "x", "-o", Path.Combine(_tmp.Sub("afile"), "x.png")], "is a file, not a folder"),
        })
        {
            var r = Run(args);
            Assert.True(r.Code == 2, $"{string.Join(' ', args)}: {r.Code} {r.Err}");
            var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith("error: ", line);
            Assert.Contains(expect, line);
        }
    }

    [Fact]
    public void PngTextRefusesNulAndInfotextQuotesWhatA1111Quotes()
    {
        Assert.Throws<ArgumentException>(() => PngFile.Encode(new Image8(1, 1, 3, new byte[3]), [new("parameters", "a\0b")]));
        Assert.Equal("plain", Infotext.Quote("plain"));
        Assert.Equal("\"a, b\"", Infotext.Quote("a, b"));
        Assert.Equal("\"k: v\"", Infotext.Quote("k: v"));
        Assert.Equal("\"l1\\nl2\"", Infotext.Quote("l1\nl2"));
        Assert.Equal("sd_xl_base_1.0", Infotext.ModelName("/models/sd_xl_base_1.0.safetensors"));
        Assert.Equal("RealVisXL_V4.0", Infotext.ModelName("/models/RealVisXL_V4.0/"));
    }
}
