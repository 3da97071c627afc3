using LayerFusion.Tests.Cuda;

namespace LayerFusion.Tests.FusedAttention;

/// <summary>
/// The prior attention kernel's logic without a GPU: tests/kernel-emulation/run_priors.sh compiles
/// kernels/attention_priors.cu and kernels/prior_masks.cu with g++ against the CPU emulator of the
/// CUDA dialect (cuda_emu.hpp) plus lane-level versions of the five PTX helpers (mma.m16n8k16,
/// ldmatrix.x4.trans, cp.async, f16x2/bf16x2 packing; prior_ptx_emu.hpp, written from the PTX ISA's
/// fragment layouts), and checks O, s, c and the after-to_out blend against float64 with the host
/// launcher's launch shapes and NaN-poisoned outputs. It cannot see races, timing or the real
/// tensor cores' rounding; the GPU parity tests (PriorAttentionParityTests) cover those on a device.
/// Kept outside the LayerFusion.Tests.Cuda* namespaces so perf/device-check.sh spends no device time on it.
/// </summary>
public class PriorKernelEmulationTests
{
    [Fact]
    public async Task Prior_attention_matches_float64_on_the_cpu_emulator()
    {
        var log = await KernelEmulation.RunAsync("run_priors.sh", "lf-emu-priors-");
        // five specializations: plain; s + c; narrow blocks; c + key bias; bf16 with s and c
        Assert.Equal(5, KernelEmulation.LinesStartingWith(log, "OK: 0 failure"));
        Assert.Contains("PASS dtype1 s b2 m40 n77 h3 d64 w4 p1 s1 e1", log);
        Assert.Contains("PASS dtype1 c b2 m40 n77 h2 d32 w2 p1 s0 e1 kb1", log);
        Assert.True(KernelEmulation.LinesStartingWith(log, "PASS") >= 43, log);
    }
}
