using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Transparent;

/// <summary>
/// LayerDiffuse's TransparentVAEDecoder around <see cref="UNet1024"/>: per image, either one pass or
/// the reference's 8 passes (horizontal flip x rot90 k = 0..3), each clipped to [0,1] and transformed
/// back, reduced by torch.median (for 8 values the LOWER middle one, not the mean of the two).
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
    /// channels 1.. = RGB, all clipped to [0, 1].
    /// </summary>
    /// <param name="pixel">[B, 3, H, W] VAE-decoded RGB in [0, 1] (see <see cref="PixelsFromVaeOutput"/>).</param>
    /// <param name="latent">[B, 4, H/8, W/8] the unscaled latent the VAE decoded.</param>
    /// <param name="augment">true: LayerDiffuse's 8-pass median (its reference behaviour); false: one pass.</param>
    public Tensor Decode(Tensor pixel, Tensor latent, bool augment = true)
    {
        var ops = pixel.Ops;
        if (!augment)
        {
            using var y = model.Forward(pixel, latent);
            var v = ops.ToHost(y);
            for (int i = 0; i < v.Length; i++) v[i] = Math.Clamp(v[i], 0f, 1f);
            return ops.FromHost(v, y.Shape);
        }
        int b = pixel.Dim(0), pc = pixel.Dim(1), h = pixel.Dim(2), w = pixel.Dim(3);
        int lc = latent.Dim(1), lh = latent.Dim(2), lw = latent.Dim(3);
        int oc = model.Config.OutChannels;
        var px = ops.ToHost(pixel);
        var lt = ops.ToHost(latent);
        int pixelPer = pc * h * w, latentPer = lc * lh * lw, outPer = oc * h * w;
        var result = new float[b * outPer];
        var passes = new float[8][];
        var column = new float[8];
        for (int n = 0; n < b; n++)
        {
            var p0 = px.AsSpan(n * pixelPer, pixelPer).ToArray();
            var l0 = lt.AsSpan(n * latentPer, latentPer).ToArray();
            int pass = 0;
            foreach (bool flip in new[] { false, true })
                for (int k = 0; k < 4; k++)
                {
                    var (pf, ph, pw) = Transform(p0, pc, h, w, flip, k);
                    var (lf, lhh, lww) = Transform(l0, lc, lh, lw, flip, k);
                    float[] y;
                    using (var pt = ops.FromHost(pf, 1, pc, ph, pw))
                    using (var ltt = ops.FromHost(lf, 1, lc, lhh, lww))
                    using (var yt = model.Forward(pt, ltt))
                        y = ops.ToHost(yt);
                    for (int i = 0; i < y.Length; i++) y[i] = Math.Clamp(y[i], 0f, 1f);
                    passes[pass++] = Untransform(y, oc, ph, pw, flip, k);
                }
            var dst = result.AsSpan(n * outPer, outPer);
            for (int i = 0; i < outPer; i++)
            {
                for (int j = 0; j < 8; j++) column[j] = passes[j][i];
                Array.Sort(column);
                dst[i] = column[3];
            }
        }
        return ops.FromHost(result, b, oc, h, w);
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
