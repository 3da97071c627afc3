using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Transparent;

/// <summary>
/// LayerDiffuse's TransparentVAEDecoder around <see cref="UNet1024"/>: per image, either one pass or
/// the reference's 8 passes (horizontal flip x rot90 k = 0..3), each clipped to [0,1] and transformed
/// back, reduced by torch.median (for 8 values the LOWER middle one, not the mean of the two).
/// Sizes that are not multiples of 64 are padded (see <see cref="Decode"/>).
/// Flips, rotations, clipping and the median run on the host: they are O(pixels) beside the network,
/// and <see cref="IOps"/> has no flip/clamp/sort.
/// </summary>
public sealed class TransparentVaeDecoder(UNet1024 model)
{
    public UNet1024 Model => model;

    /// <summary>The VAE's output in about [-1, 1] mapped to the decoder's pixel input: (x * 0.5 + 0.5) clipped to [0, 1].</summary>
    public static Tensor PixelsFromVaeOutput(Tensor vaeOutput)
    {
        var ops = vaeOutput.Ops;
        var v = ops.ToHost(vaeOutput);
        for (int i = 0; i < v.Length; i++) v[i] = Math.Clamp(v[i] * 0.5f + 0.5f, 0f, 1f);
        return ops.FromHost(v, vaeOutput.Shape);
    }

    /// <summary>
    /// Alpha and straight (un-premultiplied) RGB: [B, out_channels, H, W] with channel 0 = alpha and
    /// channels 1.. = RGB, all clipped to [0, 1]. Sizes that are not multiples of
    /// <see cref="UNet1024.SizeMultiple"/> (64 for the released model) are edge-replicate padded at the
    /// bottom and right (pixels and latent alike) and the result cropped back; the reference has no
    /// padding (it needs multiples of 64), so for those sizes results are identical to it.
    /// </summary>
    /// <param name="pixel">[B, 3, H, W] VAE-decoded RGB in [0, 1] (see <see cref="PixelsFromVaeOutput"/>).</param>
    /// <param name="latent">[B, 4, H/8, W/8] the unscaled latent the VAE decoded.</param>
    /// <param name="augment">true: LayerDiffuse's 8-pass median (its reference behaviour); false: one pass.</param>
    /// <param name="passDone">Called after each of the (up to 8) passes with (passes done, passes in all), for progress.</param>
    public Tensor Decode(Tensor pixel, Tensor latent, bool augment = true, Action<int, int>? passDone = null)
    {
        var ops = pixel.Ops;
        var cfg = model.Config;
        int f = 1 << cfg.LatentInjectLevel;
        if (pixel.Rank != 4 || latent.Rank != 4 || latent.Dim(0) != pixel.Dim(0) || pixel.Dim(1) != cfg.InChannels
            || latent.Dim(1) != cfg.LatentChannels || latent.Dim(2) * f != pixel.Dim(2) || latent.Dim(3) * f != pixel.Dim(3))
            throw new LayerFusion.WeightsLoader.UserInputException(
                $"transparent decoder: pixels [B, {cfg.InChannels}, H, W] and latent [B, {cfg.LatentChannels}, H/{f}, W/{f}] expected, " +
                $"got {ShapeUtil.Format(pixel.Shape)} and {ShapeUtil.Format(latent.Shape)}");
        int b = pixel.Dim(0), pc = pixel.Dim(1), h = pixel.Dim(2), w = pixel.Dim(3);
        int lc = latent.Dim(1), lh = latent.Dim(2), lw = latent.Dim(3);
        int m = Math.Max(model.SizeMultiple, f);
        int hp = (h + m - 1) / m * m, wp = (w + m - 1) / m * m;
        int oc = cfg.OutChannels;
        var px = ops.ToHost(pixel);
        var lt = ops.ToHost(latent);
        int pixelPer = pc * h * w, latentPer = lc * lh * lw, outPer = oc * h * w;
        var result = new float[b * outPer];
        var variants = augment
            ? new[] { false, true }.SelectMany(flip => Enumerable.Range(0, 4).Select(k => (flip, k))).ToArray()
            : [(false, 0)];
        var passes = new float[variants.Length][];
        var column = new float[variants.Length];
        for (int n = 0; n < b; n++)
        {
            var p0 = PadEdge(px.AsSpan(n * pixelPer, pixelPer), pc, h, w, hp, wp);
            var l0 = PadEdge(lt.AsSpan(n * latentPer, latentPer), lc, lh, lw, hp / f, wp / f);
            for (int v = 0; v < variants.Length; v++)
            {
                var (flip, k) = variants[v];
                var (pf, ph, pw) = Transform(p0, pc, hp, wp, flip, k);
                var (lf, lhh, lww) = Transform(l0, lc, hp / f, wp / f, flip, k);
                float[] y;
                using (var pt = ops.FromHost(pf, 1, pc, ph, pw))
                using (var ltt = ops.FromHost(lf, 1, lc, lhh, lww))
                using (var yt = model.Forward(pt, ltt))
                    y = ops.ToHost(yt);
                for (int i = 0; i < y.Length; i++) y[i] = Math.Clamp(y[i], 0f, 1f);
                passes[v] = Untransform(y, oc, ph, pw, flip, k);
                passDone?.Invoke(n * variants.Length + v + 1, b * variants.Length);
            }
            var dst = result.AsSpan(n * outPer, outPer);
            for (int c = 0; c < oc; c++)
                for (int i = 0; i < h; i++)
                    for (int j = 0; j < w; j++)
                    {
                        int src = (c * hp + i) * wp + j;
                        float value;
                        if (passes.Length == 1) value = passes[0][src];
                        else
                        {
                            for (int v = 0; v < passes.Length; v++) column[v] = passes[v][src];
                            Array.Sort(column);
                            // torch.median: the lower of the two middle values for an even count
                            value = column[(column.Length - 1) / 2];
                        }
                        dst[(c * h + i) * w + j] = value;
                    }
        }
        return ops.FromHost(result, b, oc, h, w);
    }

    /// <summary>[c, h, w] padded to [c, hp, wp] by repeating the last row and column.</summary>
    internal static float[] PadEdge(ReadOnlySpan<float> x, int c, int h, int w, int hp, int wp)
    {
        if (hp == h && wp == w) return x.ToArray();
        var o = new float[c * hp * wp];
        for (int ci = 0; ci < c; ci++)
            for (int i = 0; i < hp; i++)
            {
                int si = Math.Min(i, h - 1);
                for (int j = 0; j < wp; j++)
                    o[(ci * hp + i) * wp + j] = x[(ci * h + si) * w + Math.Min(j, w - 1)];
            }
        return o;
    }

    /// <summary>torch.flip(x, dims=(W,)) if <paramref name="flip"/>, then torch.rot90(x, k, dims=(H, W)).</summary>
    internal static (float[] Data, int H, int W) Transform(float[] x, int c, int h, int w, bool flip, int k)
    {
        if (flip) x = FlipW(x, c, h, w);
        for (int i = 0; i < ((k % 4) + 4) % 4; i++)
        {
            x = Rot90(x, c, h, w);
            (h, w) = (w, h);
        }
        return (x, h, w);
    }

    /// <summary>The inverse of <see cref="Transform"/>: rot90(-k), then the flip; <paramref name="h"/>, <paramref name="w"/> are the transformed sizes.</summary>
    internal static float[] Untransform(float[] y, int c, int h, int w, bool flip, int k)
    {
        for (int i = 0; i < ((4 - k % 4) % 4); i++)
        {
            y = Rot90(y, c, h, w);
            (h, w) = (w, h);
        }
        return flip ? FlipW(y, c, h, w) : y;
    }

    static float[] FlipW(float[] x, int c, int h, int w)
    {
        var o = new float[x.Length];
        for (int ci = 0; ci < c; ci++)
            for (int i = 0; i < h; i++)
            {
                int row = (ci * h + i) * w;
                for (int j = 0; j < w; j++) o[row + j] = x[row + w - 1 - j];
            }
        return o;
    }

    /// <summary>torch.rot90(k=1, dims=(H, W)) of [c, h, w] -> [c, w, h]: out[a, b] = in[b, w - 1 - a].</summary>
    static float[] Rot90(float[] x, int c, int h, int w)
    {
        var o = new float[x.Length];
        for (int ci = 0; ci < c; ci++)
        {
            int plane = ci * h * w;
            for (int a = 0; a < w; a++)
                for (int b = 0; b < h; b++)
                    o[plane + a * h + b] = x[plane + b * w + (w - 1 - a)];
        }
        return o;
    }
}
