using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using System.Text;
using LayerFusion.Core.Imaging;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Tests.Imaging;

/// <summary>Image data whose zlib stream is cut short or carries the wrong amount: an error, not a padded image.</summary>
public class PngImageDataTests
{
    static byte[] Chunk(string type, ReadOnlySpan<byte> data)
    {
        var c = new byte[12 + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(c, (uint)data.Length);
        Encoding.ASCII.GetBytes(type, c.AsSpan(4, 4));
        data.CopyTo(c.AsSpan(8));
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(8 + data.Length), Crc32.HashToUInt32(c.AsSpan(4, 4 + data.Length)));
        return c;
    }

    /// <summary>A valid PNG's IHDR with new IDAT data (valid CRCs), so only the image data is wrong.</summary>
    static byte[] WithImageData(byte[] png, byte[] idat)
    {
        var chunks = PngFile.ParseChunks(png, "memory");
        var ihdr = chunks[0];
        var result = new List<byte>(png.AsSpan(0, 8).ToArray());
        result.AddRange(png.AsSpan(ihdr.DataOffset - 8, ihdr.Length + 12).ToArray());
        result.AddRange(Chunk("IDAT", idat));
        result.AddRange(Chunk("IEND", []));
        return [.. result];
    }

    static byte[] ImageData(byte[] png)
    {
        var ms = new MemoryStream();
        foreach (var c in PngFile.ParseChunks(png, "memory"))
            if (c.Type == "IDAT") ms.Write(png, c.DataOffset, c.Length);
        return ms.ToArray();
    }

    static byte[] Zlib(byte[] raw)
    {
        var ms = new MemoryStream();
        using (var z = new ZLibStream(ms, CompressionLevel.Fastest, leaveOpen: true)) z.Write(raw);
        return ms.ToArray();
    }

    static byte[] Inflate(byte[] z)
    {
        using var s = new ZLibStream(new MemoryStream(z), CompressionMode.Decompress);
        var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    static byte[] Png(int w, int h, int c, int seed)
    {
        var px = new byte[w * h * c];
        new Random(seed).NextBytes(px);
        return PngFile.Encode(new Image8(w, h, c, px));
    }

    [Theory]
    [InlineData(3)]
    [InlineData(4)]
    public void TruncatedZlibStreamIsAnError(int channels)
    {
        var png = Png(40, 30, channels, 1);
        var idat = ImageData(png);
        Assert.NotNull(PngFile.Decode(WithImageData(png, idat), "memory")); // the rebuild itself is valid
        foreach (int keep in new[] { idat.Length / 2, idat.Length - 4, 3 })
        {
            var e = Assert.Throws<UserInputException>(() => PngFile.Decode(WithImageData(png, idat[..keep]), "cut.png"));
            Assert.StartsWith("cut.png: PNG image data is", e.Message);
        }
    }

    [Fact]
    public void ShortOrLongRowsAreAnError()
    {
        var png = Png(16, 8, 3, 2);
        var raw = Inflate(ImageData(png));
        Assert.Equal(8 * (1 + 16 * 3), raw.Length);
        var shortData = Zlib(raw[..^49]); // a complete stream one row short
        Assert.Contains("truncated", Assert.Throws<UserInputException>(() => PngFile.Decode(WithImageData(png, shortData), "m")).Message);
        var longData = Zlib([.. raw, .. new byte[49]]);
        Assert.Contains("more than the", Assert.Throws<UserInputException>(() => PngFile.Decode(WithImageData(png, longData), "m")).Message);
        var garbage = ImageData(png);
        garbage[garbage.Length / 2] ^= 0xFF;
        garbage[garbage.Length / 2 + 1] ^= 0x5A;
        Assert.Throws<UserInputException>(() => PngFile.Decode(WithImageData(png, garbage), "m"));
    }
}
