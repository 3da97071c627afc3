using System.Text;
using System.Text.RegularExpressions;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// The audit of issue 9: every kernel in kernels/ and every cuBLAS/cuBLASLt entry the backend calls
/// ran at least once on the emulated device with a multi-block grid and a tail (a last block or tile
/// only partly inside the problem), read from the launches the stand-in driver records
/// (LAYERFUSION_EMU_LAUNCH_LOG: kernel name, grid, block, each parameter as an integer of its size;
/// one line per library GEMM). Explicit: it audits a whole run, so `.ci/run` runs it after the suite
/// with LAYERFUSION_EMU_AUDIT_LOG naming that run's log; run alone it first runs the CUDA test
/// namespaces in a child process to make one.
/// </summary>
[Trait("device", "CUDA: emulated sm_90 on the CPU where no GPU is installed (tests/cuda-standin)")]
public partial class LaunchAuditTests
{
    /// <summary>One launch: grid, block, parameters (pointers and floats included, as raw integers).</summary>
    public sealed record Launch(string Kernel, long[] Grid, long[] Block, long[] P)
    {
        public long Blocks => Grid[0] * Grid[1] * Grid[2];
    }

    // Per kernel: (multi-block, tail) of a launch. Grid-stride kernels (LF_GRID_STRIDE over `extent`):
    // the last sweep is partial when extent % (grid * block) != 0. Row kernels (one block per row of
    // `len`): the block's last pass over the row is partial when len % block != 0. Tile kernels: rows
    // per block (and the key tile) do not divide the sequence lengths.
    static (bool Multi, bool Tail) GridStride(Launch l, long extent) => (l.Grid[0] > 1, extent % (l.Grid[0] * l.Block[0]) != 0);
    static (bool Multi, bool Tail) Rows(Launch l, long len) => (l.Blocks > 1, len % l.Block[0] != 0);

    static readonly Dictionary<string, Func<Launch, (bool Multi, bool Tail)>> Rules = new()
    {
        ["lf_affine"] = l => GridStride(l, l.P[2]),
        ["lf_clamp"] = l => GridStride(l, l.P[2]),
        ["lf_silu"] = l => GridStride(l, l.P[2]),
        ["lf_gelu_erf"] = l => GridStride(l, l.P[2]),
        ["lf_gelu_tanh"] = l => GridStride(l, l.P[2]),
        ["lf_quick_gelu"] = l => GridStride(l, l.P[2]),
        ["lf_geglu"] = l => GridStride(l, l.P[2] * l.P[3]),
        ["lf_add"] = l => GridStride(l, l.P[3]),
        ["lf_sub"] = l => GridStride(l, l.P[3]),
        ["lf_mul"] = l => GridStride(l, l.P[3]),
        ["lf_im2col"] = l => GridStride(l, l.P[2] * l.P[3] * l.P[6] * l.P[7] * l.P[10] * l.P[11]),
        ["lf_prior_blend"] = l => GridStride(l, l.P[7]),
        ["lf_f32_to_storage"] = l => GridStride(l, l.P[2]),
        ["lf_po_resize_bilinear"] = l => GridStride(l, l.P[6]),
        ["lf_po_blend"] = l => GridStride(l, l.P[8]),
        ["lf_po_exclusion_bias"] = l => GridStride(l, l.P[4]),
        ["lf_upsample2x_nearest"] = l => GridStride(l, l.P[2] * 4 * l.P[3] * l.P[4]),
        ["lf_timestep_embedding"] = l => GridStride(l, l.P[6] * l.P[7]),
        ["lf_step_combine"] = l => GridStride(l, l.P[3]),
        ["lf_step_select_row"] = l => GridStride(l, l.P[2]),
        ["lf_gather"] = l => GridStride(l, l.P[3] * l.P[4]),
        ["lf_permute"] = l => GridStride(l, l.P[2]),
        ["lf_copy_rows"] = l => GridStride(l, l.P[6] * l.P[7]),
        ["lf_softmax"] = l => Rows(l, l.P[2]),
        ["lf_layer_norm"] = l => Rows(l, l.P[4]),
        ["lf_group_norm"] = l => Rows(l, l.P[4] / l.P[6] * l.P[5]),
        ["lf_density_prior"] = l => Rows(l, l.P[2]),
        ["lf_prior_masks"] = l => Rows(l, l.P[4]),
        ["lf_po_density"] = l => Rows(l, l.P[2]),
        ["lf_po_masks"] = l => Rows(l, l.P[4]),
        // 4 warps x RowsPerWarp query rows per block (a multiple of 4), keys in tiles of 32
        ["lf_attention"] = l => (l.Blocks > 1, l.P[5] % 4 != 0 && l.P[6] % 32 != 0),
        // 16 query rows per warp, keys in mma tiles of 16
        ["lf_prior_attention"] = l => (l.Blocks > 1, l.P[8] % (16 * (l.Block[0] / 32)) != 0 && l.P[9] % 16 != 0),
        // one query row per warp
        ["lf_attention_stats"] = l => (l.Blocks > 1, l.P[5] % (l.Block[0] / 32) != 0),
    };

    // Kernels that are one thread by design: no grid or tail to audit (listed, with the reason, in the table)
    static readonly Dictionary<string, string> SingleThread = new()
    {
        ["lf_step_advance"] = "one thread: advances the device step counter",
    };

    // GEMMs: m, n, k; "multi-block" = more than one 16x16 output tile, "tail" = m, n and k none a multiple of 16
    static readonly string[] GemmEntries = ["cublasGemmEx", "cublasGemmStridedBatchedEx", "cublasLtMatmul"];

    [GeneratedRegex(@"__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(")]
    private static partial Regex KernelDecl();
    [GeneratedRegex(@"^LF_BINARY\((\w+),", RegexOptions.Multiline)]
    private static partial Regex BinaryDecl();

    /// <summary>Every kernel entry point defined in kernels/*.cu.</summary>
    public static SortedSet<string> KernelsInSources()
    {
        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var f in Directory.GetFiles(Path.Combine(NvrtcCompileTests.RepoRoot(), "kernels"), "*.cu"))
        {
            var text = File.ReadAllText(f);
            foreach (Match m in KernelDecl().Matches(text)) if (m.Groups[1].Value != "name") names.Add(m.Groups[1].Value);
            foreach (Match m in BinaryDecl().Matches(text)) names.Add(m.Groups[1].Value);
        }
        return names;
    }

    [Fact]
    public void Kernel_sources_all_have_an_audit_rule()
    {
        var kernels = KernelsInSources();
        Assert.True(kernels.Count >= 30, string.Join(", ", kernels));
        var missing = kernels.Where(k => !Rules.ContainsKey(k) && !SingleThread.ContainsKey(k)).ToArray();
        Assert.True(missing.Length == 0, $"kernels without a launch-audit rule in {nameof(LaunchAuditTests)}: {string.Join(", ", missing)}");
        var stale = Rules.Keys.Concat(SingleThread.Keys).Where(k => !kernels.Contains(k)).ToArray();
        Assert.True(stale.Length == 0, $"audit rules for kernels no longer in kernels/: {string.Join(", ", stale)}");
    }

    [Fact(Explicit = true)]
    public void Emulated_every_kernel_and_gemm_entry_ran_with_a_multi_block_grid_and_a_tail()
    {
        EmulatedCuda.SkipUnlessActive();
        var log = Environment.GetEnvironmentVariable("LAYERFUSION_EMU_AUDIT_LOG");
        string? made = null;
        if (string.IsNullOrWhiteSpace(log))
        {
            made = log = Path.Combine(Path.GetTempPath(), $"lf-launch-audit-{Environment.ProcessId}.log");
            var (code, output) = EmulatedCuda.RunTestsInChild(
                ["-namespace", "LayerFusion.Tests.Cuda", "-namespace", "LayerFusion.Tests.CudaPriors", "-namespace", "LayerFusion.Tests.CudaModels"],
                env => env["LAYERFUSION_EMU_LAUNCH_LOG"] = made);
            Assert.True(code == 0, $"the CUDA tests whose launches are audited failed:\n{output}");
        }
        try
        {
            Assert.True(File.Exists(log), $"no launch log at {log}");
            var (table, missing) = Audit(File.ReadAllLines(log));
            TestContext.Current.TestOutputHelper?.WriteLine(table);
            var out_ = Environment.GetEnvironmentVariable("LAYERFUSION_EMU_AUDIT_TABLE");
            if (!string.IsNullOrWhiteSpace(out_)) File.WriteAllText(out_, table);
            Assert.True(missing.Count == 0, $"never launched with a multi-block grid and a tail: {string.Join(", ", missing)}\n{table}");
        }
        finally { if (made is not null) File.Delete(made); }
    }

    /// <summary>The audit table (markdown) and what lacks a multi-block launch with a tail.</summary>
    public static (string Table, List<string> Missing) Audit(IEnumerable<string> lines)
    {
        var launches = new Dictionary<string, List<Launch>>(StringComparer.Ordinal);
        var gemms = new Dictionary<string, List<long[]>>(StringComparer.Ordinal);
        foreach (var line in lines)
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 8 && f[0] == "kernel")
            {
                var n = f.Skip(2).Select(v => long.TryParse(v, out var x) ? x : 0).ToArray();
                var l = new Launch(f[1], n[..3], n[3..6], n[6..]);
                (launches.TryGetValue(l.Kernel, out var list) ? list : launches[l.Kernel] = []).Add(l);
            }
            else if (f.Length == 6 && f[0] == "gemm")
            {
                var n = f.Skip(2).Select(long.Parse).ToArray();
                (gemms.TryGetValue(f[1], out var list) ? list : gemms[f[1]] = []).Add(n);
            }
        }
        var sb = new StringBuilder("| kernel / GEMM entry | launches | multi-block | with a tail | both in one launch (example) |\n| --- | ---: | ---: | ---: | --- |\n");
        var missing = new List<string>();
        foreach (var k in KernelsInSources())
        {
            var list = launches.GetValueOrDefault(k) ?? [];
            if (SingleThread.TryGetValue(k, out var why))
            {
                if (list.Count == 0) missing.Add(k);
                sb.Append($"| {k} | {list.Count} | - | - | {why} |\n");
                continue;
            }
            var rule = Rules.GetValueOrDefault(k);
            var judged = rule is null ? [] : list.Select(l => (l, r: rule(l))).ToList();
            var both = judged.FirstOrDefault(x => x.r.Multi && x.r.Tail).l;
            if (both is null) missing.Add(k);
            sb.Append($"| {k} | {list.Count} | {judged.Count(x => x.r.Multi)} | {judged.Count(x => x.r.Tail)} | " +
                      (both is null ? "**none**" : $"grid {string.Join("x", both.Grid)}, block {both.Block[0]}, params {string.Join(" ", both.P.Where(v => Math.Abs(v) < 1 << 24))}") + " |\n");
        }
        foreach (var g in GemmEntries)
        {
            var list = gemms.GetValueOrDefault(g) ?? [];
            bool Multi(long[] s) => s[0] > 16 || s[1] > 16;
            bool Tail(long[] s) => s[0] % 16 != 0 && s[1] % 16 != 0 && s[2] % 16 != 0;
            var both = list.FirstOrDefault(s => Multi(s) && Tail(s));
            if (both is null) missing.Add(g);
            sb.Append($"| {g} | {list.Count} | {list.Count(Multi)} | {list.Count(Tail)} | " +
                      (both is null ? "**none**" : $"m {both[0]}, n {both[1]}, k {both[2]}, batch {both[3]}") + " |\n");
        }
        return (sb.ToString(), missing);
    }
}
