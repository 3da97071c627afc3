using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace LayerFusion.Cuda.Runtime;

/// <summary>
/// Compiled kernel images, in memory and on disk, keyed by SHA-256 of everything that determines
/// the image: source, headers, options (defines and -arch), the target arch and NVRTC's version.
/// Folder: LAYERFUSION_KERNEL_CACHE, else $XDG_CACHE_HOME/layerfusion/kernels, else ~/.cache/...
/// A damaged or unwritable cache only costs a recompile.
/// </summary>
public sealed class KernelCache
{
    readonly ConcurrentDictionary<string, CompiledKernel> _memory = new();

    public KernelCache(string? directory = null) => Directory = directory ?? DefaultDirectory();

    public string? Directory { get; }
    public int Compilations { get; private set; }
    public int DiskHits { get; private set; }

    public static string? DefaultDirectory()
    {
        var env = Environment.GetEnvironmentVariable("LAYERFUSION_KERNEL_CACHE");
        if (!string.IsNullOrWhiteSpace(env)) return env;
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        var root = !string.IsNullOrWhiteSpace(xdg) ? xdg : string.IsNullOrEmpty(home) ? null : Path.Combine(home, ".cache");
        return root is null ? null : Path.Combine(root, "layerfusion", "kernels");
    }

    /// <summary>Hex SHA-256 over length-prefixed fields, so no two different inputs share a key by concatenation.</summary>
    public static string ComputeKey(string source, IReadOnlyList<KeyValuePair<string, string>> headers,
        IReadOnlyList<string> options, string arch, string nvrtcVersion)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Field(string tag, string value)
        {
            var bytes = Encoding.UTF8.GetBytes(value);
            h.AppendData(Encoding.ASCII.GetBytes($"{tag}:{bytes.Length}:"));
            h.AppendData(bytes);
        }
        Field("format", "layerfusion-kernel-v1");
        Field("source", source);
        foreach (var (name, text) in headers) { Field("header-name", name); Field("header", text); }
        foreach (var o in options) Field("option", o);
        Field("arch", arch);
        Field("nvrtc", nvrtcVersion);
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    public CompiledKernel GetOrCompile(string name, string source, IReadOnlyList<KeyValuePair<string, string>> headers,
        IReadOnlyList<string> options, string arch)
    {
        var v = NvrtcCompiler.Version;
        var key = ComputeKey(source, headers, options, arch, $"{v.Major}.{v.Minor}");
        return _memory.GetOrAdd(key, k =>
        {
            var path = Directory is null ? null : Path.Combine(Directory, k + ".bin");
            bool cubin = options.Any(o => o.StartsWith("-arch=sm_", StringComparison.Ordinal));
            if (path is not null && File.Exists(path))
            {
                try
                {
                    var bytes = File.ReadAllBytes(path);
                    if (bytes.Length > 0) { DiskHits++; return new CompiledKernel(bytes, cubin, ""); }
                }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
            var compiled = NvrtcCompiler.Compile(name, source, headers, options);
            Compilations++;
            if (path is not null) TryWrite(path, compiled.Image);
            return compiled;
        });
    }

    static void TryWrite(string path, byte[] image)
    {
        try
        {
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var tmp = path + "." + Environment.ProcessId + ".tmp";
            File.WriteAllBytes(tmp, image);
            File.Move(tmp, path, overwrite: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
