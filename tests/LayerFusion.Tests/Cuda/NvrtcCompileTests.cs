using System.Text;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// Every kernel specialization the backend uses compiles with the NVRTC found here (CI: Debian's
/// libnvrtc 11.8; a device's CUDA 12/13 in perf/device-check.sh) for sm_80 and sm_90 with no
/// diagnostic in its log: no warnings, errors, remarks or deprecations (<see cref="CompileLog"/>).
/// No GPU needed.
/// </summary>
public class NvrtcCompileTests
{
    public static TheoryData<string, string> Specs()
    {
        var data = new TheoryData<string, string>();
        foreach (var arch in new[] { "sm_80", "sm_90" })
            foreach (var spec in KernelCatalog.Representative())
                data.Add(Describe(spec), arch);
        return data;
    }

    static string Describe(ModuleSpec s) => $"{s.File}|{(int)s.Storage}|{string.Join(",", s.Defines)}";

    static ModuleSpec Parse(string d)
    {
        var p = d.Split('|');
        return new ModuleSpec(p[0], (StorageType)int.Parse(p[1]), p[2].Length == 0 ? [] : p[2].Split(','));
    }

    [Theory]
    [MemberData(nameof(Specs))]
    public void Kernel_compiles_without_warnings(string spec, string arch)
    {
        Requires.Nvrtc();
        var s = Parse(spec);
        var result = NvrtcCompiler.Compile(s.File, KernelSources.Get(s.File), KernelSources.Headers, s.Options(arch));
        Assert.True(result.IsCubin);
        Assert.True(result.Image.Length > 0);
        Assert.True(CompileLog.Diagnostics(result.Log).Count == 0, $"{spec} on {arch}:\n{result.Log}");
        // Every extern "C" entry point the backend looks up is in the CUBIN's symbol table.
        var image = Encoding.ASCII.GetString(result.Image);
        foreach (var entry in KernelCatalog.EntryPoints[s.File])
            Assert.Contains(entry + "\0", image);
    }

    /// <summary>
    /// ptxas's resource report: no kernel, and no function a kernel calls, uses local memory (a stack
    /// frame or register spills), and every entry point of the catalog is reported. One known
    /// exception: lf_timestep_embedding calls precise sinf/cosf, whose reduction path for huge
    /// arguments keeps a 32-byte local array (in the kernel, or in a non-inlined __internal_* callee
    /// with newer ptxas); it runs once per step on a few hundred elements. Spills are never allowed.
    /// </summary>
    [Theory]
    [InlineData("sm_80")]
    [InlineData("sm_90")]
    public void Kernels_use_no_stack_frame_and_spill_no_registers(string arch)
    {
        Requires.Nvrtc();
        foreach (var s in KernelCatalog.Representative().Where(s => s.Storage == StorageType.F16))
        {
            var result = NvrtcCompiler.Compile(s.File, KernelSources.Get(s.File), KernelSources.Headers, [.. s.Options(arch), "--ptxas-options=-v"]);
            var failures = LocalMemoryFailures(CompileLog.Resources(result.Log), KernelCatalog.EntryPoints[s.File]);
            Assert.True(failures.Count == 0, $"{s} on {arch}: {string.Join("; ", failures)}\n{result.Log}");
        }
    }

    const string KnownFrame = "lf_timestep_embedding";

    /// <summary>What is wrong with a module's ptxas report: entries missing or unexpected, spills, stack frames.</summary>
    internal static List<string> LocalMemoryFailures(IReadOnlyList<PtxasFunction> report, IReadOnlyCollection<string> expectedEntries)
    {
        var failures = new List<string>();
        var entries = report.Where(f => f.IsEntry).Select(f => f.Name).ToHashSet();
        foreach (var e in expectedEntries.Where(e => !entries.Contains(e))) failures.Add($"no resource report for entry {e}");
        foreach (var e in entries.Where(e => !expectedEntries.Contains(e))) failures.Add($"unexpected entry {e}");
        bool knownModule = entries.Contains(KnownFrame);
        foreach (var f in report)
        {
            if (f.SpillStores != 0 || f.SpillLoads != 0) failures.Add($"{f.Name} spills {f.SpillStores}+{f.SpillLoads} bytes");
            bool frameAllowed = f.IsEntry ? f.Name == KnownFrame : knownModule && f.Name.StartsWith("__internal", StringComparison.Ordinal);
            if (f.StackFrame != 0 && !frameAllowed) failures.Add($"{f.Name} has a {f.StackFrame}-byte stack frame");
        }
        return failures;
    }

    [Fact]
    public void The_resource_report_reads_the_same_from_ptxas_11_12_and_13()
    {
        // ptxas 11.8 (what CI runs)
        const string v118 = """
            ptxas info    : 0 bytes gmem
            ptxas info    : Compiling entry function 'lf_mul' for 'sm_90'
            ptxas info    : Function properties for lf_mul
            ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
            ptxas info    : Used 38 registers
            ptxas info    : Compiling entry function 'lf_add' for 'sm_90'
            ptxas info    : Function properties for lf_add
            ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
            ptxas info    : Used 38 registers
            """;
        // ptxas 12.x / 13.x: barriers, smem/cmem, compile times, callee reports before the entry's own
        const string v13 = """
            ptxas info    : 0 bytes gmem
            ptxas info    : Compiling entry function 'lf_mul' for 'sm_90'
            ptxas info    : Function properties for lf_mul
                0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
            ptxas info    : Used 40 registers, used 0 barriers, 400 bytes cmem[0]
            ptxas info    : Compile time = 3.114 ms
            ptxas info    : Compiling entry function 'lf_add' for 'sm_90'
            ptxas info    : Function properties for __internal_helper
                0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
            ptxas info    : Function properties for lf_add
                0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
            ptxas info    : Used 32 registers, used 1 barriers, 36864 bytes smem, 400 bytes cmem[0]
            ptxas info    : Compile time = 1.002 ms
            """;
        foreach (var log in new[] { v118, v13 })
        {
            var report = CompileLog.Resources(log);
            Assert.Equal(["lf_mul", "lf_add"], report.Where(f => f.IsEntry).Select(f => f.Name));
            Assert.All(report.Where(f => f.IsEntry), f => Assert.InRange(f.Registers ?? 0, 32, 40));
            Assert.Empty(LocalMemoryFailures(report, ["lf_mul", "lf_add"]));
            Assert.Empty(CompileLog.Diagnostics(log));
        }
        // what must still fail, in either format
        var spilled = CompileLog.Resources(v13.Replace("for lf_add\n    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads",
            "for lf_add\n    0 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads"));
        Assert.Contains(LocalMemoryFailures(spilled, ["lf_mul", "lf_add"]), f => f.Contains("lf_add spills 8+8 bytes"));
        var calleeFrame = CompileLog.Resources(v13.Replace("for __internal_helper\n    0 bytes", "for __internal_helper\n    32 bytes"));
        Assert.Contains(LocalMemoryFailures(calleeFrame, ["lf_mul", "lf_add"]), f => f.Contains("__internal_helper has a 32-byte stack frame"));
        Assert.Contains(LocalMemoryFailures(CompileLog.Resources(v118), ["lf_mul", "lf_add", "lf_sub"]), f => f.Contains("no resource report for entry lf_sub"));
        Assert.NotEmpty(CompileLog.Diagnostics(v118 + "\nptxas warning : Registers are spilled to local memory in function 'lf_mul', 8 bytes spill stores, 8 bytes spill loads"));
        Assert.NotEmpty(CompileLog.Diagnostics("k.cu(1): warning #177-D: variable \"unused\" was declared but never referenced"));
        Assert.NotEmpty(CompileLog.Diagnostics("k.cu(3): warning #1444-D: function \"f\" was declared deprecated"));
    }

    [Fact]
    public void Every_kernel_file_is_in_the_catalog_and_embedded()
    {
        var onDisk = Directory.GetFiles(Path.Combine(RepoRoot(), "kernels"), "*.cu").Select(Path.GetFileName).Order().ToArray();
        Assert.Equal(onDisk, KernelSources.SourceFiles.ToArray());
        Assert.Equal(onDisk, KernelCatalog.EntryPoints.Keys.Order().ToArray());
        Assert.Contains(KernelSources.Headers, h => h.Key == "lf_common.cuh");
    }

    [Fact]
    public void Kernels_include_no_toolkit_headers()
    {
        foreach (var f in KernelSources.SourceFiles)
            foreach (var line in KernelSources.Get(f).Split('\n').Where(l => l.TrimStart().StartsWith("#include", StringComparison.Ordinal)))
                Assert.Matches("^\\s*#include \"lf_[a-z_]+\\.cuh\"\\s*$", line);
    }

    [Fact]
    public void A_warning_is_visible_in_the_log_so_the_diagnostics_check_means_something()
    {
        Requires.Nvrtc();
        const string src = "extern \"C\" __global__ void k(float* p) { int unused = 3; p[0] = 1.f; }";
        var result = NvrtcCompiler.Compile("warn.cu", src, [], ["--std=c++17", "-arch=sm_80"]);
        Assert.Contains("warning", result.Log, StringComparison.OrdinalIgnoreCase);
        Assert.NotEmpty(CompileLog.Diagnostics(result.Log));
    }

    [Fact]
    public void A_compile_error_throws_with_the_nvrtc_log()
    {
        Requires.Nvrtc();
        const string src = "extern \"C\" __global__ void k(float* p) { p[0] = undefined_name; }";
        var e = Assert.Throws<KernelCompileException>(() => NvrtcCompiler.Compile("broken.cu", src, [], ["-arch=sm_80"]));
        Assert.Contains("undefined_name", e.Message);
        Assert.Contains("broken.cu", e.Message);
        Assert.Contains("-arch=sm_80", e.Message);
    }

    [Fact]
    public void Nvrtc_reports_its_version_and_sm_80_and_sm_90_targets()
    {
        Requires.Nvrtc();
        var (major, _) = NvrtcCompiler.Version;
        Assert.True(major >= 11);
        var archs = NvrtcCompiler.SupportedArchs();
        Assert.Contains(80, archs);
        Assert.Contains(90, archs);
    }

    internal static string RepoRoot()
    {
        // LAYERFUSION_REPO_ROOT (perf/device-check.sh), above the test binaries (dotnet test), or above the working directory
        var given = Environment.GetEnvironmentVariable("LAYERFUSION_REPO_ROOT");
        if (!string.IsNullOrEmpty(given) && File.Exists(Path.Combine(given, "LayerFusion.Native.sln"))) return given;
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            var dir = new DirectoryInfo(start);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "LayerFusion.Native.sln"))) dir = dir.Parent;
            if (dir is not null) return dir.FullName;
        }
        throw new DirectoryNotFoundException("repository root (LayerFusion.Native.sln) not found above the test binaries or the working directory");
    }
}
