using System.Text;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// Every kernel specialization the backend uses compiles with the NVRTC found here (CI: Debian's
/// libnvrtc 11.8) for sm_80 and sm_90 with an empty log: no warnings, no remarks. No GPU needed.
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
        Assert.DoesNotContain("warning", result.Log, StringComparison.OrdinalIgnoreCase);
        Assert.Equal("", result.Log);
        // Every extern "C" entry point the backend looks up is in the CUBIN's symbol table.
        var image = Encoding.ASCII.GetString(result.Image);
        foreach (var entry in KernelCatalog.EntryPoints[s.File])
            Assert.Contains(entry + "\0", image);
    }

    /// <summary>
    /// ptxas's resource report: no kernel uses local memory (a stack frame or register spills). One
    /// known exception: lf_timestep_embedding calls precise sinf/cosf, whose reduction path for huge
    /// arguments keeps a 32-byte local array; it runs once per step on a few hundred elements.
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
            var lines = result.Log.Split('\n');
            int entries = 0, clean = 0;
            string? current = null;
            foreach (var l in lines)
            {
                if (l.Contains("Compiling entry function", StringComparison.Ordinal)) { entries++; current = l; }
                else if (l.Contains("bytes stack frame", StringComparison.Ordinal))
                {
                    bool noSpills = System.Text.RegularExpressions.Regex.IsMatch(l, @"\b0 bytes spill stores, 0 bytes spill loads");
                    bool noFrame = System.Text.RegularExpressions.Regex.IsMatch(l, @"\b0 bytes stack frame");
                    bool known = current!.Contains("'lf_timestep_embedding'", StringComparison.Ordinal);
                    bool ok = noSpills && (noFrame || known);
                    if (ok || known) clean++;
                }
            }
            Assert.True(entries == KernelCatalog.EntryPoints[s.File].Length && clean == entries, $"{s} on {arch}:\n{result.Log}");
        }
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
    public void A_warning_is_visible_in_the_log_so_the_empty_log_check_means_something()
    {
        Requires.Nvrtc();
        const string src = "extern \"C\" __global__ void k(float* p) { int unused = 3; p[0] = 1.f; }";
        var result = NvrtcCompiler.Compile("warn.cu", src, [], ["--std=c++17", "-arch=sm_80"]);
        Assert.Contains("warning", result.Log, StringComparison.OrdinalIgnoreCase);
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
