using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Fusion;

/// <summary>The structure prior of one denoising step at the prior layer's token grid.</summary>
/// <param name="Sparsity">s_i = 1 / sum_j m_ij^2 (Alg. 1 before normalization).</param>
/// <param name="Density">s' = 1 - minmax(s).</param>
public sealed record StructurePrior(float[] Sparsity, float[] Density, int Height, int Width)
{
    /// <summary>s' bilinearly resized to a layer's token grid (the prior layer's own grid returns a copy).</summary>
    public float[] DensityAt(int height, int width) =>
        height == Height && width == Width ? (float[])Density.Clone() : PriorMath.ResizeBilinear(Density, Height, Width, height, width);
}

/// <summary>
/// The prior pass (Alg. 1 and 2): the FG stream's UNet on z_t, cond branch only (batch 1, FG
/// weights passed as the call's weights), plain attention everywhere. At the prior layer it reads
/// s from the head-mean self-attention probabilities; at every cross-attention layer it reads the
/// content prior c (head-mean probability of the &lt;EOS&gt; token). The interaction pass uses these
/// c for its self-attention masks (a block's attn1 runs before its attn2; see docs/decisions.md).
/// The noise prediction of this pass is unused, as in Alg. 1.
/// </summary>
public sealed class StructurePriorProcessor : IAttentionProcessor
{
    readonly Dictionary<string, float[]> _content = new();

    public StructurePriorProcessor(string priorLayer, int eosIndex, bool captureProbabilities = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(eosIndex);
        PriorLayer = priorLayer;
        EosIndex = eosIndex;
        CaptureProbabilities = captureProbabilities;
    }

    public string PriorLayer { get; }
    public int EosIndex { get; }
    /// <summary>Also materialize the prior layer's head-mean probability map (small models only).</summary>
    public bool CaptureProbabilities { get; }

    public StructurePrior? Prior { get; private set; }
    /// <summary>Head-mean probabilities [M, M] of the prior layer when <see cref="CaptureProbabilities"/>.</summary>
    public float[]? PriorProbabilities { get; private set; }
    /// <summary>c per cross-attention site path, at that layer's token grid.</summary>
    public IReadOnlyDictionary<string, float[]> Content => _content;

    public void Reset()
    {
        Prior = null;
        PriorProbabilities = null;
        _content.Clear();
    }

    public Tensor Process(AttentionCall call)
    {
        if (call.Batch != 1) throw new ArgumentException($"the prior pass runs the FG cond branch alone (batch 1), got {call.Batch}");
        var site = call.Site;
        var w = call.Weights;
        var ops = call.Ops;
        using var q = w.Query(call.Hidden);
        using var k = w.Key(call.KeyValueSource);
        using var v = w.Value(call.KeyValueSource);
        int m = q.Dim(1), n = k.Dim(1);
        if (site.Path == PriorLayer)
        {
            var qh = ops.ToHost(q);
            var kh = ops.ToHost(k);
            var stats = AttentionStatistics.Compute(qh, kh, m, n, site.Heads, site.HeadDim, sumOfSquares: true, column: -1);
            var s = new float[m];
            for (int i = 0; i < m; i++) s[i] = 1f / stats.SumOfSquares![i];
            Prior = new StructurePrior(s, PriorMath.DensityPrior(s), call.Height, call.Width);
            if (CaptureProbabilities) PriorProbabilities = AttentionStatistics.HeadMeanProbabilities(qh, kh, m, n, site.Heads, site.HeadDim);
        }
        if (site.Kind == AttentionKind.Cross)
            _content[site.Path] = ContentPrior(ops, q, k, site, EosIndex);
        using var o = ops.Attention(q, k, v, site.Heads);
        return w.Out(o);
    }

    /// <summary>c (Alg. 2): head-mean probability of key <paramref name="eos"/> per query, for q [1, M, inner], k [1, S, inner].</summary>
    internal static float[] ContentPrior(IOps ops, Tensor q, Tensor k, AttentionSite site, int eos)
    {
        int m = q.Dim(1), n = k.Dim(1);
        if (eos >= n) throw new ArgumentException($"{site.Path}: <EOS> position {eos} is outside the {n} context tokens");
        return AttentionStatistics.Compute(ops.ToHost(q), ops.ToHost(k), m, n, site.Heads, site.HeadDim, sumOfSquares: false, column: eos).Column!;
    }
}
