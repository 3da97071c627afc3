using System.Diagnostics;

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
        var gpp = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
            .Select(d => Path.Combine(d, "g++")).FirstOrDefault(File.Exists);
        if (gpp is null) Assert.Skip("g++ is not installed: the CPU emulation of the kernels cannot be built here");
        var root = NvrtcCompileTests.RepoRoot();
        var outDir = Directory.CreateTempSubdirectory("lf-emu-").FullName;
        try
        {
            var psi = new ProcessStartInfo("bash", [Path.Combine(root, "tests", "kernel-emulation", "run.sh"), "--quick", outDir])
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
            // 3 storage types at head dim 64 with every kernel, plus fp16 attention at 4 more head dims
            Assert.Equal(7, log.Split('\n').Count(l => l.StartsWith("OK: 0 failure", StringComparison.Ordinal)));
            Assert.Contains("attention b1 m20 n36 h1 d512", log);
            Assert.True(log.Split('\n').Count(l => l.StartsWith("PASS", StringComparison.Ordinal)) >= 90, log);
        }
        finally { Directory.Delete(outDir, true); }
    }
}
