using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>diffusers FeedForward with activation_fn "geglu" (mult 4): net.0 = GEGLU (proj to 2 x inner,
/// hidden * erf-GELU(gate)), net.2 = Linear(inner, dim).</summary>
public sealed class FeedForward(ParameterStore p, int dim, int mult = 4)
{
    readonly int _inner = mult * dim;

    public Tensor Forward(Tensor x)
    {
        using var proj = Nn.Linear(p, "net.0.proj", x, dim, 2 * _inner);
        using var gated = x.Ops.Geglu(proj);
        return Nn.Linear(p, "net.2", gated, _inner, dim);
    }
}
