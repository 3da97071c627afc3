using LayerFusion.Cli;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Imaging;
using LayerFusion.Tests.Checkpoints;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.Fusion;

/// <summary>`layerfusion generate` and `compose` end to end on a make-tiny checkpoint.</summary>
public sealed class GenerateCliTests : IDisposable
{
    readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    // CPU unless a test names a backend (the automatic choice adds a note line where no GPU is usable)
    static (int Code, string Out, string Err) Run(params string[] args) => LayerFusion.Tests.Cli.SdxlCliTests.Run(args);

    [Fact]
    public void GenerateWritesTheTripletAndPriorsDeterministicallyAndComposeMovesTheLayer()
    {
        string model = _tmp.Sub("tiny");
        Assert.Equal(0, Run("make-tiny", model, "--seed", "1").Code);
        string[] args = ["generate", "--model", model, "--fg", "a glass bottle", "--bg", "a beach", "--steps", "1", "--cfg", "3",
            "--seed", "9", "--width", "72", "--height", "56", "--sampler", "euler", "--no-augment"];
        var r1 = Run([.. args, "--out", _tmp.Sub("a"), "--dump-priors"]);
        Assert.True(r1.Code == 0, r1.Err);
        var r2 = Run([.. args, "--out", _tmp.Sub("b")]);
        Assert.True(r2.Code == 0, r2.Err);
        // each triplet in its own numbered folder, NNNNN-SEED, as A1111 numbers its outputs
        string a = Path.Combine(_tmp.Sub("a"), "00000-9"), b = Path.Combine(_tmp.Sub("b"), "00000-9");
        Assert.Equal($"wrote {a} (72x56, euler, 1 steps, seed 9)", r1.Out.Trim());

        foreach (var name in LayerFusionOutputs.ImageNames)
        {
            var bytes = File.ReadAllBytes(Path.Combine(a, name));
            Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(b, name)));
            var image = PngFile.Decode(bytes, name);
            Assert.Equal((72, 56), (image.Width, image.Height));
            Assert.Equal(name == "fg.png" ? 4 : 3, image.Channels);
            var text = PngFile.ReadText(bytes, name);
            Assert.Contains(text, kv => kv.Key == "layerfusion:fg" && kv.Value == "a glass bottle");
            Assert.Contains(text, kv => kv.Key == "layerfusion:blend" && kv.Value == "a glass bottle, a beach");
        }
        var fg = PngFile.Read(Path.Combine(a, "fg.png"));
        var alpha = Enumerable.Range(0, 72 * 56).Select(i => fg.Pixels[4 * i + 3]).ToArray();
        Assert.Contains(alpha, v => v != 255);
        Assert.True(alpha.Distinct().Count() > 1);

        var priors = Path.Combine(a, "priors");
        foreach (var name in new[] { "s_prime.png", "content.png", "mask_soft.png", "mask_hard.png" })
            Assert.Equal((72, 56), (PngFile.Read(Path.Combine(priors, name)).Width, PngFile.Read(Path.Combine(priors, name)).Height));
        using (var st = SafeTensorsFile.Open(Path.Combine(priors, "priors.safetensors")))
        {
            var names = st.Tensors.Select(t => t.Name).ToHashSet();
            Assert.Contains("structure.density", names);
            Assert.Contains("prior_layer.head_mean_probabilities", names);
            Assert.Contains(names, n => n.EndsWith(".attn2.mask_hard"));
            Assert.Contains(names, n => n.EndsWith(".attn1.mask_soft"));
        }
        Assert.False(Directory.Exists(Path.Combine(b, "priors")));

        // compose: the unmoved layer reproduces the composite of the 8-bit layers; a moved one differs
        string moved = _tmp.Sub("moved.png"), still = _tmp.Sub("still.png");
        string fgPath = Path.Combine(a, "fg.png"), bgPath = Path.Combine(a, "bg.png");
        Assert.Equal(0, Run("compose", "--fg", fgPath, "--bg", bgPath, "--out", still).Code);
        var rc = Run("compose", "--fg", fgPath, "--bg", bgPath, "--dx", "10", "--dy", "-4", "--scale", "0.5", "--out", moved);
        Assert.True(rc.Code == 0, rc.Err);
        Assert.Equal((72, 56), (PngFile.Read(moved).Width, PngFile.Read(moved).Height));
        Assert.NotEqual(File.ReadAllBytes(still), File.ReadAllBytes(moved));
    }

    [Fact]
    public void BadArgumentsAreOneLineErrors()
    {
        string model = _tmp.Sub("m");
        Assert.Equal(0, Run("make-tiny", model).Code);
        foreach (var (args, expect) in new (string[], string)[]
        {
            (["generate", "--model", model, "--fg", "a", "--bg", "b", "--width", "70"], "multiple of 8"),
            (["generate", "--model", model, "--fg", "a", "--bg", "b", "--blend-attention", "all"], "--blend-attention"),
            (["generate", "--model", model, "--fg", "a", "--bg", "b", "--d", "-1"], "d must be"),
            (["generate", "--model", model, "--fg", "a", "--bg", "b", "--layerdiffuse", _tmp.Sub("nowhere")], "--layerdiffuse"),
            (["generate", "--model", model, "--fg", "a", "--bg", "b", "--prior-layer", "nope"], "prior layer 'nope'"),
            (["compose", "--fg", _tmp.Sub("none.png"), "--bg", _tmp.Sub("none.png"), "--out", _tmp.Sub("x.png"), "--scale", "0"], "--scale"),
        })
        {
            var r = Run(args[0] == "generate" ? [.. args, "--out", _tmp.Sub("o")] : args);
            Assert.True(r.Code == 2, $"{string.Join(' ', args)}: exit {r.Code}: {r.Err}");
            var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.StartsWith("error: ", lines[^1]);
            Assert.Contains(expect, lines[^1]);
        }
    }
}
