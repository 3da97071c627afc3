using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>diffusers Upsample2D with use_conv: nearest 2x interpolation, then a 3x3 conv.</summary>
public sealed class Upsample2D(ParameterStore p, int channels, int outChannels)
{
    /// <param name="size">diffusers' upsample_size (the UNet passes the next skip's size when the latent is
    /// not a multiple of the total downsampling). F.interpolate(size=2n-1, mode="nearest") picks source
    /// index floor(i * n / (2n-1)) = floor(i / 2) for every i &lt; 2n-1, i.e. the 2x result cropped.</param>
    public Tensor Forward(Tensor x, (int H, int W)? size = null)
    {
        var ops = x.Ops;
        var up = ops.Upsample2xNearest(x);
        if (size is (int th, int tw) && (th != up.Dim(2) || tw != up.Dim(3)))
        {
            int h = x.Dim(2), w = x.Dim(3);
            if ((th != 2 * h && th != 2 * h - 1) || (tw != 2 * w && tw != 2 * w - 1))
                throw new UserInputException($"{Nn.PathOf(p)}: cannot upsample {h}x{w} to {th}x{tw} (sizes must come from stride-2 downsampling)");
            using var full = up;
            using var rows = ops.Slice(full, 2, 0, th);
            up = ops.Slice(rows, 3, 0, tw);
        }
        using (up) return Nn.Conv2d(p, "conv", up, channels, outChannels, 3, 1, 1);
    }
}
