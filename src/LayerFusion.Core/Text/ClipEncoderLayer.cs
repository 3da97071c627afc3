using LayerFusion.Core.Models;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Text;

/// <summary>transformers CLIPEncoderLayer (pre-LN): x + attn(ln1(x)), then + mlp(ln2(.)).</summary>
public sealed class ClipEncoderLayer
{
    readonly ParameterStore _w;
    readonly float _eps;

    /// <param name="weights">Scoped at "text_model.encoder.layers.N".</param>
    public ClipEncoderLayer(ClipTextConfig config, ParameterStore weights, string scope)
    {
        _w = weights;
        _eps = (float)config.LayerNormEps;
        foreach (var ln in new[] { "layer_norm1", "layer_norm2" })
        {
            WeightShapes.Expect(weights, scope, ln + ".weight", config.HiddenSize);
            WeightShapes.Expect(weights, scope, ln + ".bias", config.HiddenSize);
        }
        SelfAttn = new ClipAttention(config, weights.Scope("self_attn"), scope + "self_attn.");
        Mlp = new ClipMlp(config, weights.Scope("mlp"), scope + "mlp.");
    }

    public ClipAttention SelfAttn { get; }
    public ClipMlp Mlp { get; }

    public Tensor Forward(Tensor x)
    {
        var ops = _w.Ops;
        Tensor h1;
        using (var n1 = ops.LayerNorm(x, _w["layer_norm1.weight"], _w["layer_norm1.bias"], _eps))
        using (var a = SelfAttn.Forward(n1))
            h1 = ops.Add(x, a);
        using (h1)
        using (var n2 = ops.LayerNorm(h1, _w["layer_norm2.weight"], _w["layer_norm2.bias"], _eps))
        using (var m = Mlp.Forward(n2))
            return ops.Add(h1, m);
    }
}
