using LayerFusion.Cuda.Bench;
using LayerFusion.Tests.Cuda;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.UNetBench;

/// <summary>
/// Not a unit test: the SDXL UNet benchmark of `layerfusion bench --unet`, run by perf/device-check.sh
/// on the GPU machine through the published test executable. Runs only when LAYERFUSION_BENCH_OUT
/// names a folder and a device exists, otherwise reports as skipped with the reason. Writes the
/// random full-size checkpoint to LAYERFUSION_UNET_WEIGHTS (default /tmp/layerfusion-random-sdxl,
/// about 8 GB, outside the returned folder), the parity case beside it (parity.safetensors, for
/// perf/torch_unet_bench.py), unet_bench.md in LAYERFUSION_BENCH_OUT, and merges its measures into
/// results.json there. LAYERFUSION_UNET_STEPS sets the triplet's steps (default 30, 0 skips it).
/// Asserts nothing about speed, only that every time is a real positive number.
/// </summary>
[Collection("cuda")]
public class UNetBenchmarkRun(CudaFixture fx) : IClassFixture<CudaFixture>
{
    [Fact]
    public void Sdxl_unet_benchmark_merges_into_results_json()
    {
        var dir = Environment.GetEnvironmentVariable("LAYERFUSION_BENCH_OUT");
        if (string.IsNullOrEmpty(dir)) Assert.Skip("benchmarks run only when LAYERFUSION_BENCH_OUT is set (perf/device-check.sh)");
        Requires.Device(fx.Device is not null, fx.Reason);
        var weights = Environment.GetEnvironmentVariable("LAYERFUSION_UNET_WEIGHTS") is { Length: > 0 } w ? w : "/tmp/layerfusion-random-sdxl";
        int steps = int.TryParse(Environment.GetEnvironmentVariable("LAYERFUSION_UNET_STEPS"), out var s) ? s : 30;
        var lines = new List<string>();
        void Log(string line)
        {
            lines.Add(line);
            Console.WriteLine(line); // live in tests.log: a timeout still shows how far it got
        }
        var ld = RandomSdxlCheckpoint.Write(weights, RandomSdxlCheckpoint.FullSizeConfigs(), seed: 1, log: Log);
        Directory.CreateDirectory(dir);
        void Save(UNetBenchResult r)
        {
            File.WriteAllText(Path.Combine(dir, "unet_bench.md"), UNetBenchmarks.ToMarkdown(r) + "\n```\n" + string.Join('\n', lines) + "\n```\n");
            var results = Path.Combine(dir, "results.json");
            File.WriteAllText(results, UNetBenchmarks.MergeResultsJson(File.Exists(results) ? File.ReadAllText(results) : null, r, DateTime.UtcNow, fx.Device.Arch));
        }
        // saved before the triplet too: a run stopped by device-check's time limit keeps the step timings
        var r = UNetBenchmarks.Run(fx.Device, weights, ld,
            new UNetBenchOptions { TripletSteps = steps, ParityPath = Path.Combine(weights, "parity.safetensors") }, Log, Save);
        Save(r);
        foreach (var (name, v) in new[] { ("unet_eval_ms", r.UnetEvalMs), ("guided_step_ms", r.GuidedStepMs), ("gemm_peak_tflops", r.GemmPeakTflops) })
            Assert.True(double.IsFinite(v) && v > 0, $"{name}: {v}");
        if (r.TripletE2eS is double t) Assert.True(double.IsFinite(t) && t > 0, $"triplet_e2e_s: {t}");
        TestContext.Current.SendDiagnosticMessage(string.Join('\n', lines));
    }
}
