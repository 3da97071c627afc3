using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Schedulers;
using LayerFusion.Core.Tensors;
using CpuBackend = LayerFusion.Cpu.CpuOps;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Tests.Pipelines;

public sealed class SdxlPipelineTests(TinySdxl tiny) : IClassFixture<TinySdxl>
{
    /// <summary>Plain SDPA, recording the batch of every attention call.</summary>
    sealed class CountingProcessor : IAttentionProcessor
    {
        public List<(AttentionSite Site, int Batch)> Calls { get; } = [];
        public Tensor Process(AttentionCall call)
        {
            lock (Calls) Calls.Add((call.Site, call.Batch));
            return SdpaAttentionProcessor.Instance.Process(call);
        }
    }

    sealed class ListProgress : IProgress<StepProgress>
    {
        public List<StepProgress> Seen { get; } = [];
        public void Report(StepProgress value) => Seen.Add(value);
    }

    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static SdxlRequest Request(int steps = 2, float cfg = 5f, ulong seed = 11) => new()
    {
        Prompt = "a red fox in the snow", Steps = steps, GuidanceScale = cfg, Seed = seed, Width = 48, Height = 40,
    };

    static double MaxAbs(ReadOnlySpan<float> a) { double m = 0; foreach (var v in a) m = Math.Max(m, Math.Abs(v)); return m; }
    static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }

    [Fact]
    public void GuidedGenerationCallsTheUnetOncePerStepWithTheCfgBatchOfTwo()
    {
        using var pipeline = SdxlPipeline.Open(tiny.Default, new CpuBackend());
        var counter = new CountingProcessor();
        pipeline.Unet.Processor = counter;
        var progress = new ListProgress();
        var result = pipeline.Generate(Request(steps: 3), progress, Ct);

        int sites = pipeline.Unet.AttentionSites.Count;
        Assert.True(sites > 0);
        Assert.Equal(3 * sites, counter.Calls.Count);            // one UNet evaluation per step
        Assert.All(counter.Calls, c => Assert.Equal(2, c.Batch)); // [uncond, cond] in that one call
        Assert.Equal([1, 2, 3], progress.Seen.Select(p => p.Step));
        Assert.All(progress.Seen, p => Assert.Equal(3, p.TotalSteps));
        Assert.Single(result.Images);
        Assert.Equal((48, 40, 3), (result.Images[0].Width, result.Images[0].Height, result.Images[0].Channels));

        // guidance_scale <= 1: diffusers makes no unconditional pass
        counter.Calls.Clear();
        pipeline.Generate(Request(steps: 2, cfg: 1f), null, Ct);
        Assert.Equal(2 * sites, counter.Calls.Count);
        Assert.All(counter.Calls, c => Assert.Equal(1, c.Batch));
    }

    [Fact]
    public void CfgBatchIsZeroNegativeThenPromptWithTheSameTimeIds()
    {
        using var pipeline = SdxlPipeline.Open(tiny.Default, new CpuBackend());
        var ops = pipeline.Ops;
        using var enc = pipeline.EncodePrompt("a red fox", null);
        using var cond = pipeline.CreateConditioning(enc, images: 2, height: 40, width: 48, guided: true);
        Assert.Equal(4, cond.Batch);
        var embeds = ops.ToHost(cond.EncoderHiddenStates);
        var pooled = ops.ToHost(cond.TextEmbeds);
        var pos = ops.ToHost(enc.Positive.PromptEmbeds);
        var posPooled = ops.ToHost(enc.Positive.PooledPromptEmbeds);
        Assert.True(MaxAbs(pos) > 0 && MaxAbs(posPooled) > 0);
        int row = pos.Length, prow = posPooled.Length;
        Assert.Equal(4 * row, embeds.Length);
        for (int r = 0; r < 4; r++)
        {
            var e = embeds.AsSpan(r * row, row);
            var p = pooled.AsSpan(r * prow, prow);
            if (r < 2)
            {
                Assert.Equal(0, MaxAbs(e)); // force_zeros_for_empty_prompt, also the pooled half
                Assert.Equal(0, MaxAbs(p));
            }
            else
            {
                Assert.Equal(pos, e.ToArray());
                Assert.Equal(posPooled, p.ToArray());
            }
        }
        Assert.Equal(Enumerable.Repeat(new float[] { 40, 48, 0, 0, 40, 48 }, 4).SelectMany(x => x), cond.TimeIds);
    }

    [Fact]
    public void GuidedStepEqualsSeparateUncondAndCondUnetCallsCombined()
    {
        using var pipeline = SdxlPipeline.Open(tiny.Default, new CpuBackend());
        var ops = pipeline.Ops;
        const int lh = 20, lw = 24;
        const float scale = 6.5f;
        var scheduler = pipeline.CreateScheduler("euler");
        scheduler.SetTimesteps(4);
        var latents = pipeline.InitialLatents(3, 1, lh, lw, scheduler.InitNoiseSigma);
        using var enc = pipeline.EncodePrompt("a red fox", "blurry");
        using var guided = pipeline.CreateConditioning(enc, 1, 8 * lh, 8 * lw, guided: true);
        var noise = pipeline.PredictNoise(scheduler, 1, latents, lh, lw, guided, scale);

        // the same step by hand: scale the input, one batch-1 UNet call per half, then CFG
        var scaled = scheduler.ScaleModelInput(latents, 1);
        float t = scheduler.Timesteps[1];
        var timeIds = SdxlTimeIds.ForSize(8 * lh, 8 * lw);
        float[] Half(LayerFusion.Core.Text.SdxlPromptEmbeddings e)
        {
            using var x = ops.FromHost(scaled, 1, 4, lh, lw);
            using var y = pipeline.Unet.Forward(x, [t], e.PromptEmbeds, e.PooledPromptEmbeds, timeIds);
            return ops.ToHost(y);
        }
        var uncond = Half(enc.Negative);
        var condOut = Half(enc.Positive);
        var expected = new float[uncond.Length];
        for (int i = 0; i < expected.Length; i++) expected[i] = uncond[i] + scale * (condOut[i] - uncond[i]);
        Assert.True(MaxAbs(expected) > 0);
        Assert.True(MaxAbsDiff(noise, expected) <= 1e-5 * MaxAbs(expected), $"max diff {MaxAbsDiff(noise, expected)}");
    }

    [Fact]
    public void SameSeedSameImageOtherSeedOtherImage()
    {
        using var pipeline = SdxlPipeline.Open(tiny.Default, new CpuBackend());
        var a = pipeline.Generate(Request(seed: 21), null, Ct);
        var b = pipeline.Generate(Request(seed: 21), null, Ct);
        var c = pipeline.Generate(Request(seed: 22), null, Ct);
        Assert.Equal(a.Latents, b.Latents);
        Assert.Equal(a.Images[0].Pixels, b.Images[0].Pixels);
        Assert.NotEqual(a.Latents, c.Latents);
        // initial noise is GaussianNoise(seed, 0) times init_noise_sigma: the first draw differs by seed
        Assert.Equal([1, 4, 20, 24], a.LatentShape);
    }

    [Fact]
    public void SingleFileLayoutGivesTheSameImageAsTheDiffusersFolder()
    {
        string single = Path.Combine(tiny.Root, "single");
        LayerFusion.WeightsLoader.Tiny.TinyCheckpoint.Write(single, LayerFusion.WeightsLoader.Checkpoints.CheckpointLayout.SingleFile, 5);
        using var a = SdxlPipeline.Open(tiny.Default, new CpuBackend());
        using var b = SdxlPipeline.Open(single, new CpuBackend());
        var ra = a.Generate(Request(steps: 2), null, Ct);
        var rb = b.Generate(Request(steps: 2), null, Ct);
        Assert.Equal(ra.Latents, rb.Latents);
        Assert.Equal(ra.Images[0].Pixels, rb.Images[0].Pixels);
    }

    [Fact]
    public void TwoImagesPerPromptShareOneBatchOfFourAndTheFirstEqualsASingleImageRun()
    {
        using var pipeline = SdxlPipeline.Open(tiny.Default, new CpuBackend());
        var counter = new CountingProcessor();
        pipeline.Unet.Processor = counter;
        var two = pipeline.Generate(Request(steps: 2) with { NumImages = 2 }, null, Ct);
        Assert.All(counter.Calls, c => Assert.Equal(4, c.Batch)); // [uncond, uncond, cond, cond]
        Assert.Equal(2, two.Images.Count);
        Assert.Equal([2, 4, 20, 24], two.LatentShape);
        var one = pipeline.Generate(Request(steps: 2), null, Ct);
        int n = one.Latents.Length;
        var first = two.Latents.AsSpan(0, n).ToArray();
        Assert.True(MaxAbsDiff(first, one.Latents) <= 1e-5 * MaxAbs(one.Latents), $"max diff {MaxAbsDiff(first, one.Latents)}");
        Assert.True(MaxAbsDiff(two.Latents.AsSpan(n, n), one.Latents) > 1e-2); // the second image has its own noise
    }

    [Fact]
    public void InitialLatentsAreSeededNoiseTimesInitNoiseSigma()
    {
        using var pipeline = SdxlPipeline.Open(tiny.Default, new CpuBackend());
        var s = pipeline.CreateScheduler(null);
        s.SetTimesteps(5);
        Assert.True(s.InitNoiseSigma > 1);
        var latents = pipeline.InitialLatents(9, 2, 5, 3, s.InitNoiseSigma);
        var noise = new GaussianNoise(9).Next(2 * 4 * 5 * 3);
        Assert.Equal(noise.Select(v => v * s.InitNoiseSigma), latents);
    }

    [Fact]
    public void NonMultipleOf64SizeWithSdxlsVaeFactorGivesAnOddLatentAndTheRequestedSize()
    {
        using var pipeline = SdxlPipeline.Open(tiny.Factor8, new CpuBackend());
        Assert.Equal(8, pipeline.VaeScaleFactor);
        var result = pipeline.Generate(Request() with { Width = 72, Height = 56, Steps = 2 }, null, Ct);
        Assert.Equal([1, 4, 7, 9], result.LatentShape); // 56/8 x 72/8: not divisible by the UNet's 2x downsampling
        Assert.Equal((72, 56), (result.Images[0].Width, result.Images[0].Height));
        Assert.Contains(result.Images[0].Pixels, p => p != result.Images[0].Pixels[0]);
    }

    [Fact]
    public void DecodeDividesByTheScalingFactorBeforeTheVae()
    {
        using var pipeline = SdxlPipeline.Open(tiny.Default, new CpuBackend());
        var latents = new GaussianNoise(4).Next(4 * 6 * 5);
        using var viaPipeline = pipeline.DecodeLatents(latents, 1, 6, 5);
        float sf = (float)pipeline.Vae.Config.ScalingFactor;
        using var z = pipeline.Ops.FromHost(latents.Select(v => v / sf).ToArray(), 1, 4, 6, 5);
        using var direct = pipeline.Vae.Decode(z);
        Assert.Equal(pipeline.Ops.ToHost(direct), pipeline.Ops.ToHost(viaPipeline));
        Assert.Equal([1, 3, 12, 10], viaPipeline.Shape);
    }

    [Fact]
    public void BadRequestsAreUserErrorsAndCancellationStops()
    {
        using var pipeline = SdxlPipeline.Open(tiny.Default, new CpuBackend());
        Assert.Throws<UserInputException>(() => pipeline.Generate(Request() with { Width = 70 }, null, Ct));
        Assert.Throws<UserInputException>(() => pipeline.Generate(Request() with { Height = 0 }, null, Ct));
        Assert.Throws<UserInputException>(() => pipeline.Generate(Request() with { Steps = 0 }, null, Ct));
        Assert.Throws<UserInputException>(() => pipeline.Generate(Request() with { Sampler = "heun" }, null, Ct));
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => pipeline.Generate(Request(), null, cts.Token));
    }

    [Fact]
    public async Task AsyncGenerationMatchesSyncAndCanBeCancelledMidway()
    {
        using var pipeline = SdxlPipeline.Open(tiny.Default, new CpuBackend());
        var sync = pipeline.Generate(Request(steps: 2), null, Ct);
        var asyncResult = await pipeline.GenerateAsync(Request(steps: 2), cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(sync.Latents, asyncResult.Latents);

        using var cts = new CancellationTokenSource();
        var progress = new CancelAfter(cts, 1);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pipeline.GenerateAsync(Request(steps: 4), progress, cts.Token));
        Assert.Equal(1, progress.Count);
    }

    sealed class CancelAfter(CancellationTokenSource cts, int steps) : IProgress<StepProgress>
    {
        public int Count;
        public void Report(StepProgress value)
        {
            Count++;
            if (value.Step >= steps) cts.Cancel();
        }
    }
}
