using System.Runtime.InteropServices;

namespace LayerFusion.Cuda.Interop;

/// <summary>NVRTC, the run-time CUDA C++ compiler (libnvrtc.so.13/.12/.11.2).</summary>
public static unsafe partial class Nvrtc
{
    static Nvrtc() => NativeLibraries.EnsureRegistered();

    const string Lib = NativeLibraries.NvrtcName;

    [LibraryImport(Lib, EntryPoint = "nvrtcVersion")] public static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(Lib, EntryPoint = "nvrtcGetErrorString")] public static partial IntPtr nvrtcGetErrorString(int result);
    [LibraryImport(Lib, EntryPoint = "nvrtcGetNumSupportedArchs")] public static partial int nvrtcGetNumSupportedArchs(out int count);
    [LibraryImport(Lib, EntryPoint = "nvrtcGetSupportedArchs")] public static partial int nvrtcGetSupportedArchs(int* archs);
    [LibraryImport(Lib, EntryPoint = "nvrtcCreateProgram")]
    public static partial int nvrtcCreateProgram(out IntPtr program, byte* source, byte* name, int numHeaders, byte** headers,
        byte** includeNames);
    [LibraryImport(Lib, EntryPoint = "nvrtcDestroyProgram")] public static partial int nvrtcDestroyProgram(ref IntPtr program);
    [LibraryImport(Lib, EntryPoint = "nvrtcCompileProgram")] public static partial int nvrtcCompileProgram(IntPtr program, int numOptions, byte** options);
    [LibraryImport(Lib, EntryPoint = "nvrtcGetProgramLogSize")] public static partial int nvrtcGetProgramLogSize(IntPtr program, out nuint size);
    [LibraryImport(Lib, EntryPoint = "nvrtcGetProgramLog")] public static partial int nvrtcGetProgramLog(IntPtr program, byte* log);
    [LibraryImport(Lib, EntryPoint = "nvrtcGetPTXSize")] public static partial int nvrtcGetPTXSize(IntPtr program, out nuint size);
    [LibraryImport(Lib, EntryPoint = "nvrtcGetPTX")] public static partial int nvrtcGetPTX(IntPtr program, byte* ptx);
    [LibraryImport(Lib, EntryPoint = "nvrtcGetCUBINSize")] public static partial int nvrtcGetCUBINSize(IntPtr program, out nuint size);
    [LibraryImport(Lib, EntryPoint = "nvrtcGetCUBIN")] public static partial int nvrtcGetCUBIN(IntPtr program, byte* cubin);

    public static void Check(int result, string call)
    {
        if (result == 0) return;
        string text;
        try { text = Marshal.PtrToStringUTF8(nvrtcGetErrorString(result)) ?? $"nvrtcResult {result}"; }
        catch (EntryPointNotFoundException) { text = $"nvrtcResult {result}"; }
        throw new CudaException($"{call} failed: {text}");
    }
}
