using System.Runtime.InteropServices;

namespace LayerFusion.Core.Text;

/// <summary>
/// NFC by the machine's ICU (unorm2 in libicuuc), loaded by hand: with InvariantGlobalization .NET
/// does not load ICU itself. The tokenizer does not use it (its data is whatever Unicode version
/// the machine's ICU has, so ids could differ between machines); it is the independent
/// implementation <see cref="UnicodeNfc"/> is tested against. Linux builds export version-suffixed
/// symbols (unorm2_normalize_72), macOS's libicucore and Windows' icu.dll unsuffixed ones.
/// </summary>
public sealed unsafe class IcuNfc
{
    readonly nint _normalizer;
    readonly delegate* unmanaged<nint, char*, int, char*, int, int*, int> _normalize;

    /// <summary>The library that was loaded and ICU's Unicode version.</summary>
    public string Description { get; }

    IcuNfc(nint normalizer, delegate* unmanaged<nint, char*, int, char*, int, int*, int> normalize, string description)
    {
        _normalizer = normalizer;
        _normalize = normalize;
        Description = description;
    }

    static readonly Lazy<IcuNfc?> s_instance = new(Load);

    /// <summary>The machine's ICU, or null when none can be loaded.</summary>
    public static IcuNfc? TryLoad() => s_instance.Value;

    static IcuNfc? Load()
    {
        var candidates = new List<(string Library, string Suffix)>();
        if (OperatingSystem.IsWindows()) candidates.AddRange([("icu.dll", ""), ("icuuc.dll", "")]);
        else if (OperatingSystem.IsMacOS()) candidates.Add(("libicucore.dylib", ""));
        else
        {
            for (int v = 90; v >= 50; v--) candidates.Add(($"libicuuc.so.{v}", $"_{v}"));
            candidates.Add(("libicuuc.so", ""));
        }
        foreach (var (library, suffix) in candidates)
        {
            if (!NativeLibrary.TryLoad(library, out var handle)) continue;
            var result = Bind(handle, library, suffix);
            if (result is not null) return result;
            // an unsuffixed libicuuc.so: find its version from the exported names
            if (suffix.Length == 0)
                for (int v = 90; v >= 50 && result is null; v--) result = Bind(handle, library, $"_{v}");
            if (result is not null) return result;
            NativeLibrary.Free(handle);
        }
        return null;
    }

    static IcuNfc? Bind(nint handle, string library, string suffix)
    {
        if (!NativeLibrary.TryGetExport(handle, "unorm2_getNFCInstance" + suffix, out var getNfc)
            || !NativeLibrary.TryGetExport(handle, "unorm2_normalize" + suffix, out var normalize))
            return null;
        int error = 0;
        nint nfc = ((delegate* unmanaged<int*, nint>)getNfc)(&error);
        if (error > 0 || nfc == 0) return null;
        string version = "unknown";
        if (NativeLibrary.TryGetExport(handle, "u_getUnicodeVersion" + suffix, out var getVersion))
        {
            byte* v = stackalloc byte[4];
            ((delegate* unmanaged<byte*, void>)getVersion)(v);
            version = $"{v[0]}.{v[1]}.{v[2]}";
        }
        return new IcuNfc(nfc, (delegate* unmanaged<nint, char*, int, char*, int, int*, int>)normalize,
            $"{library} (Unicode {version})");
    }

    public string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0) return text;
        // NFC grows a string at most threefold; retry once with the length ICU asks for
        int capacity = checked(text.Length * 3 + 16);
        for (int attempt = 0; attempt < 2; attempt++)
        {
            var buffer = new char[capacity];
            int error = 0, length;
            fixed (char* src = text)
            fixed (char* dst = buffer)
                length = _normalize(_normalizer, src, text.Length, dst, buffer.Length, &error);
            const int BufferOverflow = 15; // U_BUFFER_OVERFLOW_ERROR
            if (error == BufferOverflow) { capacity = length; continue; }
            if (error > 0) throw new InvalidOperationException($"ICU unorm2_normalize failed with UErrorCode {error}");
            return new string(buffer, 0, length);
        }
        throw new InvalidOperationException("ICU unorm2_normalize kept asking for a larger buffer");
    }
}
