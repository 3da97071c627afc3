using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using System.Text;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Imaging;

/// <summary>Bounds applied before a PNG is decoded (PNG is untrusted input: decompression bombs, huge headers).</summary>
public sealed record PngReadLimits
{
    public long MaxFileBytes { get; init; } = 256L << 20;
    public int MaxWidth { get; init; } = 16384;
    public int MaxHeight { get; init; } = 16384;
    /// <summary>Bound on width * height (the decoded RGBA buffer is 4 bytes per pixel).</summary>
    public long MaxPixels { get; init; } = 64L << 20;
    /// <summary>Bound on one decompressed text chunk (zTXt/compressed iTXt).</summary>
    public int MaxTextBytes { get; init; } = 1 << 20;

    public static PngReadLimits Default { get; } = new();
}

/// <summary>One PNG chunk's place in a file: type, data offset and length (CRC already verified).</summary>
public readonly record struct PngChunk(string Type, int DataOffset, int Length);

/// <summary>
/// PNG files: encoding by StbImageWriteSharp with our text chunks spliced in before the image data,
/// decoding by StbImageSharp after our own structural checks, and atomic writes.
/// Text goes in a tEXt chunk (Latin-1, what every viewer shows); a value outside Latin-1 (a
/// prompt in another script) goes in an uncompressed iTXt chunk (UTF-8) instead, since tEXt cannot
/// hold it.
/// </summary>
public static class PngFile
{
    private static readonly byte[] Signature = [137, 80, 78, 71, 13, 10, 26, 10];
    private static readonly Encoding Latin1 = Encoding.Latin1;

    // ---------------------------------------------------------------- writing

    /// <summary>Writes <paramref name="image"/> to <paramref name="path"/> atomically (temp file + rename).</summary>
    /// <param name="srgb">Tag the pixels as sRGB (sRGB chunk, perceptual intent, plus the gAMA value the PNG spec pairs with it).</param>
    public static void Write(string path, Image8 image, IEnumerable<KeyValuePair<string, string>>? text = null, bool srgb = false)
    {
        var bytes = Encode(image, text, srgb);
        AtomicFile.Write(path, s => s.Write(bytes));
    }

    /// <summary>Encodes an RGB or RGBA 8-bit PNG with the given text entries (keyword, value), in order.</summary>
    public static byte[] Encode(Image8 image, IEnumerable<KeyValuePair<string, string>>? text = null, bool srgb = false)
    {
        ArgumentNullException.ThrowIfNull(image);
        var textChunks = new List<byte[]>();
        if (srgb)
        {
            // PNG 11.3.3.5: an sRGB chunk should come with gAMA 45455 for decoders that only know gAMA
            textChunks.Add(Chunk("sRGB", [0]));
            var gama = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(gama, 45455);
            textChunks.Add(Chunk("gAMA", gama));
        }
        foreach (var (key, value) in text ?? [])
            textChunks.Add(TextChunk(key, value));

        byte[] png;
        using (var ms = new MemoryStream())
        {
            var comps = image.HasAlpha ? StbImageWriteSharp.ColorComponents.RedGreenBlueAlpha : StbImageWriteSharp.ColorComponents.RedGreenBlue;
            new StbImageWriteSharp.ImageWriter().WritePng(image.Pixels, image.Width, image.Height, comps, ms);
            png = ms.ToArray();
        }
        if (textChunks.Count == 0) return png;

        // stb writes signature, IHDR, IDAT, IEND: colour space and text go right after IHDR, before the image data
        var chunks = ParseChunks(png, "encoded PNG", PngReadLimits.Default with { MaxFileBytes = long.MaxValue, MaxPixels = long.MaxValue, MaxWidth = int.MaxValue, MaxHeight = int.MaxValue });
        int afterIhdr = chunks[0].DataOffset + chunks[0].Length + 4;
        var result = new MemoryStream(png.Length + textChunks.Sum(c => c.Length));
        result.Write(png, 0, afterIhdr);
        foreach (var c in textChunks) result.Write(c);
        result.Write(png, afterIhdr, png.Length - afterIhdr);
        return result.ToArray();
    }

    private static byte[] TextChunk(string keyword, string value)
    {
        ValidateKeyword(keyword);
        ArgumentNullException.ThrowIfNull(value);
        if (value.Contains('\0')) throw new ArgumentException($"PNG text '{keyword}': the value contains a NUL character");
        bool latin1 = value.All(ch => ch <= 0xFF);
        var data = new MemoryStream();
        data.Write(Latin1.GetBytes(keyword));
        data.WriteByte(0);
        if (latin1)
        {
            data.Write(Latin1.GetBytes(value));
            return Chunk("tEXt", data.ToArray());
        }
        // iTXt: keyword\0, compression flag 0, method 0, empty language tag\0, empty translated keyword\0, UTF-8 text
        data.WriteByte(0);
        data.WriteByte(0);
        data.WriteByte(0);
        data.WriteByte(0);
        data.Write(Encoding.UTF8.GetBytes(value));
        return Chunk("iTXt", data.ToArray());
    }

    private static void ValidateKeyword(string keyword)
    {
        ArgumentNullException.ThrowIfNull(keyword);
        bool ok = keyword.Length is >= 1 and <= 79
                  && keyword[0] != ' ' && keyword[^1] != ' ' && !keyword.Contains("  ")
                  && keyword.All(ch => ch is >= (char)32 and <= (char)126 or >= (char)161 and <= (char)255);
        if (!ok) throw new ArgumentException($"'{keyword}' is not a valid PNG text keyword (1-79 printable Latin-1 characters, no leading, trailing or double spaces)");
    }

    private static byte[] Chunk(string type, byte[] data)
    {
        var chunk = new byte[12 + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(chunk, (uint)data.Length);
        Encoding.ASCII.GetBytes(type, chunk.AsSpan(4, 4));
        data.CopyTo(chunk, 8);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8 + data.Length), Crc32.HashToUInt32(chunk.AsSpan(4, 4 + data.Length)));
        return chunk;
    }

    // ---------------------------------------------------------------- reading

    /// <summary>Reads a PNG file; errors (missing, too large, malformed) are <see cref="UserInputException"/>s naming the file.</summary>
    /// <param name="channels">3 or 4 to convert; null keeps alpha when the file has it (4), else 3.</param>
    public static Image8 Read(string path, int? channels = null, PngReadLimits? limits = null)
    {
        limits ??= PngReadLimits.Default;
        ArgumentNullException.ThrowIfNull(path);
        // Links followed, regular files only (a FIFO or device would block or never end), bounded.
        var bytes = UntrustedFile.ReadAllBytes(path, limits.MaxFileBytes);
        return Decode(bytes, path, channels, limits);
    }

    /// <summary>Decodes PNG bytes; <paramref name="sourceName"/> names the input in error messages.</summary>
    public static Image8 Decode(byte[] bytes, string sourceName, int? channels = null, PngReadLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        limits ??= PngReadLimits.Default;
        if (channels is not (null or 3 or 4)) throw new ArgumentOutOfRangeException(nameof(channels), "3, 4 or null");
        if (bytes.LongLength > limits.MaxFileBytes)
            throw new UserInputException($"{sourceName}: {bytes.LongLength} bytes is larger than the {limits.MaxFileBytes}-byte limit for PNG input");
        var header = ReadHeader(bytes, sourceName, limits);
        var chunks = ParseChunks(bytes, sourceName, limits);
        CheckImageData(bytes, chunks, header, sourceName);
        bool sourceHasAlpha = header.ColorType is 4 or 6 || chunks.Any(c => c.Type == "tRNS");
        int want = channels ?? (sourceHasAlpha ? 4 : 3);

        StbImageSharp.ImageResult decoded;
        try
        {
            decoded = StbImageSharp.ImageResult.FromMemory(bytes,
                want == 4 ? StbImageSharp.ColorComponents.RedGreenBlueAlpha : StbImageSharp.ColorComponents.RedGreenBlue);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        // stb reports corrupt data with plain Exceptions (and may fail with index errors on crafted input)
        {
            throw new UserInputException($"{sourceName}: not a decodable PNG: {e.Message}", e);
        }
        if (decoded is null || decoded.Data is null || decoded.Width != header.Width || decoded.Height != header.Height)
            throw new UserInputException($"{sourceName}: PNG decoder returned no image or a size other than the header's {header.Width}x{header.Height}");
        return new Image8(decoded.Width, decoded.Height, want, decoded.Data);
    }

    /// <summary>
    /// Inflates the image data once (counting, not keeping it) and requires exactly the bytes the
    /// header implies: stb pads a truncated or short zlib stream with zeros and reports success.
    /// </summary>
    static void CheckImageData(byte[] bytes, IReadOnlyList<PngChunk> chunks, PngHeader header, string sourceName)
    {
        int samples = header.ColorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, _ => 4 };
        long bitsPerPixel = (long)samples * header.BitDepth;
        long RowsBytes(long w, long h) => w <= 0 || h <= 0 ? 0 : h * (1 + (w * bitsPerPixel + 7) / 8);
        long expected;
        if (header.Interlace == 0) expected = RowsBytes(header.Width, header.Height);
        else
        {
            // Adam7: seven passes, each a sub-image with its own filter bytes
            ReadOnlySpan<int> x0 = [0, 4, 0, 2, 0, 1, 0], y0 = [0, 0, 4, 0, 2, 0, 1], dx = [8, 8, 4, 4, 2, 2, 1], dy = [8, 8, 8, 4, 4, 2, 2];
            expected = 0;
            for (int p = 0; p < 7; p++)
                expected += RowsBytes((header.Width - x0[p] + dx[p] - 1) / dx[p], (header.Height - y0[p] + dy[p] - 1) / dy[p]);
        }
        var idat = new MemoryStream();
        foreach (var c in chunks)
            if (c.Type == "IDAT") idat.Write(bytes, c.DataOffset, c.Length);
        idat.Position = 0;
        long total = 0;
        uint a = 1, b = 0;
        try
        {
            using var z = new ZLibStream(idat, CompressionMode.Decompress, leaveOpen: true);
            var buffer = new byte[1 << 16];
            int n;
            while ((n = z.Read(buffer)) > 0)
            {
                total += n;
                if (total > expected) break;
                // Adler-32 (RFC 1950; not in the BCL): zlib checks it when the trailer is there, but
                // a stream cut just before its trailer inflates without complaint.
                for (int i = 0; i < n; i++)
                {
                    a += buffer[i];
                    if (a >= 65521) a -= 65521;
                    b += a;
                    if (b >= 65521) b -= 65521;
                }
            }
        }
        catch (InvalidDataException e)
        {
            throw new UserInputException($"{sourceName}: PNG image data is corrupt: {e.Message}", e);
        }
        if (total < expected)
            throw new UserInputException($"{sourceName}: PNG image data is truncated: it inflates to {total} bytes, a {header.Width}x{header.Height} image needs {expected}");
        if (total > expected)
            throw new UserInputException($"{sourceName}: PNG image data inflates to more than the {expected} bytes a {header.Width}x{header.Height} image needs");
        var data = idat.GetBuffer().AsSpan(0, (int)idat.Length);
        if (data.Length < 6 || BinaryPrimitives.ReadUInt32BigEndian(data[^4..]) != (b << 16 | a))
            throw new UserInputException($"{sourceName}: PNG image data is truncated or corrupt: its zlib stream does not end with the checksum of its data");
    }

    /// <summary>The IHDR fields, after validating the whole chunk structure and CRCs.</summary>
    public readonly record struct PngHeader(int Width, int Height, int BitDepth, int ColorType, int Interlace);

    public static PngHeader ReadHeader(byte[] bytes, string sourceName, PngReadLimits? limits = null)
    {
        limits ??= PngReadLimits.Default;
        var chunks = ParseChunks(bytes, sourceName, limits);
        var ihdr = chunks[0];
        var d = bytes.AsSpan(ihdr.DataOffset, ihdr.Length);
        uint w = BinaryPrimitives.ReadUInt32BigEndian(d), h = BinaryPrimitives.ReadUInt32BigEndian(d[4..]);
        int depth = d[8], color = d[9], interlace = d[12];
        if (w == 0 || h == 0 || w > int.MaxValue || h > int.MaxValue)
            throw new UserInputException($"{sourceName}: PNG header has an invalid size {w}x{h}");
        if (w > (uint)limits.MaxWidth || h > (uint)limits.MaxHeight || (long)w * h > limits.MaxPixels)
            throw new UserInputException($"{sourceName}: PNG is {w}x{h}, beyond the {limits.MaxWidth}x{limits.MaxHeight} ({limits.MaxPixels} pixel) limit");
        bool validCombo = color switch
        {
            0 => depth is 1 or 2 or 4 or 8 or 16,
            3 => depth is 1 or 2 or 4 or 8,
            2 or 4 or 6 => depth is 8 or 16,
            _ => false,
        };
        if (!validCombo || d[10] != 0 || d[11] != 0 || interlace > 1)
            throw new UserInputException($"{sourceName}: PNG header has an invalid format (bit depth {depth}, color type {color}, interlace {interlace})");
        if (!chunks.Any(c => c.Type == "IDAT"))
            throw new UserInputException($"{sourceName}: PNG has no image data (IDAT)");
        return new PngHeader((int)w, (int)h, depth, color, interlace);
    }

    /// <summary>
    /// Walks the chunk list: signature, IHDR first (13 bytes), every length inside the file, every
    /// CRC correct, ending with IEND. Throws a <see cref="UserInputException"/> naming the source.
    /// </summary>
    public static IReadOnlyList<PngChunk> ParseChunks(byte[] bytes, string sourceName, PngReadLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        if (bytes.Length < Signature.Length || !bytes.AsSpan(0, Signature.Length).SequenceEqual(Signature))
            throw new UserInputException($"{sourceName}: not a PNG file (bad signature)");
        var chunks = new List<PngChunk>();
        long pos = Signature.Length;
        while (true)
        {
            if (pos + 12 > bytes.Length)
                throw new UserInputException($"{sourceName}: PNG is truncated (chunk header at byte {pos} runs past the end, no IEND)");
            uint len = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan((int)pos));
            if (len > int.MaxValue || pos + 12 + len > bytes.Length)
                throw new UserInputException($"{sourceName}: PNG chunk at byte {pos} claims {len} bytes, past the end of the file");
            var typeSpan = bytes.AsSpan((int)pos + 4, 4);
            foreach (var b in typeSpan)
                if (!(b is >= (byte)'A' and <= (byte)'Z' or >= (byte)'a' and <= (byte)'z'))
                    throw new UserInputException($"{sourceName}: PNG chunk at byte {pos} has an invalid type");
            string type = Encoding.ASCII.GetString(typeSpan);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan((int)(pos + 8 + len)));
            if (crc != Crc32.HashToUInt32(bytes.AsSpan((int)pos + 4, 4 + (int)len)))
                throw new UserInputException($"{sourceName}: PNG chunk {type} at byte {pos} has a bad CRC (file corrupted)");
            if (chunks.Count == 0 && (type != "IHDR" || len != 13))
                throw new UserInputException($"{sourceName}: PNG does not start with a 13-byte IHDR chunk");
            chunks.Add(new PngChunk(type, (int)pos + 8, (int)len));
            pos += 12 + len;
            if (type == "IEND") break;
        }
        return chunks;
    }

    /// <summary>The text entries (tEXt, zTXt, iTXt) of a PNG, in file order.</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> ReadText(byte[] bytes, string sourceName, PngReadLimits? limits = null)
    {
        limits ??= PngReadLimits.Default;
        var result = new List<KeyValuePair<string, string>>();
        foreach (var c in ParseChunks(bytes, sourceName, limits))
        {
            var d = bytes.AsSpan(c.DataOffset, c.Length);
            if (c.Type is not ("tEXt" or "zTXt" or "iTXt")) continue;
            int nul = d.IndexOf((byte)0);
            if (nul < 1 || nul > 79) throw new UserInputException($"{sourceName}: PNG {c.Type} chunk has an invalid keyword");
            string key = Latin1.GetString(d[..nul]);
            var rest = d[(nul + 1)..];
            string value;
            if (c.Type == "tEXt")
                value = Latin1.GetString(rest);
            else if (c.Type == "zTXt")
            {
                if (rest.Length < 1 || rest[0] != 0) throw new UserInputException($"{sourceName}: PNG zTXt '{key}' has an unknown compression method");
                value = Latin1.GetString(Inflate(rest[1..], sourceName, limits.MaxTextBytes));
            }
            else
            {
                if (rest.Length < 2) throw new UserInputException($"{sourceName}: PNG iTXt '{key}' is truncated");
                byte flag = rest[0], method = rest[1];
                rest = rest[2..];
                int langEnd = rest.IndexOf((byte)0);
                if (langEnd < 0) throw new UserInputException($"{sourceName}: PNG iTXt '{key}' is truncated");
                rest = rest[(langEnd + 1)..];
                int transEnd = rest.IndexOf((byte)0);
                if (transEnd < 0) throw new UserInputException($"{sourceName}: PNG iTXt '{key}' is truncated");
                rest = rest[(transEnd + 1)..];
                if (flag == 1 && method != 0) throw new UserInputException($"{sourceName}: PNG iTXt '{key}' has an unknown compression method");
                var raw = flag == 1 ? Inflate(rest, sourceName, limits.MaxTextBytes) : rest.ToArray();
                value = Encoding.UTF8.GetString(raw);
            }
            result.Add(new(key, value));
        }
        return result;
    }

    private static byte[] Inflate(ReadOnlySpan<byte> data, string sourceName, int maxBytes)
    {
        try
        {
            using var z = new ZLibStream(new MemoryStream(data.ToArray()), CompressionMode.Decompress);
            var output = new MemoryStream();
            var buffer = new byte[8192];
            int n;
            while ((n = z.Read(buffer)) > 0)
            {
                if (output.Length + n > maxBytes)
                    throw new UserInputException($"{sourceName}: a PNG text chunk inflates past the {maxBytes}-byte limit");
                output.Write(buffer, 0, n);
            }
            return output.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new UserInputException($"{sourceName}: a compressed PNG text chunk is corrupt: {e.Message}", e);
        }
    }
}
