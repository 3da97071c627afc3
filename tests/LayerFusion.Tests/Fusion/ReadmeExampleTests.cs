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

        // README's lines, with the tiny model's paths, a list instead of the console and 3 steps
        // instead of 30 (30 take minutes on a shared 2-core machine)
        var seen = new List<LayerFusionProgress>();
        var progress = new SynchronousProgress(seen);
        using var cts = new CancellationTokenSource();
        using var pipe = await LayerFusionPipeline.LoadAsync(new LayerFusion.Cpu.CpuOps(), model,
            LayerDiffuseFiles.InDirectory(model), ownsOps: true, progress: progress, cancellationToken: cts.Token);
        var request = new LayerFusionRequest { Foreground = "a glass bottle", Background = "a beach at noon", Seed = 7, Steps = 3 };
        LayerFusionResult r = await pipe.GenerateAsync(request, progress, cts.Token);
        LayerFusionResult again = await pipe.GenerateAsync(request, null, cts.Token);

        Assert.Contains(seen, p => p.Phase == LayerFusionPhase.Load && p.Step == p.Steps);
        Assert.Contains(seen, p => p.Phase == LayerFusionPhase.Denoise && p.Step == 3);
        int size = pipe.Sdxl.DefaultSize;
        Assert.NotEmpty(seen);
        Assert.Contains(seen, p => p.Step == p.Steps);
        Assert.Equal((size, size, 4), (r.Foreground.Width, r.Foreground.Height, r.Foreground.Channels));
        foreach (var img in new[] { r.Background, r.Blend, r.AlphaComposite })
            Assert.Equal((size, size, 3), (img.Width, img.Height, img.Channels));
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
