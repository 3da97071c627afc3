using LayerFusion.Core.Tensors;
using LayerFusion.Cuda.Interop;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.TestSupport;
using Xunit.Sdk;
using Xunit.v3;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// A fault in a kernel is a clear failure of the test that launched it, not a dead or poisoned test
/// host (docs/decisions.md, "Emulated CUDA device"): <see cref="FaultIsolationDemo"/> (explicit, run
/// here in a child test process so its deliberate failure is not this run's) launches a kernel that
/// writes past the end of its allocation, then runs an ordinary CUDA test in the same process.
/// </summary>
[Collection("cuda")]
[Trait("device", "CUDA: emulated sm_90 on the CPU where no GPU is installed (tests/cuda-standin)")]
public class FaultIsolationTests
{
    [Fact]
    public void Emulated_kernel_fault_fails_exactly_its_test_naming_kernel_and_fault_and_the_next_cuda_test_passes()
    {
        EmulatedCuda.SkipUnlessActive();
        Requires.Nvrtc();  // the emulated device builds its kernels through the real NVRTC
        var (code, log) = EmulatedCuda.RunTestsInChild(
            ["-class", typeof(FaultIsolationDemo).FullName!, "-explicit", "only"], env => { });
        Assert.True(code != 0, $"the demo's out-of-bounds test should have failed:\n{log}");
        Assert.Contains("Total: 2, Errors: 0, Failed: 1, Skipped: 0", log);
        // (a) the failing test is the out-of-bounds one, and its message names the kernel and the fault
        var fail = log.IndexOf($"{typeof(FaultIsolationDemo).FullName}.{nameof(FaultIsolationDemo.A_kernel_writes_past_the_end_of_its_allocation)} [FAIL]",
            StringComparison.Ordinal);
        Assert.True(fail >= 0, log);
        var message = log[fail..Math.Min(log.Length, fail + 1500)];
        Assert.Contains("CUDA_ERROR_ILLEGAL_ADDRESS", message);
        Assert.Contains("kernel lf_test_out_of_bounds", message);
        Assert.Contains("0 bytes past the end of the 4000-byte allocation", message);
        // (b) the next CUDA test, in the same process, passed on a fresh context
        Assert.DoesNotContain($"{nameof(FaultIsolationDemo.B_next_cuda_test_runs_on_a_fresh_context)} [FAIL]", log);
    }

    [Fact]
    public void Emulated_failing_cublasCreate_makes_cuda_unavailable_and_gpu_tests_skip_with_its_status()
    {
        EmulatedCuda.SkipUnlessActive();
        Requires.Nvrtc();  // the emulated device builds its kernels through the real NVRTC
        // LAYERFUSION_EMU_CUBLAS_CREATE_STATUS is read by the stand-in cuBLAS only: its cublasCreate_v2
        // returns CUBLAS_STATUS_ALLOC_FAILED (3), as the real one does when it cannot initialise
        var method = $"{typeof(CudaParityTests).FullName}.{nameof(CudaParityTests.A_step_in_the_arena_allocates_nothing_after_the_first)}";
        var (code, log) = EmulatedCuda.RunTestsInChild(["-method", method], env =>
        {
            env["LAYERFUSION_EMU_CUBLAS_CREATE_STATUS"] = "3";
            env.Remove("LAYERFUSION_REQUIRE_CUDA");  // a user's machine: a GPU test without a usable device skips
        });
        Assert.True(code == 0 && log.Contains("Total: 1, Errors: 0, Failed: 0, Skipped: 1", StringComparison.Ordinal), log);
        Assert.Contains("no CUDA device: CUDA backend unavailable: cublasCreate failed: cublasStatus 3", log);
        // and where a device is required (CI), the same test fails with that reason instead of skipping
        (code, log) = EmulatedCuda.RunTestsInChild(["-method", method], env =>
        {
            env["LAYERFUSION_EMU_CUBLAS_CREATE_STATUS"] = "3";
            env["LAYERFUSION_REQUIRE_CUDA"] = "1";
        });
        Assert.True(code != 0 && log.Contains("Total: 1, Errors: 0, Failed: 1, Skipped: 0", StringComparison.Ordinal), log);
        Assert.Contains("cublasCreate failed: cublasStatus 3", log);
    }
}

/// <summary>
/// Run only by <see cref="FaultIsolationTests"/> in a child process (explicit: a plain run leaves
/// it out), in declaration order: a kernel without its tail guard writes past the end of its
/// allocation (the test fails), then an ordinary op runs on the same fixture and must pass.
/// </summary>
[TestMethodOrderer(typeof(ByName))]
public class FaultIsolationDemo(CudaFixture fx) : IClassFixture<CudaFixture>
{
    const string Source = """
        extern "C" __global__ void __launch_bounds__(128) lf_test_out_of_bounds(float* y, long long n)
        {
            long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
            y[i] = 2.f * (float)n;  // no `if (i < n)`: the last block's tail writes past the end
        }
        """;

    [Fact(Explicit = true)]
    public unsafe void A_kernel_writes_past_the_end_of_its_allocation()
    {
        var ops = fx.Ops(StorageType.F32);
        var device = ops.Device;
        var image = NvrtcCompiler.Compile("lf_test_out_of_bounds.cu", Source, [], ["--std=c++17", "-arch=sm_90"]).Image;
        device.MakeCurrent();
        IntPtr module;
        fixed (byte* p = image) Driver.Check(Driver.cuModuleLoadData(out module, p), "cuModuleLoadData");
        Driver.Check(Driver.cuModuleGetFunction(out var fn, module, "lf_test_out_of_bounds"), "cuModuleGetFunction");
        const long n = 1000;
        Driver.Check(Driver.cuMemAlloc(out var y, (nuint)(n * 4)), "cuMemAlloc");
        // 8 blocks of 128 threads over 1000 elements: threads 1000..1023 write past the end
        new KernelArgs().Ptr(y).I64(n).Launch(fn, (8, 1, 1), 128, 0, device.Stream, "lf_test_out_of_bounds");
        device.Synchronize();
        Assert.Fail("the out-of-bounds kernel ran without a fault");
    }

    [Fact(Explicit = true)]
    public void B_next_cuda_test_runs_on_a_fresh_context()
    {
        var ops = fx.Ops(StorageType.F32);
        Assert.Equal(1, fx.Recoveries);  // A poisoned the context; this test got a fresh one
        var rng = new Random(7);
        var x = new float[3000];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 8 - 4);
        var y = ops.ToHost(ops.Silu(ops.FromHost(x, 3, 1000)));
        for (int i = 0; i < x.Length; i++)
        {
            double want = x[i] / (1 + Math.Exp(-x[i]));
            Assert.True(Math.Abs(y[i] - want) <= 1e-5 * Math.Max(1, Math.Abs(want)), $"silu({x[i]}) = {y[i]}, want {want}");
        }
    }
}

/// <summary>Test methods in the order of their names. xunit's default method order depends on the
/// assembly's unique ID, so it differs between clones: in one, B ran before A.</summary>
public sealed class ByName : ITestMethodOrderer
{
    public IReadOnlyCollection<TTestMethod?> OrderTestMethods<TTestMethod>(IReadOnlyCollection<TTestMethod?> testMethods) where TTestMethod : notnull, ITestMethod =>
        testMethods.OrderBy(t => t?.MethodName, StringComparer.Ordinal).ToArray();
}
