using System.CommandLine;
using LayerFusion.Cuda.Bench;
using LayerFusion.Cuda.Runtime;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli.Commands;

/// <summary>
/// `layerfusion bench [--out perf/results.json] [--repeats N]`: times the attention kernels (plain,
/// prior-emitting, materialized) at SDXL shapes on the current GPU, prints the table and writes the
/// machine-readable results. `--unet` instead times the full-size SDXL UNet (one evaluation, a
/// guided step, the LayerFusion triplet end to end) on random weights written to `--weights` and
/// merges those measures into the results file. Without a CUDA device it fails with the reason (exit code 2).
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Where to write the JSON results.", DefaultValueFactory = _ => Path.Combine("perf", "results.json") };
        var repeats = new Option<int>("--repeats") { Description = "Timed repeats per kernel (the median is reported).", DefaultValueFactory = _ => 20 };
        var unet = new Option<bool>("--unet") { Description = "Time the SDXL UNet at 1024x1024 (evaluation, guided step, LayerFusion triplet) on random full-size weights instead of the attention kernels." };
        var weights = new Option<string>("--weights") { Description = "With --unet: folder for the random SDXL checkpoint (about 8 GB; reused when already complete).", DefaultValueFactory = _ => Path.Combine(Path.GetTempPath(), "layerfusion-random-sdxl") };
        var steps = new Option<int>("--steps") { Description = "With --unet: denoising steps of the timed triplet (0 skips it).", DefaultValueFactory = _ => 30 };
        var parity = new Option<string?>("--parity") { Description = "With --unet: write the parity case (inputs and our UNet output) here for perf/torch_unet_bench.py." };
        var command = new Command("bench", "Time the attention kernels (plain vs prior-emitting vs materialized probabilities) at SDXL shapes on this GPU, or with --unet the SDXL UNet and the LayerFusion triplet.")
        {
            output, repeats, unet, weights, steps, parity,
        };
        command.SetAction(parse =>
        {
            int n = parse.GetValue(repeats);
            if (n < 3) throw new UserInputException($"--repeats must be at least 3, got {n}");
            using var device = CudaDevice.TryOpen(out var reason)
                ?? throw new UserInputException($"layerfusion bench needs a CUDA GPU: {reason}");
            // the stand-in driver of tests/cuda-standin names itself so: its timings are CPU timings and
            // must never be recorded as GPU results
            if (device.Name.Contains("emulated", StringComparison.OrdinalIgnoreCase))
                throw new UserInputException($"layerfusion bench needs a CUDA GPU: '{device.Name}' is an emulated device, whose timings would be CPU timings");
            if (parse.GetValue(steps) < 0) throw new UserInputException($"--steps must be >= 0, got {parse.GetValue(steps)}");
            var stdout = parse.InvocationConfiguration.Output;
            stdout.WriteLine($"device: {device}");
            var path = parse.GetValue(output)!;
            if (parse.GetValue(unet))
            {
                var dir = parse.GetValue(weights)!;
                var ld = RandomSdxlCheckpoint.Write(dir, RandomSdxlCheckpoint.FullSizeConfigs(), seed: 1, log: stdout.WriteLine);
                var r = UNetBenchmarks.Run(device, dir, ld, new UNetBenchOptions { Repeats = n, TripletSteps = parse.GetValue(steps), ParityPath = parse.GetValue(parity) }, stdout.WriteLine);
                stdout.WriteLine();
                stdout.WriteLine(UNetBenchmarks.ToMarkdown(r));
                string? existing = File.Exists(path) ? File.ReadAllText(path) : null;
                WriteResults(path, UNetBenchmarks.MergeResultsJson(existing, r, DateTime.UtcNow, device.Arch));
                stdout.WriteLine($"merged into {path}");
                return 0;
            }
            var results = PriorAttentionBenchmarks.Run(device, repeats: n, log: stdout.WriteLine);
            stdout.WriteLine();
            stdout.WriteLine(PriorAttentionBenchmarks.ToMarkdown(device, results));
            WriteResults(path, PriorAttentionBenchmarks.ToResultsJson(device, results));
            stdout.WriteLine($"wrote {path}");
            return 0;
        });
        return command;
    }

    static void WriteResults(string path, string json)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        File.WriteAllText(path, json);
    }
}
