using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>diffusers Upsample2D with use_conv: nearest interpolation (2x, or to the skip's size), then a 3x3 conv.</summary>
public sealed class Upsample2D(ParameterStore p, int channels, int outChannels)
{
    /// <param name="size">diffusers' upsample_size (the UNet passes the next skip's size when the latent is
    /// not a multiple of the total downsampling): F.interpolate(size=..., mode="nearest").</param>
    public Tensor Forward(Tensor x, (int H, int W)? size = null)
    {
        using var up = Interpolate(x, size);
        return Nn.Conv2d(p, "conv", up, channels, outChannels, 3, 1, 1);
    }

    static Tensor Interpolate(Tensor x, (int H, int W)? size)
    {
        var ops = x.Ops;
        int h = x.Dim(2), w = x.Dim(3);
        if (size is not (int th, int tw) || (th == 2 * h && tw == 2 * w)) return ops.Upsample2xNearest(x);
        if (th <= 0 || tw <= 0) throw new ArgumentOutOfRangeException(nameof(size), $"upsample size {th}x{tw} must be positive");
        // F.interpolate(size=2n-1) picks source floor(i * n / (2n-1)) = floor(i / 2): the 2x result cropped
        if ((th == 2 * h || th == 2 * h - 1) && (tw == 2 * w || tw == 2 * w - 1))
        {
            using var full = ops.Upsample2xNearest(x);
            using var rows = ops.Slice(full, 2, 0, th);
            return ops.Slice(rows, 3, 0, tw);
        }
        return NearestResize(x, th, tw);
    }

    /// <summary>
    /// PyTorch's nearest resize to an arbitrary size (e.g. 2x1 -> 4x3 after downsample_padding 0 on an
    /// odd latent), as two row gathers: rare, small, and exact with the ops every backend has.
    /// </summary>
    static Tensor NearestResize(Tensor x, int th, int tw)
    {
        var ops = x.Ops;
        int n = x.Dim(0), c = x.Dim(1), h = x.Dim(2), w = x.Dim(3);
        using var hFirst = ops.Permute(x, 2, 0, 1, 3);                                      // [H, N, C, W]
        using var rows = ops.Gather(hFirst.Reshape(h, n * c * w), NearestIndex(h, th));    // [th, N*C*W]
        using var wFirst = ops.Permute(rows.Reshape(th, n, c, w), 3, 0, 1, 2);              // [W, th, N, C]
        using var cols = ops.Gather(wFirst.Reshape(w, th * n * c), NearestIndex(w, tw));   // [tw, th*N*C]
        return ops.Permute(cols.Reshape(tw, th, n, c), 2, 3, 1, 0);                        // [N, C, th, tw]
    }

    /// <summary>PyTorch's nearest_idx: identity, j/2 for exactly 2x, else min(floor(j * (float)in/out), in-1) in float32.</summary>
    public static int[] NearestIndex(int input, int output)
    {
        var idx = new int[output];
        float scale = (float)input / output;
        for (int j = 0; j < output; j++)
            idx[j] = output == input ? j : output == 2 * input ? j >> 1 : Math.Min((int)MathF.Floor(j * scale), input - 1);
        return idx;
    }
}
