using System.Diagnostics;
using LayerFusion.Tests.Cuda;

namespace LayerFusion.Tests.FusedAttention;

/// <summary>
/// The prior attention kernel's logic without a GPU: tests/kernel-emulation/run_priors.sh compiles
/// kernels/attention_priors.cu and kernels/prior_masks.cu with g++ against the CPU emulator of the
/// CUDA dialect (cuda_emu.hpp) plus lane-level versions of the five PTX helpers (mma.m16n8k16,
/// ldmatrix.x4.trans, cp.async, f16x2/bf16x2 packing; prior_ptx_emu.hpp, written from the PTX ISA's
/// fragment layouts), and checks O, s, c and the blend outputs against float64 with the host
/// launcher's launch shapes and NaN-poisoned outputs. It cannot see races, timing or the real
/// tensor cores' rounding; the GPU parity tests (PriorAttentionParityTests) cover those on a device.
/// Kept outside the LayerFusion.Tests.Cuda* namespaces so perf/device-check.sh spends no device time on it.
/// </summary>
public class PriorKernelEmulationTests
{
    [Fact]
    public async Task Prior_attention_matches_float64_on_the_cpu_emulator()
    {
        var gpp = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
            .Select(d => Path.Combine(d, "g++")).FirstOrDefault(File.Exists);
        if (gpp is null) Assert.Skip("g++ is not installed: the CPU emulation of the kernels cannot be built here");
        var root = NvrtcCompileTests.RepoRoot();
        var outDir = Directory.CreateTempSubdirectory("lf-emu-priors-").FullName;
        try
        {
            var psi = new ProcessStartInfo("bash", [Path.Combine(root, "tests", "kernel-emulation", "run_priors.sh"), "--quick", outDir])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using var p = Process.Start(psi)!;
            var ct = TestContext.Current.CancellationToken;
            var stderr = p.StandardError.ReadToEndAsync(ct);
            var stdout = await p.StandardOutput.ReadToEndAsync(ct);
            await p.WaitForExitAsync(ct);
            var log = stdout + await stderr;
            Assert.True(p.ExitCode == 0, log);
            Assert.DoesNotContain("FAIL", log);
            // five specializations: plain; s + c; narrow blocks; blend + key bias; bf16 with everything
            Assert.Equal(5, log.Split('\n').Count(l => l.StartsWith("OK: 0 failure", StringComparison.Ordinal)));
            Assert.Contains("PASS dtype1 s b2 m40 n77 h3 d64 w4 p1 s1 e1", log);
            Assert.Contains("PASS dtype1 fg' b2 m40 n77 h2 d32 w2 p1 s0 e1 bl1 kb1", log);
            Assert.True(log.Split('\n').Count(l => l.StartsWith("PASS", StringComparison.Ordinal)) >= 49, log);
        }
        finally { Directory.Delete(outDir, true); }
    }
}
