using LayerFusion.Core.Fusion;
using LayerFusion.Tests.Checkpoints;

namespace LayerFusion.Tests.Fusion;

/// <summary>README's library example, run as written (on the tiny checkpoint, fewer steps).</summary>
public class ReadmeExampleTests
{
    [Fact]
    public async Task LoadOnceGenerateManyTimesWithProgressAndInMemoryImages()
    {
        using var tmp = new TempDir();
        string model = tmp.Sub("tiny");
        Assert.Equal(0, LayerFusion.Tests.Cli.SdxlCliTests.Run("make-tiny", model).Code);

        using var pipe = LayerFusionPipeline.Load(new LayerFusion.Cpu.CpuOps(), model, LayerDiffuseFiles.InDirectory(model));
        var request = new LayerFusionRequest { Foreground = "a glass bottle", Background = "a beach at noon", Seed = 7, Steps = 2, Width = 64, Height = 48 };
        var seen = new List<LayerFusionProgress>();
        var progress = new SynchronousProgress(seen);
        using var cts = new CancellationTokenSource();
        LayerFusionResult r = await pipe.GenerateAsync(request, progress, cts.Token);
        LayerFusionResult again = await pipe.GenerateAsync(request, null, cts.Token);

        Assert.NotEmpty(seen);
        Assert.Contains(seen, p => p.Step == p.Steps);
        Assert.Equal((64, 48, 4), (r.Foreground.Width, r.Foreground.Height, r.Foreground.Channels));
        foreach (var img in new[] { r.Background, r.Blend, r.AlphaComposite })
            Assert.Equal((64, 48, 3), (img.Width, img.Height, img.Channels));
        Assert.Equal(r.Foreground.Pixels, again.Foreground.Pixels);
        Assert.Equal(r.Blend.Pixels, again.Blend.Pixels);

        LayerFusionOutputs.Write(tmp.Sub("out"), r);
        foreach (var f in new[] { "fg.png", "bg.png", "blend.png", "alpha-composite.png" })
            Assert.True(File.Exists(Path.Combine(tmp.Sub("out"), f)), f);
    }

    sealed class SynchronousProgress(List<LayerFusionProgress> seen) : IProgress<LayerFusionProgress>
    {
        public void Report(LayerFusionProgress value)
        {
            lock (seen) seen.Add(value);
        }
    }
}
