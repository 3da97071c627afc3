using System.Diagnostics;
using System.Globalization;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Schedulers;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.Tiny;

// The LayerFusion triplet on the CPU backend: the host reference step (q/k read back per layer, priors
// and masks in managed code, host latents/CFG/sampler, full prior pass) against the device-resident
// step (IOps prior ops, device latents/CFG/sampler, early-stopping prior pass), interleaved in one
// process on the same pipeline. Step time = median over the denoising steps after the first of each
// run (progress timestamps); memory = managed bytes allocated per step and the GC heap size sampled
// at every step end (max).
//   dotnet run -c Release --project perf/triplet -- [--size 128] [--steps 4] [--runs 2] [--threads N]
var inv = CultureInfo.InvariantCulture;
int size = 128, steps = 4, runs = 2;
int? threads = null;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--size": size = int.Parse(args[++i], inv); break;
        case "--steps": steps = int.Parse(args[++i], inv); break;
        case "--runs": runs = int.Parse(args[++i], inv); break;
        case "--threads": threads = int.Parse(args[++i], inv); break;
        default: Console.Error.WriteLine($"error: unknown option '{args[i]}'"); return 2;
    }
}

var dir = Path.Combine(Path.GetTempPath(), "lf-triplet-bench-" + Environment.ProcessId);
Directory.CreateDirectory(dir);
try
{
    var configs = TinyCheckpoint.DefaultConfigs();
    TinyCheckpoint.Write(dir, CheckpointLayout.DiffusersFolder, 5, DType.F16, configs);
    int vaeScale = 1 << (configs.VaeConfig.BlockOutChannels.Length - 1);
    var files = LayerDiffuseTiny.WriteAll(dir, configs.UnetConfig, 5, decoder: LayerDiffuseTiny.TinyDecoderConfig with { LatentInjectLevel = int.Log2(vaeScale) });
    using var pipe = LayerFusionPipeline.Load(new LayerFusion.Cpu.CpuOps(threads), dir, new LayerDiffuseFiles(files.DenseAttention, files.TransparentDecoder));
    var site = new LayerFusionOptions().ResolvePriorLayer(pipe.Unet.AttentionSites);
    int lat = size / vaeScale;
    Console.WriteLine($"config: make-tiny checkpoint (UNet block_out_channels {string.Join("/", configs.UnetConfig.BlockOutChannels)}), " +
        $"{size}x{size} image, {lat}x{lat} latent, prior layer {site.Path} at {lat >> site.Level}x{lat >> site.Level} tokens, " +
        $"{steps} Euler steps, CFG 5, {Environment.ProcessorCount} cores, CpuOps threads {(threads?.ToString(inv) ?? "all")}");
    var req = new LayerFusionRequest
    {
        Foreground = "a glass bottle", Background = "a wooden table", Steps = steps, GuidanceScale = 5f, Seed = 1,
        Width = size, Height = size, Sampler = Samplers.Euler, Options = new LayerFusionOptions { TransparentAugment = false },
    };
    var results = new Dictionary<LayerFusionStepPath, List<(double StepMs, double AllocMiB, double HeapMiB)>>
    {
        [LayerFusionStepPath.HostReference] = [], [LayerFusionStepPath.Device] = [],
    };
    // one warm-up generation per path, then alternate
    foreach (var path in new[] { LayerFusionStepPath.HostReference, LayerFusionStepPath.Device })
    {
        pipe.StepPath = path;
        pipe.Generate(req with { Steps = 1 });
    }
    for (int r = 0; r < runs; r++)
        foreach (var path in new[] { LayerFusionStepPath.HostReference, LayerFusionStepPath.Device })
        {
            pipe.StepPath = path;
            GC.Collect();
            var marks = new List<(double Ms, long Alloc, long Heap)>();
            var clock = Stopwatch.StartNew();
            long alloc0 = GC.GetTotalAllocatedBytes(true);
            marks.Add((0, alloc0, GC.GetGCMemoryInfo().HeapSizeBytes));
            pipe.Generate(req, new SyncProgress(p =>
            {
                if (p.Phase == LayerFusionPhase.Denoise) marks.Add((clock.Elapsed.TotalMilliseconds, GC.GetTotalAllocatedBytes(false), GC.GetGCMemoryInfo().HeapSizeBytes));
            }));
            for (int i = 2; i < marks.Count; i++)   // skip step 1 (first-call effects)
                results[path].Add((marks[i].Ms - marks[i - 1].Ms, (marks[i].Alloc - marks[i - 1].Alloc) / 1048576.0, marks[i].Heap / 1048576.0));
        }
    Console.WriteLine("| path | median step (ms) | min step (ms) | allocated per step (MiB) | max GC heap at step end (MiB) | prior pass stopped early |");
    Console.WriteLine("| --- | --- | --- | --- | --- | --- |");
    foreach (var (path, list) in results)
    {
        var t = list.Select(x => x.StepMs).Order().ToArray();
        pipe.StepPath = path;
        Console.WriteLine(string.Create(inv, $"| {path} | {t[t.Length / 2]:F0} | {t[0]:F0} | {list.Average(x => x.AllocMiB):F1} | {list.Max(x => x.HeapMiB):F1} | {(path == LayerFusionStepPath.Device ? "yes" : "no (full UNet)")} |"));
    }
    var h = results[LayerFusionStepPath.HostReference].Select(x => x.StepMs).Order().ToArray();
    var d = results[LayerFusionStepPath.Device].Select(x => x.StepMs).Order().ToArray();
    Console.WriteLine(string.Create(inv, $"device step / host step (medians): {d[d.Length / 2] / h[h.Length / 2]:F3}; process peak working set {Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0:F0} MiB (both paths)"));
    return 0;
}
finally
{
    try { Directory.Delete(dir, true); } catch (IOException) { }
}

sealed class SyncProgress(Action<LayerFusionProgress> report) : IProgress<LayerFusionProgress>
{
    public void Report(LayerFusionProgress value) => report(value);
}
