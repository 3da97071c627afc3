using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Fusion;

/// <summary>The masks one attention layer used in one interaction pass (for --dump-priors and tests).</summary>
public sealed record LayerFusionMaps(int Height, int Width, float[] Density, float[] Content, float[] SoftMask, float[] HardMask);

/// <summary>
/// The interaction pass (Alg. 3) over the whole triplet as ONE batch laid out as
/// <see cref="TripletLayout"/> ([FG_u, FG_c, BLEND_u, BLEND_c, BG_u, BG_c]). FG rows use the
/// LayerDiffuse-merged projections (<see cref="Foreground"/>), BLEND and BG rows the call's (base)
/// projections. For every attention layer:
/// <list type="bullet">
/// <item>masks: c = head-mean FG-cond cross-attention probability at &lt;EOS&gt; (attn2: this layer,
/// live; attn1: the same block's attn2 in this step's prior pass), s' resized to the layer,
/// mask_soft = minmax(s' c), mask_hard = sigmoid(d (mask_soft - 0.5)); one mask pair per layer,
/// applied to the uncond and cond branch alike;</item>
/// <item>Eq. 1/2 on the attention outputs after to_out (Alg. 3 blends Attention() results, which in
/// diffusers include to_out; to_out is linear, so this only differs by where the bias enters);</item>
/// <item>sharing: BG self-attention queries attend over [BG keys, BLEND keys] with BLEND keys inside
/// the foreground (mask_hard &gt; 0.5) excluded by a -inf key bias; cross-attention BLEND queries read
/// the BG prompt (Attention_θ([h_BG, h_Blended], p_BG)).</item>
/// </list>
/// </summary>
public sealed class LayerFusionAttentionProcessor : IAttentionProcessor
{
    StructurePrior? _prior;
    IReadOnlyDictionary<string, float[]> _priorContent = new Dictionary<string, float[]>();
    int _eos = -1;

    public LayerFusionAttentionProcessor(IAttentionWeights foreground, LayerFusionOptions options)
    {
        options.Validate();
        Foreground = foreground;
        Options = options;
    }

    public IAttentionWeights Foreground { get; }
    public LayerFusionOptions Options { get; }

    /// <summary>When set, every layer's masks of the following passes are stored here by site path.</summary>
    public IDictionary<string, LayerFusionMaps>? Record { get; set; }

    /// <summary>Hands this step's prior-pass results to the next interaction pass.</summary>
    public void BeginStep(StructurePrior prior, IReadOnlyDictionary<string, float[]> priorContent, int eosIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(eosIndex);
        _prior = prior;
        _priorContent = priorContent;
        _eos = eosIndex;
    }

    public Tensor Process(AttentionCall call)
    {
        if (_prior is null) throw new InvalidOperationException("BeginStep must hand the prior pass's results over before an interaction pass");
        if (call.Batch != TripletLayout.Rows)
            throw new ArgumentException($"the interaction pass runs {TripletLayout.Rows} rows (FG, BLEND, BG x uncond, cond), got {call.Batch}");
        var ops = call.Ops;
        var site = call.Site;
        bool cross = site.Kind == AttentionKind.Cross;
        var fgW = Foreground.For(site);
        var baseW = call.Weights;
        int t = call.Hidden.Dim(1);

        Tensor Rows(Tensor x, int stream) => ops.Slice(x, 0, TripletLayout.Row(stream, false), TripletLayout.Branches);

        // FG stream: LayerDiffuse projections, its own prompt
        Tensor aFg;
        float[]? liveContent = null;
        using (var h = Rows(call.Hidden, TripletLayout.Foreground))
        using (var ctx = cross ? Rows(call.Context!, TripletLayout.Foreground) : null)
        using (var q = fgW.Query(h))
        using (var k = fgW.Key(ctx ?? h))
        using (var v = fgW.Value(ctx ?? h))
        {
            if (cross)
            {
                using var qc = ops.Slice(q, 0, 1, 1);
                using var kc = ops.Slice(k, 0, 1, 1);
                liveContent = StructurePriorProcessor.ContentPrior(ops, qc, kc, site, _eos);
            }
            using var o = ops.Attention(q, k, v, site.Heads);
            aFg = fgW.Out(o);
        }

        bool blend = cross ? Options.BlendCrossAttention : Options.BlendSelfAttention;
        bool exclude = !cross && Options.Sharing && Options.Exclusion;
        LayerFusionMaps? maps = null;
        if (blend || exclude || Record != null)
        {
            var content = liveContent ?? ContentForSelf(site);
            var density = _prior.DensityAt(call.Height, call.Width);
            if (content.Length != t) throw new InvalidOperationException($"{site.Path}: content prior has {content.Length} values for {t} tokens");
            var soft = PriorMath.SoftMask(density, content);
            maps = new LayerFusionMaps(call.Height, call.Width, density, content, soft, PriorMath.HardMask(soft, Options.D));
            if (Record != null) Record[site.Path] = maps;
        }

        Tensor aBlend, aBg;
        using (var hBl = Rows(call.Hidden, TripletLayout.Blend))
        using (var hBg = Rows(call.Hidden, TripletLayout.Background))
        {
            if (cross)
            {
                using var ctxBg = Rows(call.Context!, TripletLayout.Background);
                using var ctxBl = Options.Sharing ? null : Rows(call.Context!, TripletLayout.Blend);
                aBlend = PlainAttention(baseW, hBl, ctxBl ?? ctxBg, site.Heads);
                aBg = PlainAttention(baseW, hBg, ctxBg, site.Heads);
            }
            else
            {
                using var kBl = baseW.Key(hBl);
                using var vBl = baseW.Value(hBl);
                using (var qBl = baseW.Query(hBl))
                using (var o = ops.Attention(qBl, kBl, vBl, site.Heads))
                    aBlend = baseW.Out(o);
                using var qBg = baseW.Query(hBg);
                using var kBg = baseW.Key(hBg);
                using var vBg = baseW.Value(hBg);
                if (Options.Sharing)
                {
                    using var kAll = ops.Concat([kBg, kBl], 1);
                    using var vAll = ops.Concat([vBg, vBl], 1);
                    using var bias = exclude ? ExclusionBias(ops, maps!.HardMask, t) : null;
                    using var o = ops.Attention(qBg, kAll, vAll, site.Heads, bias);
                    aBg = baseW.Out(o);
                }
                else
                {
                    using var o = ops.Attention(qBg, kBg, vBg, site.Heads);
                    aBg = baseW.Out(o);
                }
            }
        }

        if (blend)
        {
            var (fg2, blend2) = Blend(ops, aFg, aBlend, maps!.SoftMask, maps.HardMask);
            aFg.Dispose();
            aBlend.Dispose();
            aFg = fg2;
            aBlend = blend2;
        }
        using (aFg)
        using (aBlend)
        using (aBg)
            return ops.Concat([aFg, aBlend, aBg], 0);
    }

    float[] ContentForSelf(AttentionSite site)
    {
        const string suffix = ".attn1";
        if (!site.Path.EndsWith(suffix, StringComparison.Ordinal))
            throw new InvalidOperationException($"{site.Path}: a self-attention site outside a transformer block");
        var crossPath = site.Path[..^suffix.Length] + ".attn2";
        return _priorContent.TryGetValue(crossPath, out var c)
            ? c
            : throw new InvalidOperationException($"{site.Path}: the prior pass recorded no content prior at {crossPath}");
    }

    static Tensor PlainAttention(AttentionProjections w, Tensor hidden, Tensor context, int heads)
    {
        var ops = hidden.Ops;
        using var q = w.Query(hidden);
        using var k = w.Key(context);
        using var v = w.Value(context);
        using var o = ops.Attention(q, k, v, heads);
        return w.Out(o);
    }

    /// <summary>[2, 2T] key bias over [BG keys, BLEND keys]: BLEND keys with mask_hard &gt; 0.5 get -inf.
    /// BG keys are never masked, so every score row keeps finite entries.</summary>
    internal static Tensor ExclusionBias(IOps ops, ReadOnlySpan<float> hard, int tokens)
    {
        var bias = new float[TripletLayout.Branches * 2 * tokens];
        for (int b = 0; b < TripletLayout.Branches; b++)
            for (int j = 0; j < tokens; j++)
                if (hard[j] > 0.5f) bias[b * 2 * tokens + tokens + j] = float.NegativeInfinity;
        return ops.FromHost(bias, TripletLayout.Branches, 2 * tokens);
    }

    /// <summary>
    /// Eq. 1 then Eq. 2 on attention outputs [B, T, C] with per-token masks broadcast over B and C,
    /// in the float operation order of <see cref="PriorMath.BlendInPlace"/>:
    /// blend' = fg * soft + blend * (1 - soft); fg' = blend' * hard + fg * (1 - hard).
    /// </summary>
    public static (Tensor Fg, Tensor Blend) Blend(IOps ops, Tensor fg, Tensor blend, ReadOnlySpan<float> soft, ReadOnlySpan<float> hard)
    {
        int t = soft.Length;
        if (fg.Rank != 3 || fg.Dim(1) != t || hard.Length != t || !fg.Shape.AsSpan().SequenceEqual(blend.Shape))
            throw new ArgumentException($"blend: outputs {ShapeUtil.Format(fg.Shape)} / {ShapeUtil.Format(blend.Shape)} and {t}-token masks disagree");
        var inv = new float[t];
        for (int i = 0; i < t; i++) inv[i] = 1 - soft[i];
        using var softT = ops.FromHost(soft, t, 1);
        using var invSoftT = ops.FromHost(inv, t, 1);
        for (int i = 0; i < t; i++) inv[i] = 1 - hard[i];
        using var hardT = ops.FromHost(hard, t, 1);
        using var invHardT = ops.FromHost(inv, t, 1);
        Tensor blended;
        using (var a = ops.Mul(fg, softT))
        using (var b = ops.Mul(blend, invSoftT))
            blended = ops.Add(a, b);
        using var c = ops.Mul(blended, hardT);
        using var d = ops.Mul(fg, invHardT);
        return (ops.Add(c, d), blended);
    }
}
