using System.Buffers.Binary;
using System.Text;

namespace LayerFusion.Tests.SafeTensors;

/// <summary>A fresh directory per test, removed afterwards.</summary>
sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "lf-st-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Hand-built safetensors bytes, so malformed files can be crafted byte by byte.</summary>
static class Craft
{
    /// <summary>u64 LE header length (the real one unless overridden), header, data.</summary>
    public static byte[] Bytes(byte[] header, byte[] data, ulong? headerLength = null)
    {
        var all = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(all, headerLength ?? (ulong)header.Length);
        header.CopyTo(all, 8);
        data.CopyTo(all, 8 + header.Length);
        return all;
    }

    public static byte[] Bytes(string header, int dataLength = 0) =>
        Bytes(Encoding.UTF8.GetBytes(header), Enumerable.Range(0, dataLength).Select(i => (byte)(i * 37 + 11)).ToArray());

    /// <summary>Single-quoted JSON for readability in tests: ' becomes ".</summary>
    public static string J(string singleQuoted) => singleQuoted.Replace('\'', '"');
}
