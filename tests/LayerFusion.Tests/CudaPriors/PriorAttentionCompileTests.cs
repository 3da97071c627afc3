using System.Text;
using System.Text.RegularExpressions;
using LayerFusion.Core.Fusion;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Fusion;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.CudaPriors;

/// <summary>
/// The tensor-core prior attention and the mask kernels compile with the NVRTC found here (CI:
/// Debian's libnvrtc 11.8; CUDA 12/13 on a device) for sm_80 and sm_90 with no diagnostic in the log
/// (no warnings; <see cref="LayerFusion.Tests.Cuda.CompileLog"/>), in every specialization the engine
/// and the benchmark use. No GPU needed.
/// </summary>
public class PriorAttentionCompileTests
{
    /// <summary>(storage, headDim, warps, heads, sparsity, eos, keyBias): SDXL's shapes and the option corners.</summary>
    public static IEnumerable<(StorageType, int, int, int, bool, bool, bool)> Variants()
    {
        foreach (var t in new[] { StorageType.F16, StorageType.BF16 })
        {
            yield return (t, 64, 4, 10, false, false, false);   // plain, SDXL level 1
            yield return (t, 64, 4, 20, false, false, false);   // plain, SDXL level 2
            yield return (t, 64, 4, 10, true, true, false);     // prior layer + <EOS>
            yield return (t, 64, 1, 20, true, false, false);    // batch-1 prior pass, narrow blocks
            yield return (t, 64, 2, 20, false, true, false);    // cross-attention content prior
            yield return (t, 64, 4, 10, false, false, true);    // sharing key bias
            yield return (t, 128, 2, 5, true, true, true);      // widest head dim, everything on
            yield return (t, 80, 4, 3, true, false, true);      // odd multiple of 16
        }
    }

    public static TheoryData<string, string> Specs()
    {
        var data = new TheoryData<string, string>();
        foreach (var arch in new[] { "sm_80", "sm_90" })
            foreach (var (t, d, w, h, s, e, kb) in Variants())
                data.Add($"{(int)t}|{d}|{w}|{h}|{s}|{e}|{kb}", arch);
        return data;
    }

    static ModuleSpec Parse(string spec)
    {
        var p = spec.Split('|');
        return CudaPriorAttention.Spec((StorageType)int.Parse(p[0]), int.Parse(p[1]), int.Parse(p[2]), int.Parse(p[3]),
            new PriorAttentionOptions(bool.Parse(p[4]), bool.Parse(p[5]) ? 76 : -1), bool.Parse(p[6]));
    }

    [Theory, MemberData(nameof(Specs))]
    public void Prior_attention_compiles_without_warnings(string spec, string arch)
    {
        Requires.Nvrtc();
        var s = Parse(spec);
        var result = NvrtcCompiler.Compile(s.File, KernelSources.Get(s.File), KernelSources.Headers, s.Options(arch));
        Assert.True(result.IsCubin);
        Assert.True(LayerFusion.Tests.Cuda.CompileLog.Diagnostics(result.Log).Count == 0, result.Log);
        Assert.Contains("lf_prior_attention\0", Encoding.ASCII.GetString(result.Image));
    }

    /// <summary>
    /// ptxas' report (--ptxas-options=-v, read by <see cref="LayerFusion.Tests.Cuda.CompileLog"/> for every
    /// toolkit): the entry's registers, its stack frame, and the spill bytes of the entry and every callee.
    /// </summary>
    static (int Registers, int Frame, int Spills) PtxasReport(string file, string source, IReadOnlyList<KeyValuePair<string, string>> headers,
        IEnumerable<string> options, string entry = "lf_prior_attention")
    {
        var log = NvrtcCompiler.Compile(file, source, headers, [.. options, "--ptxas-options=-v"]).Log;
        var report = LayerFusion.Tests.Cuda.CompileLog.Resources(log);
        var e = report.FirstOrDefault(f => f.IsEntry && f.Name == entry);
        Assert.True(e is { Registers: not null }, $"no ptxas resource report for {entry} in:\n{log}");
        return (e.Registers!.Value, report.Sum(f => f.StackFrame), report.Sum(f => f.SpillStores + f.SpillLoads));
    }

    [Theory, MemberData(nameof(Specs))]
    public void Prior_attention_has_no_stack_frame_or_spills_and_fits_the_register_file(string spec, string arch)
    {
        Requires.Nvrtc();
        var s = Parse(spec);
        var (regs, frame, spills) = PtxasReport(s.File, KernelSources.Get(s.File), KernelSources.Headers, s.Options(arch));
        TestContext.Current.SendDiagnosticMessage($"{arch} {string.Join(" ", s.Defines)} [{s.Storage}]: {regs} registers");
        Assert.Equal(0, frame);
        Assert.Equal(0, spills);
        Assert.InRange(regs, 1, 255);   // a report was read; more than 255 would show as spills above
    }

    [Fact]
    public void The_report_shows_a_stack_frame_when_there_is_one()
    {
        Requires.Nvrtc();
        // a register array written at run-time indices must live in local memory: the check has to see it
        const string src = """
            extern "C" __global__ void k(float* p, int i)
            {
                float a[64];
                for (int j = 0; j < 64; ++j) a[j] = 0.f;
                for (int j = 0; j < 64; ++j) a[(j * i) & 63] += p[j];
                p[0] = a[i & 63] + a[(i + 1) & 63];
            }
            """;
        Assert.True(PtxasReport("frame.cu", src, [], ["--std=c++17", "-arch=sm_80"], entry: "k").Frame >= 256);
    }

    [Theory, MemberData(nameof(Specs))]
    public void Prior_attention_ptx_uses_tensor_cores_and_no_local_memory(string spec, string arch)
    {
        Requires.Nvrtc();
        // local memory (a register array indexed at run time, or spills at the PTX level) would be
        // an order of magnitude slower; ptxas spills are only visible on the device (resource report)
        var s = Parse(spec);
        var ptx = NvrtcCompiler.Compile(s.File, KernelSources.Get(s.File), KernelSources.Headers, s.Options(arch.Replace("sm_", "compute_")));
        Assert.False(ptx.IsCubin);
        var text = Encoding.ASCII.GetString(ptx.Image);
        // the instructions our inline PTX asks for, and no local state space: no .local declaration
        // (a local depot) and no ld/st.local, whatever else a newer NVRTC writes (comments, .loc lines)
        var code = string.Join("\n", text.Split('\n').Where(l => !l.TrimStart().StartsWith("//", StringComparison.Ordinal)));
        var mma = s.Storage == StorageType.F16 ? "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" : "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32";
        Assert.Contains(mma, code);
        Assert.Contains("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16", code);
        Assert.Contains("cp.async.cg.shared.global", code);
        Assert.DoesNotMatch(@"\.local\b", code);
    }

    [Theory]
    [InlineData("sm_80")]
    [InlineData("sm_90")]
    public void Mask_kernels_compile_without_warnings(string arch)
    {
        Requires.Nvrtc();
        foreach (var t in Enum.GetValues<StorageType>())
        {
            var s = KernelCatalog.Plain(CudaPriorAttention.MasksFile, t);
            var result = NvrtcCompiler.Compile(s.File, KernelSources.Get(s.File), KernelSources.Headers, s.Options(arch));
            Assert.True(LayerFusion.Tests.Cuda.CompileLog.Diagnostics(result.Log).Count == 0, result.Log);
            var image = Encoding.ASCII.GetString(result.Image);
            foreach (var entry in KernelCatalog.EntryPoints[KernelCatalog.PriorMasks]) Assert.Contains(entry + "\0", image);
        }
    }

    [Fact]
    public void Unsupported_specializations_fail_to_compile_with_a_clear_message()
    {
        Requires.Nvrtc();
        var fp32 = CudaPriorAttention.Spec(StorageType.F32, 64, 4, 10, PriorAttentionOptions.None, false);
        var e = Assert.Throws<KernelCompileException>(() => NvrtcCompiler.Compile(fp32.File, KernelSources.Get(fp32.File), KernelSources.Headers, fp32.Options("sm_80")));
        Assert.Contains("fp16", e.Log);
        var odd = CudaPriorAttention.Spec(StorageType.F16, 40, 4, 10, PriorAttentionOptions.None, false);
        e = Assert.Throws<KernelCompileException>(() => NvrtcCompiler.Compile(odd.File, KernelSources.Get(odd.File), KernelSources.Headers, odd.Options("sm_80")));
        Assert.Contains("multiple of 16", e.Log);
    }

    [Fact]
    public void Host_side_choices_fit_the_kernel()
    {
        Assert.Equal(36864, CudaPriorAttention.SharedBytes(64, 4, 10, false));
        Assert.Equal(36864 + 2 * 20 * 64 * 4, CudaPriorAttention.SharedBytes(64, 4, 20, true));
        Assert.True(CudaPriorAttention.SharedBytes(64, 4, 20, true) <= 48 * 1024, "SDXL's widest prior layer stays under the default 48 KiB");
        // plain SDXL attention fills the chip with 4 warps (1280 blocks); with all heads in one block
        // a guided batch of 2 over 4096 queries has 128 tiles of 64 rows (< 132 SMs), so 2 warps
        // (256 tiles); the batch-1 prior pass needs 1-warp blocks (256 tiles of 16 rows)
        Assert.Equal(4, CudaPriorAttention.ChooseWarps(4096, 2, 10, 132));
        Assert.Equal(2, CudaPriorAttention.ChooseWarps(4096, 2, 1, 132));
        Assert.Equal(1, CudaPriorAttention.ChooseWarps(4096, 1, 1, 132));
        Assert.Equal(4, CudaPriorAttention.ChooseWarps(4096, 6, 1, 132));
        Assert.Throws<NotSupportedException>(() => CudaPriorAttention.CheckHeadDim(40));
        Assert.Throws<NotSupportedException>(() => CudaPriorAttention.CheckHeadDim(160));
    }
}
