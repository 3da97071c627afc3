using LayerFusion.Core.Models;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Text;

/// <summary>transformers CLIPAttention with the causal mask CLIPTextTransformer always applies
/// (scale head_dim^-0.5; q/k/v/out projections with biases).</summary>
public sealed class ClipAttention
{
    readonly ParameterStore _w;
    readonly int _heads;

    /// <param name="weights">Scoped at "text_model.encoder.layers.N.self_attn".</param>
    public ClipAttention(ClipTextConfig config, ParameterStore weights, string scope)
    {
        _w = weights;
        _heads = config.NumAttentionHeads;
        long c = config.HiddenSize;
        foreach (var p in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
        {
            WeightShapes.Expect(weights, scope, p + ".weight", c, c);
            WeightShapes.Expect(weights, scope, p + ".bias", c);
        }
    }

    /// <summary>x [B, T, C] -> [B, T, C].</summary>
    public Tensor Forward(Tensor x)
    {
        var ops = _w.Ops;
        using var q = ops.Linear(x, _w["q_proj.weight"], _w["q_proj.bias"]);
        using var k = ops.Linear(x, _w["k_proj.weight"], _w["k_proj.bias"]);
        using var v = ops.Linear(x, _w["v_proj.weight"], _w["v_proj.bias"]);
        using var a = ops.Attention(q, k, v, _heads, causal: true);
        return ops.Linear(a, _w["out_proj.weight"], _w["out_proj.bias"]);
    }
}
