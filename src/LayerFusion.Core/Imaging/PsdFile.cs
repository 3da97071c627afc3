using System.Buffers.Binary;
using System.Text;

namespace LayerFusion.Core.Imaging;

/// <summary>One layer of a <see cref="PsdFile"/>: an RGB or RGBA image covering the whole canvas.</summary>
public sealed record PsdLayer(string Name, Image8 Image, bool Visible = true);

/// <summary>
/// Adobe Photoshop (.psd, version 1) files with layers, written per Adobe's "Photoshop File Formats
/// Specification": 8 bits per channel, RGB colour mode, one layer record per layer (the first record
/// is the bottom layer) with a transparency channel (-1) and R, G, B, every channel PackBits (RLE)
/// compressed, and the merged composite as the image data. No package served here writes PSD;
/// the layout is small enough to write directly (see docs/decisions.md, Imaging).
/// </summary>
public static class PsdFile
{
    /// <summary>PSD version 1 caps each side at 30000 pixels.</summary>
    public const int MaxSide = 30000;

    public static void Write(string path, int width, int height, IReadOnlyList<PsdLayer> layers, Image8 composite) =>
        AtomicFile.WriteAllBytes(path, Encode(width, height, layers, composite));

    /// <param name="composite">What a reader without layer support shows: the visible layers merged (RGB or RGBA).</param>
    public static byte[] Encode(int width, int height, IReadOnlyList<PsdLayer> layers, Image8 composite)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(composite);
        if (width is < 1 or > MaxSide || height is < 1 or > MaxSide)
            throw new ArgumentOutOfRangeException(nameof(width), $"PSD canvas {width}x{height}: each side must be 1..{MaxSide}");
        if (layers.Count is 0 or > short.MaxValue) throw new ArgumentException("a PSD needs 1..32767 layers", nameof(layers));
        foreach (var l in layers.Append(new PsdLayer("composite", composite)))
        {
            if (l.Image.Width != width || l.Image.Height != height)
                throw new ArgumentException($"PSD layer '{l.Name}' is {l.Image.Width}x{l.Image.Height}; the canvas is {width}x{height}");
            if (l.Image.Channels is not (3 or 4))
                throw new ArgumentException($"PSD layer '{l.Name}' has {l.Image.Channels} channels; RGB or RGBA is needed");
        }

        var o = new MemoryStream();
        // ---- file header
        o.Write("8BPS"u8);
        U16(o, 1);
        o.Write(new byte[6]);
        U16(o, (ushort)composite.Channels);
        U32(o, (uint)height);
        U32(o, (uint)width);
        U16(o, 8);
        U16(o, 3); // RGB
        // ---- colour mode data, image resources: none
        U32(o, 0);
        U32(o, 0);

        // ---- layer and mask information
        var layerInfo = new MemoryStream();
        U16(layerInfo, (ushort)layers.Count);
        var channelData = new List<byte[][]>();
        foreach (var layer in layers)
        {
            // transparency first, then R, G, B, as Photoshop writes them
            int[] ids = [-1, 0, 1, 2];
            var planes = ids.Select(id => Rle(Plane(layer.Image, id == -1 ? 3 : id), width, height)).ToArray();
            channelData.Add(planes);
            U32(layerInfo, 0); // top
            U32(layerInfo, 0); // left
            U32(layerInfo, (uint)height);
            U32(layerInfo, (uint)width);
            U16(layerInfo, (ushort)ids.Length);
            for (int c = 0; c < ids.Length; c++)
            {
                U16(layerInfo, unchecked((ushort)(short)ids[c]));
                U32(layerInfo, (uint)(2 + planes[c].Length)); // compression field + data
            }
            layerInfo.Write("8BIMnorm"u8);
            layerInfo.WriteByte(255);                        // opacity
            layerInfo.WriteByte(0);                          // clipping: base
            layerInfo.WriteByte((byte)(layer.Visible ? 0 : 2)); // flags: bit 1 set = hidden
            layerInfo.WriteByte(0);                          // filler
            var name = PascalName(layer.Name);
            var unicode = UnicodeName(layer.Name);
            U32(layerInfo, (uint)(4 + 4 + name.Length + unicode.Length));
            U32(layerInfo, 0); // no layer mask
            U32(layerInfo, 0); // no blending ranges
            layerInfo.Write(name);
            layerInfo.Write(unicode);
        }
        foreach (var planes in channelData)
            foreach (var plane in planes)
            {
                U16(layerInfo, 1); // RLE
                layerInfo.Write(plane);
            }
        if (layerInfo.Length % 2 != 0) layerInfo.WriteByte(0);
        U32(o, checked((uint)(4 + layerInfo.Length + 4)));
        U32(o, checked((uint)layerInfo.Length));
        layerInfo.WriteTo(o);
        U32(o, 0); // no global layer mask

        // ---- merged image: RLE, every row's byte count of every channel first, then the rows
        U16(o, 1);
        var merged = Enumerable.Range(0, composite.Channels).Select(c => Plane(composite, c)).ToArray();
        var packed = merged.Select(p => PackRows(p, width, height)).ToArray();
        foreach (var rows in packed)
            foreach (var row in rows) U16(o, checked((ushort)row.Length));
        foreach (var rows in packed)
            foreach (var row in rows) o.Write(row);
        return o.ToArray();
    }

    /// <summary>Channel <paramref name="c"/> of an RGB(A) image as a plane; alpha of an RGB image is opaque.</summary>
    static byte[] Plane(Image8 image, int c)
    {
        int n = image.Width * image.Height, ch = image.Channels;
        var plane = new byte[n];
        if (c >= ch) { Array.Fill(plane, (byte)255); return plane; }
        var px = image.Pixels;
        for (int i = 0; i < n; i++) plane[i] = px[i * ch + c];
        return plane;
    }

    /// <summary>One layer channel's RLE data: the row byte counts (2 bytes each) then the packed rows.</summary>
    static byte[] Rle(byte[] plane, int width, int height)
    {
        var rows = PackRows(plane, width, height);
        var r = new MemoryStream();
        foreach (var row in rows) U16(r, checked((ushort)row.Length));
        foreach (var row in rows) r.Write(row);
        return r.ToArray();
    }

    static byte[][] PackRows(byte[] plane, int width, int height)
    {
        var rows = new byte[height][];
        for (int y = 0; y < height; y++) rows[y] = PackBits(plane.AsSpan(y * width, width));
        return rows;
    }

    /// <summary>Apple PackBits: header n in 0..127 copies n + 1 literal bytes, n in -127..-1 repeats the next byte 1 - n times.</summary>
    internal static byte[] PackBits(ReadOnlySpan<byte> src)
    {
        var o = new MemoryStream(src.Length + src.Length / 128 + 2);
        int i = 0;
        while (i < src.Length)
        {
            int run = 1;
            while (i + run < src.Length && run < 128 && src[i + run] == src[i]) run++;
            if (run >= 2)
            {
                o.WriteByte(unchecked((byte)(sbyte)(1 - run)));
                o.WriteByte(src[i]);
                i += run;
                continue;
            }
            // literal: up to the next run of at least 3 (a run of 2 inside a literal costs nothing extra)
            int start = i, len = 0;
            while (i < src.Length && len < 128)
            {
                if (i + 2 < src.Length && src[i] == src[i + 1] && src[i] == src[i + 2]) break;
                i++;
                len++;
            }
            o.WriteByte((byte)(len - 1));
            o.Write(src.Slice(start, len));
        }
        return o.ToArray();
    }

    /// <summary>The legacy layer name: Pascal string (MacRoman; ASCII here), padded to a multiple of 4 bytes.</summary>
    static byte[] PascalName(string name)
    {
        var ascii = new string(name.Select(ch => ch is >= ' ' and <= '~' ? ch : '_').Take(255).ToArray());
        int len = 1 + ascii.Length;
        var r = new byte[(len + 3) / 4 * 4];
        r[0] = (byte)ascii.Length;
        Encoding.ASCII.GetBytes(ascii, r.AsSpan(1));
        return r;
    }

    /// <summary>The 'luni' additional layer information: the name in UTF-16 (what current readers show).</summary>
    static byte[] UnicodeName(string name)
    {
        var utf16 = Encoding.BigEndianUnicode.GetBytes(name);
        var r = new MemoryStream();
        r.Write("8BIMluni"u8);
        int dataLen = 4 + utf16.Length;
        int padded = (dataLen + 3) / 4 * 4;
        U32(r, (uint)padded);
        U32(r, (uint)name.Length);
        r.Write(utf16);
        for (int i = dataLen; i < padded; i++) r.WriteByte(0);
        return r.ToArray();
    }

    static void U16(Stream s, ushort v)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(b, v);
        s.Write(b);
    }

    static void U32(Stream s, uint v)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, v);
        s.Write(b);
    }
}
