using LayerFusion.Core.Fusion;
using LayerFusion.Core.Pipelines;
using LayerFusion.WeightsLoader;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Fusion;

/// <summary>Library entry points: argument checks, memory refusals, ownership, loading with progress, Dispose during a run.</summary>
public sealed class PipelineLifecycleTests(TinyLayerFusionModel model) : IClassFixture<TinyLayerFusionModel>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    LayerDiffuseFiles Files => new(model.Files.DenseAttention, model.Files.TransparentDecoder);

    static LayerFusionRequest Request(int steps = 2) => new()
    {
        Foreground = "a red apple", Background = "a wooden table", Steps = steps, Seed = 1, Width = 32, Height = 24,
        Options = new LayerFusionOptions { TransparentAugment = false },
    };

    sealed class SyncProgress(Action<LayerFusionProgress> report) : IProgress<LayerFusionProgress>
    {
        public void Report(LayerFusionProgress value) => report(value);
    }

    [Fact]
    public void BadArgumentsAreArgumentExceptions()
    {
        using var pipe = LayerFusionPipeline.Load(new CpuBackend(), model.Dir, Files, cancellationToken: Ct);
        Assert.Throws<ArgumentNullException>(() => pipe.Generate(null!, cancellationToken: Ct));
        var empty = Assert.Throws<UserInputException>(() => pipe.Generate(Request() with { Foreground = "  " }, cancellationToken: Ct));
        Assert.IsAssignableFrom<ArgumentException>(empty);
        Assert.Contains("foreground prompt is empty", empty.Message);
        Assert.Throws<UserInputException>(() => pipe.Generate(Request() with { Width = 30 }, cancellationToken: Ct));
        Assert.Throws<UserInputException>(() => pipe.Generate(Request() with { Steps = 0 }, cancellationToken: Ct));
        Assert.Throws<ArgumentNullException>(() => LayerFusionPipeline.Load(null!, model.Dir, Files, cancellationToken: Ct));
        Assert.Throws<ArgumentException>(() => LayerFusionPipeline.Load(new CpuBackend(), " ", Files, cancellationToken: Ct));
        Assert.Throws<ArgumentNullException>(() => LayerFusionPipeline.Load(new CpuBackend(), model.Dir, null!, cancellationToken: Ct));
    }

    [Fact]
    public void SizeDefaultsToTheModelsAndOversizedRequestsAreRefusedUpFront()
    {
        using var pipe = LayerFusionPipeline.Load(new MeteredOps(new CpuBackend(), availableBytes: 64L << 20), model.Dir, Files, cancellationToken: Ct);
        var reports = new List<LayerFusionProgress>();
        var e = Assert.Throws<RequestTooLargeException>(() => pipe.Generate(Request() with { Width = 4096, Height = 4096 }, new SyncProgress(reports.Add), Ct));
        Assert.Empty(reports); // before any work
        Assert.StartsWith("a 4096x4096 triplet needs about ", e.Message);
        Assert.Contains("but only 0.06 GiB is available", e.Message);
        Assert.True(e.EstimatedBytes > e.AvailableBytes);
        var beyond = Assert.Throws<RequestTooLargeException>(() => pipe.Generate(Request() with { Width = 16384, Height = 16384 }, null, Ct));
        Assert.Contains("8192-pixel limit", beyond.Message);

        // the default size is the model's (unet sample_size x the VAE factor), and it fits
        var r = pipe.Generate(Request(steps: 1) with { Width = null, Height = null }, null, Ct);
        Assert.Equal((pipe.Sdxl.DefaultSize, pipe.Sdxl.DefaultSize), (r.Background.Width, r.Background.Height));
    }

    [Fact]
    public void MemoryEstimateGrowsWithTheImageAndNamesTheParts()
    {
        using var pipe = LayerFusionPipeline.Load(new CpuBackend(), model.Dir, Files, cancellationToken: Ct);
        var small = MemoryEstimate.ForTriplet(pipe, 64, 64);
        var big = MemoryEstimate.ForTriplet(pipe, 128, 128);
        // every part is per pixel (or per latent position): 4x the pixels, 4x the bytes
        Assert.Equal(4 * small.UnetBytes, big.UnetBytes);
        Assert.Equal(4 * small.VaeBytes, big.VaeBytes);
        Assert.Equal(4 * small.OutputBytes, big.OutputBytes);
        Assert.True(small.TotalBytes > 0 && small.TransparentBytes > 0);
        var e = Assert.Throws<RequestTooLargeException>(() => (small with { AvailableBytes = 10 }).Require());
        Assert.Contains("UNet", e.Message);
        Assert.Contains("transparent decoder", e.Message);
    }

    [Fact]
    public async Task LoadAsyncReportsProgressAndCancelsAndOwnedBackendsAreFreed()
    {
        var ops = new MeteredOps(new CpuBackend());
        var seen = new List<LayerFusionProgress>();
        using (var pipe = await LayerFusionPipeline.LoadAsync(ops, model.Dir, Files, ownsOps: true, progress: new SyncProgress(seen.Add), cancellationToken: Ct))
        {
            Assert.All(seen, p => Assert.Equal(LayerFusionPhase.Load, p.Phase));
            Assert.Equal(ops.Uploads, seen[^1].Steps);
            Assert.Equal(seen[^1].Steps, seen[^1].Step);
            Assert.Equal(0, ops.Disposals);
        }
        Assert.Equal(1, ops.Disposals);

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var cancelled = new MeteredOps(new CpuBackend());
        var progress = new SyncProgress(_ => cts.Cancel());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            LayerFusionPipeline.LoadAsync(cancelled, model.Dir, Files, ownsOps: true, progress: progress, cancellationToken: cts.Token));
        Assert.True(cancelled.Uploads < ops.Uploads, "stopped early");
        Assert.Equal(1, cancelled.Disposals); // owned: freed when loading fails

        var notOwned = new MeteredOps(new CpuBackend());
        LayerFusionPipeline.Load(notOwned, model.Dir, Files, cancellationToken: Ct).Dispose();
        Assert.Equal(0, notOwned.Disposals);
    }

    [Fact]
    public async Task DisposeDuringAGenerationWaitsForItAndItEndsAsDisposed()
    {
        var ops = new MeteredOps(new CpuBackend());
        var pipe = LayerFusionPipeline.Load(ops, model.Dir, Files, ownsOps: true, cancellationToken: Ct);
        using var started = new ManualResetEventSlim();
        int inCallback = 0, reports = 0;
        var progress = new SyncProgress(p =>
        {
            if (p.Phase != LayerFusionPhase.Denoise) return;
            Volatile.Write(ref inCallback, 1);
            Interlocked.Increment(ref reports);
            started.Set();
            Thread.Sleep(200); // still in the step when Dispose comes
            Volatile.Write(ref inCallback, 0);
        });
        var run = pipe.GenerateAsync(Request(steps: 50), progress, Ct);
        Assert.True(started.Wait(TimeSpan.FromMinutes(2), Ct));
        pipe.Dispose();
        // Dispose came back only after the generation left its step (the task itself completes a moment later)
        Assert.Equal(0, Volatile.Read(ref inCallback));
        int seen = Volatile.Read(ref reports);
        Assert.True(seen < 50, "the generation ran to its end instead of being cancelled");
        Assert.Equal(1, ops.Disposals); // freed after the generation stopped, once
        var e = await Assert.ThrowsAsync<ObjectDisposedException>(() => run);
        Assert.Contains(nameof(LayerFusionPipeline), e.ObjectName);
        Assert.Equal(seen, Volatile.Read(ref reports)); // no step after Dispose returned
        var after = Assert.Throws<ObjectDisposedException>(() => pipe.Generate(Request(), cancellationToken: Ct));
        Assert.Contains(nameof(LayerFusionPipeline), after.ObjectName);
        pipe.Dispose(); // idempotent
        Assert.Equal(1, ops.Disposals);
    }

    [Fact]
    public async Task DisposeFromTheGenerationsOwnProgressCallbackDoesNotDeadlock()
    {
        var ops = new MeteredOps(new CpuBackend());
        var pipe = LayerFusionPipeline.Load(ops, model.Dir, Files, ownsOps: true, cancellationToken: Ct);
        var progress = new SyncProgress(p => { if (p.Phase == LayerFusionPhase.Denoise) pipe.Dispose(); });
        var run = Task.Run(() => pipe.Generate(Request(steps: 5), progress, Ct), Ct);
        Assert.True(await Task.WhenAny(run, Task.Delay(TimeSpan.FromMinutes(2), Ct)) == run, "deadlocked");
        await Assert.ThrowsAsync<ObjectDisposedException>(() => run);
        Assert.Equal(1, ops.Disposals);
    }

    [Fact]
    public void SdxlPipelineDisposedNamesItsType()
    {
        var sdxl = SdxlPipeline.Open(model.Dir, new CpuBackend());
        sdxl.Dispose();
        var e = Assert.Throws<ObjectDisposedException>(() => sdxl.Generate(new SdxlRequest { Prompt = "x", Steps = 1, Width = 32, Height = 24 }, null, Ct));
        Assert.Contains(nameof(SdxlPipeline), e.ObjectName);
        Assert.Throws<ArgumentException>(() => SdxlPipeline.Open(" ", new CpuBackend()));
    }
}

/// <summary>Model files truncated in place (as `cp` over them does) while a pipeline holds them.</summary>
public sealed class TruncatedModelFileTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static void TruncateInPlace(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
        fs.SetLength(fs.Length / 3);
    }

    [Fact]
    public void AfterLoadingTheFilesAreNotNeededAgain()
    {
        using var model = new TinyLayerFusionModel();
        using var pipe = LayerFusionPipeline.Load(new CpuBackend(), model.Dir,
            new LayerDiffuseFiles(model.Files.DenseAttention, model.Files.TransparentDecoder), cancellationToken: Ct);
        TruncateInPlace(model.Files.TransparentDecoder);
        TruncateInPlace(Path.Combine(model.Dir, "unet", "diffusion_pytorch_model.safetensors"));
        var r = pipe.Generate(new LayerFusionRequest { Foreground = "a cup", Background = "a desk", Steps = 1, Width = 32, Height = 24 }, null, Ct);
        Assert.Equal(32, r.Foreground.Width);
    }

    [Fact]
    public void ALazilyReadCheckpointTruncatedMidRunIsAClearError()
    {
        using var model = new TinyLayerFusionModel();
        using var pipe = SdxlPipeline.Open(model.Dir, new CpuBackend(), new SdxlPipelineOptions { PreloadWeights = false });
        string unet = Path.Combine(model.Dir, "unet", "diffusion_pytorch_model.safetensors");
        TruncateInPlace(unet);
        var e = Assert.Throws<UserInputException>(() => pipe.Generate(new SdxlRequest { Prompt = "a cup", Steps = 1, Width = 32, Height = 24 }, null, Ct));
        Assert.Contains($"safetensors file '{unet}' changed while in use", e.Message);
    }
}
