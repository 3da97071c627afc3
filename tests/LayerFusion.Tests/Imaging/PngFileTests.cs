using System.Buffers.Binary;
using System.Text;
using CsCheck;
using LayerFusion.Core.Imaging;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Tests.Imaging;

public sealed class PngFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lf-png-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static Image8 RandomImage(int w, int h, int c, int seed)
    {
        var px = new byte[w * h * c];
        new Random(seed).NextBytes(px);
        return new Image8(w, h, c, px);
    }

    [Fact]
    public void EncodeDecodeRoundTripsRgbAndRgba()
    {
        Gen.Select(Gen.Int[1, 40], Gen.Int[1, 40], Gen.Int[3, 4], Gen.Int).Sample((w, h, c, seed) =>
        {
            var img = RandomImage(w, h, c, seed);
            var back = PngFile.Decode(PngFile.Encode(img), "memory");
            Assert.Equal((w, h, c), (back.Width, back.Height, back.Channels));
            Assert.Equal(img.Pixels, back.Pixels);
        }, iter: 60);
    }

    [Fact]
    public void FileRoundTripKeepsPixelsAndText()
    {
        var img = RandomImage(33, 17, 4, 5);
        var path = Path.Combine(_dir, "out.png");
        var text = new[] { KeyValuePair.Create("prompt", "a glass cup, café"), KeyValuePair.Create("seed", "42") };
        PngFile.Write(path, img, text);
        var back = PngFile.Read(path);
        Assert.Equal(img.Pixels, back.Pixels);
        Assert.Equal(4, back.Channels);
        Assert.Equal(text, PngFile.ReadText(File.ReadAllBytes(path), path));
        // asking for RGB drops alpha, keeps colour
        var rgb = PngFile.Read(path, channels: 3);
        for (int i = 0; i < 33 * 17; i++)
            Assert.Equal(img.Pixels.AsSpan(4 * i, 3).ToArray(), rgb.Pixels.AsSpan(3 * i, 3).ToArray());
    }

    [Fact]
    public void TextChunksAreWellFormedAndPrecedeImageData()
    {
        var img = RandomImage(8, 8, 3, 1);
        var entries = new[]
        {
            KeyValuePair.Create("parameters", "steps: 30, cfg: 7.5, sampler: dpmpp-2m-karras"),
            KeyValuePair.Create("prompt", "a cat\nwith two lines"),
            KeyValuePair.Create("Comment", "猫 in a hat"), // not Latin-1: goes to iTXt as UTF-8
        };
        var png = PngFile.Encode(img, entries);
        var chunks = IndependentChunkWalk(png);
        Assert.Equal("IHDR", chunks[0].Type);
        Assert.Equal("IEND", chunks[^1].Type);
        int firstIdat = chunks.FindIndex(c => c.Type == "IDAT");
        Assert.True(firstIdat > 0);
        var text = chunks.Take(firstIdat).Where(c => c.Type is "tEXt" or "iTXt").ToList();
        Assert.Equal(["tEXt", "tEXt", "iTXt"], text.Select(c => c.Type));
        Assert.All(chunks, c => Assert.True(c.CrcOk, $"{c.Type} CRC"));

        var t0 = text[0].Data;
        int nul = Array.IndexOf(t0, (byte)0);
        Assert.Equal("parameters", Encoding.Latin1.GetString(t0, 0, nul));
        Assert.Equal(entries[0].Value, Encoding.Latin1.GetString(t0, nul + 1, t0.Length - nul - 1));

        var it = text[2].Data; // keyword \0 flag method lang \0 translated \0 text
        Assert.Equal(Encoding.ASCII.GetBytes("Comment\0\0\0\0\0"), it[..12]);
        Assert.Equal("猫 in a hat", Encoding.UTF8.GetString(it, 12, it.Length - 12));

        Assert.Equal(entries, PngFile.ReadText(png, "memory"));
        Assert.Equal(img.Pixels, PngFile.Decode(png, "memory").Pixels);
    }

    [Theory]
    [InlineData("")]
    [InlineData(" lead")]
    [InlineData("trail ")]
    [InlineData("two  spaces")]
    [InlineData("tab\tkey")]
    [InlineData("ключ")]
    public void InvalidKeywordsAreRejected(string keyword) =>
        Assert.Throws<ArgumentException>(() => PngFile.Encode(RandomImage(2, 2, 3, 0), [KeyValuePair.Create(keyword, "v")]));

    [Fact]
    public void KeywordOfEightyCharactersIsRejected() =>
        Assert.Throws<ArgumentException>(() => PngFile.Encode(RandomImage(2, 2, 3, 0), [KeyValuePair.Create(new string('k', 80), "v")]));

    public static TheoryData<string> BadFiles() => new() { "random", "truncated", "crc", "huge", "empty", "no-iend", "zero-size" };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void BadPngGivesAClearErrorNamingTheFile(string kind)
    {
        var good = PngFile.Encode(RandomImage(16, 16, 3, 9), [KeyValuePair.Create("k", "v")]);
        byte[] bytes = kind switch
        {
            "random" => RandomBytes(500),
            "truncated" => good[..(good.Length / 2)],
            "crc" => Corrupt(good),
            "huge" => WithIhdrSize(good, 100_000, 100_000),
            "empty" => [],
            "no-iend" => good[..^12],
            "zero-size" => WithIhdrSize(good, 0, 16),
            _ => throw new ArgumentException(kind),
        };
        var path = Path.Combine(_dir, $"bad-{kind}.png");
        File.WriteAllBytes(path, bytes);
        var ex = Assert.Throws<UserInputException>(() => PngFile.Read(path));
        Assert.Contains(path, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void OversizedFileIsRejectedBeforeReading()
    {
        var path = Path.Combine(_dir, "big.png");
        PngFile.Write(path, RandomImage(64, 64, 3, 2));
        var ex = Assert.Throws<UserInputException>(() => PngFile.Read(path, limits: new PngReadLimits { MaxFileBytes = 100 }));
        Assert.Contains("more than the 100 allowed", ex.Message);
        var ex2 = Assert.Throws<UserInputException>(() => PngFile.Read(path, limits: new PngReadLimits { MaxWidth = 32 }));
        Assert.Contains("64x64", ex2.Message);
        var missing = Path.Combine(_dir, "missing.png");
        Assert.Contains(missing, Assert.Throws<UserInputException>(() => PngFile.Read(missing)).Message);
    }

    [Fact]
    public void FailedAtomicWriteLeavesNoPartialFileAndKeepsTheOldOne()
    {
        var target = Path.Combine(_dir, "image.png");
        Assert.Throws<IOException>(() => AtomicFile.Write(target, s => { s.Write(new byte[5000]); throw new IOException("disk full"); }));
        Assert.Empty(Directory.GetFileSystemEntries(_dir));

        var old = RandomImage(4, 4, 3, 3);
        PngFile.Write(target, old);
        var before = File.ReadAllBytes(target);
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(target, s => { s.Write(new byte[100]); throw new InvalidOperationException("encoder failed"); }));
        Assert.Equal(before, File.ReadAllBytes(target));
        Assert.Equal([target], Directory.GetFileSystemEntries(_dir));

        // a successful write replaces the file and leaves nothing else behind
        var fresh = RandomImage(5, 3, 4, 4);
        PngFile.Write(target, fresh);
        Assert.Equal(fresh.Pixels, PngFile.Read(target).Pixels);
        Assert.Equal([target], Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void WriteIntoMissingDirectoryFails()
    {
        Assert.Throws<DirectoryNotFoundException>(() => PngFile.Write(Path.Combine(_dir, "nope", "x.png"), RandomImage(2, 2, 3, 0)));
    }

    // ---- helpers: an independent PNG chunk walker and bitwise CRC-32 (not the code under test)

    private sealed record RawChunk(string Type, byte[] Data, bool CrcOk);

    private static List<RawChunk> IndependentChunkWalk(byte[] png)
    {
        Assert.Equal(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 }, png[..8]);
        var list = new List<RawChunk>();
        int pos = 8;
        while (pos < png.Length)
        {
            int len = (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos));
            string type = Encoding.ASCII.GetString(png, pos + 4, 4);
            var data = png.AsSpan(pos + 8, len).ToArray();
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos + 8 + len));
            list.Add(new RawChunk(type, data, crc == BitwiseCrc32(png.AsSpan(pos + 4, 4 + len))));
            pos += 12 + len;
        }
        Assert.Equal(png.Length, pos);
        return list;
    }

    private static uint BitwiseCrc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFF;
        foreach (var b in data)
        {
            c ^= b;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
        }
        return c ^ 0xFFFFFFFF;
    }

    private static byte[] RandomBytes(int n)
    {
        var b = new byte[n];
        new Random(77).NextBytes(b);
        return b;
    }

    private static byte[] Corrupt(byte[] png)
    {
        var b = (byte[])png.Clone();
        b[^20] ^= 0x55; // inside the last IDAT's data
        return b;
    }

    private static byte[] WithIhdrSize(byte[] png, uint w, uint h)
    {
        var b = (byte[])png.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(16), w);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(20), h);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(29), BitwiseCrc32(b.AsSpan(12, 17)));
        return b;
    }
}
