using System.Globalization;
using System.Text;
using System.Text.Json;
using LayerFusion.Core.Tensors;
using LayerFusion.Cuda.Interop;
using LayerFusion.Cuda.Runtime;

namespace LayerFusion.Cuda.Bench;

/// <summary>One timed op: median and minimum of CUDA-event times, and its work in FLOP or bytes.</summary>
public sealed record BenchResult(string Op, string Shape, string Storage, double MedianMs, double MinMs, double Work, string Unit)
{
    /// <summary>TFLOP/s for "flop" work, GB/s for "byte" work, at the median time.</summary>
    public double Rate => Unit == "flop" ? Work / (MedianMs * 1e-3) / 1e12 : Work / (MedianMs * 1e-3) / 1e9;
    public string RateUnit => Unit == "flop" ? "TFLOP/s" : "GB/s";
}

/// <summary>
/// Per-kernel timings at SDXL 1024x1024 shapes (fp16 storage unless noted), with CUDA events on the
/// backend's stream: warm-up first (module load, arena growth), then the median of repeats, each
/// repeat inside its own arena step so no driver allocation is timed. Inputs are random, never zeros.
/// Work counts the fewest bytes an op must move (each input read once, output written once) or its
/// FLOPs, so the rates compare against the device ceilings measured by <see cref="MeasureCeilings"/>.
/// </summary>
public static class KernelBenchmarks
{
    public static IReadOnlyList<BenchResult> Run(CudaOps ops, int warmup = 3, int repeats = 15, Action<string>? log = null)
    {
        var rng = new Random(1234);
        var results = new List<BenchResult>();
        int es = HostConvert.SizeOf(ops.Storage);
        string st = ops.Storage.ToString();

        Tensor R(params int[] shape)
        {
            var data = new float[ShapeUtil.ElementCount(shape)];
            for (int i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1);
            return ops.FromHost(data, shape);
        }

        void Bench(string op, string shape, double work, string unit, Func<Tensor> f)
        {
            for (int i = 0; i < warmup; i++)
                using (ops.BeginStep()) f();
            var times = new double[repeats];
            using var timer = new CudaTimer(ops.Device);
            for (int i = 0; i < repeats; i++)
                using (ops.BeginStep())
                {
                    timer.Start();
                    f();
                    times[i] = timer.Stop();
                }
            Array.Sort(times);
            var r = new BenchResult(op, shape, st, times[repeats / 2], times[0], work, unit);
            results.Add(r);
            log?.Invoke($"{op,-28} {shape,-36} {r.MedianMs,9:F3} ms  {r.Rate,8:F1} {r.RateUnit}");
        }

        // GEMMs (cuBLAS / cuBLASLt bias epilogue)
        foreach (var (rows, inF, outF, bias) in new[] { (8192, 640, 640, false), (8192, 640, 5120, true), (8192, 2560, 640, true), (2048, 1280, 10240, true) })
        {
            using var x = R(rows, inF);
            using var w = R(outF, inF);
            using var b = bias ? R(outF) : null;
            Bench(bias ? "linear+bias" : "linear", $"[{rows},{inF}]x[{outF},{inF}]^T", 2.0 * rows * inF * outF, "flop", () => ops.Linear(x, w, b));
        }
        // convs (im2col + GEMM; 1x1 direct)
        foreach (var (n, c, hw, o, k) in new[] { (2, 320, 128, 320, 3), (2, 640, 64, 640, 3), (2, 1280, 32, 1280, 3), (2, 640, 64, 1280, 1) })
        {
            using var x = R(n, c, hw, hw);
            using var w = R(o, c, k, k);
            using var b = R(o);
            Bench($"conv2d {k}x{k}", $"[{n},{c},{hw},{hw}]->{o}", 2.0 * n * o * hw * hw * c * k * k, "flop", () => ops.Conv2d(x, w, b, 1, k / 2));
        }
        // attention (flash-style, no score matrix)
        foreach (var (b, m, nk, h, d) in new[] { (2, 4096, 4096, 10, 64), (2, 1024, 1024, 20, 64), (2, 4096, 77, 10, 64), (2, 1024, 77, 20, 64) })
        {
            using var q = R(b, m, h * d);
            using var k = R(b, nk, h * d);
            using var v = R(b, nk, h * d);
            Bench("attention", $"b{b} m{m} n{nk} h{h} d{d}", 4.0 * b * h * m * nk * d, "flop", () => ops.Attention(q, k, v, h));
        }
        // memory-bound ops: bytes = inputs read once + output written once
        {
            using var x = R(2, 320, 128, 128);
            using var g = R(320);
            using var be = R(320);
            long bytes = x.ElementCount * es;
            Bench("groupnorm+silu", "[2,320,128,128] g32", 2.0 * bytes, "byte", () => ops.GroupNorm(x, 32, g, be, 1e-5f, true));
            using var bias = R(320, 1, 1);
            Bench("add (broadcast)", "[2,320,128,128]+[320,1,1]", 2.0 * bytes, "byte", () => ops.Add(x, bias));
            Bench("silu", "[2,320,128,128]", 2.0 * bytes, "byte", () => ops.Silu(x));
        }
        {
            using var x = R(8192, 640);
            using var g = R(640);
            using var be = R(640);
            Bench("layernorm", "[8192,640]", 2.0 * x.ElementCount * es, "byte", () => ops.LayerNorm(x, g, be, 1e-5f));
        }
        {
            using var x = R(8192, 10240);
            Bench("geglu", "[8192,10240]->[8192,5120]", 1.5 * x.ElementCount * es, "byte", () => ops.Geglu(x));
        }
        {
            using var x = R(2 * 10 * 64, 4096);
            Bench("softmax", "[1280,4096]", 2.0 * x.ElementCount * es, "byte", () => ops.Softmax(x));
        }
        {
            using var x = R(2, 1280, 64, 64);
            Bench("upsample2x", "[2,1280,64,64]", 5.0 * x.ElementCount * es, "byte", () => ops.Upsample2xNearest(x));
        }
        {
            using var x = R(2, 4096, 10, 64);
            Bench("permute", "[2,4096,10,64]->(0,2,1,3)", 2.0 * x.ElementCount * es, "byte", () => ops.Permute(x, 0, 2, 1, 3));
        }
        return results;
    }

    /// <summary>The device's own ceilings: a 1 GiB device-to-device copy (bytes read + written) and an 8192^3 GEMM.</summary>
    public static IReadOnlyList<BenchResult> MeasureCeilings(CudaOps ops, Action<string>? log = null)
    {
        var results = new List<BenchResult>();
        var dev = ops.Device;
        dev.MakeCurrent();
        const long bytes = 1L << 30;
        Driver.Check(Driver.cuMemAlloc(out var a, (nuint)bytes), "cuMemAlloc");
        Driver.Check(Driver.cuMemAlloc(out var b, (nuint)bytes), "cuMemAlloc");
        try
        {
            Driver.Check(Driver.cuMemsetD32Async(a, 0x3C003C00u, (nuint)(bytes / 4), dev.Stream), "cuMemsetD32Async");
            using var timer = new CudaTimer(dev);
            var times = new double[10];
            for (int i = -2; i < times.Length; i++)
            {
                timer.Start();
                Driver.Check(Driver.cuMemcpyDtoDAsync(b, a, (nuint)bytes, dev.Stream), "cuMemcpyDtoDAsync");
                var ms = timer.Stop();
                if (i >= 0) times[i] = ms;
            }
            Array.Sort(times);
            results.Add(new BenchResult("ceiling: d2d copy", "1 GiB", "bytes", times[5], times[0], 2.0 * bytes, "byte"));
        }
        finally
        {
            Driver.cuMemFree(a);
            Driver.cuMemFree(b);
        }
        var rng = new Random(7);
        var data = new float[8192 * 8192];
        for (int i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1);
        using var x = ops.FromHost(data, 8192, 8192);
        using var w = ops.FromHost(data, 8192, 8192);
        using var t2 = new CudaTimer(dev);
        var gemm = new double[8];
        for (int i = -2; i < gemm.Length; i++)
        {
            t2.Start();
            using var y = ops.MatMul(x, w, transposeB: true);
            var ms = t2.Stop();
            if (i >= 0) gemm[i] = ms;
        }
        Array.Sort(gemm);
        results.Add(new BenchResult("ceiling: cuBLAS GEMM", "8192^3", ops.Storage.ToString(), gemm[4], gemm[0], 2.0 * 8192.0 * 8192 * 8192, "flop"));
        foreach (var r in results) log?.Invoke($"{r.Op,-28} {r.Shape,-36} {r.MedianMs,9:F3} ms  {r.Rate,8:F1} {r.RateUnit}");
        return results;
    }

    public static string ToMarkdown(CudaDevice device, IEnumerable<BenchResult> results)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Device: {device}; date {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; NVRTC {NvrtcCompiler.Version.Major}.{NvrtcCompiler.Version.Minor}");
        sb.AppendLine();
        sb.AppendLine("| op | shape | storage | median ms | min ms | rate |");
        sb.AppendLine("| --- | --- | --- | ---: | ---: | ---: |");
        foreach (var r in results)
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {r.Op} | {r.Shape} | {r.Storage} | {r.MedianMs:F3} | {r.MinMs:F3} | {r.Rate:F1} {r.RateUnit} |");
        return sb.ToString();
    }

    public static string ToJson(CudaDevice device, IEnumerable<BenchResult> results) => JsonSerializer.Serialize(new
    {
        device = device.ToString(),
        arch = device.Arch,
        date = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
        kernels = results.Select(r => new { op = r.Op, shape = r.Shape, storage = r.Storage, median_ms = r.MedianMs, min_ms = r.MinMs, rate = r.Rate, rate_unit = r.RateUnit }),
    }, new JsonSerializerOptions { WriteIndented = true });
}
