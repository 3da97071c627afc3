namespace LayerFusion.Core.Imaging;

/// <summary>An 8-bit image, rows top to bottom, channels interleaved (RGB or RGBA).</summary>
public sealed class Image8
{
    public Image8(int width, int height, int channels, byte[] pixels)
    {
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), $"image size {width}x{height} must be positive");
        if (channels is not (3 or 4)) throw new ArgumentOutOfRangeException(nameof(channels), $"channels must be 3 (RGB) or 4 (RGBA), got {channels}");
        ArgumentNullException.ThrowIfNull(pixels);
        long expected = (long)width * height * channels;
        if (pixels.LongLength != expected)
            throw new ArgumentException($"pixel buffer has {pixels.LongLength} bytes, a {width}x{height}x{channels} image needs {expected}");
        Width = width;
        Height = height;
        Channels = channels;
        Pixels = pixels;
    }

    public int Width { get; }
    public int Height { get; }
    public int Channels { get; }
    public bool HasAlpha => Channels == 4;
    public byte[] Pixels { get; }

    public static Image8 Blank(int width, int height, int channels) =>
        new(width, height, channels, new byte[checked(width * height * channels)]);
}
