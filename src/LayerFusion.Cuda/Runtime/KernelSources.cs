using System.Reflection;

namespace LayerFusion.Cuda.Runtime;

/// <summary>The CUDA C++ sources of kernels/, embedded in this assembly as resources.</summary>
public static class KernelSources
{
    const string Prefix = "kernels/";
    static readonly Assembly Self = typeof(KernelSources).Assembly;

    /// <summary>Kernel source files (*.cu), by file name.</summary>
    public static IReadOnlyList<string> SourceFiles { get; } = Self.GetManifestResourceNames()
        .Where(n => n.StartsWith(Prefix, StringComparison.Ordinal) && n.EndsWith(".cu", StringComparison.Ordinal))
        .Select(n => n[Prefix.Length..]).Order(StringComparer.Ordinal).ToArray();

    /// <summary>Every header (*.cuh) as (include name, text), passed to NVRTC so no include path is needed.</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> Headers { get; } = Self.GetManifestResourceNames()
        .Where(n => n.StartsWith(Prefix, StringComparison.Ordinal) && n.EndsWith(".cuh", StringComparison.Ordinal))
        .Order(StringComparer.Ordinal)
        .Select(n => new KeyValuePair<string, string>(n[Prefix.Length..], Read(n))).ToArray();

    public static string Get(string file) => Read(Prefix + file);

    static string Read(string resource)
    {
        using var s = Self.GetManifestResourceStream(resource)
            ?? throw new FileNotFoundException($"kernel source '{resource}' is not embedded in {Self.GetName().Name}");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }
}
