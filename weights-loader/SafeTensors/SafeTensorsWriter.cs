using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace LayerFusion.WeightsLoader.SafeTensors;

/// <summary>
/// Writes safetensors files byte-compatible with the reference (Rust) implementation: compact JSON
/// header (__metadata__ first, then the tensors in the given order, fields dtype, shape,
/// data_offsets), padded with spaces to a multiple of 8 bytes, followed by the tensors' bytes back
/// to back in that same order.
/// </summary>
public static class SafeTensorsWriter
{
    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Writes atomically: the file is written under <c>path + ".tmp-&lt;random&gt;"</c>, flushed to disk
    /// and renamed over <paramref name="path"/>; if anything throws, the temporary file is removed
    /// and <paramref name="path"/> is left as it was.
    /// </summary>
    public static void Write(string path, IEnumerable<WeightTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var list = tensors.ToList();
        byte[] header = BuildHeader(list, metadata);

        string tmp = $"{path}.tmp-{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8))}";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> prefix = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
                fs.Write(prefix);
                fs.Write(header);
                foreach (var t in list)
                {
                    var bytes = t.Bytes;
                    // The header already promised this length: a tensor that changed size is a bug.
                    if (bytes.Length != t.ByteLength)
                        throw new InvalidOperationException($"tensor '{t.Name}' has {bytes.Length} bytes, its shape and dtype need {t.ByteLength}");
                    fs.Write(bytes);
                }
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>The header JSON (padded), exactly as <see cref="Write"/> lays it out.</summary>
    public static byte[] BuildHeader(IReadOnlyList<WeightTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var sb = new StringBuilder();
        sb.Append('{');
        bool first = true;
        if (metadata is { Count: > 0 })
        {
            AppendString(sb, "__metadata__");
            sb.Append(":{");
            bool firstKey = true;
            foreach (var (k, v) in metadata)
            {
                if (!firstKey) sb.Append(',');
                firstKey = false;
                AppendString(sb, k);
                sb.Append(':');
                AppendString(sb, v);
            }
            sb.Append('}');
            first = false;
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var t in tensors)
        {
            if (t.Name == "__metadata__")
                throw new ArgumentException("a tensor may not be named __metadata__", nameof(tensors));
            if (!names.Add(t.Name))
                throw new ArgumentException($"tensor name '{t.Name}' appears more than once", nameof(tensors));
            if (!first) sb.Append(',');
            first = false;
            AppendString(sb, t.Name);
            sb.Append(":{\"dtype\":");
            AppendString(sb, t.DType.ToString());
            sb.Append(",\"shape\":[");
            for (int i = 0; i < t.Shape.Length; i++)
            {
                if (i > 0) sb.Append(',');
                sb.Append(t.Shape[i].ToString(CultureInfo.InvariantCulture));
            }
            long end = checked(offset + t.ByteLength);
            sb.Append("],\"data_offsets\":[").Append(offset.ToString(CultureInfo.InvariantCulture))
              .Append(',').Append(end.ToString(CultureInfo.InvariantCulture)).Append("]}");
            offset = end;
        }
        sb.Append('}');

        byte[] json;
        try { json = StrictUtf8.GetBytes(sb.ToString()); }
        catch (EncoderFallbackException e) { throw new ArgumentException("a tensor name or metadata string is not valid UTF-16 (lone surrogate)", e); }
        int padded = checked((json.Length + 7) / 8 * 8);
        if (padded > SafeTensorsFile.MaxHeaderLength)
            throw new ArgumentException($"the header would be {padded} bytes, above the {SafeTensorsFile.MaxHeaderLength}-byte limit readers enforce");
        var header = new byte[padded];
        json.CopyTo(header, 0);
        header.AsSpan(json.Length).Fill((byte)' ');
        return header;
    }

    /// <summary>
    /// JSON string escaping as serde_json does it (the reference writer): only '"', '\\' and control
    /// characters are escaped; everything else, non-ASCII included, is written as UTF-8.
    /// </summary>
    static void AppendString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
