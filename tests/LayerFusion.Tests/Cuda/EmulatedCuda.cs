using System.Diagnostics;
using System.Runtime.InteropServices;
using LayerFusion.Cuda.Interop;

[assembly: AssemblyFixture(typeof(LayerFusion.Tests.Cuda.EmulatedCuda))]

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// Where no CUDA driver is installed (CI, most developer machines), points the CUDA backend at the
/// stand-in libraries of tests/cuda-standin: an emulated sm_90 device on the CPU, found through the
/// backend's ordinary LAYERFUSION_CUDA_LIB_DIR probing (the backend itself has no emulation switch),
/// so every CUDA test runs the same C# code a GPU would. Built with g++ on first use (cached by
/// source hash under the emulator cache). A machine with a real libcuda.so.1, or with
/// LAYERFUSION_CUDA_LIB_DIR / LAYERFUSION_LIBCUDA set, is left alone; LAYERFUSION_EMULATED_CUDA=0
/// turns the stand-ins off. Child processes (the CLI tests) inherit the setting.
/// </summary>
public sealed class EmulatedCuda
{
    /// <summary>True when this test run drives the emulated device (results are not GPU results).</summary>
    public static bool Active { get; private set; }
    /// <summary>Why the stand-ins are not in use (empty when they are, or when a real driver is present).</summary>
    public static string Reason { get; private set; } = "";

    public EmulatedCuda()
    {
        if (Environment.GetEnvironmentVariable("LAYERFUSION_EMULATED_CUDA") == "0") { Reason = "LAYERFUSION_EMULATED_CUDA=0"; return; }
        var dir = Environment.GetEnvironmentVariable(NativeLibraries.LibDirVariable);
        if (!string.IsNullOrWhiteSpace(dir))
        {
            Active = File.Exists(Path.Combine(dir, ".stamp"));  // .ci/run exports the stand-ins' folder
            return;
        }
        if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(NativeLibraries.OverrideVariable(CudaLibrary.Driver)))) return;
        if (NativeLibrary.TryLoad("libcuda.so.1", out var real)) { NativeLibrary.Free(real); return; }
        var outDir = Path.Combine(EmulatorCache(), "lib");
        var script = Path.Combine(NvrtcCompileTests.RepoRoot(), "tests", "cuda-standin", "build.sh");
        var psi = new ProcessStartInfo("bash", [script, outDir]) { RedirectStandardOutput = true, RedirectStandardError = true };
        try
        {
            using var p = Process.Start(psi)!;
            var err = p.StandardError.ReadToEndAsync();
            var log = p.StandardOutput.ReadToEnd() + err.Result;
            p.WaitForExit();
            if (p.ExitCode != 0) { Reason = $"the stand-in CUDA libraries did not build (needs g++ >= 12): {log.Trim()}"; return; }
        }
        catch (System.ComponentModel.Win32Exception e) { Reason = $"cannot run bash to build the stand-in CUDA libraries: {e.Message}"; return; }
        Environment.SetEnvironmentVariable(NativeLibraries.LibDirVariable, outDir);
        // the kernel cache beside the emulator's image records, so the two never disagree
        if (string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("LAYERFUSION_KERNEL_CACHE")))
            Environment.SetEnvironmentVariable("LAYERFUSION_KERNEL_CACHE", Path.Combine(EmulatorCache(), "kernels"));
        Active = true;
    }

    /// <summary>Skips a test that checks the stand-ins themselves where they are not in use; under CI=true it fails instead.</summary>
    public static void SkipUnlessActive()
    {
        if (Active) return;
        var why = Reason.Length > 0 ? Reason : "a real CUDA driver (or LAYERFUSION_CUDA_LIB_DIR/LAYERFUSION_LIBCUDA) is in use";
        var message = $"the stand-in CUDA libraries are not in use: {why}; install g++ >= 12 to run the CUDA tests on the emulated device";
        // the stand-ins failed to build (a prerequisite): CI=true fails; a real driver in use just skips
        if (Reason.Length > 0) LayerFusion.Tests.TestSupport.Requires.That(false, message);
        Assert.Skip(message);
    }

    /// <summary>
    /// For the tests of the no-driver path: where the stand-ins are in use (so this process has a
    /// device), reruns the calling test in a child test process that does not use them, asserts it
    /// passed there, and returns true (the caller returns). False: run the test body here.
    /// </summary>
    public static bool RanWithoutTheStandIns(string testClass, string method)
    {
        if (!Active) return false;
        var (code, log) = RunTestsInChild(["-method", $"{testClass}.{method}"], env =>
        {
            foreach (var v in new[] { NativeLibraries.LibDirVariable, "LAYERFUSION_EMU_TEST_LOG", "LAYERFUSION_KERNEL_CACHE" })
                env.Remove(v);
            env["LAYERFUSION_EMULATED_CUDA"] = "0";
        });
        Assert.True(code == 0 && log.Contains("Total: 1, Errors: 0, Failed: 0, Skipped: 0", StringComparison.Ordinal),
            $"{method} in a process without the stand-in CUDA libraries:\n{log}");
        return true;
    }

    /// <summary>
    /// Runs this test assembly in a child process with the xunit v3 runner's own options
    /// (<paramref name="runnerArgs"/>: -method, -class, -explicit ...) and the environment
    /// <paramref name="edit"/> makes; the exit code and the whole console log.
    /// </summary>
    public static (int ExitCode, string Log) RunTestsInChild(string[] runnerArgs, Action<IDictionary<string, string?>> edit)
    {
        var dll = typeof(EmulatedCuda).Assembly.Location;
        var apphost = Path.ChangeExtension(dll, null);
        string[] args = [.. runnerArgs, "-noColor"];
        var psi = new ProcessStartInfo(File.Exists(apphost) ? apphost : "dotnet", File.Exists(apphost) ? args : ["exec", dll, .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.Environment.Remove("LAYERFUSION_EMU_TEST_LOG");  // the child's tests are not this run's emulated tests
        edit(psi.Environment);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var log = p.StandardOutput.ReadToEnd() + err.Result;
        p.WaitForExit();
        return (p.ExitCode, log);
    }

    public static string EmulatorCache()
    {
        var env = Environment.GetEnvironmentVariable("LAYERFUSION_EMU_CACHE");
        if (!string.IsNullOrWhiteSpace(env)) return env;
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var root = !string.IsNullOrWhiteSpace(xdg) ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "layerfusion", "emulator");
    }

    /// <summary>
    /// Called by the CUDA fixtures when a test gets a device: on the emulated device the test's name
    /// is appended to $LAYERFUSION_EMU_TEST_LOG, which .ci/run counts.
    /// </summary>
    public static void NoteTestRuns()
    {
        if (!Active) return;
        var log = Environment.GetEnvironmentVariable("LAYERFUSION_EMU_TEST_LOG");
        var name = TestContext.Current.Test?.TestDisplayName;
        if (string.IsNullOrEmpty(log) || name is null) return;
        lock (typeof(EmulatedCuda)) File.AppendAllText(log, name.ReplaceLineEndings(" ") + "\n");
    }
}
