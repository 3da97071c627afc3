using LayerFusion.Core.Models;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Text;

/// <summary>transformers CLIPMLP: fc2(act(fc1(x))), act = config.hidden_act.</summary>
public sealed class ClipMlp
{
    readonly ParameterStore _w;
    readonly bool _quickGelu;

    /// <param name="weights">Scoped at "text_model.encoder.layers.N.mlp".</param>
    public ClipMlp(ClipTextConfig config, ParameterStore weights, string scope)
    {
        _w = weights;
        // transformers ACT2FN: "quick_gelu" = x * sigmoid(1.702 x) (CLIP ViT-L); "gelu" = exact erf GELU (OpenCLIP bigG).
        _quickGelu = config.HiddenAct switch
        {
            "quick_gelu" => true,
            "gelu" => false,
            _ => throw new WeightsLoader.UserInputException($"text encoder: hidden_act '{config.HiddenAct}' is not supported (quick_gelu or gelu)"),
        };
        WeightShapes.Expect(weights, scope, "fc1.weight", config.IntermediateSize, config.HiddenSize);
        WeightShapes.Expect(weights, scope, "fc1.bias", config.IntermediateSize);
        WeightShapes.Expect(weights, scope, "fc2.weight", config.HiddenSize, config.IntermediateSize);
        WeightShapes.Expect(weights, scope, "fc2.bias", config.HiddenSize);
    }

    public Tensor Forward(Tensor x)
    {
        var ops = _w.Ops;
        using var h = ops.Linear(x, _w["fc1.weight"], _w["fc1.bias"]);
        using var a = _quickGelu ? ops.QuickGelu(h) : ops.Gelu(h);
        return ops.Linear(a, _w["fc2.weight"], _w["fc2.bias"]);
    }
}
