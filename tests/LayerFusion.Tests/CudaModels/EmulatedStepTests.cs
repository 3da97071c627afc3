using LayerFusion.Core.Fusion;
using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Schedulers;
using LayerFusion.Cuda;
using LayerFusion.Tests.Cuda;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.CudaModels;

/// <summary>
/// The denoising step on the CUDA backend, observed through the stand-in driver's counters
/// (<see cref="StandInCounters"/>): between the first and the last step of a tiny-checkpoint `sdxl`
/// and LayerFusion `generate` run, no call that synchronizes on the real driver, no host-device
/// copy and no driver allocation, with the step graph and without it; and the graph's outputs equal
/// the op-by-op outputs exactly (a replay runs the same kernels on the same arguments). Emulated
/// device only (the counters are a stand-in extension; on a GPU perf/device-check.sh compares graph
/// and no graph), so these are emulated results, not GPU results.
/// </summary>
[Collection("cuda")]
[Trait("device", "CUDA: emulated sm_90 on the CPU where no GPU is installed (tests/cuda-standin)")]
public class EmulatedStepTests(CudaModelFixture fx) : IClassFixture<CudaModelFixture>
{
    const int Steps = 4;

    static SdxlRequest Sdxl(string sampler) => new()
    {
        Prompt = "a lighthouse on a cliff",
        NegativePrompt = "blurry",
        Steps = Steps,
        GuidanceScale = 5f,
        Seed = 7,
        Width = 40,
        Height = 24,
        Sampler = sampler,
    };

    static LayerFusionRequest Triplet(string sampler) => new()
    {
        Foreground = "a red apple",
        Background = "a wooden table",
        Steps = Steps,
        GuidanceScale = 5f,
        Seed = 3,
        Width = 32,
        Height = 24,
        Sampler = sampler,
        Options = new LayerFusionOptions { TransparentAugment = false },
    };

    // Once before a run: the fixture's accessor checks the context for a fault (cuCtxSynchronize),
    // which must not be counted inside the loop
    void Prepare()
    {
        fx.Gpu();
        EmulatedCuda.SkipUnlessActive();
        Counters();
    }

    static StandInCounters.Counts Counters() =>
        StandInCounters.TryRead() ?? throw new InvalidOperationException("the stand-in driver has no lfemu_counters export");

    static void AssertQuiet(List<StandInCounters.Counts> marks, StandInCounters.Counts after, string what)
    {
        Assert.Equal(Steps, marks.Count);
        // the counters do count: reading the final latents back and decoding happen after the last step
        var tail = after - marks[^1];
        Assert.True(tail.DeviceToHost > 0 && tail.Synchronizations > 0, $"{what}: the stand-in counted no read-back after the loop ({tail})");
        var d = marks[^1] - marks[0];
        Assert.True(d == default, $"{what}: between the first and the last step {d.Synchronizations} synchronizing calls, " +
            $"{d.HostToDevice} host-to-device and {d.DeviceToHost} device-to-host copies, {d.Allocations} driver allocations");
    }

    [Theory]
    [InlineData(Samplers.Euler, true)]
    [InlineData(Samplers.DpmPP2MKarras, true)]
    [InlineData(Samplers.DpmPP2MKarras, false)]
    [InlineData(Samplers.EulerAncestral, true)]
    public void Emulated_sdxl_steps_neither_synchronize_nor_copy(string sampler, bool graphs)
    {
        Prepare();
        var pipe = fx.GpuPipeline().Sdxl;
        var marks = new List<StandInCounters.Counts>();
        pipe.StepGraphs = graphs;
        try { pipe.Generate(Sdxl(sampler), new Sync<StepProgress>(_ => marks.Add(Counters())), TestContext.Current.CancellationToken); }
        finally { pipe.StepGraphs = true; }
        AssertQuiet(marks, Counters(), $"sdxl {sampler}, graphs {graphs}");
        Assert.Equal(graphs ? Steps - 1 : 0, pipe.LastGraphSteps);
    }

    [Theory]
    [InlineData(Samplers.Euler, true)]
    [InlineData(Samplers.Euler, false)]
    public void Emulated_layerfusion_steps_neither_synchronize_nor_copy(string sampler, bool graphs)
    {
        Prepare();
        var pipe = fx.GpuPipeline();
        var marks = new List<StandInCounters.Counts>();
        pipe.StepGraphs = graphs;
        try
        {
            pipe.Generate(Triplet(sampler), new Sync<LayerFusionProgress>(p =>
            {
                if (p.Phase == LayerFusionPhase.Denoise) marks.Add(Counters());
            }), TestContext.Current.CancellationToken);
        }
        finally { pipe.StepGraphs = true; }
        AssertQuiet(marks, Counters(), $"generate {sampler}, graphs {graphs}");
        Assert.Equal(graphs ? Steps - 1 : 0, pipe.LastGraphSteps);
    }

    [Theory]
    [InlineData(Samplers.Euler)]
    [InlineData(Samplers.DpmPP2MKarras)]
    [InlineData(Samplers.Ddim)]
    [InlineData(Samplers.EulerAncestral)]
    public void Emulated_sdxl_step_graph_gives_the_op_by_op_result(string sampler)
    {
        fx.Gpu();
        var pipe = fx.GpuPipeline().Sdxl;
        pipe.StepGraphs = false;
        SdxlResult plain;
        try { plain = pipe.Generate(Sdxl(sampler), cancellationToken: TestContext.Current.CancellationToken); }
        finally { pipe.StepGraphs = true; }
        Assert.Equal(0, pipe.LastGraphSteps);
        var graphed = pipe.Generate(Sdxl(sampler), cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(Steps - 1, pipe.LastGraphSteps);
        Assert.All(plain.Latents, v => Assert.True(float.IsFinite(v)));
        Assert.Equal(plain.Latents, graphed.Latents);
        for (int i = 0; i < plain.Images.Count; i++) Assert.Equal(plain.Images[i].Pixels, graphed.Images[i].Pixels);
    }

    [Fact]
    public void Emulated_layerfusion_step_graph_gives_the_op_by_op_triplet()
    {
        fx.Gpu();
        var pipe = fx.GpuPipeline();
        pipe.StepGraphs = false;
        LayerFusionResult plain;
        float[][] plainLatents;
        try
        {
            plain = pipe.Generate(Triplet(Samplers.DpmPP2MKarras), cancellationToken: TestContext.Current.CancellationToken);
            plainLatents = pipe.LastLatents!;
        }
        finally { pipe.StepGraphs = true; }
        var graphed = pipe.Generate(Triplet(Samplers.DpmPP2MKarras), cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(Steps - 1, pipe.LastGraphSteps);
        for (int s = 0; s < TripletLayout.Streams; s++) Assert.Equal(plainLatents[s], pipe.LastLatents![s]);
        Assert.Equal(plain.Foreground.Pixels, graphed.Foreground.Pixels);
        Assert.Equal(plain.Background.Pixels, graphed.Background.Pixels);
        Assert.Equal(plain.Blend.Pixels, graphed.Blend.Pixels);
    }

    sealed class Sync<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
