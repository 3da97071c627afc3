using System.Text.Json.Nodes;
using LayerFusion.Cuda.Bench;

namespace LayerFusion.Tests.CudaPriors;

/// <summary>The shape of perf/results.json, from hand-made results (the numbers here are inputs, not measurements).</summary>
public class ResultsJsonTests
{
    [Fact]
    public void Results_json_has_device_date_and_measures_with_units_and_the_ratios()
    {
        const string shape = "b2 m1024 n1024 h20 d64";
        AttentionBenchResult R(string kernel, double ms, long bytes) => new(kernel, shape, 2, 1024, 1024, 20, 64, ms, ms * 0.9, 2, bytes);
        var results = new[]
        {
            R(PriorAttentionBenchmarks.TcPlain, 0.2, 1 << 20), R(PriorAttentionBenchmarks.TcPriors, 0.3, 1 << 21),
            R(PriorAttentionBenchmarks.Materialized, 1.5, 1L << 30),
        };
        var json = JsonNode.Parse(PriorAttentionBenchmarks.ToResultsJson("Test GPU (sm_90)", 90, "13.0", new DateTime(2026, 11, 23, 12, 0, 0, DateTimeKind.Utc), results))!;
        Assert.Equal("Test GPU (sm_90)", (string?)json["device"]);
        Assert.Equal("2026-11-23T12:00:00Z", (string?)json["date"]);
        var measures = json["measures"]!.AsArray().Select(m => m!).ToList();
        Assert.All(measures, m => Assert.False(string.IsNullOrEmpty((string?)m["unit"])));
        double Value(string name, string kernelPrefix) => (double)measures.Single(m => (string?)m["name"] == name && ((string)m["kernel"]!).StartsWith(kernelPrefix, StringComparison.Ordinal))["value"]!;
        Assert.Equal(1.5, Value("prior_to_plain_ratio", PriorAttentionBenchmarks.TcPriors), 4);
        Assert.Equal(5.0, Value("materialized_to_prior_speedup", PriorAttentionBenchmarks.Materialized), 4);
        // 4 B H M N D / t = 4*2*20*1024*1024*64 / 0.2 ms
        Assert.Equal(4.0 * 2 * 20 * 1024 * 1024 * 64 / 0.2e-3 / 1e12, Value("attention_tflops", PriorAttentionBenchmarks.TcPlain), 3);
        Assert.Equal(1.0, Value("peak_memory_gib", PriorAttentionBenchmarks.Materialized), 4);
        Assert.Contains("guided_step_ms", json["not_measured"]!.AsArray().Select(n => (string?)n));
    }
}
