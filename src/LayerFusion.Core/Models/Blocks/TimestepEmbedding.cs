using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>diffusers TimestepEmbedding (act_fn silu, no cond_proj/post_act): linear_1, SiLU, linear_2.</summary>
public sealed class TimestepEmbedding(ParameterStore p, int inChannels, int timeEmbedDim)
{
    public int InChannels => inChannels;

    public Tensor Forward(Tensor sample)
    {
        using var h = Nn.Linear(p, "linear_1", sample, inChannels, timeEmbedDim);
        using var a = h.Ops.Silu(h);
        return Nn.Linear(p, "linear_2", a, timeEmbedDim, timeEmbedDim);
    }
}
