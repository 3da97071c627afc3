using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Schedulers;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.Cuda;
using LayerFusion.Tests.Fusion;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.UNetBench;

/// <summary>
/// Not a unit test: one CUDA graph per denoising step against op-by-op steps (issue 10 item 4), run by
/// perf/device-check.sh's graph part on the GPU machine. Runs only when LAYERFUSION_BENCH_OUT names a
/// folder and a CUDA device exists, otherwise reports as skipped with the reason. On the tiny
/// checkpoint (random weights; its steps are launch-bound, where a graph pays most) at
/// LAYERFUSION_GRAPH_SIZE (default 512) px: `sdxl` (dpmpp-2m-karras, CFG 5) and the LayerFusion
/// triplet (euler), each with and without the graph, after one warm-up run; the step time is
/// (T(n) - T(2)) / (n - 2) of whole generations of n = LAYERFUSION_GRAPH_STEPS (default 20) and 2
/// steps (each ends in a read-back, so the GPU's time is included). Writes graph_bench.md and
/// graph_bench.json; asserts the two modes give the same latents (exactly, on the emulated device)
/// and, on a GPU, that every time is a real positive number; nothing about speed. On the emulated device it runs too (a dry run of the
/// plumbing): its report says emulated, and its times are not GPU times.
/// </summary>
[Collection("cuda")]
public class StepGraphBenchmarkRun
{
    [Fact]
    public void Step_graph_vs_op_by_op_writes_graph_bench()
    {
        var dir = Environment.GetEnvironmentVariable("LAYERFUSION_BENCH_OUT");
        if (string.IsNullOrEmpty(dir)) Assert.Skip("benchmarks run only when LAYERFUSION_BENCH_OUT is set (perf/device-check.sh)");
        var main = CudaOps.TryCreate(StorageType.F16, out var reason);
        Requires.Device(main is not null, reason);
        int size = int.TryParse(Environment.GetEnvironmentVariable("LAYERFUSION_GRAPH_SIZE"), out var px) ? px : 512;
        int steps = int.TryParse(Environment.GetEnvironmentVariable("LAYERFUSION_GRAPH_STEPS"), out var n) ? Math.Max(3, n) : 20;
        string device = main!.Device.ToString();
        if (EmulatedCuda.Active && !device.Contains("emulated", StringComparison.OrdinalIgnoreCase)) device = "emulated " + device;
        using var model = new TinyLayerFusionModel();
        using var pipe = LayerFusionPipeline.Load(main, model.Dir, new LayerDiffuseFiles(model.Files.DenseAttention, model.Files.TransparentDecoder),
            new CudaOps(main.Device, StorageType.F32, main.Cache), ownsOps: true, cancellationToken: TestContext.Current.CancellationToken);
        var ct = TestContext.Current.CancellationToken;
        var lines = new List<string>();
        var json = new JsonArray();
        void Log(string line)
        {
            lines.Add(line);
            Console.WriteLine(line);
        }
        Log($"step graph vs op by op on {device}, tiny checkpoint, {size}x{size}, {steps} steps");

        (double Seconds, float[] Latents) Sdxl(bool graph, int count)
        {
            pipe.Sdxl.StepGraphs = graph;
            var clock = Stopwatch.StartNew();
            var r = pipe.Sdxl.Generate(new SdxlRequest
            {
                Prompt = "a lighthouse on a cliff", NegativePrompt = "blurry", Steps = count, GuidanceScale = 5f, Seed = 11,
                Width = size, Height = size, Sampler = Samplers.DpmPP2MKarras,
            }, cancellationToken: ct);
            Assert.Equal(graph ? count - 1 : 0, pipe.Sdxl.LastGraphSteps);
            return (clock.Elapsed.TotalSeconds, r.Latents);
        }

        (double Seconds, float[] Latents) Triplet(bool graph, int count)
        {
            pipe.StepGraphs = graph;
            var clock = Stopwatch.StartNew();
            pipe.Generate(new LayerFusionRequest
            {
                Foreground = "a red apple", Background = "a wooden table", Steps = count, GuidanceScale = 5f, Seed = 3,
                Width = size, Height = size, Sampler = Samplers.Euler, Options = new LayerFusionOptions { TransparentAugment = false },
            }, cancellationToken: ct);
            Assert.Equal(graph ? count - 1 : 0, pipe.LastGraphSteps);
            return (clock.Elapsed.TotalSeconds, [.. pipe.LastLatents!.SelectMany(v => v)]);
        }

        foreach (var (name, run) in new (string, Func<bool, int, (double, float[])>)[] { ("sdxl", Sdxl), ("layerfusion triplet", Triplet) })
        {
            var ms = new Dictionary<bool, double>();
            var latents = new Dictionary<bool, float[]>();
            foreach (bool graph in new[] { false, true })
            {
                run(graph, 2);  // warm-up: kernels loaded, arena grown
                // the faster of two runs each (one on the emulated device, whose times mean nothing)
                int repeats = EmulatedCuda.Active ? 1 : 2;
                double t2 = double.MaxValue, tn = double.MaxValue;
                float[] l = [];
                for (int r = 0; r < repeats; r++)
                {
                    t2 = Math.Min(t2, run(graph, 2).Item1);
                    var (t, lat) = run(graph, steps);
                    tn = Math.Min(tn, t);
                    l = lat;
                }
                ms[graph] = (tn - t2) / (steps - 2) * 1e3;
                latents[graph] = l;
                // on a shared CPU the emulated difference of two short runs can come out negative
                Assert.True(double.IsFinite(ms[graph]) && (ms[graph] > 0 || EmulatedCuda.Active), $"{name}: step time {ms[graph]} ms");
            }
            double maxDiff = latents[true].Zip(latents[false], (a, b) => Math.Abs((double)a - b)).Max();
            bool identical = latents[true].AsSpan().SequenceEqual(latents[false]);
            Log(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {ms[false]:F3} | {ms[true]:F3} | {ms[false] / ms[true]:F2}x | {(identical ? "identical" : $"max abs diff {maxDiff:E2}")} |"));
            json.Add(new JsonObject
            {
                ["pipeline"] = name, ["size"] = size, ["steps"] = steps, ["device"] = device,
                ["step_ms_op_by_op"] = ms[false], ["step_ms_graph"] = ms[true], ["latents_identical"] = identical, ["latents_max_abs_diff"] = maxDiff,
            });
            Assert.True(maxDiff == 0 || !EmulatedCuda.Active, $"{name}: the graph's latents differ from op by op by {maxDiff:E2} on the emulated device");
            Assert.All(latents[true], v => Assert.True(float.IsFinite(v)));
        }
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "graph_bench.md"),
            $"# Step graph vs op by op ({device})\n\ntiny checkpoint, {size}x{size}, step time from {steps}- and 2-step generations\n\n" +
            "| pipeline | op by op ms/step | graph ms/step | speedup | outputs |\n| --- | --- | --- | --- | --- |\n" +
            string.Join('\n', lines.Skip(1)) + "\n");
        File.WriteAllText(Path.Combine(dir, "graph_bench.json"), json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }
}
