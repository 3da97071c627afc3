// Blend diagnostics on the demo model (issue 11): the 16 DemoRuns pairs on the host reference path,
// with the masks replaced or recorded through the experiment hook of mask-override-hook.patch
// (apply it first; it is not part of the engine). Usage: dotnet run -c Release -- MODE [SEED_OFFSET]
// MODE: ours | off (no interaction) | own (BLEND reads the blend prompt) | oracle (masks = FG alpha of a first
// FG-only run, area mean onto each attention grid) | oracle-max (max-pooled) | oracle-bin | oracle-own |
// oracle-max-8only / -4only (oracle only at the 8x8 / 4x4 sites) | oracle-max-hard0 (Eq. 2 off) |
// allfg (soft 1, hard 0 everywhere: every BLEND attention output is FG's) | allbl (FG takes BLEND's everywhere).
// Env: EXP_STEPS (12), EXP_CFG (7, DemoRuns' value), EXP_D (10), EXP_PRIOR (prior layer), EXP_SIZE (64), EXP_OUT.
// "ours" also writes stats-*.tsv: per step and site, Pearson correlation / top-k IoU of s', c, mask_soft
// with the run's final FG alpha (area mean onto the site's grid).
using System.Globalization;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Imaging;
using LayerFusion.Tests.Demo;

var cases = new (string Colour, string Shape, string Bg, ulong Seed)[]
{
    ("red", "circle", "a green field", 0), ("blue", "square", "a sandy beach", 1),
    ("yellow", "star", "a night sky", 2), ("white", "ring", "a brick wall", 3),
    ("purple", "triangle", "a sandy beach", 4), ("orange", "diamond", "a blue lake", 5),
    ("pink", "circle", "a green field", 6), ("green", "square", "a blue sky", 7),
    ("red", "star", "a blue sky", 8), ("yellow", "circle", "a brick wall", 9),
    ("blue", "triangle", "a wooden table", 10), ("white", "square", "a green field", 11),
    ("orange", "circle", "a blue sky", 12), ("purple", "star", "a green field", 13),
    ("red", "diamond", "a blue lake", 14), ("green", "ring", "a night sky", 15),
};
string Fg((string Colour, string Shape, string Bg, ulong Seed) c) => $"{("aeiou".Contains(c.Colour[0]) ? "an" : "a")} {c.Colour} {c.Shape}";
var mode = args[0];
int size = int.Parse(Environment.GetEnvironmentVariable("EXP_SIZE") ?? "64");
float cfg = float.Parse(Environment.GetEnvironmentVariable("EXP_CFG") ?? "7", CultureInfo.InvariantCulture);
ulong offset = args.Length > 1 ? ulong.Parse(args[1]) : 0;
int steps = int.Parse(Environment.GetEnvironmentVariable("EXP_STEPS") ?? "12");
float dOpt = float.Parse(Environment.GetEnvironmentVariable("EXP_D") ?? "10", CultureInfo.InvariantCulture);
string? priorLayer = Environment.GetEnvironmentVariable("EXP_PRIOR");
string outDir = Environment.GetEnvironmentVariable("EXP_OUT") ?? "blend-diagnostics-out";
Directory.CreateDirectory(outDir);
var root = Directory.GetCurrentDirectory();
while (!File.Exists(Path.Combine(root, "LayerFusion.Native.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("run inside the repository");
var dir = Environment.GetEnvironmentVariable("LAYERFUSION_DEMO_MODEL") ?? Path.Combine(root, "models", "demo");
using var pipe = LayerFusionPipeline.Load(new LayerFusion.Cpu.CpuOps(), dir, LayerDiffuseFiles.InDirectory(dir));
pipe.StepPath = LayerFusionStepPath.HostReference;

var off = new LayerFusionOptions { Sharing = false, BlendSelfAttention = false, BlendCrossAttention = false };
LayerFusionOptions opts = mode switch
{
    "off" => off,
    "nosharing" => new LayerFusionOptions { Sharing = false, D = dOpt, PriorLayer = priorLayer },
    "nosharing-own" => new LayerFusionOptions { Sharing = false, D = dOpt, PriorLayer = priorLayer },
    "own" => new LayerFusionOptions { BlendCrossReadsBackgroundPrompt = false, D = dOpt, PriorLayer = priorLayer },
    _ => new LayerFusionOptions { D = dOpt, PriorLayer = priorLayer },
};
bool oracle = mode.StartsWith("oracle");
bool allFg = mode.StartsWith("allfg");
if (mode == "allfg-own") opts = opts with { BlendCrossReadsBackgroundPrompt = false };
if (mode == "oracle-own") opts = opts with { BlendCrossReadsBackgroundPrompt = false };
if (mode == "oracle-nosharing") opts = opts with { Sharing = false };
if (mode == "oracle-selfonly") opts = opts with { BlendCrossAttention = false };
if (mode == "oracle-crossonly") opts = opts with { BlendSelfAttention = false };

static double Pearson(float[] a, float[] b)
{
    double ma = a.Average(x => (double)x), mb = b.Average(x => (double)x), sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < a.Length; i++) { sab += (a[i] - ma) * (b[i] - mb); saa += (a[i] - ma) * (a[i] - ma); sbb += (b[i] - mb) * (b[i] - mb); }
    return saa == 0 || sbb == 0 ? 0 : sab / Math.Sqrt(saa * sbb);
}
static float[] AreaMean(Image8 fg, int gh, int gw)
{
    int w = fg.Width, h = fg.Height, fx = w / gw, fy = h / gh;
    var r = new float[gh * gw];
    for (int gy = 0; gy < gh; gy++) for (int gx = 0; gx < gw; gx++)
    {
        double s = 0;
        for (int y = gy * fy; y < (gy + 1) * fy; y++) for (int x = gx * fx; x < (gx + 1) * fx; x++) s += fg.Pixels[(y * w + x) * 4 + 3] / 255.0;
        r[gy * gw + gx] = (float)(s / (fx * fy));
    }
    return r;
}
static float[] MaxPool(Image8 fg, int gh, int gw)
{
    int w = fg.Width, h = fg.Height, fx = w / gw, fy = h / gh;
    var r = new float[gh * gw];
    for (int gy = 0; gy < gh; gy++) for (int gx = 0; gx < gw; gx++)
    {
        double s = 0;
        for (int y = gy * fy; y < (gy + 1) * fy; y++) for (int x = gx * fx; x < (gx + 1) * fx; x++) s = Math.Max(s, fg.Pixels[(y * w + x) * 4 + 3] / 255.0);
        r[gy * gw + gx] = (float)s;
    }
    return r;
}
static double TopKIoU(float[] map, float[] alphaGrid)
{
    var truth = alphaGrid.Select(v => v > 0.5f).ToArray();
    int k = truth.Count(x => x);
    if (k == 0) return 0;
    var idx = Enumerable.Range(0, map.Length).OrderByDescending(i => map[i]).Take(k).ToHashSet();
    var pred = Enumerable.Range(0, map.Length).Select(i => idx.Contains(i)).ToArray();
    return DemoMeasures.IoU(truth, pred);
}

var ious = new List<double>(); var dists = new List<double>(); var nears = new List<double>();
var stats = new Dictionary<string, List<double>>();
void Stat(string key, double v) { if (!stats.TryGetValue(key, out var l)) stats[key] = l = new(); l.Add(v); }
foreach (var c in cases)
{
    var fgPrompt = Fg(c);
    ulong seed = c.Seed + offset;
    Image8? oracleFg = null;
    if (oracle)
    {
        // the FG stream alone (no interaction) gives the oracle alpha
        oracleFg = pipe.Generate(new LayerFusionRequest { Foreground = fgPrompt, Background = c.Bg, Seed = seed, Steps = steps, Width = size, Height = size, GuidanceScale = cfg, Options = off }).Foreground;
    }
    var recorded = new List<(int Step, string Site, LayerFusionMaps M)>();
    LayerFusionAttentionProcessor.ExperimentStep = 0;
    LayerFusionAttentionProcessor.ExperimentMaskOverride = (site, m) =>
    {
        if (mode == "allbl") return m with { SoftMask = m.SoftMask.Select(_ => 0f).ToArray(), HardMask = m.HardMask.Select(_ => 1f).ToArray() };
        if (allFg) return m with { SoftMask = m.SoftMask.Select(_ => 1f).ToArray(), HardMask = m.HardMask.Select(_ => 0f).ToArray() };
        if (oracleFg is not null)
        {
            var g = AreaMean(oracleFg, m.Height, m.Width);
            if ((mode.Contains("8only") && m.Height != size / 8) || (mode.Contains("4only") && m.Height == size / 8))
                return m with { SoftMask = new float[m.SoftMask.Length], HardMask = new float[m.HardMask.Length] };
            if (mode.Contains("max")) g = MaxPool(oracleFg, m.Height, m.Width);
            if (mode.Contains("bin")) g = g.Select(v => v > 0.25f ? 1f : 0f).ToArray();
            if (mode.Contains("hard0")) return m with { SoftMask = g, HardMask = g.Select(_ => 0f).ToArray() };
            var hard = PriorMath.HardMask(g, dOpt);
            return m with { SoftMask = g, HardMask = hard };
        }
        recorded.Add((LayerFusionAttentionProcessor.ExperimentStep, site, m));
        return null;
    };
    var r = pipe.Generate(new LayerFusionRequest { Foreground = fgPrompt, Background = c.Bg, Seed = seed, Steps = steps, Width = size, Height = size, GuidanceScale = cfg, Options = opts });
    var alpha = DemoMeasures.AlphaMask(r.Foreground);
    var col = DemoMeasures.ColourMask(r.Blend, c.Colour);
    double iou = DemoMeasures.IoU(alpha, col);
    ious.Add(iou);
    double colFrac = DemoMeasures.Fraction(col);
    // what colour is the blend inside the FG alpha (mean)?
    double rr = 0, gg = 0, bb = 0; int n = 0;
    for (int i = 0; i < alpha.Length; i++) if (alpha[i]) { rr += r.Blend.Pixels[i * 3] / 255.0; gg += r.Blend.Pixels[i * 3 + 1] / 255.0; bb += r.Blend.Pixels[i * 3 + 2] / 255.0; n++; }
    // diagnostics: mean RGB distance of the blend to the FG's own straight colour inside alpha; share of alpha pixels whose nearest palette colour is the prompt's (no radius)
    double dist = 0; int near = 0;
    for (int i = 0; i < alpha.Length; i++) if (alpha[i])
    {
        var bp = (r.Blend.Pixels[i * 3] / 255.0, r.Blend.Pixels[i * 3 + 1] / 255.0, r.Blend.Pixels[i * 3 + 2] / 255.0);
        var fp = (r.Foreground.Pixels[i * 4] / 255.0, r.Foreground.Pixels[i * 4 + 1] / 255.0, r.Foreground.Pixels[i * 4 + 2] / 255.0);
        dist += Math.Sqrt((bp.Item1 - fp.Item1) * (bp.Item1 - fp.Item1) + (bp.Item2 - fp.Item2) * (bp.Item2 - fp.Item2) + (bp.Item3 - fp.Item3) * (bp.Item3 - fp.Item3));
        if (DemoMeasures.Nearest(bp) == c.Colour) near++;
    }
    dist /= Math.Max(n, 1);
    dists.Add(dist); nears.Add(near / (double)Math.Max(n, 1));
    string inside = n == 0 ? "-" : DemoMeasures.Nearest((rr / n, gg / n, bb / n));
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{fgPrompt} / {c.Bg} / {seed}: blendIoU {iou:0.000} blend colour frac {colFrac:0.000} alpha {DemoMeasures.Fraction(alpha):0.000} blend-inside-alpha {inside} fgcol {DemoMeasures.ForegroundColour(r.Foreground)} dist {dist:0.00} near {near / (double)Math.Max(n, 1):0.00}"));
    var tag = $"{mode}-{seed}";
    r.Blend.SavePngIfPossible(Path.Combine(outDir, tag + "-blend.png"));
    r.Foreground.SavePngIfPossible(Path.Combine(outDir, tag + "-fg.png"));
    foreach (var (step, site, m) in recorded)
    {
        var ag = AreaMean(r.Foreground, m.Height, m.Width);
        string k = $"{step:00} {site}";
        Stat(k + " s'", Pearson(m.Density, ag)); Stat(k + " c", Pearson(m.Content, ag)); Stat(k + " soft", Pearson(m.SoftMask, ag));
        Stat(k + " s'topk", TopKIoU(m.Density, ag)); Stat(k + " ctopk", TopKIoU(m.Content, ag)); Stat(k + " softtopk", TopKIoU(m.SoftMask, ag));
        Stat(k + " -c", Pearson(m.Content.Select(v => -v).ToArray(), ag));
    }
}
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"MODE {mode} offset {offset}: mean blend IoU {ious.Average():0.000}, pairs >= 0.3: {ious.Count(v => v >= 0.3)}/16, mean dist(blend, FG colour) in alpha {dists.Average():0.000}, mean near-share {nears.Average():0.000}"));
if (stats.Count > 0)
{
    using var sw = new StreamWriter(Path.Combine(outDir, $"stats-{mode}-{offset}.tsv"));
    foreach (var (k, l) in stats) sw.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{k}\t{l.Average():0.000}\t{l.Min():0.000}\t{l.Max():0.000}"));
}

static class Ext
{
    public static void SavePngIfPossible(this Image8 im, string path)
    {
        try { PngFile.Write(path, im); } catch { }
    }
}
