using System.Reflection;
using System.Runtime.InteropServices;

namespace LayerFusion.Cuda.Interop;

/// <summary>The CUDA libraries we bind, by the logical names our [LibraryImport]s use.</summary>
public enum CudaLibrary { Driver, Nvrtc, Cublas, CublasLt }

/// <summary>
/// Thrown when the CUDA backend cannot run here: a library is missing, or no device exists.
/// One message says what is missing and how to point us at it; the CPU backend stays usable.
/// </summary>
public sealed class CudaUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Resolves our logical library names to the versioned shared objects of CUDA 13, 12 or 11
/// (no toolkit install assumed: driver's libcuda.so.1, pip/Debian NVRTC and cuBLAS). Where a driver
/// loads, the newest major it supports (cuDriverGetVersion) comes first and newer majors last: a
/// CUDA 13 cuBLAS or PTX does not run on a CUDA 12 driver. Within LAYERFUSION_CUDA_LIB_DIR each
/// name is tried in every folder before the next name, so a newer library in an earlier folder does
/// not shadow a fitting one; those folders are tried before the system's.
/// Overrides: LAYERFUSION_CUDA_LIB_DIR (a folder probed first for every library) and one
/// variable per library holding a full path (LAYERFUSION_LIBCUDA, LAYERFUSION_NVRTC,
/// LAYERFUSION_CUBLAS, LAYERFUSION_CUBLASLT). A per-library variable set to "none" makes that
/// library count as absent without probing (how a machine that has it runs as one that lacks it:
/// the fresh-machine test run and the skip/fail paths are checked that way).
/// </summary>
public static class NativeLibraries
{
    public const string DriverName = "lf_cuda";
    public const string NvrtcName = "lf_nvrtc";
    public const string CublasName = "lf_cublas";
    public const string CublasLtName = "lf_cublaslt";

    public const string LibDirVariable = "LAYERFUSION_CUDA_LIB_DIR";

    /// <summary>The value of a per-library override that hides the library.</summary>
    public const string Hidden = "none";

    /// <summary>True when the library's override variable is "none".</summary>
    public static bool IsHidden(CudaLibrary lib) =>
        string.Equals(Environment.GetEnvironmentVariable(OverrideVariable(lib))?.Trim(), Hidden, StringComparison.OrdinalIgnoreCase);

    static readonly Lock Gate = new();
    static readonly Dictionary<CudaLibrary, IntPtr> Loaded = new();
    static readonly Dictionary<CudaLibrary, string> LoadedNames = new();
    static bool _registered;

    /// <summary>Candidate file names, newest CUDA first.</summary>
    public static IReadOnlyList<string> CandidateNames(CudaLibrary lib) => lib switch
    {
        CudaLibrary.Driver => ["libcuda.so.1", "libcuda.so"],
        CudaLibrary.Nvrtc => ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"],
        CudaLibrary.Cublas => ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"],
        CudaLibrary.CublasLt => ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"],
        _ => throw new ArgumentOutOfRangeException(nameof(lib)),
    };

    public static string OverrideVariable(CudaLibrary lib) => lib switch
    {
        CudaLibrary.Driver => "LAYERFUSION_LIBCUDA",
        CudaLibrary.Nvrtc => "LAYERFUSION_NVRTC",
        CudaLibrary.Cublas => "LAYERFUSION_CUBLAS",
        CudaLibrary.CublasLt => "LAYERFUSION_CUBLASLT",
        _ => throw new ArgumentOutOfRangeException(nameof(lib)),
    };

    /// <summary>Called from the static constructors of the binding classes, before any P/Invoke.</summary>
    internal static void EnsureRegistered()
    {
        lock (Gate)
        {
            if (_registered) return;
            NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
            _registered = true;
        }
    }

    static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        CudaLibrary? lib = name switch
        {
            DriverName => CudaLibrary.Driver,
            NvrtcName => CudaLibrary.Nvrtc,
            CublasName => CudaLibrary.Cublas,
            CublasLtName => CudaLibrary.CublasLt,
            _ => null,
        };
        if (lib is null) return IntPtr.Zero;
        return TryLoad(lib.Value, out var handle, out _) ? handle : IntPtr.Zero;
    }

    /// <summary>The loaded library's handle, or a <see cref="CudaUnavailableException"/> naming what was tried.</summary>
    public static IntPtr Require(CudaLibrary lib)
    {
        EnsureRegistered();
        if (TryLoad(lib, out var handle, out var tried)) return handle;
        if (IsHidden(lib))
            throw new CudaUnavailableException(
                $"CUDA backend unavailable: {Describe(lib)} is hidden ({OverrideVariable(lib)}={Hidden}); " +
                "unset it to use the installed one; the CPU backend (--backend cpu) does not need it.");
        throw new CudaUnavailableException(
            $"CUDA backend unavailable: {Describe(lib)} not found (tried {string.Join(", ", tried)}). " +
            $"Install it, or set {OverrideVariable(lib)} to its full path or {LibDirVariable} to its folder; " +
            "the CPU backend (--backend cpu) does not need it.");
    }

    public static bool TryLoad(CudaLibrary lib, out IntPtr handle, out List<string> tried)
    {
        tried = [];
        lock (Gate)
            if (Loaded.TryGetValue(lib, out handle)) return true;
        var driverVersion = lib == CudaLibrary.Driver ? null : DriverVersion();
        lock (Gate)
        {
            if (Loaded.TryGetValue(lib, out handle)) return true;
            foreach (var candidate in Candidates(lib, driverVersion))
            {
                tried.Add(candidate);
                if (NativeLibrary.TryLoad(candidate, out handle))
                {
                    Loaded[lib] = handle;
                    LoadedNames[lib] = candidate;
                    return true;
                }
            }
            handle = IntPtr.Zero;
            return false;
        }
    }

    /// <summary>The file name or path the library was loaded from, or null when it is not loaded.</summary>
    public static string? LoadedFrom(CudaLibrary lib)
    {
        lock (Gate) return LoadedNames.GetValueOrDefault(lib);
    }

    /// <summary>cuDriverGetVersion (e.g. 12040) where the driver library loads, else null.</summary>
    public static unsafe int? DriverVersion()
    {
        if (!TryLoad(CudaLibrary.Driver, out var driver, out _)) return null;
        if (!NativeLibrary.TryGetExport(driver, "cuDriverGetVersion", out var fn)) return null;
        int version;
        return ((delegate* unmanaged<int*, int>)fn)(&version) == 0 && version > 0 ? version : null;
    }

    /// <summary>The CUDA major of a versioned name (libcublas.so.12 -> 12, libnvrtc.so.11.2 -> 11), or null.</summary>
    public static int? MajorOf(string fileName)
    {
        var at = fileName.LastIndexOf(".so.", StringComparison.Ordinal);
        if (at < 0) return null;
        var rest = fileName[(at + 4)..];
        var end = rest.IndexOf('.');
        return int.TryParse(end < 0 ? rest : rest[..end], out var major) ? major : null;
    }

    /// <summary>
    /// <paramref name="names"/> (newest first) ordered for a driver of <paramref name="driverVersion"/>:
    /// majors the driver supports, newest first, then unversioned names, then newer majors (a last
    /// resort whose failure then names itself). Without a driver the order is kept.
    /// </summary>
    public static IReadOnlyList<string> OrderForDriver(IReadOnlyList<string> names, int? driverVersion)
    {
        if (driverVersion is not { } v) return names;
        int driverMajor = v / 1000;
        return names
            .Select((n, i) => (n, i, major: MajorOf(n)))
            .OrderBy(x => x.major is null ? 1 : x.major <= driverMajor ? 0 : 2)
            .ThenBy(x => x.i)
            .Select(x => x.n)
            .ToArray();
    }

    static IEnumerable<string> Candidates(CudaLibrary lib, int? driverVersion)
    {
        if (IsHidden(lib)) yield break;
        var single = Environment.GetEnvironmentVariable(OverrideVariable(lib));
        if (!string.IsNullOrWhiteSpace(single)) yield return single;
        var dirs = (Environment.GetEnvironmentVariable(LibDirVariable) ?? "")
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        var names = OrderForDriver(CandidateNames(lib), driverVersion);
        // the folders we are pointed at win over the system's (a stand-in or chosen toolkit there is
        // meant); within them, each name is tried in every folder before the next name
        foreach (var n in names)
            foreach (var part in dirs) yield return Path.Combine(part, n);
        // bare names: the dynamic loader's own search (ld.so.cache, LD_LIBRARY_PATH)
        foreach (var n in names) yield return n;
        foreach (var n in names) yield return Path.Combine("/usr/local/cuda/lib64", n);
    }

    static string Describe(CudaLibrary lib) => lib switch
    {
        CudaLibrary.Driver => "the NVIDIA driver library (libcuda.so.1)",
        CudaLibrary.Nvrtc => "NVRTC (libnvrtc.so.13/.12/.11.2)",
        CudaLibrary.Cublas => "cuBLAS (libcublas.so.13/.12/.11)",
        CudaLibrary.CublasLt => "cuBLASLt (libcublasLt.so.13/.12/.11)",
        _ => lib.ToString(),
    };
}
