using System.CommandLine;
using LayerFusion.Cuda.Bench;
using LayerFusion.Cuda.Runtime;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli.Commands;

/// <summary>
/// `layerfusion bench [--out perf/results.json] [--repeats N]`: times the attention kernels (plain,
/// prior-emitting, materialized) at SDXL shapes on the current GPU, prints the table and writes the
/// machine-readable results. Without a CUDA device it fails with the reason (exit code 2).
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Where to write the JSON results.", DefaultValueFactory = _ => Path.Combine("perf", "results.json") };
        var repeats = new Option<int>("--repeats") { Description = "Timed repeats per kernel (the median is reported).", DefaultValueFactory = _ => 20 };
        var command = new Command("bench", "Time the attention kernels (plain vs prior-emitting vs materialized probabilities) at SDXL shapes on this GPU.")
        {
            output, repeats,
        };
        command.SetAction(parse =>
        {
            int n = parse.GetValue(repeats);
            if (n < 3) throw new UserInputException($"--repeats must be at least 3, got {n}");
            using var device = CudaDevice.TryOpen(out var reason)
                ?? throw new UserInputException($"layerfusion bench needs a CUDA GPU: {reason}");
            var stdout = parse.InvocationConfiguration.Output;
            stdout.WriteLine($"device: {device}");
            var results = PriorAttentionBenchmarks.Run(device, repeats: n, log: stdout.WriteLine);
            stdout.WriteLine();
            stdout.WriteLine(PriorAttentionBenchmarks.ToMarkdown(device, results));
            var path = parse.GetValue(output)!;
            var dir = Path.GetDirectoryName(Path.GetFullPath(path));
            if (dir is not null) Directory.CreateDirectory(dir);
            File.WriteAllText(path, PriorAttentionBenchmarks.ToResultsJson(device, results));
            stdout.WriteLine($"wrote {path}");
            return 0;
        });
        return command;
    }
}
