using LayerFusion.Core.Fusion;

namespace LayerFusion.Tests.Demo;

/// <summary>
/// Functional tests of the method on the built-in demo model (tools/train-demo, models/demo), over the
/// 16 fixed pairs/seeds of <see cref="DemoRuns"/>. Thresholds sit below the distributions measured on
/// the shipped model over three seed sets (the fixed seeds 0-15 and, with LAYERFUSION_DEMO_SEED_OFFSET,
/// 100-115 and 200-215; docs/demo-measures.md), written beside each.
/// Only the exclusion ablation is Explicit (this model's BG leaks nothing either way); run it with
/// `-- --explicit only`.
/// </summary>
public sealed class DemoMethodTests(DemoRuns runs) : IClassFixture<DemoRuns>
{
    DemoMeasure[] Ours => runs.Measures("ours");

    [Fact]
    public void ForegroundAlphaHoldsOneObjectOfPlausibleSizeInThePromptsColour()
    {
        // measured (seed sets 0 / 100 / 200): one object 13/16, 14/16, 14/16; colour right 15/16, 14/16, 15/16
        const int MinOneObject = 12, MinColour = 13;
        var m = Ours;
        int oneObject = m.Count(x => x.OneObject);
        int colour = m.Select((x, i) => x.FgColour == DemoRuns.Cases[i].Colour).Count(b => b);
        Assert.True(oneObject >= MinOneObject, $"one object of plausible size in {oneObject}/16 FG layers");
        Assert.True(colour >= MinColour, $"FG colour matches the prompt in {colour}/16: {string.Join(", ", m.Select(x => x.FgColour ?? "none"))}");
    }

    [Fact]
    public void BackgroundHasNoObjectOfTheForegroundColour()
    {
        // measured (seed sets 0 / 100 / 200): BG pixels of the FG colour > 1% in 0/16, 1/16, 0/16 pairs; mean leak 0.000, 0.049, 0.000
        const int MaxLeakingPairs = 2;
        var leaks = Ours.Select(x => x.BgLeak).ToArray();
        Assert.True(leaks.Count(l => l > 0.01) <= MaxLeakingPairs, $"BG pixels of the FG colour > 1% in {leaks.Count(l => l > 0.01)}/16: {string.Join(", ", leaks.Select(l => l.ToString("0.000")))}");
    }

    // measured (seed sets 0 / 100 / 200): mean blend IoU 0.172 / 0.114 / 0.171, pairs with IoU >= 0.1 7 / 4 / 5
    // (alpha blending 0.52-0.57, interaction off 0.52-0.55; before the grounding loss 0.008-0.031)
    const double MinBlendMean = 0.08, BlendPairIoU = 0.1;
    const int MinBlendPairs = 3;

    [Fact]
    public void BlendHoldsTheObjectWhereForegroundAlphaIsOpaque()
    {
        var iou = Ours.Select(x => x.BlendIoU).ToArray();
        Assert.True(iou.Average() >= MinBlendMean, $"mean IoU(FG alpha > 0.5, blend pixels of the FG colour) {iou.Average():0.000}");
        Assert.True(iou.Count(v => v >= BlendPairIoU) >= MinBlendPairs, $"pairs with IoU >= {BlendPairIoU}: {iou.Count(v => v >= BlendPairIoU)}/16");
    }

    // measured (seed sets 0 / 100 / 200): mean mask_hard IoU 0.519 / 0.542 / 0.546 (0.04-0.10 before the
    // grounding loss); per pair s' variation >= 0.85, c variation >= 0.04 in every set
    const double MinMaskIoU = 0.4, MinSPrimeVariation = 0.5, MinContentVariation = 0.02;

    [Fact]
    public void PriorsMaskTheObjectAndAreNotUniform()
    {
        var m = Ours;
        Assert.True(m.Average(x => x.MaskHardIoU) >= MinMaskIoU, $"mean IoU(mask_hard at t = 0.8T, FG alpha) {m.Average(x => x.MaskHardIoU):0.000}");
        Assert.All(m, x => Assert.True(x.SPrimeVariation > MinSPrimeVariation && x.ContentVariation > MinContentVariation, $"s' variation {x.SPrimeVariation:0.000}, c variation {x.ContentVariation:0.000}"));
        foreach (var r in runs.Results("ours")) Assert.InRange(r.Priors!.Timestep, 700f, 900f);
    }

    [Fact]
    public void AblationsMoveTheMeasuresInThePapersDirection()
    {
        // measured (seed sets 0 / 100 / 200): --blend-attention none blend IoU 0.000 / 0.006 / 0.000 vs ours
        // 0.172 / 0.114 / 0.171; d = 1 mask_hard softness 0.83 vs d = 10's 0.15-0.16
        double iouOurs = Ours.Average(x => x.BlendIoU), iouNone = runs.Measures("blend-attention none").Average(x => x.BlendIoU);
        Assert.True(iouNone + 0.05 < iouOurs, $"--blend-attention none mean blend IoU {iouNone:0.000} should be clearly below ours {iouOurs:0.000}");
        double softOurs = Ours.Average(x => x.MaskHardSoftness), softD1 = runs.Measures("d=1").Average(x => x.MaskHardSoftness);
        Assert.True(softD1 > softOurs + 0.2, $"d = 1 mask_hard softness {softD1:0.000} should clearly exceed d = 10's {softOurs:0.000}");
    }

    // Explicit: on this model the BG leaks no FG colour with or without exclusion (mean leak --no-exclusion
    // 0.000 / 0.051 / 0.000 vs ours 0.000 / 0.049 / 0.000), so the paper's direction cannot be seen here.
    [Fact(Explicit = true)]
    public void NoExclusionLeaksMoreForegroundIntoTheBackground()
    {
        double leakOurs = Ours.Average(x => x.BgLeak), leakNoExcl = runs.Measures("no-exclusion").Average(x => x.BgLeak);
        Assert.True(leakNoExcl > leakOurs, $"--no-exclusion mean BG leak {leakNoExcl:0.0000} should exceed ours {leakOurs:0.0000}");
    }

    [Fact]
    public void ComposeMovesTheForegroundCleanly()
    {
        const int dx = 9, dy = -7;
        for (int k = 0; k < runs.Results("ours").Length; k++)
        {
            var r = runs.Results("ours")[k];
            var moved = LayerCompose.Compose(r.Foreground, r.Background, dx, dy);
            int w = r.Foreground.Width, h = r.Foreground.Height;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    int sx = x - dx, sy = y - dy;
                    bool inside = sx >= 0 && sy >= 0 && sx < w && sy < h;
                    byte a = inside ? r.Foreground.Pixels[(sy * w + sx) * 4 + 3] : (byte)0;
                    int o = (y * w + x) * 3;
                    for (int c = 0; c < 3; c++)
                    {
                        // where the moved layer is transparent the background shows through unchanged;
                        // where it is opaque, the layer's own colour
                        if (a == 0) Assert.Equal(r.Background.Pixels[o + c], moved.Pixels[o + c]);
                        else if (a == 255) Assert.Equal(r.Foreground.Pixels[(sy * w + sx) * 4 + c], moved.Pixels[o + c]);
                    }
                }
        }
    }
}
