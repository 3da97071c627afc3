using LayerFusion.Core.Fusion;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Cuda.Bench;
using LayerFusion.Tests.Models;

namespace LayerFusion.Tests.Fusion;

/// <summary>
/// The early-stopping prior pass on SDXL's real layout at 1024x1024, counted on the graph itself
/// (shape-only backend): it skips up_blocks.2 and conv_out, and no statistics run on the host. Stopping is checked
/// between blocks, so up_blocks.1's upsampler (after the prior layer) still runs.
/// The numbers are printed (test output; perf/NOTES.md quotes them).
/// </summary>
public sealed class LayerFusionFlopsTests
{
    [Theory]
    [InlineData(128, 128, "default")]
    [InlineData(128, 128, "blend-cross-only")]
    public void ThePriorPassStopsAfterTheLastLayerItFeeds(int lh, int lw, string variant)
    {
        var (config, _) = RealLayoutTests.Layout("sdxl_unet");
        var cfg = UNet2DConditionModel.ReadConfig(config);
        var opt = variant == "default" ? new LayerFusionOptions() : new LayerFusionOptions { BlendSelfAttention = false, Exclusion = false };
        var f = LayerFusionFlops.PerStep(cfg, lh, lw, opt);
        TestContext.Current.TestOutputHelper?.WriteLine($"SDXL {lw * 8}x{lh * 8} ({variant}):\n{f.Format()}");
        if (Environment.GetEnvironmentVariable("LF_FLOPS_LOG") is { } log) File.AppendAllText(log, $"SDXL {lw * 8}x{lh * 8} ({variant}):\n{f.Format()}\n");
        // SDXL's last transformer is up_blocks.1.attentions.2 (the paper's prior layer): up_blocks.2 is skipped
        Assert.Equal(1, f.PriorPassBlocksSkipped);
        // up_blocks.2 (three 320-channel resnets at 128x128) and conv_out: ~4.5% of the pass, net of the fused s sweep
        Assert.True(f.PriorPassStopped < 0.97 * f.PriorPassFull, $"{f.PriorPassStopped:E3} vs {f.PriorPassFull:E3}");
        Assert.True(f.PriorPassHostStats > 1e10, "the old path's host statistics (~20 GFLOP at 1024^2) are counted");
        Assert.True(f.Interaction > 5 * f.PriorPassFull);
    }
}
