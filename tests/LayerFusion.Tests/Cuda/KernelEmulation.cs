using System.Diagnostics;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// Runs one of tests/kernel-emulation's scripts (kernels/ sources compiled with g++ against the CPU
/// emulator of the CUDA dialect) and returns its log after asserting it exited 0 with no FAIL line;
/// needs g++ (<see cref="Requires.Gpp"/>).
/// </summary>
internal static class KernelEmulation
{
    public static async Task<string> RunAsync(string script, string tempPrefix)
    {
        Requires.Gpp();
        var root = NvrtcCompileTests.RepoRoot();
        var outDir = Directory.CreateTempSubdirectory(tempPrefix).FullName;
        try
        {
            var psi = new ProcessStartInfo("bash", [Path.Combine(root, "tests", "kernel-emulation", script), "--quick", outDir])
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
            return log;
        }
        finally { Directory.Delete(outDir, true); }
    }

    public static int LinesStartingWith(string log, string prefix) =>
        log.Split('\n').Count(l => l.StartsWith(prefix, StringComparison.Ordinal));
}
