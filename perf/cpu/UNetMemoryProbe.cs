using System.Diagnostics;
using System.Globalization;
using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Cpu;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Perf.Cpu;

/// <summary>
/// Where the peak resident set of a full-size UNet evaluation goes (issue 14, peak RSS at most torch's):
/// `unet-mem --dir D --size S [--threads T] [--evals N] [--pool-mib P]` opens the side by side's
/// checkpoint (unet-write), runs N evaluations, and samples every 50 ms the process's RSS
/// (anonymous / file-backed), the GC heap (per generation, fragmentation, committed), the activation
/// pool and the uploaded weights; it prints the breakdown at the RSS peak of each evaluation.
/// --weights loh|poh puts the fp32 weights on the large-object or the pinned object heap (CpuOps.PinWeights);
/// --pool-mib sets the activation pool's bound (CpuArrayPool.MaxPooledBytes) for experiments.
/// </summary>
public static class UNetMemoryProbe
{
    sealed record Sample(double RssGiB, double AnonGiB, double FileGiB, double GcHeapGiB, double GcCommittedGiB,
        double FragmentedGiB, double LohGiB, double PohGiB, double Gen2GiB, double PoolGiB, int Gen2Count);

    public static int Run(string[] args)
    {
        string dir = Arg(args, "--dir") ?? throw new UserInputException("unet-mem needs --dir");
        int size = int.Parse(Arg(args, "--size") ?? "64", CultureInfo.InvariantCulture);
        int threads = int.Parse(Arg(args, "--threads") ?? "2", CultureInfo.InvariantCulture);
        int evals = int.Parse(Arg(args, "--evals") ?? "2", CultureInfo.InvariantCulture);
        if (Arg(args, "--pool-mib") is { } pool) CpuArrayPool.MaxPooledBytes = long.Parse(pool, CultureInfo.InvariantCulture) << 20;
        if (evals < 1) throw new UserInputException($"--evals must be at least 1, got {evals}");

        var ops = new CpuOps(threads) { PinWeights = (Arg(args, "--weights") ?? "poh") == "poh" };
        var cfg = UNet2DConditionModel.ReadConfig(ConfigReader.FromFile(Path.Combine(dir, "unet", "config.json")));
        using var file = SafeTensorsFile.Open(Path.Combine(dir, "unet", "diffusion_pytorch_model.safetensors"));
        long weightBytes = file.ByName.Values.Sum(w => 4 * w.ElementCount);
        var unet = new UNet2DConditionModel(new ParameterStore(ops, file.ByName, "unet"), cfg);
        using var inputs = SafeTensorsFile.Open(Path.Combine(dir, $"inputs-{size}.safetensors"));
        var sample = ops.Upload(inputs["sample"]);
        float t = inputs["timestep"].ToFloat32()[0];
        var ehs = ops.Upload(inputs["encoder_hidden_states"]);
        var te = ops.Upload(inputs["text_embeds"]);
        var ids = inputs["time_ids"].ToFloat32();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"unet-mem {size}x{size}, {threads} threads: fp32 weights {weightBytes / Gi:F2} GiB; GC {(System.Runtime.GCSettings.IsServerGC ? "server" : "workstation")}, latency {System.Runtime.GCSettings.LatencyMode}, pool bound {CpuArrayPool.MaxPooledBytes >> 20} MiB, weights on the {(ops.PinWeights ? "POH" : "LOH")}"));
        Console.WriteLine("at       | RSS    anon   file  | GC heap committed frag | gen2   LOH    POH   | pool  | gen2 GCs");
        var missSites = new System.Collections.Concurrent.ConcurrentDictionary<string, long>();
        for (int e = 1; e <= evals; e++)
        {
            // from the second evaluation on every miss is an output some earlier one never returned: where from
            if (e == 2 && args.Contains("--miss-sites"))
                CpuArrayPool.OnMiss = len =>
                {
                    var frames = new StackTrace().GetFrames().Select(f => f.GetMethod()).Where(mb => mb?.DeclaringType != null)
                        .Select(mb => mb!.DeclaringType!.Name + "." + mb.Name)
                        .Where(n => !n.StartsWith("CpuArrayPool", StringComparison.Ordinal) && !n.StartsWith("CpuTensor", StringComparison.Ordinal)
                            && !n.StartsWith("UNetMemoryProbe", StringComparison.Ordinal)).Take(4);
                    missSites.AddOrUpdate(string.Join(" < ", frames) + $" [{4.0 * len / (1 << 20):F1} MiB]", 1, (_, c) => c + 1);
                };
            Sample? peak = null;
            using var stop = new CancellationTokenSource();
            var sampler = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    var s = Take();
                    if (peak == null || s.RssGiB > peak.RssGiB) peak = s;
                    try { await Task.Delay(50, stop.Token); } catch (OperationCanceledException) { }
                }
            });
            var sw = Stopwatch.StartNew();
            using (var y = unet.Forward(sample, [t], ehs, te, ids)) ops.ToHost(y);
            stop.Cancel();
            sampler.Wait();
            Print($"eval {e} peak", peak!);
            Print($"eval {e} end", Take());
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  eval {e}: {sw.Elapsed.TotalSeconds:F1} s, VmHWM {Status("VmHWM") / Gi:F2} GiB, pool misses so far {CpuArrayPool.Misses}"));
            Console.WriteLine("  pool after it (MiB x count): " + string.Join(", ", CpuArrayPool.Contents().Take(12)
                .Select(c => string.Create(CultureInfo.InvariantCulture, $"{4.0 * c.Length / (1 << 20):F1} x {c.Count}"))));
        }
        foreach (var kv in missSites.OrderByDescending(kv => kv.Value)) Console.WriteLine($"  miss x{kv.Value}: {kv.Key}");
        return 0;
    }

    const double Gi = 1024.0 * 1024 * 1024;

    static Sample Take()
    {
        var info = GC.GetGCMemoryInfo(GCKind.Any);
        double Gen(int g) => info.GenerationInfo.Length > g ? info.GenerationInfo[g].SizeAfterBytes / Gi : double.NaN;
        return new Sample(Status("VmRSS") / Gi, Status("RssAnon") / Gi, Status("RssFile") / Gi,
            GC.GetTotalMemory(false) / Gi, GC.GetGCMemoryInfo().TotalCommittedBytes / Gi, info.FragmentedBytes / Gi,
            Gen(3), Gen(4), Gen(2), CpuArrayPool.PooledBytes / Gi, GC.CollectionCount(2));
    }

    static void Print(string at, Sample s) => Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"{at,-15} | {s.RssGiB,6:F2} {s.AnonGiB,6:F2} {s.FileGiB,5:F2} | {s.GcHeapGiB,6:F2} {s.GcCommittedGiB,6:F2} {s.FragmentedGiB,5:F2} | {s.Gen2GiB,6:F2} {s.LohGiB,6:F2} {s.PohGiB,5:F2} | {s.PoolGiB,5:F2} | {s.Gen2Count}"));

    /// <summary>A /proc/self/status field in bytes (the kernel reports kB).</summary>
    static double Status(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return 1024.0 * long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
        return double.NaN;
    }

    static string? Arg(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
