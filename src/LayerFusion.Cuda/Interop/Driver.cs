using System.Runtime.InteropServices;

namespace LayerFusion.Cuda.Interop;

/// <summary>Error raised by a failing CUDA driver, NVRTC or cuBLAS call; names the call and the code.</summary>
public sealed class CudaException(string message) : Exception(message);

/// <summary>
/// CUDA driver API (libcuda.so.1). Versioned entry points (_v2) are the ones cuda.h maps the plain
/// names to since CUDA 4/10/12, so these bindings match what nvcc-built programs call.
/// </summary>
public static unsafe partial class Driver
{
    static Driver() => NativeLibraries.EnsureRegistered();

    const string Lib = NativeLibraries.DriverName;

    public const int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    public const int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
    public const int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
    public const uint CU_STREAM_NON_BLOCKING = 1;
    public const uint CU_EVENT_DEFAULT = 0;
    public const int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;
    public const int CUDA_ERROR_NO_DEVICE = 100;

    [LibraryImport(Lib, EntryPoint = "cuInit")] public static partial int cuInit(uint flags);
    [LibraryImport(Lib, EntryPoint = "cuDriverGetVersion")] public static partial int cuDriverGetVersion(out int version);
    [LibraryImport(Lib, EntryPoint = "cuGetErrorName")] public static partial int cuGetErrorName(int error, out IntPtr name);
    [LibraryImport(Lib, EntryPoint = "cuGetErrorString")] public static partial int cuGetErrorString(int error, out IntPtr text);

    [LibraryImport(Lib, EntryPoint = "cuDeviceGetCount")] public static partial int cuDeviceGetCount(out int count);
    [LibraryImport(Lib, EntryPoint = "cuDeviceGet")] public static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(Lib, EntryPoint = "cuDeviceGetName")] public static partial int cuDeviceGetName(byte* name, int len, int device);
    [LibraryImport(Lib, EntryPoint = "cuDeviceGetAttribute")] public static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(Lib, EntryPoint = "cuDeviceTotalMem_v2")] public static partial int cuDeviceTotalMem(out nuint bytes, int device);

    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRetain")] public static partial int cuDevicePrimaryCtxRetain(out IntPtr context, int device);
    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] public static partial int cuDevicePrimaryCtxRelease(int device);
    [LibraryImport(Lib, EntryPoint = "cuCtxSetCurrent")] public static partial int cuCtxSetCurrent(IntPtr context);
    [LibraryImport(Lib, EntryPoint = "cuCtxSynchronize")] public static partial int cuCtxSynchronize();
    [LibraryImport(Lib, EntryPoint = "cuMemGetInfo_v2")] public static partial int cuMemGetInfo(out nuint free, out nuint total);

    [LibraryImport(Lib, EntryPoint = "cuStreamCreate")] public static partial int cuStreamCreate(out IntPtr stream, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuStreamDestroy_v2")] public static partial int cuStreamDestroy(IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cuStreamSynchronize")] public static partial int cuStreamSynchronize(IntPtr stream);

    [LibraryImport(Lib, EntryPoint = "cuEventCreate")] public static partial int cuEventCreate(out IntPtr evt, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuEventDestroy_v2")] public static partial int cuEventDestroy(IntPtr evt);
    [LibraryImport(Lib, EntryPoint = "cuEventRecord")] public static partial int cuEventRecord(IntPtr evt, IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cuEventSynchronize")] public static partial int cuEventSynchronize(IntPtr evt);
    [LibraryImport(Lib, EntryPoint = "cuEventElapsedTime")] public static partial int cuEventElapsedTime(out float ms, IntPtr start, IntPtr end);

    [LibraryImport(Lib, EntryPoint = "cuMemAlloc_v2")] public static partial int cuMemAlloc(out ulong ptr, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemFree_v2")] public static partial int cuMemFree(ulong ptr);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")] public static partial int cuMemcpyHtoDAsync(ulong dst, void* src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoHAsync_v2")] public static partial int cuMemcpyDtoHAsync(void* dst, ulong src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoDAsync_v2")] public static partial int cuMemcpyDtoDAsync(ulong dst, ulong src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cuMemsetD8Async")] public static partial int cuMemsetD8Async(ulong dst, byte value, nuint count, IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cuMemsetD16Async")] public static partial int cuMemsetD16Async(ulong dst, ushort value, nuint count, IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cuMemsetD32Async")] public static partial int cuMemsetD32Async(ulong dst, uint value, nuint count, IntPtr stream);

    [LibraryImport(Lib, EntryPoint = "cuModuleLoadData")] public static partial int cuModuleLoadData(out IntPtr module, void* image);
    [LibraryImport(Lib, EntryPoint = "cuModuleUnload")] public static partial int cuModuleUnload(IntPtr module);
    [LibraryImport(Lib, EntryPoint = "cuModuleGetFunction", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int cuModuleGetFunction(out IntPtr function, IntPtr module, string name);
    [LibraryImport(Lib, EntryPoint = "cuFuncSetAttribute")] public static partial int cuFuncSetAttribute(IntPtr function, int attribute, int value);
    [LibraryImport(Lib, EntryPoint = "cuLaunchKernel")]
    public static partial int cuLaunchKernel(IntPtr function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY,
        uint blockZ, uint sharedBytes, IntPtr stream, void** kernelParams, void** extra);

    [LibraryImport(Lib, EntryPoint = "cuStreamBeginCapture_v2")] public static partial int cuStreamBeginCapture(IntPtr stream, int mode);
    [LibraryImport(Lib, EntryPoint = "cuStreamEndCapture")] public static partial int cuStreamEndCapture(IntPtr stream, out IntPtr graph);
    [LibraryImport(Lib, EntryPoint = "cuGraphInstantiateWithFlags")] public static partial int cuGraphInstantiateWithFlags(out IntPtr exec, IntPtr graph, ulong flags);
    [LibraryImport(Lib, EntryPoint = "cuGraphLaunch")] public static partial int cuGraphLaunch(IntPtr exec, IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cuGraphExecDestroy")] public static partial int cuGraphExecDestroy(IntPtr exec);
    [LibraryImport(Lib, EntryPoint = "cuGraphDestroy")] public static partial int cuGraphDestroy(IntPtr graph);

    /// <summary>Throws a <see cref="CudaException"/> naming the call and the driver's error name and text.</summary>
    public static void Check(int result, string call)
    {
        if (result == 0) return;
        string name = $"CUresult {result}", text = "";
        try
        {
            if (cuGetErrorName(result, out var n) == 0 && n != IntPtr.Zero) name = Marshal.PtrToStringUTF8(n) ?? name;
            if (cuGetErrorString(result, out var s) == 0 && s != IntPtr.Zero) text = Marshal.PtrToStringUTF8(s) ?? "";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        throw new CudaException($"{call} failed: {name}{(text.Length > 0 ? " (" + text + ")" : "")}");
    }
}
