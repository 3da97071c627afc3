using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Schedulers;
using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Fusion;

/// <summary>Which implementation of the denoising loop a <see cref="LayerFusionPipeline"/> runs.</summary>
public enum LayerFusionStepPath
{
    /// <summary>The engine's path: latents, priors, masks, blends, CFG and the sampler step stay on the backend.</summary>
    Device,
    /// <summary>The float64-checked host reference: priors and masks in managed code (q/k read back per layer),
    /// latents, CFG and the sampler on the host. For equivalence tests and the old-vs-new benchmark.</summary>
    HostReference,
}

public sealed partial class LayerFusionPipeline
{
    /// <summary>The loop implementation (default <see cref="LayerFusionStepPath.Device"/>).</summary>
    public LayerFusionStepPath StepPath { get; set; } = LayerFusionStepPath.Device;

    /// <summary>After each generation: whether its prior passes stopped before the end of the UNet (device path).</summary>
    public bool LastPriorPassStoppedEarly { get; private set; }

    /// <summary>The final latents of the last generation, per stream (FG, BLEND, BG), for tests.</summary>
    internal float[][]? LastLatents { get; private set; }

    sealed record DenoiseInputs(LayerFusionRequest Request, AttentionSite PriorSite, int Eos, Tensor Ehs, Tensor Pooled,
        float[] TimeIds, float[] TimeIds6, IScheduler[] Schedulers, INoiseSource[] Noise, int LatentHeight, int LatentWidth, bool Guided, int DumpStep);

    LayerFusionPriorDump MakeDump(DenoiseInputs a, int step, float t, StructurePrior structure, Dictionary<string, LayerFusionMaps> recorded,
        float[]? probabilities)
    {
        var vis = a.PriorSite.Path[..^".attn1".Length] + ".attn2";
        if (!recorded.ContainsKey(vis)) vis = recorded.Keys.Last(k => k.EndsWith(".attn2", StringComparison.Ordinal));
        return new LayerFusionPriorDump(step, t, structure, recorded, vis, probabilities);
    }

    /// <summary>The cross-attention sites whose prior-pass c the interaction pass reads.</summary>
    IEnumerable<string> NeededContent(LayerFusionOptions o, bool recording) =>
        DeviceLayerFusionProcessor.SelfAttentionNeedsContent(o, recording)
            ? Unet.AttentionSites.Where(s => s.Kind == AttentionKind.Cross).Select(s => s.Path)
            : [];

    /// <summary>
    /// On a backend with step graphs (CUDA): capture the second denoising step once and replay it for
    /// every later step (the first runs uncaptured: it loads the kernels and grows the step arena).
    /// Applies with device samplers (all but the SDE solvers) and without --dump-priors (whose step reads back). Default true;
    /// false runs every step op by op (CLI --no-cuda-graph), for comparison.
    /// </summary>
    public bool StepGraphs { get; set; } = true;

    /// <summary>After each generation: how many of its denoising steps ran as a launch of the captured step graph.</summary>
    public int LastGraphSteps { get; private set; }

    (float[][] Latents, LayerFusionPriorDump? Dump) DenoiseDevice(DenoiseInputs a, float[][] initial, IProgress<LayerFusionProgress>? progress,
        CancellationToken ct)
    {
        var ops = Ops;
        var req = a.Request;
        var opt = req.Options;
        int lc = Unet.Config.InChannels, lh = a.LatentHeight, lw = a.LatentWidth;
        int steps = a.Schedulers[0].StepCount;
        var samplers = a.Schedulers.Select(s => DeviceSampler.TryCreate(s, SchedulerConfig)).ToArray();
        var x = new Tensor?[TripletLayout.Streams];
        LayerFusionPriorDump? dump = null;
        bool stoppedEarly = false;
        var fusion = new DeviceLayerFusionProcessor(ForegroundWeights, opt);
        int fgCond = TripletLayout.Row(TripletLayout.Foreground, true);
        using var fgCondEhs = ops.Slice(a.Ehs, 0, fgCond, 1);
        using var fgCondPooled = ops.Slice(a.Pooled, 0, fgCond, 1);

        // the generation's scalars on the backend, uploaded once: [timestep, each stream's sampler columns] per
        // step; the constants are the prior pass's time ids, then the triplet batch's
        int columns = 1 + samplers.Sum(v => v?.Columns ?? 0);
        var rows = new float[steps * columns];
        for (int i = 0; i < steps; i++) rows[i * columns] = a.Schedulers[0].Timesteps[i];
        var firstColumn = new int[samplers.Length];
        for (int s = 0, c = 1; s < samplers.Length; c += samplers[s]?.Columns ?? 0, s++)
        {
            firstColumn[s] = c;
            samplers[s]?.WriteColumns(rows, columns, c);
        }
        using var table = ops.CreateStepScalars(rows, steps, columns, [.. a.TimeIds, .. a.TimeIds6]);
        var priorTime = new UNetStepTime(table.Column(0), table.Constant(0), a.TimeIds.Length);
        var tripletTime = new UNetStepTime(table.Column(0), table.Constant(a.TimeIds.Length), a.TimeIds6.Length);
        var arena = ops as IStepArena;
        IStepGraph? graph = null;
        bool graphs = StepGraphs && arena is not null && a.DumpStep < 0 && samplers.All(v => v is not null);
        LastGraphSteps = 0;

        void Step(int step)
        {
            float t = a.Schedulers[0].Timesteps[step];
            bool dumping = step == a.DumpStep;
            var scaled = new Tensor[TripletLayout.Streams];
            try
            {
                for (int s = 0; s < scaled.Length; s++)
                    scaled[s] = samplers[s]?.ScaleModelInput(x[s]!, step) ?? HostScale(a.Schedulers[s], x[s]!, step);

                // prior pass: FG cond, LayerDiffuse weights; stops after the last block it must provide
                using var prior = new DevicePriorPass(a.PriorSite.Path, a.Eos, NeededContent(opt, dumping),
                    dumping && IsSmall(lh, lw, a.PriorSite));
                stoppedEarly |= Unet.ForwardUntil(() => prior.IsComplete, scaled[TripletLayout.Foreground], priorTime, fgCondEhs, fgCondPooled,
                    prior, ForegroundWeights);
                using var structure = prior.TakePrior();
                ct.ThrowIfCancellationRequested();

                fusion.BeginStep(structure, prior.Content, a.Eos);
                var recorded = dumping ? new Dictionary<string, LayerFusionMaps>() : null;
                fusion.Record = recorded;
                Tensor y;
                using (var batch = ops.Concat(scaled.SelectMany(v => Enumerable.Repeat(v, TripletLayout.Branches)).ToArray(), 0))
                    y = Unet.Forward(batch, tripletTime, a.Ehs, a.Pooled, fusion);
                fusion.Record = null;
                using (y)
                    for (int s = 0; s < TripletLayout.Streams; s++)
                    {
                        using var cond = ops.Slice(y, 0, TripletLayout.Row(s, true), 1);
                        Tensor noise;
                        if (a.Guided)
                        {
                            using var uncond = ops.Slice(y, 0, TripletLayout.Row(s, false), 1);
                            noise = DeviceGuidance.Combine(uncond, cond, req.GuidanceScale);
                        }
                        else noise = ops.Affine(cond, 1f);
                        using (noise)
                        {
                            var next = samplers[s]?.Step(noise, step, x[s]!) ?? HostStep(a.Schedulers[s], noise, step, x[s]!, a.Noise[s]);
                            if (arena is not null)
                            {
                                // the latents keep their memory (a captured step reads and writes the same buffers every replay)
                                arena.CopyInto(x[s]!, next);
                                next.Dispose();
                            }
                            else
                            {
                                x[s]!.Dispose();
                                x[s] = next;
                            }
                        }
                    }
                ops.AdvanceStep(table);
                if (recorded != null) dump = MakeDump(a, step, t, structure.ToHost(), recorded, prior.PriorProbabilities);
            }
            finally
            {
                foreach (var v in scaled) v?.Dispose();
            }
        }

        try
        {
            for (int s = 0; s < x.Length; s++) x[s] = ops.FromHost(initial[s], 1, lc, lh, lw);
            for (int s = 0; s < samplers.Length; s++) samplers[s]?.Bind(ops, table, firstColumn[s], [1, lc, lh, lw], a.Noise[s]);
            for (int step = 0; step < steps; step++)
            {
                ct.ThrowIfCancellationRequested();
                // one arena step per denoising step where the backend has one
                using (var stepScope = arena?.BeginStep())
                {
                    if (graph is not null)
                    {
                        graph.Launch();
                        LastGraphSteps++;
                    }
                    else if (graphs && step == 1 && (graph = arena!.TryCapture(() => Step(1))) is not null)
                    {
                        graph.Launch();
                        LastGraphSteps++;
                    }
                    else Step(step);
                }
                progress?.Report(new LayerFusionProgress(LayerFusionPhase.Denoise, step + 1, steps));
            }
            LastPriorPassStoppedEarly = stoppedEarly;
            return (x.Select(v => ops.ToHost(v!)).ToArray(), dump);
        }
        finally
        {
            graph?.Dispose();
            foreach (var v in x) v?.Dispose();
            foreach (var s in samplers) s?.Dispose();
        }
    }

    // A scheduler with no device form (every one of Samplers has one; this is for an IScheduler added
    // without it): its step on the host, one read and one write of that stream's latent per step.
    static Tensor HostScale(IScheduler s, Tensor x, int step)
    {
        var v = s.ScaleModelInput(x.Ops.ToHost(x), step);
        return x.Ops.FromHost(v, x.Shape);
    }

    static Tensor HostStep(IScheduler s, Tensor noise, int step, Tensor x, INoiseSource stepNoise)
    {
        var ops = x.Ops;
        var v = s.Step(ops.ToHost(noise), step, ops.ToHost(x), stepNoise);
        return ops.FromHost(v, x.Shape);
    }

    (float[][] Latents, LayerFusionPriorDump? Dump) DenoiseHost(DenoiseInputs a, float[][] latents, IProgress<LayerFusionProgress>? progress,
        CancellationToken ct)
    {
        var ops = Ops;
        var req = a.Request;
        var schedulers = a.Schedulers;
        var priorSite = a.PriorSite;
        int eos = a.Eos, lh = a.LatentHeight, lw = a.LatentWidth, lc = Unet.Config.InChannels;
        int latentSize = lc * lh * lw, steps = schedulers[0].StepCount;
        LayerFusionPriorDump? dump = null;
        var fusion = new LayerFusionAttentionProcessor(ForegroundWeights, req.Options);
        int fgCond = TripletLayout.Row(TripletLayout.Foreground, true);
        using var fgCondEhs = ops.Slice(a.Ehs, 0, fgCond, 1);
        using var fgCondPooled = ops.Slice(a.Pooled, 0, fgCond, 1);
        for (int step = 0; step < steps; step++)
        {
            ct.ThrowIfCancellationRequested();
            float t = schedulers[0].Timesteps[step];
            var scaled = new float[TripletLayout.Streams][];
            for (int s = 0; s < scaled.Length; s++) scaled[s] = schedulers[s].ScaleModelInput(latents[s], step);

            // prior pass: FG stream, cond branch, LayerDiffuse weights, plain attention, the whole UNet
            bool capture = step == a.DumpStep && IsSmall(lh, lw, priorSite);
            var prior = new StructurePriorProcessor(priorSite.Path, eos, capture);
            using (var x = ops.FromHost(scaled[TripletLayout.Foreground], 1, lc, lh, lw))
            using (Unet.Forward(x, [t], fgCondEhs, fgCondPooled, a.TimeIds, prior, ForegroundWeights)) { }
            var structure = prior.Prior ?? throw new InvalidOperationException($"the prior pass never reached {priorSite.Path}");
            ct.ThrowIfCancellationRequested();

            fusion.BeginStep(structure, prior.Content, eos);
            var recorded = step == a.DumpStep ? new Dictionary<string, LayerFusionMaps>() : null;
            fusion.Record = recorded;
            var batch = new float[TripletLayout.Rows * latentSize];
            for (int s = 0; s < TripletLayout.Streams; s++)
                for (int b = 0; b < TripletLayout.Branches; b++)
                    scaled[s].CopyTo(batch, (s * TripletLayout.Branches + b) * latentSize);
            float[] eps;
            using (var x = ops.FromHost(batch, TripletLayout.Rows, lc, lh, lw))
            using (var y = Unet.Forward(x, [t], a.Ehs, a.Pooled, a.TimeIds6, fusion))
                eps = ops.ToHost(y);
            fusion.Record = null;
            FiniteCheck.Require(eps, "unet", $"at denoising step {step + 1} of {steps} (the triplet pass)");
            for (int s = 0; s < TripletLayout.Streams; s++)
            {
                // diffusers' guidance only when scale > 1; otherwise the cond branch alone (the uncond rows
                // never influence other rows: sharing and blending stay within a branch)
                var rows = eps.AsSpan(s * 2 * latentSize, 2 * latentSize);
                var noisePred = a.Guided ? Guidance.Combine(rows, req.GuidanceScale) : rows[latentSize..].ToArray();
                schedulers[s].Step(noisePred, step, latents[s], latents[s], a.Noise[s]);
                FiniteCheck.Require(latents[s], "sampler", $"({schedulers[s].Name}) at denoising step {step + 1} of {steps}, {StreamName(s)} stream");
            }
            if (recorded != null) dump = MakeDump(a, step, t, structure, recorded, prior.PriorProbabilities);
            progress?.Report(new LayerFusionProgress(LayerFusionPhase.Denoise, step + 1, steps));
        }
        LastPriorPassStoppedEarly = false;
        return (latents, dump);
    }
}
