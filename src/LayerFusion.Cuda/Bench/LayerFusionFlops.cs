using System.Globalization;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Models.Unet;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Cuda.Bench;

/// <summary>FLOPs of one LayerFusion denoising step, old host path vs the device step (see <see cref="LayerFusionFlops"/>).</summary>
/// <param name="PriorPassFull">the old prior pass: the whole UNet, batch 1 (graph FLOPs).</param>
/// <param name="PriorPassHostStats">the old path's host arithmetic for s and c (scores of every head, recomputed on the host).</param>
/// <param name="PriorPassStopped">the device prior pass, stopped after its last needed block, incl. the fused kernel's s sweep.</param>
/// <param name="Interaction">the interaction pass (6 rows) on the device path; the old path's graph is the same plus
/// <paramref name="InteractionHostStats"/> of host arithmetic for the live c.</param>
public sealed record LayerFusionStepFlops(double PriorPassFull, double PriorPassHostStats, double PriorPassStopped, double Interaction,
    double InteractionHostStats, int PriorPassBlocksSkipped)
{
    public double OldStepGraph => PriorPassFull + Interaction;
    public double OldStepHost => PriorPassHostStats + InteractionHostStats;
    public double NewStep => PriorPassStopped + Interaction;

    public string Format() => string.Create(CultureInfo.InvariantCulture,
        $"prior pass: before {PriorPassFull / 1e12:F3} TFLOP on the device + {PriorPassHostStats / 1e9:F1} GFLOP on the host; " +
        $"after {PriorPassStopped / 1e12:F3} TFLOP on the device, 0 on the host ({PriorPassBlocksSkipped} blocks skipped)\n" +
        $"interaction pass: {Interaction / 1e12:F3} TFLOP on the device (both paths) + before {InteractionHostStats / 1e9:F2} GFLOP on the host, after 0\n" +
        $"step: before {OldStepGraph / 1e12:F3} TFLOP device + {OldStepHost / 1e9:F1} GFLOP host; after {NewStep / 1e12:F3} TFLOP device");
}

/// <summary>
/// The FLOPs of a LayerFusion step counted on the model graph itself (shape-only backend,
/// <see cref="ShapeOps"/>; 2 per multiply-add of linears, convolutions and attention): the prior pass
/// in full and stopped early, and the interaction pass. The old path's host statistics are counted
/// from the same shapes: per prior-layer query, every head's scores over all keys (2 M N H D) plus
/// the exponentials and head-mean (not counted); per cross-attention site, the same over 77 keys.
/// </summary>
public static class LayerFusionFlops
{
    sealed class ShapeOnlyWeight(string name, long[] shape) : WeightTensor(name, DType.F16, shape)
    {
        public override ReadOnlySpan<byte> Bytes => throw new InvalidOperationException("shape-only weight");
    }

    public static LayerFusionStepFlops PerStep(UNetConfig config, int latentHeight, int latentWidth, LayerFusionOptions? options = null, int textTokens = 77)
    {
        ArgumentNullException.ThrowIfNull(config);
        var opt = options ?? new LayerFusionOptions();
        int timeIds = config.AdditionEmbedType == "text_time" ? 6 : 0;
        var weights = UNetSchema.Parameters(config).ToDictionary(p => p.Name, p => (WeightTensor)new ShapeOnlyWeight(p.Name, p.Shape));

        double Prior(bool stop, out int skipped, out double hostStats, out ShapeOps ops, out DevicePriorPass pass)
        {
            ops = new ShapeOps();
            var unet = new UNet2DConditionModel(new ParameterStore(ops, weights, "unet"), config);
            var site = opt.ResolvePriorLayer(unet.AttentionSites);
            var cross = unet.AttentionSites.Where(s => s.Kind == AttentionKind.Cross).Select(s => s.Path).ToList();
            pass = new DevicePriorPass(site.Path, 1, DeviceLayerFusionProcessor.SelfAttentionNeedsContent(opt, false) ? cross : []);
            using var sample = ops.Zeros(1, config.InChannels, latentHeight, latentWidth);
            using var ehs = ops.Zeros(1, textTokens, config.CrossAttentionDim);
            using var te = timeIds > 0 ? ops.Zeros(1, config.ProjectionClassEmbeddingsInputDim - timeIds * config.AdditionTimeEmbedDim) : null;
            int blocks = 0, total = config.DownBlockTypes.Length + 1 + config.UpBlockTypes.Length;
            var p = pass;
            unet.ForwardUntil(() => { blocks++; return stop && p.IsComplete; }, sample, [999f], ehs, te, new float[timeIds], pass, unet.AttentionWeights);
            skipped = total - blocks;
            long m = (long)Math.Max(1, latentHeight >> site.Level) * Math.Max(1, latentWidth >> site.Level);
            hostStats = 2.0 * m * m * site.InnerDim
                + unet.AttentionSites.Where(s => s.Kind == AttentionKind.Cross)
                    .Sum(s => 2.0 * Math.Max(1, latentHeight >> s.Level) * Math.Max(1, latentWidth >> s.Level) * textTokens * s.InnerDim);
            return ops.Flops.Values.Sum();
        }

        double full = Prior(false, out _, out double hostStats, out var fullOps, out var fullPass);
        fullPass.Dispose();
        // the old path ran plain attention at the prior layer: its graph has no fused s sweep
        full -= fullOps.Flops["prior-stats"];
        double stopped = Prior(true, out int skippedBlocks, out _, out var ops, out var pass);

        // interaction pass over the 6-row triplet batch, with this step's (shape-only) priors
        var unet = new UNet2DConditionModel(new ParameterStore(ops, weights, "unet"), config);
        double before = ops.Flops.Values.Sum();
        var fusion = new DeviceLayerFusionProcessor(unet.AttentionWeights, opt);
        using var prior = pass.TakePrior();
        fusion.BeginStep(prior, pass.Content, 1);
        using var sample6 = ops.Zeros(TripletLayout.Rows, config.InChannels, latentHeight, latentWidth);
        using var ehs6 = ops.Zeros(TripletLayout.Rows, textTokens, config.CrossAttentionDim);
        using var te6 = timeIds > 0 ? ops.Zeros(TripletLayout.Rows, config.ProjectionClassEmbeddingsInputDim - timeIds * config.AdditionTimeEmbedDim) : null;
        using (unet.Forward(sample6, [999f], ehs6, te6, new float[timeIds * TripletLayout.Rows], fusion)) { }
        double interaction = ops.Flops.Values.Sum() - before;
        double interactionHost = unet.AttentionSites.Where(s => s.Kind == AttentionKind.Cross)
            .Sum(s => 2.0 * Math.Max(1, latentHeight >> s.Level) * Math.Max(1, latentWidth >> s.Level) * textTokens * s.InnerDim);
        pass.Dispose();
        return new LayerFusionStepFlops(full, hostStats, stopped, interaction, interactionHost, skippedBlocks);
    }
}
