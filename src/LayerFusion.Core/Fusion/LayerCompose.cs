using LayerFusion.Core.Imaging;

namespace LayerFusion.Core.Fusion;

/// <summary>
/// Spatial editing of a layered result (the paper's "move the foreground layer"): the RGBA foreground,
/// scaled by <c>scale</c> about its top-left corner and shifted by (dx, dy) pixels, alpha-composited
/// over the background: out = fg * a + bg * (1 - a). Resampling is bilinear on premultiplied colour
/// (so transparent pixels do not bleed their colour into edges); outside the moved layer a = 0.
/// </summary>
public static class LayerCompose
{
    public static Image8 Compose(Image8 foreground, Image8 background, double dx, double dy, double scale = 1.0)
    {
        ArgumentNullException.ThrowIfNull(foreground);
        ArgumentNullException.ThrowIfNull(background);
        if (!foreground.HasAlpha) throw new ArgumentException("the foreground must be RGBA");
        if (!double.IsFinite(dx) || !double.IsFinite(dy)) throw new ArgumentException("dx and dy must be finite");
        if (!(scale > 0) || !double.IsFinite(scale)) throw new ArgumentException($"scale must be a positive number, got {scale}");
        int fw = foreground.Width, fh = foreground.Height, bw = background.Width, bh = background.Height, bc = background.Channels;
        var fp = foreground.Pixels;
        var bp = background.Pixels;
        var result = new byte[bw * bh * 3];
        Span<double> acc = stackalloc double[4];
        for (int y = 0; y < bh; y++)
            for (int x = 0; x < bw; x++)
            {
                // the background pixel's centre in the foreground's pixel grid (inverse transform)
                double sx = (x + 0.5 - dx) / scale - 0.5, sy = (y + 0.5 - dy) / scale - 0.5;
                acc.Clear();
                int x0 = (int)Math.Floor(sx), y0 = (int)Math.Floor(sy);
                double lx = sx - x0, ly = sy - y0;
                for (int j = 0; j < 2; j++)
                    for (int i = 0; i < 2; i++)
                    {
                        int xi = x0 + i, yj = y0 + j;
                        if (xi < 0 || yj < 0 || xi >= fw || yj >= fh) continue;
                        double wgt = (i == 0 ? 1 - lx : lx) * (j == 0 ? 1 - ly : ly);
                        int o = (yj * fw + xi) * 4;
                        double a = fp[o + 3] / 255.0;
                        acc[0] += wgt * a * fp[o] / 255.0;
                        acc[1] += wgt * a * fp[o + 1] / 255.0;
                        acc[2] += wgt * a * fp[o + 2] / 255.0;
                        acc[3] += wgt * a;
                    }
                int bo = (y * bw + x) * bc, ro = (y * bw + x) * 3;
                for (int c = 0; c < 3; c++)
                {
                    // premultiplied over: fg_premul + bg * (1 - a)
                    double v = acc[c] + bp[bo + c] / 255.0 * (1 - acc[3]);
                    result[ro + c] = ImageConvert.QuantizeUnit((float)v);
                }
            }
        return new Image8(bw, bh, 3, result);
    }
}
