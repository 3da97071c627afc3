using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Tensors;
using LayerFusion.Cuda.Fusion;
using LayerFusion.Cuda.Runtime;

namespace LayerFusion.Cuda.Bench;

/// <summary>One timed attention variant at one shape.</summary>
/// <param name="WorkingMemoryBytes">device memory the call needs beyond its inputs (arena high water: outputs and intermediates).</param>
public sealed record AttentionBenchResult(string Kernel, string Shape, int Batch, int Queries, int Keys, int Heads, int HeadDim,
    double MedianMs, double MinMs, double SpreadPercent, long WorkingMemoryBytes)
{
    /// <summary>Nominal attention FLOPs, 4 B H M N D (Q K^T and P V); the same count for every variant, so rates compare times.</summary>
    public double Flops => 4.0 * Batch * Heads * Queries * Keys * HeadDim;
    public double Tflops => Flops / (MedianMs * 1e-3) / 1e12;
    public double WorkingMemoryGiB => WorkingMemoryBytes / (double)(1L << 30);
}

/// <summary>
/// Attention kernels at SDXL's self-attention shapes (guided batch 2: 4096 tokens x 10 heads x 64 at
/// 64x64 latents, 1024 x 20 x 64 at 32x32), fp16, CUDA events on the backend's stream: warm-up
/// first (NVRTC compile, module load, arena growth), then the median of repeats on random inputs
/// (never zeros). Variants: the tensor-core kernel plain, with the priors (s, s + c), the SIMT
/// kernel of CudaOps.Attention, and attention with materialized probabilities as diffusers'
/// explicit AttnProcessor does (scores GEMM, softmax, P V GEMM; the head-mean and sum of squares
/// that would follow are NOT included, so the fused-vs-materialized ratio is a lower bound).
/// Each variant runs on a fresh backend so its arena high water is its own working memory.
/// </summary>
public static class PriorAttentionBenchmarks
{
    public static readonly (int Batch, int Tokens, int Heads, int HeadDim)[] SdxlShapes = [(2, 4096, 10, 64), (2, 1024, 20, 64)];

    public const string TcPlain = "tensor-core plain";
    public const string TcSparsity = "tensor-core + s";
    public const string TcPriors = "tensor-core + s + c";
    public const string Simt = "SIMT lf_attention";
    public const string Materialized = "materialized probs";

    public static IReadOnlyList<AttentionBenchResult> Run(CudaDevice device, int warmup = 3, int repeats = 20, Action<string>? log = null,
        IEnumerable<(int Batch, int Tokens, int Heads, int HeadDim)>? shapes = null)
    {
        var results = new List<AttentionBenchResult>();
        foreach (var (b, m, h, d) in shapes ?? SdxlShapes)
            foreach (var kernel in new[] { TcPlain, TcSparsity, TcPriors, Simt, Materialized })
            {
                var r = RunOne(device, kernel, b, m, h, d, warmup, repeats);
                results.Add(r);
                log?.Invoke(string.Create(CultureInfo.InvariantCulture,
                    $"{r.Kernel,-22} {r.Shape,-26} {r.MedianMs,9:F3} ms  {r.Tflops,7:F1} TFLOP/s  ±{r.SpreadPercent:F1}%  {r.WorkingMemoryGiB,7:F3} GiB"));
            }
        return results;
    }

    static AttentionBenchResult RunOne(CudaDevice device, string kernel, int b, int m, int h, int d, int warmup, int repeats)
    {
        using var ops = new CudaOps(device, StorageType.F16);
        var rng = new Random(20261123);
        Tensor R(params int[] shape)
        {
            var data = new float[ShapeUtil.ElementCount(shape)];
            for (int i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1);
            return ops.FromHost(data, shape);
        }
        int inner = h * d;
        using var q = R(b, m, inner);
        using var k = R(b, m, inner);
        using var v = R(b, m, inner);
        using var prior = new CudaPriorAttention(ops);
        using var s = new DeviceFloats(device, (long)b * m);
        using var c = new DeviceFloats(device, (long)b * m);
        // the tensor-core variants write into a preallocated output (no memset inside the timed
        // region); its bytes and the fp32 prior vectors count as their working memory
        using var o = ops.Zeros(b, m, inner);
        long outBytes = (long)b * m * inner * 2;
        long extra = kernel switch { TcPlain => outBytes, TcSparsity => outBytes + (long)b * m * 4, TcPriors => outBytes + 2L * b * m * 4, _ => 0 };

        Action call = kernel switch
        {
            TcPlain => () => prior.Run(q, k, v, h, PriorAttentionOptions.None, output: o),
            TcSparsity => () => prior.Run(q, k, v, h, new PriorAttentionOptions(true), output: o, sparsity: s),
            TcPriors => () => prior.Run(q, k, v, h, new PriorAttentionOptions(true, 76), output: o, sparsity: s, eosColumn: c),
            Simt => () => ops.Attention(q, k, v, h),
            Materialized => () => MaterializedAttention(ops, q, k, v, h),
            _ => throw new ArgumentOutOfRangeException(nameof(kernel)),
        };
        for (int i = 0; i < warmup; i++)
            using (ops.BeginStep()) call();
        var times = new double[repeats];
        using var timer = new CudaTimer(device);
        for (int i = 0; i < repeats; i++)
            using (ops.BeginStep())
            {
                timer.Start();
                call();
                times[i] = timer.Stop();
            }
        Array.Sort(times);
        double median = times[repeats / 2];
        double spread = (times[(int)(repeats * 0.9)] - times[repeats / 10]) / median * 100;
        return new AttentionBenchResult(kernel, $"b{b} m{m} n{m} h{h} d{d}", b, m, m, h, d, median, times[0], spread,
            ops.ArenaStats.HighWater + extra);
    }

    /// <summary>diffusers' AttnProcessor: baddbmm(Q, K^T) * scale, softmax, bmm(P, V), with the [B*H, M, N] map in memory.</summary>
    static Tensor MaterializedAttention(CudaOps ops, Tensor q, Tensor k, Tensor v, int heads)
    {
        int b = q.Shape[0], m = q.Shape[1], n = k.Shape[1], d = q.Shape[2] / heads;
        Tensor Heads(Tensor x, int len) => ops.Permute(x.Reshape(b, len, heads, d), 0, 2, 1, 3);
        var qh = Heads(q, m);
        var kh = Heads(k, n);
        var vh = Heads(v, n);
        var scores = ops.MatMul(qh, kh, transposeB: true, alpha: 1f / MathF.Sqrt(d));
        var p = ops.Softmax(scores);
        var o = ops.MatMul(p, vh);
        return ops.Permute(o, 0, 2, 1, 3);
    }

    public static string ToMarkdown(CudaDevice device, IReadOnlyList<AttentionBenchResult> results)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine(inv, $"Device: {device}; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; fp16 storage, fp32 accumulation; median of CUDA-event times");
        sb.AppendLine();
        sb.AppendLine("| kernel | shape | median ms | min ms | spread (p10-p90) | TFLOP/s | working memory GiB |");
        sb.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var r in results)
            sb.AppendLine(inv, $"| {r.Kernel} | {r.Shape} | {r.MedianMs:F3} | {r.MinMs:F3} | {r.SpreadPercent:F1}% | {r.Tflops:F1} | {r.WorkingMemoryGiB:F3} |");
        sb.AppendLine();
        sb.AppendLine("| shape | prior/plain time (target <= 1.3) | materialized/prior time (target >= 5) | plain TFLOP/s (target >= 300) |");
        sb.AppendLine("| --- | ---: | ---: | ---: |");
        foreach (var (shape, plain, priors, mat) in Ratios(results))
            sb.AppendLine(inv, $"| {shape} | {priors.MedianMs / plain.MedianMs:F2} | {mat.MedianMs / priors.MedianMs:F2} | {plain.Tflops:F1} |");
        return sb.ToString();
    }

    static IEnumerable<(string Shape, AttentionBenchResult Plain, AttentionBenchResult Priors, AttentionBenchResult Materialized)> Ratios(
        IReadOnlyList<AttentionBenchResult> results)
    {
        foreach (var g in results.GroupBy(r => r.Shape))
        {
            var plain = g.FirstOrDefault(r => r.Kernel == TcPlain);
            var priors = g.FirstOrDefault(r => r.Kernel == TcPriors);
            var mat = g.FirstOrDefault(r => r.Kernel == Materialized);
            if (plain is not null && priors is not null && mat is not null) yield return (g.Key, plain, priors, mat);
        }
    }

    /// <summary>perf/results.json: device, date, and each measure with its unit; what this run did not measure is listed as such.</summary>
    public static string ToResultsJson(CudaDevice device, IReadOnlyList<AttentionBenchResult> results)
    {
        var (nvMajor, nvMinor) = NvrtcCompiler.Version;
        return ToResultsJson(device.ToString(), device.Arch, $"{nvMajor}.{nvMinor}", DateTime.UtcNow, results);
    }

    public static string ToResultsJson(string device, int arch, string nvrtc, DateTime date, IReadOnlyList<AttentionBenchResult> results)
    {
        var measures = new JsonArray();
        void Add(string name, string shape, string kernel, double value, string unit) => measures.Add(new JsonObject
        {
            ["name"] = name, ["shape"] = shape, ["kernel"] = kernel, ["value"] = Math.Round(value, 4), ["unit"] = unit,
        });
        foreach (var r in results)
        {
            Add("attention_ms", r.Shape, r.Kernel, r.MedianMs, "ms");
            Add("attention_tflops", r.Shape, r.Kernel, r.Tflops, "TFLOP/s");
            Add("peak_memory_gib", r.Shape, r.Kernel, r.WorkingMemoryGiB, "GiB");
        }
        foreach (var (shape, plain, priors, mat) in Ratios(results))
        {
            Add("prior_to_plain_ratio", shape, $"{TcPriors} / {TcPlain}", priors.MedianMs / plain.MedianMs, "x");
            Add("materialized_to_prior_speedup", shape, $"{Materialized} / {TcPriors}", mat.MedianMs / priors.MedianMs, "x");
        }
        var root = new JsonObject
        {
            ["device"] = device,
            ["arch"] = arch,
            ["date"] = date.ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["nvrtc"] = nvrtc,
            ["storage"] = "fp16",
            ["method"] = "CUDA events on the backend stream; warm-up, then the median of repeats; random inputs",
            ["measures"] = measures,
            ["not_measured"] = new JsonArray("guided_step_ms", "triplet_e2e_s", "unet_eval_ms", "pytorch_unet_side_by_side"),
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
