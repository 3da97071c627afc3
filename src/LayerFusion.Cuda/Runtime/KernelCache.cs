using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace LayerFusion.Cuda.Runtime;

/// <summary>Compiles one kernel source (NVRTC in the engine; tests inject their own).</summary>
public delegate CompiledKernel KernelCompiler(string name, string source, IReadOnlyList<KeyValuePair<string, string>> headers,
    IReadOnlyList<string> options);

/// <summary>
/// Compiled kernel images, in memory and on disk, keyed by SHA-256 of everything that determines
/// the image: source, headers, options (defines and -arch), the target arch and NVRTC's version.
/// Folder: LAYERFUSION_KERNEL_CACHE, else $XDG_CACHE_HOME/layerfusion/kernels, else ~/.cache/...
/// A disk entry carries the SHA-256 of its image: a truncated or altered file, or one the driver
/// refuses to load, is evicted and recompiled; a damaged or unwritable cache only costs a recompile.
/// </summary>
public sealed class KernelCache
{
    readonly ConcurrentDictionary<string, CompiledKernel> _memory = new();
    readonly KernelCompiler _compile;
    readonly Func<string> _compilerVersion;
    int _compilations, _diskHits, _evictions;

    public KernelCache(string? directory = null)
        : this(directory, NvrtcCompiler.Compile, () => { var v = NvrtcCompiler.Version; return $"{v.Major}.{v.Minor}"; }) { }

    /// <summary>A cache over another compiler (tests: a host-side stand-in), whose version is part of every key.</summary>
    public KernelCache(string? directory, KernelCompiler compile, Func<string> compilerVersion)
    {
        Directory = directory ?? DefaultDirectory();
        _compile = compile;
        _compilerVersion = compilerVersion;
    }

    public string? Directory { get; }
    public int Compilations => _compilations;
    public int DiskHits => _diskHits;
    /// <summary>Disk entries found damaged (bad header or hash) or refused by the loader, and removed.</summary>
    public int Evictions => _evictions;

    /// <summary>Bytes before the image in a disk entry: magic, then the image's SHA-256.</summary>
    public const int EntryHeaderBytes = 8 + 32;
    static ReadOnlySpan<byte> Magic => "LFKERN2\n"u8;
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
        Field("format", "layerfusion-kernel-v2");
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
        var key = ComputeKey(source, headers, options, arch, _compilerVersion());
        return _memory.GetOrAdd(key, k => Fetch(k, name, source, headers, options));
    }

    /// <summary>
    /// The image, handed to <paramref name="load"/> (the driver's module load). An image that came
    /// from disk and fails to load (<see cref="LayerFusion.Cuda.Interop.CudaException"/>) is evicted
    /// and compiled afresh once; a fresh image that fails to load is an error.
    /// </summary>
    public T GetOrLoad<T>(string name, string source, IReadOnlyList<KeyValuePair<string, string>> headers,
        IReadOnlyList<string> options, string arch, Func<CompiledKernel, T> load)
    {
        var key = ComputeKey(source, headers, options, arch, _compilerVersion());
        var compiled = _memory.GetOrAdd(key, k => Fetch(k, name, source, headers, options));
        if (!compiled.FromDisk) return load(compiled);
        try { return load(compiled); }
        catch (LayerFusion.Cuda.Interop.CudaException)
        {
            Evict(key);
            var fresh = Compile(key, name, source, headers, options);
            _memory[key] = fresh;
            return load(fresh);
        }
    }

    string? PathOf(string key) => Directory is null ? null : Path.Combine(Directory, key + ".bin");

    CompiledKernel Fetch(string key, string name, string source, IReadOnlyList<KeyValuePair<string, string>> headers,
        IReadOnlyList<string> options)
    {
        var path = PathOf(key);
        if (path is not null && File.Exists(path))
        {
            byte[]? image = null;
            try { image = ReadEntry(File.ReadAllBytes(path)); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            if (image is not null)
            {
                Interlocked.Increment(ref _diskHits);
                return new CompiledKernel(image, IsCubinTarget(options), "") { FromDisk = true };
            }
            Evict(key);
        }
        return Compile(key, name, source, headers, options);
    }

    CompiledKernel Compile(string key, string name, string source, IReadOnlyList<KeyValuePair<string, string>> headers,
        IReadOnlyList<string> options)
    {
        var compiled = _compile(name, source, headers, options);
        Interlocked.Increment(ref _compilations);
        if (PathOf(key) is { } path) TryWrite(path, compiled.Image);
        return compiled;
    }

    void Evict(string key)
    {
        Interlocked.Increment(ref _evictions);
        _memory.TryRemove(key, out _);
        if (PathOf(key) is not { } path) return;
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    static bool IsCubinTarget(IReadOnlyList<string> options) =>
        options.Any(o => o.StartsWith("-arch=sm_", StringComparison.Ordinal) || o.StartsWith("--gpu-architecture=sm_", StringComparison.Ordinal));

    /// <summary>The image of a disk entry, or null when its magic, length or hash is wrong.</summary>
    public static byte[]? ReadEntry(byte[] entry)
    {
        if (entry.Length <= EntryHeaderBytes || !entry.AsSpan(0, 8).SequenceEqual(Magic)) return null;
        var image = entry.AsSpan(EntryHeaderBytes);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(image, hash);
        return hash.SequenceEqual(entry.AsSpan(8, 32)) ? image.ToArray() : null;
    }

    public static byte[] WriteEntry(byte[] image)
    {
        var entry = new byte[EntryHeaderBytes + image.Length];
        Magic.CopyTo(entry);
        SHA256.HashData(image, entry.AsSpan(8, 32));
        image.CopyTo(entry, EntryHeaderBytes);
        return entry;
    }

    static void TryWrite(string path, byte[] image)
    {
        try
        {
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var tmp = path + "." + Environment.ProcessId + "." + Environment.CurrentManagedThreadId + ".tmp";
            File.WriteAllBytes(tmp, WriteEntry(image));
            File.Move(tmp, path, overwrite: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
