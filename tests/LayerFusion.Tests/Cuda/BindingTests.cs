using System.Reflection;
using System.Runtime.InteropServices;
using LayerFusion.Cuda.Interop;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// The [LibraryImport] entry points. NVRTC is installed here (and in CI), so each NVRTC binding is
/// resolved against the real library. libcuda and cuBLAS cannot be loaded on a machine without an
/// NVIDIA driver/toolkit, so their names are checked against the list cuda.h / cublas_api.h /
/// cublasLt.h export (the versioned _v2 names those headers #define the plain ones to); the GPU
/// parity suite resolves them for real on the device machine.
/// </summary>
public class BindingTests
{
    static IEnumerable<(string Library, string EntryPoint, MethodInfo Method)> Bindings() =>
        typeof(NativeLibraries).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static))
            .Select(m => (m, a: m.GetCustomAttribute<LibraryImportAttribute>()))
            .Where(x => x.a is not null)
            .Select(x => (x.a!.LibraryName, x.a.EntryPoint ?? x.m.Name, x.m));

    [Fact]
    public void Every_nvrtc_binding_resolves_in_the_installed_library()
    {
        Requires.Nvrtc();
        var handle = NativeLibraries.Require(CudaLibrary.Nvrtc);
        var names = Bindings().Where(b => b.Library == NativeLibraries.NvrtcName).Select(b => b.EntryPoint).ToArray();
        Assert.True(names.Length >= 12);
        var missing = names.Where(n => !NativeLibrary.TryGetExport(handle, n, out _)).ToArray();
        Assert.Empty(missing);
    }

    static readonly string[] DriverExports =
    [
        "cuInit", "cuDriverGetVersion", "cuGetErrorName", "cuGetErrorString", "cuDeviceGetCount", "cuDeviceGet",
        "cuDeviceGetName", "cuDeviceGetAttribute", "cuDeviceTotalMem_v2", "cuDevicePrimaryCtxRetain",
        "cuDevicePrimaryCtxRelease_v2", "cuCtxSetCurrent", "cuCtxSynchronize", "cuMemGetInfo_v2", "cuStreamCreate",
        "cuStreamDestroy_v2", "cuStreamSynchronize", "cuEventCreate", "cuEventDestroy_v2", "cuEventRecord",
        "cuEventSynchronize", "cuEventElapsedTime", "cuMemAlloc_v2", "cuMemFree_v2", "cuMemcpyHtoDAsync_v2",
        "cuMemcpyDtoHAsync_v2", "cuMemcpyDtoDAsync_v2", "cuMemsetD8Async", "cuMemsetD16Async", "cuMemsetD32Async",
        "cuModuleLoadData", "cuModuleUnload", "cuModuleGetFunction", "cuFuncSetAttribute", "cuLaunchKernel",
        "cuStreamBeginCapture_v2", "cuStreamEndCapture", "cuGraphInstantiateWithFlags", "cuGraphLaunch",
        "cuGraphExecDestroy", "cuGraphDestroy",
    ];

    static readonly string[] CublasExports =
    [
        "cublasCreate_v2", "cublasDestroy_v2", "cublasGetVersion_v2", "cublasSetStream_v2", "cublasSetMathMode",
        "cublasSetWorkspace_v2", "cublasGemmEx", "cublasGemmStridedBatchedEx",
    ];

    static readonly string[] CublasLtExports =
    [
        "cublasLtGetVersion", "cublasLtCreate", "cublasLtDestroy", "cublasLtMatmulDescCreate", "cublasLtMatmulDescDestroy",
        "cublasLtMatmulDescSetAttribute", "cublasLtMatrixLayoutCreate", "cublasLtMatrixLayoutDestroy",
        "cublasLtMatmulPreferenceCreate", "cublasLtMatmulPreferenceDestroy", "cublasLtMatmulPreferenceSetAttribute",
        "cublasLtMatmulAlgoGetHeuristic", "cublasLtMatmul",
    ];

    [Theory]
    [InlineData(NativeLibraries.DriverName)]
    [InlineData(NativeLibraries.CublasName)]
    [InlineData(NativeLibraries.CublasLtName)]
    public void Driver_and_cublas_bindings_use_the_exported_names(string library)
    {
        var expected = library switch
        {
            NativeLibraries.DriverName => DriverExports,
            NativeLibraries.CublasName => CublasExports,
            _ => CublasLtExports,
        };
        var bound = Bindings().Where(b => b.Library == library).Select(b => b.EntryPoint).Order().ToArray();
        Assert.Equal(expected.Order().ToArray(), bound);
    }

    [Fact]
    public void Bindings_resolve_in_the_real_libraries_where_they_exist()
    {
        // by the loader's own search only: the stand-ins of tests/cuda-standin are not real libraries
        var checkedAny = false;
        foreach (var (lib, name) in new[] { (CudaLibrary.Driver, NativeLibraries.DriverName), (CudaLibrary.Cublas, NativeLibraries.CublasName), (CudaLibrary.CublasLt, NativeLibraries.CublasLtName) })
        {
            var handle = IntPtr.Zero;
            if (!NativeLibraries.CandidateNames(lib).Any(n => NativeLibrary.TryLoad(n, out handle))) continue;
            // a bare soname also finds an already loaded stand-in (same soname): that is not a real library
            if (NativeLibrary.TryGetExport(handle, "lfemu_has_context", out _) || NativeLibrary.TryGetExport(handle, "lfemu_enqueue_host", out _)) continue;
            checkedAny = true;
            var missing = Bindings().Where(b => b.Library == name).Select(b => b.EntryPoint)
                .Where(n => !NativeLibrary.TryGetExport(handle, n, out _)).ToArray();
            Assert.Empty(missing);
        }
        if (!checkedAny)
            Assert.Skip("libcuda.so.1 and libcublas(Lt).so are not installed here: their names are checked against the header list only");
    }

    [Fact]
    public void Without_a_driver_probing_tries_cuda_13_then_12_then_11()
    {
        Assert.Equal(["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"], NativeLibraries.CandidateNames(CudaLibrary.Nvrtc));
        Assert.Equal(["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"], NativeLibraries.CandidateNames(CudaLibrary.Cublas));
        Assert.Equal(["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"], NativeLibraries.CandidateNames(CudaLibrary.CublasLt));
        Assert.Equal("libcuda.so.1", NativeLibraries.CandidateNames(CudaLibrary.Driver)[0]);
    }

    [Fact]
    public void The_driver_picks_the_library_major()
    {
        var cublas = NativeLibraries.CandidateNames(CudaLibrary.Cublas);
        // a CUDA 12.4 driver: 12 first, then 11, then the unversioned name; 13 only as a last resort
        Assert.Equal(["libcublas.so.12", "libcublas.so.11", "libcublas.so", "libcublas.so.13"], NativeLibraries.OrderForDriver(cublas, 12040));
        Assert.Equal(["libnvrtc.so.11.2", "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"],
            NativeLibraries.OrderForDriver(NativeLibraries.CandidateNames(CudaLibrary.Nvrtc), 11080));
        Assert.Equal(cublas, NativeLibraries.OrderForDriver(cublas, 13000));
        Assert.Equal(cublas, NativeLibraries.OrderForDriver(cublas, null));   // no driver (compile-only machine): newest first
        Assert.Equal(11, NativeLibraries.MajorOf("/opt/x/libnvrtc.so.11.2"));
        Assert.Null(NativeLibraries.MajorOf("libcublas.so"));
    }

    [Fact]
    public void Missing_driver_gives_one_clear_error()
    {
        if (LayerFusion.Tests.Cuda.EmulatedCuda.RanWithoutTheStandIns("LayerFusion.Tests.Cuda.BindingTests", nameof(Missing_driver_gives_one_clear_error))) return;
        if (NativeLibraries.TryLoad(CudaLibrary.Driver, out _, out _))
            Assert.Skip("libcuda.so.1 is present on this machine; the missing-driver message cannot be produced here");
        var e = Assert.Throws<CudaUnavailableException>(() => CudaDevice.Open());
        Assert.Contains("libcuda.so.1", e.Message);
        Assert.Contains("LAYERFUSION_LIBCUDA", e.Message);
        Assert.Contains("--backend cpu", e.Message);
        Assert.Null(CudaDevice.TryOpen(out var reason));
        Assert.Equal(e.Message, reason);
    }
}
