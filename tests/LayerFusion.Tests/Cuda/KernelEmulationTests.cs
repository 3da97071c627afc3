namespace LayerFusion.Tests.Cuda;

/// <summary>
/// The kernels' logic without a GPU: tests/kernel-emulation compiles the kernels/ sources with g++
/// against a CPU emulator of the CUDA dialect they use (fibers for threads, barriers, warp
/// shuffles, shared memory) and checks every kernel against float64 references, with the launch
/// shapes CudaOps uses and NaN-poisoned outputs, in fp32, fp16 and bf16. It cannot see races or
/// timing; the GPU parity suite covers those on a device.
/// </summary>
public class KernelEmulationTests
{
    [Fact]
    public async Task Every_kernel_matches_the_float64_reference_on_the_cpu_emulator()
    {
        var log = await KernelEmulation.RunAsync("run.sh", "lf-emu-");
        // 3 storage types at head dim 64 with every kernel, plus fp16 attention at 4 more head dims
        Assert.Equal(7, KernelEmulation.LinesStartingWith(log, "OK: 0 failure"));
        Assert.Contains("attention b1 m20 n36 h1 d512", log);
        Assert.True(KernelEmulation.LinesStartingWith(log, "PASS") >= 90, log);
    }
}
