using LayerFusion.Cuda;
using LayerFusion.Cuda.Bench;
using LayerFusion.Cuda.Runtime;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// Not a unit test: the kernel benchmark, run by perf/device-check.sh on the GPU machine through the
/// published test executable (there is no .NET SDK there). It runs only when LAYERFUSION_BENCH_OUT
/// names a folder and a device exists, and otherwise reports as skipped with the reason. It
/// asserts nothing about speed; only that every measurement is a real positive time.
/// </summary>
[Collection("cuda")]
public class CudaBenchmarkRun(CudaFixture fx) : IClassFixture<CudaFixture>
{
    [Fact]
    public void Kernel_benchmarks_write_a_report()
    {
        var dir = Environment.GetEnvironmentVariable("LAYERFUSION_BENCH_OUT");
        if (string.IsNullOrEmpty(dir)) Assert.Skip("benchmarks run only when LAYERFUSION_BENCH_OUT is set (perf/device-check.sh)");
        var ops = fx.Ops(StorageType.F16);
        bool poison = ops.PoisonOutputs, sync = ops.SynchronizeEachOp;
        ops.PoisonOutputs = false;
        ops.SynchronizeEachOp = false;
        try
        {
            var lines = new List<string>();
            var results = KernelBenchmarks.MeasureCeilings(ops, lines.Add).Concat(KernelBenchmarks.Run(ops, log: lines.Add)).ToList();
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, "bench.md"), KernelBenchmarks.ToMarkdown(ops.Device, results));
            File.WriteAllText(Path.Combine(dir, "bench.json"), KernelBenchmarks.ToJson(ops.Device, results));
            foreach (var r in results) Assert.True(double.IsFinite(r.MedianMs) && r.MedianMs > 0, $"{r.Op} {r.Shape}: {r.MedianMs} ms");
            TestContext.Current.SendDiagnosticMessage(string.Join('\n', lines));
        }
        finally
        {
            ops.PoisonOutputs = poison;
            ops.SynchronizeEachOp = sync;
        }
    }
}
