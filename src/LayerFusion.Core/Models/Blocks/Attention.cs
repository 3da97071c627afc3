using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>
/// diffusers Attention on token sequences: to_q/to_k/to_v/to_out.0 under its module path. What it
/// computes is the processor's decision; where the projections come from is the weight lookup's.
/// </summary>
public sealed class Attention
{
    public Attention(AttentionSite site) => Site = site;

    public AttentionSite Site { get; }

    /// <param name="hidden">[B, H*W, QueryDim] query-side tokens.</param>
    /// <param name="context">[B, S, ContextDim] for cross-attention; null for self-attention.</param>
    public Tensor Forward(Tensor hidden, Tensor? context, int height, int width, AttentionRuntime rt)
    {
        if (Site.Kind == AttentionKind.Cross && context is null)
            throw new ArgumentException($"{Site.Path}: cross-attention needs encoder hidden states");
        if (context is not null && context.Dim(-1) != Site.ContextDim)
            throw new UserInputException($"{Site.Path}: encoder hidden states have {context.Dim(-1)} channels, the model expects {Site.ContextDim}");
        return rt.Processor.Process(new AttentionCall
        {
            Site = Site,
            Hidden = hidden,
            Context = Site.Kind == AttentionKind.Cross ? context : null,
            Height = height,
            Width = width,
            Weights = rt.Weights.For(Site),
        });
    }
}

/// <summary>
/// diffusers Attention as built for VAE / UNet2D attention blocks (norm_num_groups set,
/// residual_connection=True, biased projections): GroupNorm over channels, single self-attention
/// over the H*W tokens, plus the input, divided by rescale_output_factor.
/// </summary>
public sealed class SpatialAttention
{
    readonly ParameterStore _p;
    readonly int _channels, _groups;
    readonly float _eps, _rescale;
    readonly Attention _attn;

    public SpatialAttention(ParameterStore p, int channels, int heads, int headDim, int groups, float eps, float rescaleOutputFactor, int level)
    {
        if (heads < 1) throw new UserInputException($"{Nn.PathOf(p)}: {channels} channels give no attention head of dim {headDim}");
        Nn.RequireDivisible(channels, groups, Nn.PathOf(p) + ".group_norm");
        _p = p;
        _channels = channels;
        _groups = groups;
        _eps = eps;
        _rescale = rescaleOutputFactor;
        _attn = new Attention(new AttentionSite(Nn.PathOf(p), AttentionKind.Self, heads, headDim, channels, channels, level));
    }

    public AttentionSite Site => _attn.Site;

    public Tensor Forward(Tensor x, AttentionRuntime rt)
    {
        var ops = x.Ops;
        int b = x.Dim(0), h = x.Dim(2), w = x.Dim(3);
        Tensor attended;
        using (var normed = Nn.GroupNorm(_p, "group_norm", x, _groups, _channels, _eps))
        using (var tokens = ops.Permute(normed, 0, 2, 3, 1))
            attended = _attn.Forward(tokens.Reshape(b, h * w, _channels), null, h, w, rt);
        Tensor sum;
        using (attended)
        using (var back = ops.Permute(attended.Reshape(b, h, w, _channels), 0, 3, 1, 2))
            sum = ops.Add(back, x);
        if (_rescale == 1f) return sum;
        using (sum) return ops.Affine(sum, 1f / _rescale);
    }
}
