using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>diffusers Downsample2D with use_conv: 3x3 conv, stride 2. padding 0 means diffusers' asymmetric
/// (0, 1, 0, 1) zero pad before the conv.</summary>
public sealed class Downsample2D(ParameterStore p, int channels, int outChannels, int padding)
{
    public Tensor Forward(Tensor x)
    {
        if (padding != 0) return Nn.Conv2d(p, "conv", x, channels, outChannels, 3, 2, padding);
        var ops = x.Ops;
        int n = x.Dim(0), c = x.Dim(1), h = x.Dim(2), w = x.Dim(3);
        using var zc = ops.Zeros(n, c, h, 1);
        using var padW = ops.Concat([x, zc], 3);
        using var zr = ops.Zeros(n, c, 1, w + 1);
        using var padded = ops.Concat([padW, zr], 2);
        return Nn.Conv2d(p, "conv", padded, channels, outChannels, 3, 2, 0);
    }
}
