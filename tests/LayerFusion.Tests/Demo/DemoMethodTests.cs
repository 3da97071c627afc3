using LayerFusion.Core.Fusion;

namespace LayerFusion.Tests.Demo;

/// <summary>
/// Functional tests of the method on the built-in demo model (tools/train-demo, models/demo), over the
/// 16 fixed pairs/seeds of <see cref="DemoRuns"/>. Thresholds sit below the distributions measured on
/// the shipped model over three seed sets (the fixed seeds 0-15 and, with LAYERFUSION_DEMO_SEED_OFFSET,
/// 100-115 and 200-215; docs/demo-measures.md), written beside each.
/// The blend, prior and ablation tests are Explicit: on this toy model the blend does not work yet
/// (its masks are not object masks, and BLEND's cross-attention reads the BG prompt, so the object
/// does not reach the blend: docs/decisions.md "Demo model"), so they fail
/// on it; they are the checks a better-trained demo model has to pass. Run them with `-- --explicit only`.
/// </summary>
public sealed class DemoMethodTests(DemoRuns runs) : IClassFixture<DemoRuns>
{
    DemoMeasure[] Ours => runs.Measures("ours");

    [Fact]
    public void ForegroundAlphaHoldsOneObjectOfPlausibleSizeInThePromptsColour()
    {
        // measured (seed sets 0 / 100 / 200): one object 13/16, 15/16, 15/16; colour right 15/16, 15/16, 16/16
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
        // measured (seed sets 0 / 100 / 200): BG pixels of the FG colour > 1% in 0/16, 1/16, 0/16 pairs; mean leak 0.000, 0.037, 0.000
        const int MaxLeakingPairs = 2;
        var leaks = Ours.Select(x => x.BgLeak).ToArray();
        Assert.True(leaks.Count(l => l > 0.01) <= MaxLeakingPairs, $"BG pixels of the FG colour > 1% in {leaks.Count(l => l > 0.01)}/16: {string.Join(", ", leaks.Select(l => l.ToString("0.000")))}");
    }

    // Explicit: the checks the blend must pass once a demo model's blend works. Measured on the shipped
    // model (seed sets 0 / 100 / 200): mean blend IoU 0.008 / 0.031 / 0.013 (alpha blending 0.53 / 0.59 / 0.63,
    // interaction off 0.55 / 0.51 / 0.53), mean mask_hard IoU 0.044 / 0.099 / 0.049; --no-exclusion leaks
    // 0.000 / 0.008 / 0.000 vs ours 0.000 / 0.037 / 0.000; --blend-attention none 0.000-0.002 blend IoU;
    // d = 1 softness 0.89 vs 0.31-0.32. The thresholds are what the method should give, not measured.
    const double THRESH_BLEND_MEAN = 0.5, THRESH_BLEND_PAIR = 0.3, THRESH_MASK = 0.3, THRESH_SVAR = 0.05, THRESH_CVAR = 0.05;
    const int THRESH_BLEND_PAIRS = 12;

    [Fact(Explicit = true)]
    public void BlendHoldsTheObjectWhereForegroundAlphaIsOpaque()
    {
        var iou = Ours.Select(x => x.BlendIoU).ToArray();
        Assert.True(iou.Average() >= THRESH_BLEND_MEAN, $"mean IoU(FG alpha > 0.5, blend pixels of the FG colour) {iou.Average():0.000}");
        Assert.True(iou.Count(v => v >= THRESH_BLEND_PAIR) >= THRESH_BLEND_PAIRS, $"pairs with IoU >= THRESH_BLEND_PAIR: {iou.Count(v => v >= THRESH_BLEND_PAIR)}/16");
    }

    [Fact(Explicit = true)]
    public void PriorsMaskTheObjectAndAreNotUniform()
    {
        var m = Ours;
        Assert.True(m.Average(x => x.MaskHardIoU) >= THRESH_MASK, $"mean IoU(mask_hard at t = 0.8T, FG alpha) {m.Average(x => x.MaskHardIoU):0.000}");
        Assert.All(m, x => Assert.True(x.SPrimeVariation > THRESH_SVAR && x.ContentVariation > THRESH_CVAR, $"s' variation {x.SPrimeVariation:0.000}, c variation {x.ContentVariation:0.000}"));
        foreach (var r in runs.Results("ours")) Assert.InRange(r.Priors!.Timestep, 700f, 900f);
    }

    [Fact(Explicit = true)]
    public void AblationsMoveTheMeasuresInThePapersDirection()
    {
        double leakOurs = Ours.Average(x => x.BgLeak), leakNoExcl = runs.Measures("no-exclusion").Average(x => x.BgLeak);
        Assert.True(leakNoExcl > leakOurs, $"--no-exclusion mean BG leak {leakNoExcl:0.0000} should exceed ours {leakOurs:0.0000}");
        double iouOurs = Ours.Average(x => x.BlendIoU), iouNone = runs.Measures("blend-attention none").Average(x => x.BlendIoU);
        Assert.True(iouNone < iouOurs, $"--blend-attention none mean blend IoU {iouNone:0.000} should be below ours {iouOurs:0.000}");
        double softOurs = Ours.Average(x => x.MaskHardSoftness), softD1 = runs.Measures("d=1").Average(x => x.MaskHardSoftness);
        Assert.True(softD1 > softOurs + 0.2, $"d = 1 mask_hard softness {softD1:0.000} should clearly exceed d = 10's {softOurs:0.000}");
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
