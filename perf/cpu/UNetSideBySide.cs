using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Schedulers;
using LayerFusion.Cpu;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;
using LayerFusion.WeightsLoader.Tiny;

namespace LayerFusion.Perf.Cpu;

/// <summary>
/// Our half of the CPU side by side (perf/cpu-side-by-side.sh, issue 14).
/// `unet-write --dir D`: SDXL base 1.0's UNet config with seeded random fp16 weights (the values
/// TinyCheckpoint.RandomWeights draws), written once as D/unet/{config.json, diffusion_pytorch_model.safetensors},
/// plus seeded batch-2 inputs D/inputs-{32,64}.safetensors (sample, timestep, encoder_hidden_states,
/// text_embeds, time_ids) both sides read.
/// `unet-run --dir D --size S --threads T --repeats R --json J --output O`: in a fresh process, opens
/// the UNet, runs the first evaluation (weights upload lazily on first use, so "load to first
/// result" is open + first evaluation), then R timed evaluations; writes the median, peak RSS
/// (VmHWM) and the output (for the parity check on the torch side).
/// </summary>
public static class UNetSideBySide
{
    public const long Seed = 14;
    public static readonly int[] Sizes = [32, 64];

    public static int Write(string[] args)
    {
        string dir = Arg(args, "--dir") ?? throw new UserInputException("unet-write needs --dir");
        var unetDir = Path.Combine(dir, "unet");
        var cfgJson = SdxlDefaults.UNet();
        var cfg = UNet2DConditionModel.ReadConfig(ConfigReader.FromText(cfgJson.ToJsonString(), "SDXL UNet config"));
        string marker = Path.Combine(dir, ".unet-random-" + Seed);
        if (!File.Exists(marker))
        {
            Directory.CreateDirectory(unetDir);
            var schema = UNetSchema.Parameters(cfg);
            Console.WriteLine($"writing random SDXL UNet ({schema.Count} tensors, {schema.Sum(p => p.Shape.Aggregate(1L, (a, b) => a * b)) / 1e9:F2} G values, fp16) to {unetDir}");
            var tensors = new WeightTensor[schema.Count];
            Parallel.For(0, schema.Count, i => tensors[i] = TinyCheckpoint.RandomWeights("unet", [schema[i]], Seed, DType.F16)[0]);
            File.WriteAllText(Path.Combine(unetDir, "config.json"), cfgJson.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            SafeTensorsWriter.Write(Path.Combine(unetDir, "diffusion_pytorch_model.safetensors"), tensors);
            File.WriteAllText(marker, "complete\n");
        }
        foreach (int s in Sizes)
        {
            var path = Path.Combine(dir, $"inputs-{s}.safetensors");
            if (File.Exists(path)) continue;
            const int b = 2;
            float[] N(string name, int count)
            {
                var rng = SeededNormal.For(Seed, $"inputs-{s}/{name}");
                var v = new float[count];
                for (int i = 0; i < v.Length; i++) v[i] = (float)rng.NextNormal();
                return v;
            }
            int pooled = cfg.ProjectionClassEmbeddingsInputDim - 6 * cfg.AdditionTimeEmbedDim;
            var ids = SdxlTimeIds.ForSize(s * 8, s * 8);
            SafeTensorsWriter.Write(path,
            [
                ArrayWeightTensor.FromFloat32("sample", [b, cfg.InChannels, s, s], N("sample", b * cfg.InChannels * s * s)),
                ArrayWeightTensor.FromFloat32("timestep", [1], [501f]),
                ArrayWeightTensor.FromFloat32("encoder_hidden_states", [b, 77, cfg.CrossAttentionDim], N("ehs", b * 77 * cfg.CrossAttentionDim)),
                ArrayWeightTensor.FromFloat32("text_embeds", [b, pooled], N("text_embeds", b * pooled)),
                ArrayWeightTensor.FromFloat32("time_ids", [b, ids.Length], [.. ids, .. ids]),
            ]);
        }
        Console.WriteLine($"checkpoint and inputs ready in {dir}");
        return 0;
    }

    public static int Run(string[] args)
    {
        string dir = Arg(args, "--dir") ?? throw new UserInputException("unet-run needs --dir");
        int size = int.Parse(Arg(args, "--size") ?? "32", CultureInfo.InvariantCulture);
        int threads = int.Parse(Arg(args, "--threads") ?? "2", CultureInfo.InvariantCulture);
        int repeats = int.Parse(Arg(args, "--repeats") ?? "3", CultureInfo.InvariantCulture);
        string json = Arg(args, "--json") ?? throw new UserInputException("unet-run needs --json");
        string? output = Arg(args, "--output");
        if (repeats < 3) throw new UserInputException($"--repeats must be at least 3, got {repeats}");

        var total = Stopwatch.StartNew();
        var ops = new CpuOps(threads);
        var cfg = UNet2DConditionModel.ReadConfig(ConfigReader.FromFile(Path.Combine(dir, "unet", "config.json")));
        using var file = SafeTensorsFile.Open(Path.Combine(dir, "unet", "diffusion_pytorch_model.safetensors"));
        var unet = new UNet2DConditionModel(new ParameterStore(ops, file.ByName, "unet"), cfg);
        double openS = total.Elapsed.TotalSeconds;

        using var inputs = SafeTensorsFile.Open(Path.Combine(dir, $"inputs-{size}.safetensors"));
        var sample = ops.Upload(inputs["sample"]);
        float t = inputs["timestep"].ToFloat32()[0];
        var ehs = ops.Upload(inputs["encoder_hidden_states"]);
        var te = ops.Upload(inputs["text_embeds"]);
        var ids = inputs["time_ids"].ToFloat32();

        float[] Eval()
        {
            using var y = unet.Forward(sample, [t], ehs, te, ids);
            return ops.ToHost(y);
        }
        var first = Eval();
        double firstResultS = total.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ours {size}x{size}: opened in {openS:F2} s, first result (incl. weight upload) at {firstResultS:F1} s"));
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            var sw = Stopwatch.StartNew();
            Eval();
            times[i] = sw.Elapsed.TotalSeconds;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  evaluation {i + 1}/{repeats}: {times[i]:F2} s"));
        }
        var sorted = times.Order().ToArray();
        double rss = PeakRssGiB();
        if (output != null)
            SafeTensorsWriter.Write(output, [ArrayWeightTensor.FromFloat32("output", [2, cfg.OutChannels, size, size], first)]);
        File.WriteAllText(json, JsonSerializer.Serialize(new
        {
            impl = "LayerFusion.Cpu (fp32)", size, batch = 2, threads, repeats,
            times_s = times, median_s = sorted[repeats / 2], open_s = openS, load_to_first_result_s = firstResultS,
            peak_rss_gib = rss, processor_count = Environment.ProcessorCount,
        }, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ours {size}x{size}: median {sorted[repeats / 2]:F2} s, peak RSS {rss:F2} GiB"));
        return 0;
    }

    /// <summary>VmHWM of /proc/self/status (peak resident set, file-backed mapped pages included).</summary>
    static double PeakRssGiB()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / (1024.0 * 1024);
        return double.NaN;
    }

    static string? Arg(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
