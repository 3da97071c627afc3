using LayerFusion.Cuda.Bench;
using LayerFusion.Tests.Cuda;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.CudaPriors;

/// <summary>
/// Not a unit test: the attention benchmark of `layerfusion bench`, run by perf/device-check.sh on
/// the GPU machine through the published test executable (no .NET SDK there). Runs only when
/// LAYERFUSION_BENCH_OUT names a folder and a device exists, otherwise reports as skipped with the
/// reason. Writes prior_bench.md and results.json there. Asserts nothing about speed, only that
/// every measurement is a real positive time.
/// </summary>
[Collection("cuda")]
public class PriorBenchmarkRun(CudaFixture fx) : IClassFixture<CudaFixture>
{
    [Fact]
    public void Attention_benchmarks_write_results_json()
    {
        var dir = Environment.GetEnvironmentVariable("LAYERFUSION_BENCH_OUT");
        if (string.IsNullOrEmpty(dir)) Assert.Skip("benchmarks run only when LAYERFUSION_BENCH_OUT is set (perf/device-check.sh)");
        Requires.Device(fx.Device is not null, fx.Reason);
        var lines = new List<string>();
        var results = PriorAttentionBenchmarks.Run(fx.Device, log: lines.Add);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "prior_bench.md"), PriorAttentionBenchmarks.ToMarkdown(fx.Device, results));
        File.WriteAllText(Path.Combine(dir, "results.json"), PriorAttentionBenchmarks.ToResultsJson(fx.Device, results));
        foreach (var r in results) Assert.True(double.IsFinite(r.MedianMs) && r.MedianMs > 0, $"{r.Kernel} {r.Shape}: {r.MedianMs} ms");
        TestContext.Current.SendDiagnosticMessage(string.Join('\n', lines));
    }
}
