using System.Globalization;
using System.Text;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Imaging;
using LayerFusion.Tests.Schedulers;

namespace LayerFusion.Tests.Demo;

/// <summary>One fixed prompt pair of the functional set: FG colour + shape, BG caption, seed.</summary>
public sealed record DemoCase(string Colour, string Shape, string Background, ulong Seed)
{
    public string Foreground => $"{(Colour[0] is 'a' or 'e' or 'i' or 'o' or 'u' ? "an" : "a")} {Colour} {Shape}";
}

/// <summary>The measures of one generated triplet.</summary>
public sealed record DemoMeasure(
    double AlphaCoverage, double LargestComponent, string? FgColour, double BgLeak, double BlendIoU,
    double MaskHardIoU, double MaskHardSoftness, double SPrimeVariation, double ContentVariation)
{
    /// <summary>One object of plausible size (the world draws radius 11..19 px shapes on 64x64).</summary>
    public bool OneObject => AlphaCoverage is >= 0.02 and <= 0.45 && LargestComponent >= 0.9;
}

/// <summary>
/// The functional set run once on the built-in demo model (models/demo, or $LAYERFUSION_DEMO_MODEL):
/// 16 fixed pairs/seeds, each under the method and its ablations; with $LAYERFUSION_DEMO_TABLE set,
/// also the no-interaction baseline, and the markdown table of all measures is written there. Colours and backgrounds
/// are chosen so no BG texture is classified as the FG colour (world.py's palettes).
/// </summary>
public sealed class DemoRuns : IDisposable
{
    public static readonly DemoCase[] Cases =
    [
        new("red", "circle", "a green field", 0), new("blue", "square", "a sandy beach", 1),
        new("yellow", "star", "a night sky", 2), new("white", "ring", "a brick wall", 3),
        new("purple", "triangle", "a sandy beach", 4), new("orange", "diamond", "a blue lake", 5),
        new("pink", "circle", "a green field", 6), new("green", "square", "a blue sky", 7),
        new("red", "star", "a blue sky", 8), new("yellow", "circle", "a brick wall", 9),
        new("blue", "triangle", "a wooden table", 10), new("white", "square", "a green field", 11),
        new("orange", "circle", "a blue sky", 12), new("purple", "star", "a green field", 13),
        new("red", "diamond", "a blue lake", 14), new("green", "ring", "a night sky", 15),
    ];

    /// <summary>Fewer than the CLI's 30 to keep the set's 64 triplets cheap on a CPU; measured with this value.</summary>
    public const int Steps = 12;

    /// <summary>The guidance scale every table in docs/demo-measures.md was measured with: LayerFusionRequest's
    /// default (7; the CLI's and SdxlRequest's default is 5), written out so the measures do not follow a change of it.</summary>
    public const float GuidanceScale = 7f;

    public static readonly IReadOnlyDictionary<string, LayerFusionOptions> Variants = new Dictionary<string, LayerFusionOptions>
    {
        ["ours"] = new(),
        ["no-exclusion"] = new() { Exclusion = false },
        ["blend-attention none"] = new() { BlendSelfAttention = false, BlendCrossAttention = false },
        ["d=1"] = new() { D = 1f },
    };

    /// <summary>The paper's "no interaction" baseline: three independent generations (for the table only).</summary>
    public static readonly LayerFusionOptions InteractionOff = new() { Sharing = false, BlendSelfAttention = false, BlendCrossAttention = false };

    public static string ModelDir()
    {
        var env = Environment.GetEnvironmentVariable("LAYERFUSION_DEMO_MODEL");
        if (!string.IsNullOrEmpty(env)) return env;
        return Path.GetDirectoryName(SchedulerFixtures.FindRepoFile("models/demo/model_index.json"))!;
    }

    public LayerFusionPipeline Pipeline { get; }
    readonly Dictionary<string, LayerFusionResult[]> _results = new();
    readonly Lock _lock = new();

    /// <summary>Added to every case's seed: 0 for the tests; another value measures a held-out set of seeds.</summary>
    public static ulong SeedOffset => ulong.TryParse(Environment.GetEnvironmentVariable("LAYERFUSION_DEMO_SEED_OFFSET"), out var o) ? o : 0;

    /// <summary>The 16 triplets of one variant, generated on first use (a test needs only its own variants).</summary>
    public LayerFusionResult[] Results(string variant)
    {
        lock (_lock)
        {
            if (_results.TryGetValue(variant, out var done)) return done;
            var options = variant == "interaction off" ? InteractionOff : Variants[variant];
            var results = Cases.Select(c => Pipeline.Generate(new LayerFusionRequest
            {
                Foreground = c.Foreground, Background = c.Background, Seed = c.Seed + SeedOffset, Steps = Steps, GuidanceScale = GuidanceScale,
                Width = 64, Height = 64, DumpPriors = true, Options = options,
            })).ToArray();
            _results[variant] = results;
            return results;
        }
    }

    /// <summary>The measures of one variant's triplets (the blend measured on the harmonized blend).</summary>
    public DemoMeasure[] Measures(string variant) => Results(variant).Select((r, i) => Measure(Cases[i], r, r.Blend)).ToArray();

    /// <summary>Alpha blending of FG over BG (the result's alpha composite) measured as the blend.</summary>
    public DemoMeasure[] AlphaBlend => Results("ours").Select((r, i) => Measure(Cases[i], r, r.AlphaComposite)).ToArray();

    public DemoRuns()
    {
        var dir = ModelDir();
        Pipeline = LayerFusionPipeline.Load(new LayerFusion.Cpu.CpuOps(), dir, LayerDiffuseFiles.InDirectory(dir));
        var table = Environment.GetEnvironmentVariable("LAYERFUSION_DEMO_TABLE");
        if (!string.IsNullOrEmpty(table)) File.WriteAllText(table, Table());
    }

    public static DemoMeasure Measure(DemoCase c, LayerFusionResult r, Image8 blend)
    {
        var fg = r.Foreground;
        int w = fg.Width, h = fg.Height;
        var alpha = DemoMeasures.AlphaMask(fg);
        var d = r.Priors!;
        var maps = d.Maps[d.VisualizedSite];
        var grid = DemoMeasures.Downsample(alpha, w, h, maps.Width, maps.Height);
        return new DemoMeasure(
            DemoMeasures.Fraction(alpha),
            DemoMeasures.LargestComponentShare(alpha, w, h),
            DemoMeasures.ForegroundColour(fg),
            DemoMeasures.Fraction(DemoMeasures.ColourMask(r.Background, c.Colour)),
            DemoMeasures.IoU(alpha, DemoMeasures.ColourMask(blend, c.Colour)),
            DemoMeasures.IoU(grid, maps.HardMask.Select(v => v > 0.5f).ToArray()),
            DemoMeasures.Softness(maps.HardMask),
            DemoMeasures.Variation(d.Structure.Density),
            DemoMeasures.Variation(maps.Content));
    }

    /// <summary>Markdown: the measures' means (and rates) per method over the set.</summary>
    public string Table()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"| method | FG one object | FG colour right | BG leak > 1% (pairs) | mean BG leak | mean blend IoU | mean mask_hard IoU | mask_hard softness |");
        sb.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- |");
        void Row(string name, DemoMeasure[] m)
        {
            string F(double v) => v.ToString("0.000", CultureInfo.InvariantCulture);
            sb.AppendLine($"| {name} | {m.Count(x => x.OneObject)}/{m.Length} | {m.Select((x, i) => x.FgColour == Cases[i].Colour).Count(b => b)}/{m.Length} | " +
                $"{m.Count(x => x.BgLeak > 0.01)}/{m.Length} | {F(m.Average(x => x.BgLeak))} | {F(m.Average(x => x.BlendIoU))} | {F(m.Average(x => x.MaskHardIoU))} | {F(m.Average(x => x.MaskHardSoftness))} |");
        }
        foreach (var name in Variants.Keys.Append("interaction off")) Row(name == "ours" ? "LayerFusion (ours)" : name, Measures(name));
        Row("alpha blending FG over BG", AlphaBlend);
        sb.AppendLine();
        sb.AppendLine("Per pair (ours): coverage, largest component, FG colour, BG leak, blend IoU, mask_hard IoU, s' variation, c variation");
        sb.AppendLine();
        foreach (var (c, m) in Cases.Zip(Measures("ours")))
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"- {c.Foreground} / {c.Background} / seed {c.Seed + SeedOffset}: {m.AlphaCoverage:0.000}, {m.LargestComponent:0.00}, {m.FgColour}, {m.BgLeak:0.000}, {m.BlendIoU:0.00}, {m.MaskHardIoU:0.00}, {m.SPrimeVariation:0.00}, {m.ContentVariation:0.00}"));
        return sb.ToString();
    }

    public void Dispose() => Pipeline.Dispose();
}
