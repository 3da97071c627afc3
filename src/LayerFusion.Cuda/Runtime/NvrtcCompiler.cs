using System.Runtime.InteropServices;
using System.Text;
using LayerFusion.Cuda.Interop;

namespace LayerFusion.Cuda.Runtime;

/// <summary>A kernel failed to compile; the message carries NVRTC's full log and the options used.</summary>
public sealed class KernelCompileException(string kernel, IReadOnlyList<string> options, string log)
    : Exception($"NVRTC could not compile {kernel} ({string.Join(" ", options)}):\n{log}")
{
    public string Kernel { get; } = kernel;
    public string Log { get; } = log;
}

/// <summary>Compiled image: CUBIN for an exact sm_XY target, PTX for a compute_XY target.</summary>
public sealed record CompiledKernel(byte[] Image, bool IsCubin, string Log)
{
    /// <summary>Served from the disk cache (not compiled by this process).</summary>
    public bool FromDisk { get; init; }
}

/// <summary>Thin, safe wrapper over NVRTC.</summary>
public static unsafe class NvrtcCompiler
{
    /// <summary>NVRTC's version, e.g. (11, 8); throws <see cref="CudaUnavailableException"/> when absent.</summary>
    public static (int Major, int Minor) Version
    {
        get
        {
            NativeLibraries.Require(CudaLibrary.Nvrtc);
            Nvrtc.Check(Nvrtc.nvrtcVersion(out var major, out var minor), "nvrtcVersion");
            return (major, minor);
        }
    }

    /// <summary>The SM architectures (e.g. 80, 90) this NVRTC can emit CUBIN for.</summary>
    public static int[] SupportedArchs()
    {
        NativeLibraries.Require(CudaLibrary.Nvrtc);
        Nvrtc.Check(Nvrtc.nvrtcGetNumSupportedArchs(out var n), "nvrtcGetNumSupportedArchs");
        var archs = new int[n];
        fixed (int* p = archs) Nvrtc.Check(Nvrtc.nvrtcGetSupportedArchs(p), "nvrtcGetSupportedArchs");
        return archs;
    }

    /// <summary>
    /// Compiles <paramref name="source"/>. Options must include an -arch: sm_XY gives CUBIN, compute_XY PTX.
    /// Throws <see cref="KernelCompileException"/> with the log on failure.
    /// </summary>
    public static CompiledKernel Compile(string name, string source, IReadOnlyList<KeyValuePair<string, string>> headers,
        IReadOnlyList<string> options)
    {
        NativeLibraries.Require(CudaLibrary.Nvrtc);
        var allocations = new List<IntPtr>();
        byte* Utf8(string s)
        {
            var bytes = Encoding.UTF8.GetBytes(s + "\0");
            var p = Marshal.AllocHGlobal(bytes.Length);
            Marshal.Copy(bytes, 0, p, bytes.Length);
            allocations.Add(p);
            return (byte*)p;
        }

        var program = IntPtr.Zero;
        try
        {
            var headerTexts = stackalloc byte*[Math.Max(1, headers.Count)];
            var headerNames = stackalloc byte*[Math.Max(1, headers.Count)];
            for (int i = 0; i < headers.Count; i++)
            {
                headerNames[i] = Utf8(headers[i].Key);
                headerTexts[i] = Utf8(headers[i].Value);
            }
            Nvrtc.Check(Nvrtc.nvrtcCreateProgram(out program, Utf8(source), Utf8(name), headers.Count, headerTexts, headerNames),
                "nvrtcCreateProgram");
            var opts = stackalloc byte*[Math.Max(1, options.Count)];
            for (int i = 0; i < options.Count; i++) opts[i] = Utf8(options[i]);
            int rc = Nvrtc.nvrtcCompileProgram(program, options.Count, opts);
            var log = GetLog(program);
            if (rc != 0) throw new KernelCompileException(name, options, log.Length > 0 ? log : $"nvrtcResult {rc}");

            bool cubin = options.Any(o => o.StartsWith("-arch=sm_", StringComparison.Ordinal)
                || o.StartsWith("--gpu-architecture=sm_", StringComparison.Ordinal));
            byte[] image;
            if (cubin)
            {
                Nvrtc.Check(Nvrtc.nvrtcGetCUBINSize(program, out var size), "nvrtcGetCUBINSize");
                image = new byte[(int)size];
                fixed (byte* p = image) Nvrtc.Check(Nvrtc.nvrtcGetCUBIN(program, p), "nvrtcGetCUBIN");
            }
            else
            {
                Nvrtc.Check(Nvrtc.nvrtcGetPTXSize(program, out var size), "nvrtcGetPTXSize");
                image = new byte[(int)size];  // includes the terminating NUL cuModuleLoadData needs
                fixed (byte* p = image) Nvrtc.Check(Nvrtc.nvrtcGetPTX(program, p), "nvrtcGetPTX");
            }
            return new CompiledKernel(image, cubin, log);
        }
        finally
        {
            if (program != IntPtr.Zero) Nvrtc.nvrtcDestroyProgram(ref program);
            foreach (var p in allocations) Marshal.FreeHGlobal(p);
        }
    }

    static string GetLog(IntPtr program)
    {
        Nvrtc.Check(Nvrtc.nvrtcGetProgramLogSize(program, out var size), "nvrtcGetProgramLogSize");
        if (size <= 1) return "";
        var buf = new byte[(int)size];
        fixed (byte* p = buf) Nvrtc.Check(Nvrtc.nvrtcGetProgramLog(program, p), "nvrtcGetProgramLog");
        return Encoding.UTF8.GetString(buf, 0, Array.IndexOf(buf, (byte)0) is var z and >= 0 ? z : buf.Length).Trim();
    }
}
