namespace LayerFusion.Core.Imaging;

/// <summary>
/// Float tensors to 8-bit images the way diffusers' VaeImageProcessor does for output_type "pil":
/// denormalize (x / 2 + 0.5, clamp to [0, 1]) in float32, then numpy_to_pil's
/// <c>(images * 255).round().astype("uint8")</c>: a float32 product rounded half to even.
/// </summary>
public static class ImageConvert
{
    /// <summary>One image of an NCHW float buffer in [-1, 1] (VAE decoder output), RGB.</summary>
    public static Image8 FromSignedNchw(ReadOnlySpan<float> nchw, int batchIndex, int channels, int height, int width) =>
        FromNchw(nchw, batchIndex, channels, height, width, signed: true);

    /// <summary>One image of an NCHW float buffer already in [0, 1] (e.g. the transparent decoder's RGB), RGB.</summary>
    public static Image8 FromUnitNchw(ReadOnlySpan<float> nchw, int batchIndex, int channels, int height, int width) =>
        FromNchw(nchw, batchIndex, channels, height, width, signed: false);

    private static Image8 FromNchw(ReadOnlySpan<float> nchw, int batchIndex, int channels, int height, int width, bool signed)
    {
        if (channels != 3) throw new ArgumentOutOfRangeException(nameof(channels), $"an RGB image needs 3 channels, got {channels}");
        if (height <= 0 || width <= 0) throw new ArgumentOutOfRangeException(nameof(height), $"image size {width}x{height} must be positive");
        long plane = (long)height * width;
        long imageLen = plane * channels;
        if (batchIndex < 0 || nchw.Length % imageLen != 0 || (long)(batchIndex + 1) * imageLen > nchw.Length)
            throw new ArgumentException($"buffer of {nchw.Length} floats does not hold image {batchIndex} of [N, {channels}, {height}, {width}]");
        var src = nchw.Slice((int)(batchIndex * imageLen), (int)imageLen);
        var px = new byte[imageLen];
        for (int c = 0; c < channels; c++)
            for (int i = 0; i < plane; i++)
                px[i * channels + c] = signed ? QuantizeSigned(src[(int)(c * plane + i)]) : QuantizeUnit(src[(int)(c * plane + i)]);
        return new Image8(width, height, channels, px);
    }

    /// <summary>RGBA from an RGB image and an alpha plane in [0, 1] ([H, W], row-major).</summary>
    public static Image8 WithAlpha(Image8 rgb, ReadOnlySpan<float> alpha)
    {
        ArgumentNullException.ThrowIfNull(rgb);
        if (rgb.Channels != 3) throw new ArgumentException("WithAlpha takes an RGB image");
        long plane = (long)rgb.Width * rgb.Height;
        if (alpha.Length != plane) throw new ArgumentException($"alpha has {alpha.Length} values, the image {plane} pixels");
        var px = new byte[plane * 4];
        for (int i = 0; i < plane; i++)
        {
            px[4 * i] = rgb.Pixels[3 * i];
            px[4 * i + 1] = rgb.Pixels[3 * i + 1];
            px[4 * i + 2] = rgb.Pixels[3 * i + 2];
            px[4 * i + 3] = QuantizeUnit(alpha[i]);
        }
        return new Image8(rgb.Width, rgb.Height, 4, px);
    }

    /// <summary>RGBA from straight (non-premultiplied) RGB planes [3, H, W] and alpha [H, W], all in [0, 1].</summary>
    public static Image8 RgbaFromUnitPlanes(ReadOnlySpan<float> rgbChw, ReadOnlySpan<float> alpha, int height, int width) =>
        WithAlpha(FromUnitNchw(rgbChw, 0, 3, height, width), alpha);

    /// <summary>diffusers' denormalize then quantize: clamp(x / 2 + 0.5, 0, 1) * 255, round half to even.</summary>
    public static byte QuantizeSigned(float x) => QuantizeUnit(x / 2f + 0.5f);

    /// <summary>clamp(x, 0, 1) * 255 in float32, rounded half to even (numpy's round); NaN becomes 0.</summary>
    public static byte QuantizeUnit(float x)
    {
        // torch.clamp propagates NaN and numpy's uint8 cast of NaN is undefined; we pick 0
        if (float.IsNaN(x)) return 0;
        float v = Math.Clamp(x, 0f, 1f) * 255f;
        return (byte)MathF.Round(v, MidpointRounding.ToEven);
    }
}
