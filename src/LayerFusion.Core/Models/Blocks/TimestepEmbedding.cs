using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>diffusers TimestepEmbedding (act_fn silu, no cond_proj): linear_1, SiLU, linear_2, then the
/// optional post_act_fn (the UNet's timestep_post_act).</summary>
public sealed class TimestepEmbedding(ParameterStore p, int inChannels, int timeEmbedDim, string? postAct = null)
{
    public int InChannels => inChannels;

    public Tensor Forward(Tensor sample)
    {
        using var h = Nn.Linear(p, "linear_1", sample, inChannels, timeEmbedDim);
        using var a = h.Ops.Silu(h);
        var y = Nn.Linear(p, "linear_2", a, timeEmbedDim, timeEmbedDim);
        if (postAct is null) return y;
        using (y) return Nn.Activation(y, postAct);
    }
}
