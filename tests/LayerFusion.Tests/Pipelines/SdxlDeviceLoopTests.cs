using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Schedulers;
using LayerFusion.Tests.Fusion;
using LayerFusion.Tests.Models;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Pipelines;

/// <summary>
/// `sdxl`'s denoising loop on the backend (device latents, CFG and sampler step) against the host
/// reference loop, and the absence of host transfers inside it.
/// </summary>
public sealed class SdxlDeviceLoopTests(TinySdxl tiny) : IClassFixture<TinySdxl>
{
    static SdxlRequest Request(string sampler, float cfg = 5f, int steps = 3) => new()
    {
        Prompt = "a red fox in the snow", Steps = steps, GuidanceScale = cfg, Seed = 11, Width = 48, Height = 40, Sampler = sampler, NumImages = 2,
    };

    [Theory]
    [InlineData(Samplers.Euler, 5f)]
    [InlineData(Samplers.Euler, 1f)]        // unguided: the cond batch alone
    [InlineData(Samplers.DpmPP2MKarras, 5f)]
    [InlineData(Samplers.DpmPP2M, 5f)]
    [InlineData(Samplers.Ddim, 5f)]
    [InlineData(Samplers.EulerAncestral, 5f)]  // two images: the noise of every step in the host's order
    [InlineData(Samplers.DpmPP2MSdeKarras, 5f)]
    [InlineData(Samplers.DpmPP2MSde, 1f)]
    public void DeviceLoopMatchesTheHostLoop(string sampler, float cfg)
    {
        using var pipeline = SdxlPipeline.Open(tiny.Default, new CpuBackend());
        pipeline.HostReferenceLoop = true;
        var host = pipeline.Generate(Request(sampler, cfg), null, TestContext.Current.CancellationToken);
        pipeline.HostReferenceLoop = false;
        var dev = pipeline.Generate(Request(sampler, cfg), null, TestContext.Current.CancellationToken);
        double e = DevicePathEquivalenceTests.Relative(dev.Latents, host.Latents);
        Assert.True(e <= DevicePathEquivalenceTests.Tolerance, $"{sampler}: latents differ by {e:E2} (relative L2)");
        Assert.Equal(host.Sampler, dev.Sampler);
    }

    [Fact]
    public void NoHostTransferBetweenTheFirstAndTheLastStep()
    {
        var ops = new LifetimeCheckingOps(new CpuBackend());
        using var pipeline = SdxlPipeline.Open(tiny.Default, ops);
        var marks = new List<(int FromHost, int ToHost, int Uploads, int ScalarUploads)>();
        var progress = new Sync(_ => marks.Add(ops.Transfers));
        pipeline.Generate(Request(Samplers.DpmPP2MKarras, steps: 4), progress, TestContext.Current.CancellationToken);
        Assert.Equal(4, marks.Count);
        Assert.Equal(marks[0].FromHost, marks[^1].FromHost);
        Assert.Equal(marks[0].ToHost, marks[^1].ToHost);
        Assert.Equal(marks[0].Uploads, marks[^1].Uploads);
        // the timestep and the time ids are read from the step table uploaded before the loop
        Assert.Equal(marks[0].ScalarUploads, marks[^1].ScalarUploads);
    }

    sealed class Sync(Action<StepProgress> report) : IProgress<StepProgress>
    {
        public void Report(StepProgress value) => report(value);
    }
}
