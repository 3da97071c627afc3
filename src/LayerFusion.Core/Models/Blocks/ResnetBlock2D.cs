using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>
/// diffusers ResnetBlock2D, time_embedding_norm "default": norm1 SiLU conv1 (+ time_emb_proj(SiLU(temb))),
/// norm2 SiLU conv2, plus the (1x1 conv_shortcut'ed when channels change) input, divided by output_scale_factor.
/// </summary>
public sealed class ResnetBlock2D
{
    readonly ParameterStore _p;
    readonly int _in, _out, _groups;
    readonly int? _temb;
    readonly float _eps, _outputScaleFactor;

    public ResnetBlock2D(ParameterStore p, int inChannels, int outChannels, int? tembChannels, int groups, float eps,
        float outputScaleFactor = 1f)
    {
        Nn.RequireDivisible(inChannels, groups, Nn.PathOf(p) + ".norm1");
        Nn.RequireDivisible(outChannels, groups, Nn.PathOf(p) + ".norm2");
        _p = p;
        _in = inChannels;
        _out = outChannels;
        _temb = tembChannels;
        _groups = groups;
        _eps = eps;
        _outputScaleFactor = outputScaleFactor;
    }

    public int OutChannels => _out;

    /// <param name="tembSilu">SiLU(temb) [B, temb_channels] — every resnet applies SiLU to the same temb first,
    /// so the caller does it once.</param>
    public Tensor Forward(Tensor x, Tensor? tembSilu)
    {
        var ops = x.Ops;
        Tensor h;
        using (var n1 = Nn.GroupNorm(_p, "norm1", x, _groups, _in, _eps, silu: true))
            h = Nn.Conv2d(_p, "conv1", n1, _in, _out, 3, 1, 1);
        if (_temb is int tc && tembSilu is not null)
        {
            using var t = Nn.Linear(_p, "time_emb_proj", tembSilu, tc, _out);
            var withT = ops.Add(h, t.Reshape(t.Dim(0), _out, 1, 1));
            h.Dispose();
            h = withT;
        }
        Tensor h2;
        using (h)
        using (var n2 = Nn.GroupNorm(_p, "norm2", h, _groups, _out, _eps, silu: true))
            h2 = Nn.Conv2d(_p, "conv2", n2, _out, _out, 3, 1, 1);
        Tensor sum;
        using (h2)
        {
            if (_in != _out)
            {
                using var sc = Nn.Conv2d(_p, "conv_shortcut", x, _in, _out, 1);
                sum = ops.Add(sc, h2);
            }
            else sum = ops.Add(x, h2);
        }
        if (_outputScaleFactor == 1f) return sum;
        using (sum) return ops.Affine(sum, 1f / _outputScaleFactor);
    }
}
