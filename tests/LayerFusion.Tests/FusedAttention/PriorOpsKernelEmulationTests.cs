using LayerFusion.Tests.Cuda;

namespace LayerFusion.Tests.FusedAttention;

/// <summary>
/// kernels/prior_ops.cu (CudaOps' IOps prior ops) run on the CPU emulator of the CUDA dialect
/// (tests/kernel-emulation/run_prior_ops.sh) against float64, in fp32, fp16 and bf16 storage. The
/// emulator proves indexing and numerics, not races or speed; it is not a GPU result.
/// </summary>
public class PriorOpsKernelEmulationTests
{
    [Fact]
    public async Task Prior_ops_match_float64_on_the_cpu_emulator()
    {
        var log = await KernelEmulation.RunAsync("run_prior_ops.sh", "lf-emu-prior-ops-");
        Assert.Equal(3, KernelEmulation.LinesStartingWith(log, "OK: 0 failure"));
        Assert.Contains("PASS dtype1 stats s b1 m30 n77 h5 d16 col76", log);
        Assert.Contains("PASS dtype2 exclusion key bias", log);
        // 5 statistics + density + 3 resizes + 2 masks + 2 blends + bias + conversion, per storage type
        Assert.Equal(3 * 15, KernelEmulation.LinesStartingWith(log, "PASS"));
    }
}
