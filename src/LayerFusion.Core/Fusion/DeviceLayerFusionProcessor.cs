using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Fusion;

/// <summary>
/// The interaction pass (Alg. 3) with every prior, mask and blend on the backend: the same
/// semantics as <see cref="LayerFusionAttentionProcessor"/> (its host path is the tests' reference;
/// see there for the layout and the choices), built from IOps' prior ops. Live c comes from the FG
/// cross-attention's <see cref="IOps.PriorAttention"/> (its cond row); masks from
/// <see cref="IOps.PriorMasks"/>; sharing's exclusion bias from <see cref="IOps.ExclusionKeyBias"/>;
/// Eq. 1/2 from <see cref="IOps.PriorBlend"/> after to_out. Only <see cref="Record"/> (--dump-priors,
/// one step) reads anything back to the host.
/// </summary>
public sealed class DeviceLayerFusionProcessor : IAttentionProcessor
{
    DeviceStructurePrior? _prior;
    IReadOnlyDictionary<string, Tensor> _priorContent = new Dictionary<string, Tensor>();
    int _eos = -1;

    public DeviceLayerFusionProcessor(IAttentionWeights foreground, LayerFusionOptions options)
    {
        options.Validate();
        Foreground = foreground;
        Options = options;
    }

    public IAttentionWeights Foreground { get; }
    public LayerFusionOptions Options { get; }

    /// <summary>When set, every layer's masks of the following passes are read back and stored here by site path.</summary>
    public IDictionary<string, LayerFusionMaps>? Record { get; set; }

    /// <summary>Whether the interaction's self-attention layers read the prior pass's c (masks for attn1).</summary>
    public static bool SelfAttentionNeedsContent(LayerFusionOptions o, bool recording) =>
        recording || o.BlendSelfAttention || (o.Sharing && o.Exclusion);

    /// <summary>This step's prior-pass results (not owned: the caller keeps them alive for the pass).</summary>
    public void BeginStep(DeviceStructurePrior prior, IReadOnlyDictionary<string, Tensor> priorContent, int eosIndex)
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

        Tensor aFg;
        Tensor? liveContent = null;
        try
        {
            using (var h = Rows(call.Hidden, TripletLayout.Foreground))
            using (var ctx = cross ? Rows(call.Context!, TripletLayout.Foreground) : null)
            using (var q = fgW.Query(h))
            using (var k = fgW.Key(ctx ?? h))
            using (var v = fgW.Value(ctx ?? h))
            {
                if (cross)
                {
                    if (_eos >= k.Dim(1)) throw new ArgumentException($"{site.Path}: <EOS> position {_eos} is outside the {k.Dim(1)} context tokens");
                    using var r = ops.PriorAttention(q, k, v, site.Heads, sparsity: false, column: _eos);
                    // c from the cond row (row 1 of the FG pair), as Alg. 3 reads it
                    liveContent = ops.Slice(r.Column!, 0, 1, 1);
                    aFg = fgW.Out(r.Output);
                }
                else
                {
                    using var o = ops.Attention(q, k, v, site.Heads);
                    aFg = fgW.Out(o);
                }
            }

            bool blend = cross ? Options.BlendCrossAttention : Options.BlendSelfAttention;
            bool exclude = !cross && Options.Sharing && Options.Exclusion;
            Tensor? soft = null, hard = null;
            try
            {
                if (blend || exclude || Record != null)
                {
                    var content = liveContent ?? ContentForSelf(site);
                    if (content.ElementCount != t) throw new InvalidOperationException($"{site.Path}: content prior has {content.ElementCount} values for {t} tokens");
                    var density = _prior.DensityAt(call.Height, call.Width);
                    (soft, hard) = ops.PriorMasks(density, content, Options.D);
                    if (Record != null)
                        Record[site.Path] = new LayerFusionMaps(call.Height, call.Width, ops.ToHost(density), ops.ToHost(content),
                            ops.ToHost(soft), ops.ToHost(hard));
                }

                Tensor aBlend, aBg;
                using (var hBl = Rows(call.Hidden, TripletLayout.Blend))
                using (var hBg = Rows(call.Hidden, TripletLayout.Background))
                {
                    if (cross)
                    {
                        using var ctxBg = Rows(call.Context!, TripletLayout.Background);
                        using var ctxBl = Options.Sharing && Options.BlendCrossReadsBackgroundPrompt ? null : Rows(call.Context!, TripletLayout.Blend);
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
                            using var bias = exclude ? ops.ExclusionKeyBias(hard!, TripletLayout.Branches, t) : null;
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
                    var (fg2, blend2) = ops.PriorBlend(aFg, aBlend, soft!, hard!);
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
            finally
            {
                soft?.Dispose();
                hard?.Dispose();
            }
        }
        finally
        {
            liveContent?.Dispose();
        }
    }

    Tensor ContentForSelf(AttentionSite site)
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
}
