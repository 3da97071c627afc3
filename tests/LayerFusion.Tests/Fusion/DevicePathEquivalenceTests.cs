using LayerFusion.Core.Fusion;
using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Schedulers;
using LayerFusion.Tests.Models;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Fusion;

/// <summary>
/// The engine's device-resident step (IOps prior ops, device latents/CFG/sampler, early-stopping
/// prior pass) against the float64-checked host reference path, on the tiny checkpoint, for every
/// ablation switch the CLI has.
/// </summary>
public sealed class DevicePathEquivalenceTests(TinyLayerFusionModel model) : IClassFixture<TinyLayerFusionModel>
{
    public const double Tolerance = 1e-5;

    static LayerFusionRequest Request(LayerFusionOptions options, string sampler = Samplers.Euler, bool dump = false, int steps = 3) => new()
    {
        Foreground = "a red apple",
        Background = "a wooden table",
        Steps = steps,
        GuidanceScale = 5f,
        Seed = 11,
        Width = 32,
        Height = 24,
        Sampler = sampler,
        DumpPriors = dump,
        Options = options with { TransparentAugment = false },
    };

    /// <summary>‖a − b‖₂ / ‖b‖₂ over all values.</summary>
    internal static double Relative(IEnumerable<float> actual, IEnumerable<float> expected)
    {
        double num = 0, den = 0;
        foreach (var (a, b) in actual.Zip(expected, (a, b) => (a, b)))
        {
            Assert.True(float.IsFinite(a), "non-finite value on the device path");
            num += ((double)a - b) * ((double)a - b);
            den += (double)b * b;
        }
        return Math.Sqrt(num / Math.Max(den, 1e-300));
    }

    (LayerFusionResult Result, float[][] Latents) Run(LayerFusionPipeline pipe, LayerFusionStepPath path, LayerFusionRequest req)
    {
        pipe.StepPath = path;
        var r = pipe.Generate(req, null, TestContext.Current.CancellationToken);
        return (r, pipe.LastLatents!);
    }

    public static TheoryData<string> Ablations => new()
    {
        "default", "no-sharing", "no-exclusion", "blend-self", "blend-cross", "blend-none", "d-3", "prior-layer", "blend-own-prompt",
        "sampler-dpmpp-2m-karras", "sampler-ddim", "sampler-dpmpp-2m", "sampler-euler-a", "sampler-dpmpp-2m-sde-karras",
    };

    LayerFusionRequest For(string ablation, IReadOnlyList<AttentionSite> sites) => ablation switch
    {
        "default" => Request(new LayerFusionOptions()),
        "no-sharing" => Request(new LayerFusionOptions { Sharing = false }),
        "no-exclusion" => Request(new LayerFusionOptions { Exclusion = false }),
        "blend-self" => Request(new LayerFusionOptions { BlendCrossAttention = false }),
        "blend-cross" => Request(new LayerFusionOptions { BlendSelfAttention = false }),
        "blend-none" => Request(new LayerFusionOptions { BlendSelfAttention = false, BlendCrossAttention = false }),
        "d-3" => Request(new LayerFusionOptions { D = 3f }),
        // the first self-attention layer: a down block, at another resolution than the default (last) one
        "prior-layer" => Request(new LayerFusionOptions { PriorLayer = sites.First(s => s.Kind == AttentionKind.Self).Path }),
        "blend-own-prompt" => Request(new LayerFusionOptions { BlendCrossReadsBackgroundPrompt = false }),
        _ => Request(new LayerFusionOptions(), sampler: ablation["sampler-".Length..]),
    };

    [Theory]
    [MemberData(nameof(Ablations))]
    public void DevicePathMatchesTheHostReference(string ablation)
    {
        using var pipe = model.Load();
        var req = For(ablation, pipe.Unet.AttentionSites);
        if (ablation == "prior-layer") Assert.NotEqual(LayerFusionOptions.DefaultPriorLayer(pipe.Unet.AttentionSites), req.Options.PriorLayer);
        var (hostR, host) = Run(pipe, LayerFusionStepPath.HostReference, req);
        var (devR, dev) = Run(pipe, LayerFusionStepPath.Device, req);
        for (int s = 0; s < TripletLayout.Streams; s++)
        {
            double e = Relative(dev[s], host[s]);
            TestContext.Current.TestOutputHelper?.WriteLine($"{ablation} stream {s}: relative L2 {e:E2}");
            if (Environment.GetEnvironmentVariable("LF_EQ_LOG") is { } log) File.AppendAllText(log, $"{ablation} stream {s}: {e:E2}\n");
            Assert.True(e <= Tolerance, $"{ablation}: stream {s} latents differ by {e:E2} (relative L2)");
        }
        Assert.Equal(hostR.Parameters, devR.Parameters);
        // the streams differ from each other (the comparison is not between copies of one stream)
        Assert.True(Relative(host[TripletLayout.Blend], host[TripletLayout.Background]) > 1e-4);
    }

    [Fact]
    public void DumpPriorsIsTheSameOnBothPaths()
    {
        using var pipe = model.Load();
        var req = Request(new LayerFusionOptions(), dump: true, steps: 4);
        var (hostR, _) = Run(pipe, LayerFusionStepPath.HostReference, req);
        var (devR, _) = Run(pipe, LayerFusionStepPath.Device, req);
        var a = hostR.Priors!;
        var b = devR.Priors!;
        Assert.Equal((a.Step, a.Timestep, a.VisualizedSite), (b.Step, b.Timestep, b.VisualizedSite));
        Assert.Equal((a.Structure.Height, a.Structure.Width), (b.Structure.Height, b.Structure.Width));
        Assert.True(Relative(b.Structure.Sparsity, a.Structure.Sparsity) <= Tolerance, "s");
        Assert.True(Relative(b.Structure.Density, a.Structure.Density) <= Tolerance, "s'");
        Assert.NotNull(a.PriorProbabilities);
        Assert.True(Relative(b.PriorProbabilities!, a.PriorProbabilities!) <= Tolerance, "head-mean map");
        Assert.Equal(a.Maps.Keys.Order(), b.Maps.Keys.Order());
        foreach (var (site, ma) in a.Maps)
        {
            var mb = b.Maps[site];
            Assert.Equal((ma.Height, ma.Width), (mb.Height, mb.Width));
            foreach (var (x, y, what) in new[] { (mb.Density, ma.Density, "s'"), (mb.Content, ma.Content, "c"), (mb.SoftMask, ma.SoftMask, "soft"), (mb.HardMask, ma.HardMask, "hard") })
                Assert.True(Relative(x, y) <= Tolerance, $"{site} {what}: {Relative(x, y):E2}");
        }
    }

    [Theory]
    [InlineData(Samplers.Euler)]
    [InlineData(Samplers.DpmPP2MKarras)]
    [InlineData(Samplers.Ddim)]
    [InlineData(Samplers.EulerAncestral)]
    [InlineData(Samplers.DpmPP2MSdeKarras)]
    public void NoHostTransferBetweenTheFirstAndTheLastStep(string sampler)
    {
        var ops = new LifetimeCheckingOps(new CpuBackend());
        using var pipe = LayerFusionPipeline.Load(ops, model.Dir, new LayerDiffuseFiles(model.Files.DenseAttention, model.Files.TransparentDecoder),
            cancellationToken: TestContext.Current.CancellationToken);
        var marks = new List<(int Step, (int FromHost, int ToHost, int Uploads, int ScalarUploads) Transfers)>();
        var progress = new SyncProgress(p =>
        {
            if (p.Phase == LayerFusionPhase.Denoise) marks.Add((p.Step, ops.Transfers));
        });
        int steps = 4;
        pipe.Generate(Request(new LayerFusionOptions(), sampler, steps: steps), progress, TestContext.Current.CancellationToken);
        Assert.Equal(steps, marks.Count);
        var first = marks[0].Transfers;
        var last = marks[^1].Transfers;
        // steps 2..4 in full: no latent, mask, prior or noise copy either way
        Assert.Equal(first.FromHost, last.FromHost);
        Assert.Equal(first.ToHost, last.ToHost);
        Assert.Equal(first.Uploads, last.Uploads);
        // nor a timestep or time id: the UNet calls read them from the step table uploaded before the loop
        Assert.Equal(first.ScalarUploads, last.ScalarUploads);
        Assert.True(pipe.LastPriorPassStoppedEarly || !TinyHasBlocksAfterTheLastAttention(pipe), "the prior pass ran the whole UNet");
    }

    static bool TinyHasBlocksAfterTheLastAttention(LayerFusionPipeline pipe) =>
        pipe.Unet.Config.UpBlockTypes[^1] == "UpBlock2D";

    sealed class SyncProgress(Action<LayerFusionProgress> report) : IProgress<LayerFusionProgress>
    {
        public void Report(LayerFusionProgress value) => report(value);
    }
}
