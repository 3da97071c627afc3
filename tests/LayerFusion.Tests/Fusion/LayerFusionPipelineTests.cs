using LayerFusion.Core.Fusion;
using LayerFusion.Core.Imaging;
using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Schedulers;
using LayerFusion.Tests.Checkpoints;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.Tiny;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Fusion;

/// <summary>A tiny SDXL-shaped checkpoint with LayerDiffuse files, written once per test class.</summary>
public sealed class TinyLayerFusionModel : IDisposable
{
    readonly TempDir _tmp = new();

    public TinyLayerFusionModel()
    {
        Dir = _tmp.Sub("tiny");
        var configs = TinyCheckpoint.DefaultConfigs();
        TinyCheckpoint.Write(Dir, CheckpointLayout.DiffusersFolder, 5, DType.F16, configs);
        // the transparent decoder injects the latent at the tiny VAE's scale (2 levels: 2x)
        int vaeScale = 1 << (configs.VaeConfig.BlockOutChannels.Length - 1);
        Files = LayerDiffuseTiny.WriteAll(Dir, configs.UnetConfig, 5,
            decoder: LayerDiffuseTiny.TinyDecoderConfig with { LatentInjectLevel = int.Log2(vaeScale) });
    }

    public string Dir { get; }
    public LayerDiffuseTinyFiles Files { get; }

    public LayerFusionPipeline Load(bool lora = false) =>
        LayerFusionPipeline.Load(new CpuBackend(), Dir, new LayerDiffuseFiles(lora ? Files.LoraAttention : Files.DenseAttention, Files.TransparentDecoder));

    public void Dispose() => _tmp.Dispose();
}

public sealed class LayerFusionPipelineTests(TinyLayerFusionModel model) : IClassFixture<TinyLayerFusionModel>
{
    static LayerFusionRequest Request(int width = 72, int height = 56, LayerFusionOptions? options = null, bool dump = false, int steps = 2) => new()
    {
        Foreground = "a red apple",
        Background = "a wooden table",
        Steps = steps,
        GuidanceScale = 5f,
        Seed = 42,
        Width = width,
        Height = height,
        Sampler = Samplers.Euler,
        DumpPriors = dump,
        Options = options ?? new LayerFusionOptions { TransparentAugment = false },
    };

    static void AssertSameImage(Image8 a, Image8 b, string what)
    {
        Assert.Equal((a.Width, a.Height, a.Channels), (b.Width, b.Height, b.Channels));
        Assert.True(a.Pixels.AsSpan().SequenceEqual(b.Pixels), $"{what}: pixels differ");
    }

    [Fact]
    public async Task TripletAtANonMultipleOf64SizeHasRealAlphaAndPriorDumps()
    {
        using var pipe = model.Load();
        var reports = new List<LayerFusionProgress>();
        var progress = new SyncProgress(reports.Add);
        var a = await pipe.GenerateAsync(Request(dump: true), progress, TestContext.Current.CancellationToken);

        foreach (var img in new[] { a.Background, a.Blend, a.AlphaComposite })
            Assert.Equal((72, 56, 3), (img.Width, img.Height, img.Channels));
        Assert.Equal((72, 56, 4), (a.Foreground.Width, a.Foreground.Height, a.Foreground.Channels));
        var alpha = Enumerable.Range(0, 72 * 56).Select(i => a.Foreground.Pixels[4 * i + 3]).ToArray();
        Assert.Contains(alpha, v => v != 255);
        Assert.True(alpha.Distinct().Count() > 1, "alpha is flat");
        Assert.False(a.Background.Pixels.AsSpan().SequenceEqual(a.Blend.Pixels), "BLEND equals BG");

        Assert.Equal(new[] { 1, 2 }, reports.Where(r => r.Phase == LayerFusionPhase.Denoise).Select(r => r.Step));
        Assert.All(reports.Where(r => r.Phase == LayerFusionPhase.Denoise), r => Assert.Equal(2, r.Steps));
        // one decode step per VAE decode (BG, BLEND, FG), then one per transparent-decoder pass (8 with augmentation, else 1)
        var decode = reports.Where(r => r.Phase == LayerFusionPhase.Decode).ToList();
        int decodeSteps = 3 + (Request(dump: true).Options.TransparentAugment ? 8 : 1);
        Assert.Equal(Enumerable.Range(0, decodeSteps + 1), decode.Select(r => r.Step));
        Assert.All(decode, r => Assert.Equal(decodeSteps, r.Steps));

        // priors at the step closest to t = 0.8T
        var d = a.Priors!;
        Assert.NotNull(d);
        Assert.Equal("a red apple, a wooden table", a.Parameters["layerfusion:blend"]);
        Assert.Contains(d.VisualizedSite, d.Maps.Keys);
        var m = d.Structure.Height * d.Structure.Width;
        Assert.NotNull(d.PriorProbabilities);
        var s = PriorMath.SparsityScores(d.PriorProbabilities!, m, m);
        for (int i = 0; i < m; i++) Assert.Equal(s[i], d.Structure.Sparsity[i], 1e-4 * s[i]);
        Assert.Equal(pipe.Unet.AttentionSites.Count, d.Maps.Count);
        // the step whose timestep is closest to 0.8T
        var sched = Samplers.Create(Samplers.Euler, pipe.SchedulerConfig);
        sched.SetTimesteps(2);
        Assert.Equal(sched.Timesteps[d.Step], d.Timestep);
        float target = 0.8f * pipe.SchedulerConfig.NumTrainTimesteps;
        Assert.All(sched.Timesteps, t => Assert.True(Math.Abs(t - target) >= Math.Abs(d.Timestep - target)));
    }

    [Fact]
    public void LoraAndDenseLayerDiffuseFilesGiveTheSameTripletDeterministically()
    {
        using var dense = model.Load(lora: false);
        using var lora = model.Load(lora: true);
        var req = Request(32, 24, new LayerFusionOptions(), steps: 3); // with the 8-way transparent median
        var a = dense.Generate(req, null, TestContext.Current.CancellationToken);
        var b = lora.Generate(req, null, TestContext.Current.CancellationToken);
        var again = dense.Generate(req, null, TestContext.Current.CancellationToken);
        foreach (var other in new[] { b, again })
        {
            AssertSameImage(a.Foreground, other.Foreground, "FG");
            AssertSameImage(a.Background, other.Background, "BG");
            AssertSameImage(a.Blend, other.Blend, "BLEND");
            AssertSameImage(a.AlphaComposite, other.AlphaComposite, "composite");
        }
        // the FG stream really used the LayerDiffuse offsets: without them the FG output changes
        Assert.True(dense.ForegroundWeights.OffsetCount > 0);
    }

    [Fact]
    public void WithoutSharingTheBackgroundIsAPlainSdxlRunOfTheBackgroundPrompt()
    {
        using var pipe = model.Load();
        var req = Request(32, 24, new LayerFusionOptions { Sharing = false, TransparentAugment = false });
        var result = pipe.Generate(req, null, TestContext.Current.CancellationToken);

        // the plain SDXL pipeline (diffusers' StableDiffusionXLPipeline) with the BG prompt and the same seed
        var plain = pipe.Sdxl.Generate(new SdxlRequest
        {
            Prompt = req.Background, NegativePrompt = req.Negative, Width = req.Width, Height = req.Height,
            Steps = req.Steps, GuidanceScale = req.GuidanceScale, Seed = req.Seed, Sampler = req.Sampler,
        }, null, TestContext.Current.CancellationToken).Images[0];
        AssertSameImage(plain, result.Background, "BG vs plain SDXL");

        var shared = pipe.Generate(req with { Options = new LayerFusionOptions { TransparentAugment = false } }, null, TestContext.Current.CancellationToken);
        Assert.False(shared.Background.Pixels.AsSpan().SequenceEqual(plain.Pixels), "sharing had no effect on BG");

        // without guidance (cfg <= 1) the BG stream is still the plain run
        var unguided = req with { GuidanceScale = 1f };
        var plain1 = pipe.Sdxl.Generate(new SdxlRequest
        {
            Prompt = req.Background, Width = req.Width, Height = req.Height, Steps = req.Steps, GuidanceScale = 1f, Seed = req.Seed, Sampler = req.Sampler,
        }, null, TestContext.Current.CancellationToken).Images[0];
        AssertSameImage(plain1, pipe.Generate(unguided, null, TestContext.Current.CancellationToken).Background, "BG vs plain SDXL, no guidance");
    }

    /// <summary>
    /// Stochastic samplers in the triplet: every stream takes the step noise a plain SDXL run of the seed
    /// takes (docs/decisions.md, Schedulers), so without sharing BG is still that run byte for byte.
    /// </summary>
    [Theory]
    [InlineData(Samplers.EulerAncestral)]
    [InlineData(Samplers.DpmPP2MSdeKarras)]
    public void StochasticSamplersKeepTheBackgroundAPlainSdxlRun(string sampler)
    {
        using var pipe = model.Load();
        var req = Request(32, 24, new LayerFusionOptions { Sharing = false, TransparentAugment = false }, steps: 3) with { Sampler = sampler };
        var result = pipe.Generate(req, null, TestContext.Current.CancellationToken);
        Assert.Equal(sampler, result.Parameters["layerfusion:sampler"]);
        var plain = pipe.Sdxl.Generate(new SdxlRequest
        {
            Prompt = req.Background, NegativePrompt = req.Negative, Width = req.Width, Height = req.Height,
            Steps = req.Steps, GuidanceScale = req.GuidanceScale, Seed = req.Seed, Sampler = sampler,
        }, null, TestContext.Current.CancellationToken).Images[0];
        AssertSameImage(plain, result.Background, $"BG vs plain SDXL ({sampler})");
        AssertSameImage(result.Background, pipe.Generate(req, null, TestContext.Current.CancellationToken).Background, "same seed, same triplet");
    }

    [Fact]
    public async Task CancellationStopsAGeneration()
    {
        using var pipe = model.Load();
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.Phase == LayerFusionPhase.Denoise) cts.Cancel(); });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pipe.GenerateAsync(Request(32, 24), progress, cts.Token));
        Assert.Throws<UserInputException>(() => pipe.Generate(Request(70, 56), null, TestContext.Current.CancellationToken));
    }

    /// <summary>IProgress that reports synchronously on the generating thread (Progress&lt;T&gt; posts to a context).</summary>
    sealed class SyncProgress(Action<LayerFusionProgress> report) : IProgress<LayerFusionProgress>
    {
        public void Report(LayerFusionProgress value) => report(value);
    }
}
