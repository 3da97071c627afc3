using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using LayerFusion.Core.Tensors;
using LayerFusion.Cpu;

namespace LayerFusion.Perf.Cpu;

/// <summary>
/// The per-op table of the CPU side by side (issue 14): each op at the SDXL shape it runs at in the
/// UNet (batch 2, the CFG batch), median wall time of repeats after a warm-up, and its rate — GFLOP/s
/// for the compute-bound ops (2 per multiply-add), GB/s of compulsory traffic (read input + write
/// output, fp32) for the memory-bound ones. perf/torch_cpu_ops.py times the same ops with the same
/// names in PyTorch. Stopwatch, not BenchmarkDotNet: the shared 2-core machine cannot afford its runs.
/// </summary>
public static class OpTable
{
    /// <param name="CpuMs">Median process CPU time (all threads) of one call: on a machine shared with other
    /// jobs the wall time mostly measures the others, the CPU time still the work done.</param>
    public sealed record Row(string Name, string Shape, string Unit, double Work, double MedianMs, double CpuMs)
    {
        public double Rate => Work / (MedianMs * 1e-3) / 1e9;
        public double RatePerCpuSecond => Work / (CpuMs * 1e-3) / 1e9;
    }

    /// <summary>The ops, with the work their rate is computed from (FLOPs or bytes). Shared with the torch script by name.</summary>
    public static IEnumerable<(string Name, string Shape, string Unit, double Work, Func<IOps, Func<Tensor>> Make)> Cases()
    {
        static Func<Tensor> Lin(IOps o, int m, int n, int k)
        {
            var x = Rand(o, 1, m, k); var w = Rand(o, n, k); var b = Rand(o, n);
            return () => o.Linear(x, w, b);
        }
        // Linear at the UNet's shapes: rows = batch 2 x tokens
        foreach (var (m, n, k, what) in new[]
        {
            (2048, 640, 640, "attn proj, 1024 tok"), (2048, 5120, 640, "GEGLU proj 640"), (2048, 640, 2560, "ff out 640"),
            (512, 1280, 1280, "attn proj, 256 tok"), (512, 10240, 1280, "GEGLU proj 1280"), (154, 1280, 2048, "text k/v 1280"),
        })
            yield return ($"gemm {m}x{n}x{k}", what, "GFLOP/s", 2.0 * m * n * k, o => Lin(o, m, n, k));
        foreach (var (c, hw) in new[] { (320, 64), (640, 32), (1280, 16) })
            yield return ($"conv3x3 {c}", $"[2,{c},{hw},{hw}]", "GFLOP/s", 2.0 * 2 * c * c * 9 * hw * hw, o =>
            {
                var x = Rand(o, 2, c, hw, hw); var w = Rand(o, c, c, 3, 3); var b = Rand(o, c);
                return () => o.Conv2d(x, w, b, 1, 1);
            });
        foreach (var (t, c, heads) in new[] { (1024, 640, 10), (4096, 640, 10) })
            yield return ($"self-attn {t}", $"[2,{t},{c}] {heads} heads", "GFLOP/s", 2.0 * 2 * 2 * t * t * c, o =>
            {
                var q = Rand(o, 2, t, c); var k = Rand(o, 2, t, c); var v = Rand(o, 2, t, c);
                return () => o.Attention(q, k, v, heads);
            });
        yield return ("cross-attn 1024x77", "[2,1024,640] x [2,77,640] 10 heads", "GFLOP/s", 2.0 * 2 * 2 * 1024 * 77 * 640, o =>
        {
            var q = Rand(o, 2, 1024, 640); var k = Rand(o, 2, 77, 640); var v = Rand(o, 2, 77, 640);
            return () => o.Attention(q, k, v, 10);
        });
        yield return ("groupnorm+silu", "[2,640,32,32] 32 groups", "GB/s", 2.0 * 4 * 2 * 640 * 1024, o =>
        {
            var x = Rand(o, 2, 640, 32, 32); var g = Rand(o, 640); var b = Rand(o, 640);
            return () => o.GroupNorm(x, 32, g, b, 1e-5f, fuseSilu: true);
        });
        yield return ("geglu", "[2,1024,5120] -> 2560", "GB/s", 4.0 * 2 * 1024 * (5120 + 2560), o =>
        {
            var x = Rand(o, 2, 1024, 5120);
            return () => o.Geglu(x);
        });
        yield return ("layernorm", "[2,1024,640]", "GB/s", 2.0 * 4 * 2 * 1024 * 640, o =>
        {
            var x = Rand(o, 2, 1024, 640); var g = Rand(o, 640); var b = Rand(o, 640);
            return () => o.LayerNorm(x, g, b, 1e-5f);
        });
    }

    static Tensor Rand(IOps o, params int[] shape)
    {
        var rng = new Random(shape.Aggregate(17, (a, b) => a * 31 + b));
        var a = new float[ShapeUtil.ElementCount(shape)];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        return o.FromHost(a, shape);
    }

    public static int Run(string[] args)
    {
        int threads = Environment.ProcessorCount, repeats = 5;
        string? json = null, filter = null;
        int? flashMinKeys = null, flashBlock = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--threads": threads = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--repeats": repeats = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--json": json = args[++i]; break;
                case "--filter": filter = args[++i]; break;
                // the attention's streamed path (CpuOps.FlashMinKeys / FlashKeyBlock), for measuring it against the whole-row path
                case "--flash-min-keys": flashMinKeys = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--flash-block": flashBlock = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                default: Console.Error.WriteLine($"error: unknown option {args[i]}"); return 2;
            }
        }
        if (repeats < 3) { Console.Error.WriteLine("error: --repeats must be at least 3"); return 2; }
        var defaults = new CpuOps(threads);
        var ops = new CpuOps(threads)
        {
            FlashMinKeys = flashMinKeys ?? defaults.FlashMinKeys, FlashKeyBlock = flashBlock ?? defaults.FlashKeyBlock,
        };
        var rows = new List<Row>();
        foreach (var c in Cases())
        {
            if (filter != null && !c.Name.Contains(filter, StringComparison.OrdinalIgnoreCase)) continue;
            var call = c.Make(ops);
            call().Dispose(); // warm-up (JIT, pools)
            var times = new double[repeats];
            var cpu = new double[repeats];
            var proc = Process.GetCurrentProcess();
            for (int r = 0; r < repeats; r++)
            {
                proc.Refresh();
                var c0 = proc.TotalProcessorTime;
                var sw = Stopwatch.StartNew();
                using (call()) { }
                times[r] = sw.Elapsed.TotalMilliseconds;
                proc.Refresh();
                cpu[r] = (proc.TotalProcessorTime - c0).TotalMilliseconds;
            }
            Array.Sort(times);
            Array.Sort(cpu);
            var row = new Row(c.Name, c.Shape, c.Unit, c.Work, times[repeats / 2], cpu[repeats / 2]);
            rows.Add(row);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{row.Name,-22} {row.Shape,-36} {row.MedianMs,9:F2} ms {row.Rate,8:F1} {row.Unit}   cpu {row.CpuMs,9:F2} ms {row.RatePerCpuSecond,8:F1} per cpu-s"));
        }
        if (json != null)
            File.WriteAllText(json, JsonSerializer.Serialize(new
            {
                backend = "LayerFusion.Cpu", threads, repeats,
                ops = rows.Select(r => new { name = r.Name, shape = r.Shape, unit = r.Unit, work = r.Work, median_ms = r.MedianMs, rate = r.Rate, cpu_ms = r.CpuMs, rate_per_cpu_s = r.RatePerCpuSecond }),
            }, new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }
}
