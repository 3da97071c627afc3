using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>
/// diffusers BasicTransformerBlock (norm_type "layer_norm", eps 1e-5): self-attention (attn1),
/// cross-attention (attn2), GEGLU feed-forward (ff.net.0.proj, ff.net.2; inner = 4 * dim), each
/// pre-normed (norm1..3) and added to the residual stream.
/// </summary>
public sealed class BasicTransformerBlock
{
    const float LayerNormEps = 1e-5f;
    readonly ParameterStore _p;
    readonly int _dim, _ffInner;

    public BasicTransformerBlock(ParameterStore p, int dim, int heads, int headDim, int crossAttentionDim, int level)
    {
        _p = p;
        _dim = dim;
        _ffInner = 4 * dim;
        var path = Nn.PathOf(p);
        Attn1 = new Attention(new AttentionSite(path + ".attn1", AttentionKind.Self, heads, headDim, dim, dim, level));
        Attn2 = new Attention(new AttentionSite(path + ".attn2", AttentionKind.Cross, heads, headDim, dim, crossAttentionDim, level));
    }

    public Attention Attn1 { get; }
    public Attention Attn2 { get; }

    /// <param name="x">[B, H*W, dim]</param>
    public Tensor Forward(Tensor x, Tensor encoderHiddenStates, int height, int width, AttentionRuntime rt)
    {
        var ops = x.Ops;
        Tensor h1, h2;
        using (var n1 = Nn.LayerNorm(_p, "norm1", x, _dim, LayerNormEps))
        using (var a1 = Attn1.Forward(n1, null, height, width, rt))
            h1 = ops.Add(a1, x);
        using (h1)
        {
            using var n2 = Nn.LayerNorm(_p, "norm2", h1, _dim, LayerNormEps);
            using var a2 = Attn2.Forward(n2, encoderHiddenStates, height, width, rt);
            h2 = ops.Add(a2, h1);
        }
        using (h2)
        {
            using var n3 = Nn.LayerNorm(_p, "norm3", h2, _dim, LayerNormEps);
            using var proj = Nn.Linear(_p, "ff.net.0.proj", n3, _dim, 2 * _ffInner);
            using var gated = ops.Geglu(proj);
            using var ff = Nn.Linear(_p, "ff.net.2", gated, _ffInner, _dim);
            return ops.Add(ff, h2);
        }
    }
}
