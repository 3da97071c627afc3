using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using LayerFusion.Cuda.Interop;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// The stand-in CUDA libraries themselves (tests/cuda-standin): they export exactly what our
/// bindings call, and refuse what the real driver, NVRTC and cuBLAS refuse, with the real codes.
/// The refusal checks run as a separate process (tests/cuda-standin/selftest.cpp), because a fault
/// in device code poisons the context for the rest of its process, as on the hardware.
/// </summary>
[Trait("device", "CUDA: emulated sm_90 on the CPU where no GPU is installed (tests/cuda-standin)")]
public class StandInTests
{
    static string LibDir()
    {
        EmulatedCuda.SkipUnlessActive();
        return Environment.GetEnvironmentVariable(NativeLibraries.LibDirVariable)!;
    }

    [Fact]
    public void Emulated_stand_ins_export_every_bound_entry_point()
    {
        var dir = LibDir();
        var files = new Dictionary<string, string>
        {
            [NativeLibraries.DriverName] = "libcuda.so.1",
            [NativeLibraries.NvrtcName] = "libnvrtc.so.12",
            [NativeLibraries.CublasName] = "libcublas.so.12",
            [NativeLibraries.CublasLtName] = "libcublasLt.so.12",
        };
        var bindings = typeof(NativeLibraries).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static))
            .Select(m => (m, a: m.GetCustomAttribute<LibraryImportAttribute>()))
            .Where(x => x.a is not null)
            .Select(x => (Library: x.a!.LibraryName, EntryPoint: x.a.EntryPoint ?? x.m.Name)).ToArray();
        foreach (var (lib, file) in files)
        {
            var handle = NativeLibrary.Load(Path.Combine(dir, file));
            var names = bindings.Where(b => b.Library == lib).Select(b => b.EntryPoint).ToArray();
            Assert.NotEmpty(names);
            var missing = names.Where(n => !NativeLibrary.TryGetExport(handle, n, out _)).ToArray();
            Assert.True(missing.Length == 0, $"{file} lacks {string.Join(", ", missing)}");
        }
    }

    [Fact]
    public async Task Emulated_stand_ins_refuse_what_the_real_libraries_refuse_and_a_fault_is_an_error_not_a_crash()
    {
        var dir = LibDir();
        var src = Path.Combine(NvrtcCompileTests.RepoRoot(), "tests", "cuda-standin", "selftest.cpp");
        var tmp = Directory.CreateTempSubdirectory("lf-standin-").FullName;
        try
        {
            var exe = Path.Combine(tmp, "selftest");
            var (code, log) = await RunAsync("g++", ["-std=c++20", "-O1", "-Wall", "-Werror", src, "-o", exe, "-ldl"]);
            Assert.True(code == 0, log);
            (code, log) = await RunAsync(exe, [dir]);
            Assert.True(code == 0, log);
            Assert.DoesNotContain("FAIL", log);
            Assert.True(log.Split('\n').Count(l => l.StartsWith("PASS", StringComparison.Ordinal)) >= 48, log);
            Assert.Contains("past the end of the 4000-byte allocation", log);
            // the layout .ci/run's second pass uses: data against the leading guard page
            (code, log) = await RunAsync(exe, [dir], ("LAYERFUSION_EMU_GUARD", "start"));
            Assert.True(code == 0, log);
            Assert.DoesNotContain("FAIL", log);
            Assert.True(log.Split('\n').Count(l => l.StartsWith("PASS [guard=start]", StringComparison.Ordinal)) >= 5, log);
        }
        finally { Directory.Delete(tmp, true); }
    }

    static async Task<(int, string)> RunAsync(string file, string[] args, params (string Name, string Value)[] env)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (name, value) in env) psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        var ct = TestContext.Current.CancellationToken;
        var err = p.StandardError.ReadToEndAsync(ct);
        var output = await p.StandardOutput.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        return (p.ExitCode, output + await err);
    }
}
