using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Models.Blocks;

public enum AttentionKind
{
    /// <summary>Keys and values come from the layer's own tokens (diffusers `attn1`, VAE attention).</summary>
    Self,
    /// <summary>Keys and values come from the encoder hidden states (diffusers `attn2`).</summary>
    Cross,
}

/// <summary>
/// The static identity of one attention layer: its diffusers module path (e.g.
/// `up_blocks.1.attentions.2.transformer_blocks.1.attn1`), the kind, and its dimensions.
/// <see cref="Level"/> is the resolution level (0 = full latent resolution, each level halves it),
/// so a processor can plan per layer before any call.
/// </summary>
public sealed record AttentionSite(string Path, AttentionKind Kind, int Heads, int HeadDim, int QueryDim, int ContextDim, int Level)
{
    public int InnerDim => Heads * HeadDim;
}

/// <summary>The four projections of one attention layer (to_q, to_k, to_v, to_out.0), PyTorch [out, in] layout.</summary>
public sealed record AttentionProjections(
    Tensor ToQ, Tensor? ToQBias, Tensor ToK, Tensor? ToKBias, Tensor ToV, Tensor? ToVBias, Tensor ToOut, Tensor? ToOutBias)
{
    public Tensor Query(Tensor x) => x.Ops.Linear(x, ToQ, ToQBias);
    public Tensor Key(Tensor x) => x.Ops.Linear(x, ToK, ToKBias);
    public Tensor Value(Tensor x) => x.Ops.Linear(x, ToV, ToVBias);
    public Tensor Out(Tensor x) => x.Ops.Linear(x, ToOut, ToOutBias);
}

/// <summary>
/// Where an attention layer gets its projections. The default reads the model's own checkpoint;
/// LayerDiffuse's foreground stream supplies merged (W + dW) projections for the same sites while
/// every other weight stays shared, so the UNet graph is never forked per stream.
/// </summary>
public interface IAttentionWeights
{
    AttentionProjections For(AttentionSite site);
}

/// <summary>
/// Projections read from a <see cref="ParameterStore"/> whose names mirror diffusers' keys:
/// `{site.Path}.to_q.weight`, `.to_k`, `.to_v`, `.to_out.0` (biases optional). The store may be the
/// model's own (the default) or any other view of the same key space (e.g. merged LayerDiffuse weights).
/// </summary>
public sealed class CheckpointAttentionWeights(ParameterStore root) : IAttentionWeights
{
    readonly Dictionary<string, AttentionProjections> _cache = new();

    public ParameterStore Root { get; } = root;

    public AttentionProjections For(AttentionSite site)
    {
        lock (_cache)
        {
            if (_cache.TryGetValue(site.Path, out var cached)) return cached;
            var s = Root.Scope(site.Path);
            var p = new AttentionProjections(
                Nn.CheckedWeight(s, "to_q.weight", site.InnerDim, site.QueryDim), Nn.CheckedBias(s, "to_q.bias", site.InnerDim),
                Nn.CheckedWeight(s, "to_k.weight", site.InnerDim, site.ContextDim), Nn.CheckedBias(s, "to_k.bias", site.InnerDim),
                Nn.CheckedWeight(s, "to_v.weight", site.InnerDim, site.ContextDim), Nn.CheckedBias(s, "to_v.bias", site.InnerDim),
                Nn.CheckedWeight(s, "to_out.0.weight", site.QueryDim, site.InnerDim), Nn.CheckedBias(s, "to_out.0.bias", site.QueryDim));
            _cache[site.Path] = p;
            return p;
        }
    }
}

/// <summary>
/// One attention evaluation handed to a processor. <see cref="Hidden"/> is the (already normed)
/// query-side input [B, T, QueryDim] with T = Height * Width; <see cref="Context"/> is the
/// encoder hidden states [B, S, ContextDim] for cross-attention, null for self-attention.
/// <see cref="Weights"/> are the projections the model's weight lookup gives for this site.
/// </summary>
public sealed class AttentionCall
{
    public required AttentionSite Site { get; init; }
    public required Tensor Hidden { get; init; }
    public Tensor? Context { get; init; }
    public required int Height { get; init; }
    public required int Width { get; init; }
    public required AttentionProjections Weights { get; init; }

    public IOps Ops => Hidden.Ops;
    public int Batch => Hidden.Dim(0);
    /// <summary>The tokens keys and values are projected from.</summary>
    public Tensor KeyValueSource => Context ?? Hidden;
}

/// <summary>
/// Decides what an attention layer computes (diffusers' AttnProcessor): given the call, return
/// to_out(attention(...)) as [B, T, QueryDim]. Residuals and norms stay in the blocks.
/// </summary>
public interface IAttentionProcessor
{
    Tensor Process(AttentionCall call);
}

/// <summary>Plain scaled-dot-product attention, softmax(q k^T / sqrt(d)) v per head (diffusers AttnProcessor2_0).</summary>
public sealed class SdpaAttentionProcessor : IAttentionProcessor
{
    public static readonly SdpaAttentionProcessor Instance = new();

    public Tensor Process(AttentionCall call)
    {
        var ops = call.Ops;
        var w = call.Weights;
        using var q = w.Query(call.Hidden);
        using var k = w.Key(call.KeyValueSource);
        using var v = w.Value(call.KeyValueSource);
        using var o = ops.Attention(q, k, v, call.Site.Heads);
        return w.Out(o);
    }
}
