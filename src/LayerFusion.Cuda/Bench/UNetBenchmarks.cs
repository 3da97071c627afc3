using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Schedulers;
using LayerFusion.Core.Tensors;
using LayerFusion.Cuda.Interop;
using LayerFusion.Cuda.Runtime;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;
using LayerFusion.WeightsLoader.Tiny;

namespace LayerFusion.Cuda.Bench;

/// <summary>Nominal multiply-add FLOPs of one UNet evaluation, counted on the model graph itself (shape-only backend).</summary>
public static class UNetFlops
{
    sealed class ShapeOnlyWeight(string name, long[] shape) : WeightTensor(name, DType.F16, shape)
    {
        public override ReadOnlySpan<byte> Bytes => throw new InvalidOperationException("shape-only weight");
    }

    /// <summary>
    /// FLOPs (2 per multiply-add of linears, convolutions and attention; norms and elementwise ops not
    /// counted) of one image's evaluation at a <paramref name="latentHeight"/> x <paramref name="latentWidth"/>
    /// latent with <paramref name="textTokens"/> text tokens, and the same split by kind.
    /// </summary>
    public static (double Total, IReadOnlyDictionary<string, double> ByKind) PerImage(UNetConfig config, int latentHeight, int latentWidth, int textTokens = 77)
    {
        ArgumentNullException.ThrowIfNull(config);
        var ops = new ShapeOps();
        var weights = UNetSchema.Parameters(config).ToDictionary(p => p.Name, p => (WeightTensor)new ShapeOnlyWeight(p.Name, p.Shape));
        var unet = new UNet2DConditionModel(new ParameterStore(ops, weights, "unet"), config);
        int timeIds = config.AdditionEmbedType == "text_time" ? 6 : 0;
        using var sample = ops.Zeros(1, config.InChannels, latentHeight, latentWidth);
        using var ehs = ops.Zeros(1, textTokens, config.CrossAttentionDim);
        using var te = timeIds > 0 ? ops.Zeros(1, config.ProjectionClassEmbeddingsInputDim - timeIds * config.AdditionTimeEmbedDim) : null;
        using var y = unet.Forward(sample, [999f], ehs, te, new float[timeIds]);
        var byKind = new Dictionary<string, double>(ops.Flops);
        return (byKind.Values.Sum(), byKind);
    }
}

/// <summary>What <see cref="UNetBenchmarks.Run"/> measures.</summary>
public sealed record UNetBenchOptions
{
    public int Height { get; init; } = 1024;
    public int Width { get; init; } = 1024;
    public int Warmup { get; init; } = 2;
    public int Repeats { get; init; } = 10;
    /// <summary>Denoising steps of the timed LayerFusion triplet; 0 = no triplet run.</summary>
    public int TripletSteps { get; init; } = 30;
    public int TripletRepeats { get; init; } = 1;
    /// <summary>Where to write the parity case (inputs and our output of one UNet evaluation); null = none.</summary>
    public string? ParityPath { get; init; }
}

/// <summary>One run of <see cref="UNetBenchmarks.Run"/>; times are medians of CUDA-event times unless named wall.</summary>
public sealed record UNetBenchResult(
    string Device, int Height, int Width, double FlopsPerImage, double GemmPeakTflops,
    double UnetEvalMs, double GuidedUnetMs, double GuidedStepMs, double GuidedStepWallMs,
    double? TripletE2eS, int TripletSteps, double PeakMemoryGiB, double LoadSeconds, int Repeats)
{
    public double UnetEvalTflops => FlopsPerImage / (UnetEvalMs * 1e-3) / 1e12;
    public double GuidedStepTflops => 2 * FlopsPerImage / (GuidedStepMs * 1e-3) / 1e12;
    public double FractionOfPeak => GemmPeakTflops > 0 ? GuidedStepTflops / GemmPeakTflops : double.NaN;
}

/// <summary>
/// The SDXL-scale timings of issue 6 item 3 on a checkpoint written by <see cref="RandomSdxlCheckpoint"/>:
/// one UNet evaluation (batch 1), one guided step as SdxlPipeline runs it (UNet batch 2 + CFG +
/// sampler step, host latents in and out), the LayerFusion triplet end to end (prompts, prior pass +
/// interaction pass per step, VAE and transparent decoding) and the device's measured dense fp16
/// GEMM rate as the peak to compare with. CUDA events on the backend's stream, warm-up first, then
/// the median of repeats; peak device memory from cuMemGetInfo after each phase (device-wide, the
/// CUDA context included). Writes the parity case perf/torch_unet_bench.py compares diffusers with.
/// </summary>
public static class UNetBenchmarks
{
    public const string Foreground = "a glass bottle with a red label";
    public const string Background = "a wooden table in a sunlit kitchen";

    /// <param name="partial">Called with the measures so far before the (long) triplet run, so a run
    /// stopped by a time limit still leaves the step timings.</param>
    public static UNetBenchResult Run(CudaDevice device, string checkpointDir, LayerDiffuseFilesPaths layerDiffuse, UNetBenchOptions? options = null,
        Action<string>? log = null, Action<UNetBenchResult>? partial = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        var o = options ?? new UNetBenchOptions();
        if (o.Repeats < 3) throw new UserInputException($"repeats must be at least 3, got {o.Repeats}");
        if (o.Height % 8 != 0 || o.Width % 8 != 0 || o.Height <= 0 || o.Width <= 0)
            throw new UserInputException($"size must be positive multiples of 8, got {o.Width}x{o.Height}");
        double peakUsed = 0;
        void Sample(string phase)
        {
            device.MakeCurrent();
            Driver.Check(Driver.cuMemGetInfo(out var free, out var total), "cuMemGetInfo");
            double used = ((double)total - free) / (1L << 30);
            peakUsed = Math.Max(peakUsed, used);
            log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"  device memory in use after {phase}: {used:F2} GiB"));
        }

        double gemm = GemmPeakTflops(device, o.Warmup, o.Repeats);
        log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"fp16 GEMM 8192^3 (measured peak): {gemm:F1} TFLOP/s"));

        using var ops = new CudaOps(device, StorageType.F16);
        using var vaeOps = new CudaOps(device, StorageType.F32, ops.Cache);
        var load = Stopwatch.StartNew();
        using var lf = LayerFusionPipeline.Load(ops, checkpointDir, new LayerDiffuseFiles(layerDiffuse.Attention, layerDiffuse.TransparentDecoder), vaeOps);
        double loadS = load.Elapsed.TotalSeconds;
        log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"loaded {checkpointDir} in {loadS:F1} s"));
        Sample("load");

        var sdxl = lf.Sdxl;
        var cfg = sdxl.Unet.Config;
        int f = sdxl.VaeScaleFactor, lh = o.Height / f, lw = o.Width / f;
        double flops = UNetFlops.PerImage(cfg, lh, lw).Total;

        // one evaluation, batch 1, on seeded inputs (the parity case)
        var inputs = ParityInputs(cfg, lh, lw, seed: 20261123);
        using var sample = ops.FromHost(inputs.Sample, 1, cfg.InChannels, lh, lw);
        using var ehs = ops.FromHost(inputs.EncoderHiddenStates, 1, inputs.TextTokens, cfg.CrossAttentionDim);
        using var te = ops.FromHost(inputs.TextEmbeds, 1, inputs.TextEmbeds.Length);
        float[]? parityOut = null;
        double evalMs = Median(device, o, () =>
        {
            using var y = sdxl.Unet.Forward(sample, [inputs.Timestep], ehs, te, inputs.TimeIds);
            parityOut ??= ops.ToHost(y);
        }, ops);
        log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"UNet evaluation (batch 1): {evalMs:F2} ms, {flops / (evalMs * 1e-3) / 1e12:F1} TFLOP/s"));
        if (o.ParityPath is not null) WriteParityCase(o.ParityPath, inputs, parityOut!, cfg, lh, lw);
        Sample("UNet evaluation");

        // the guided step as SdxlPipeline.Generate runs it
        using var encoding = sdxl.EncodePrompt(Background);
        using var cond = sdxl.CreateConditioning(encoding, 1, o.Height, o.Width, guided: true);
        var scheduler = sdxl.CreateScheduler(null);
        scheduler.SetTimesteps(30);
        var latents = sdxl.InitialLatents(1, 1, lh, lw, scheduler.InitNoiseSigma);
        var next = new float[latents.Length];
        var stepNoise = new GaussianNoise(1); // a checkpoint's own sampler may be stochastic
        using var sample2 = ops.FromHost(Repeat(latents, 2), 2, cfg.InChannels, lh, lw);
        double guidedUnetMs = Median(device, o, () =>
        {
            using var y = sdxl.Unet.Forward(sample2, [scheduler.Timesteps[0]], cond.EncoderHiddenStates, cond.TextEmbeds, cond.TimeIds);
        }, ops);
        var wall = new List<double>();
        double stepMs = Median(device, o, () =>
        {
            var sw = Stopwatch.StartNew();
            var noise = sdxl.PredictNoise(scheduler, 0, latents, lh, lw, cond, 7f);
            scheduler.Step(noise, 0, latents, next, stepNoise);
            wall.Add(sw.Elapsed.TotalMilliseconds);
        }, ops);
        wall.Sort();
        double stepWall = wall[wall.Count / 2];
        log?.Invoke(string.Create(CultureInfo.InvariantCulture,
            $"guided step (UNet batch 2 + CFG + Euler): {stepMs:F2} ms (wall {stepWall:F2} ms; UNet alone {guidedUnetMs:F2} ms), {2 * flops / (stepMs * 1e-3) / 1e12:F1} TFLOP/s"));
        Sample("guided step");

        UNetBenchResult Result(double? triplet) => new(device.ToString(), o.Height, o.Width, flops, gemm, evalMs, guidedUnetMs, stepMs, stepWall,
            triplet, o.TripletSteps, peakUsed, loadS, o.Repeats);
        partial?.Invoke(Result(null));
        double? tripletS = null;
        if (o.TripletSteps > 0)
        {
            var req = new LayerFusionRequest { Foreground = Foreground, Background = Background, Steps = o.TripletSteps, Seed = 7, Width = o.Width, Height = o.Height };
            // warm-up: every kernel of the triplet (1024 shapes, the decoders) compiled and loaded
            lf.Generate(req with { Steps = 2 });
            Sample("triplet warm-up");
            var times = new List<double>();
            for (int i = 0; i < Math.Max(1, o.TripletRepeats); i++)
            {
                device.Synchronize();
                var sw = Stopwatch.StartNew();
                lf.Generate(req);
                device.Synchronize();
                times.Add(sw.Elapsed.TotalSeconds);
                log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"LayerFusion triplet, {o.TripletSteps} steps, end to end: {times[^1]:F2} s"));
            }
            times.Sort();
            tripletS = times[times.Count / 2];
            Sample("triplet");
        }
        return Result(tripletS);
    }

    /// <summary>Median CUDA-event time of <paramref name="call"/> in ms, each call inside one arena step.</summary>
    static double Median(CudaDevice device, UNetBenchOptions o, Action call, CudaOps ops)
    {
        for (int i = 0; i < o.Warmup; i++)
            using (ops.BeginStep()) call();
        var times = new double[o.Repeats];
        using var timer = new CudaTimer(device);
        for (int i = 0; i < times.Length; i++)
            using (ops.BeginStep())
            {
                timer.Start();
                call();
                times[i] = timer.Stop();
            }
        Array.Sort(times);
        return times[times.Length / 2];
    }

    /// <summary>Dense fp16 GEMM [8192 x 8192] x [8192 x 8192]^T through the backend's Linear (cuBLAS), fp32 accumulation.</summary>
    public static double GemmPeakTflops(CudaDevice device, int warmup = 2, int repeats = 10)
    {
        const int n = 8192;
        using var ops = new CudaOps(device, StorageType.F16);
        var rng = new Random(5);
        var host = new float[n * n];
        for (int i = 0; i < host.Length; i++) host[i] = (float)(rng.NextDouble() * 2 - 1);
        using var a = ops.FromHost(host, n, n);
        using var w = ops.FromHost(host, n, n);
        var o = new UNetBenchOptions { Warmup = warmup, Repeats = repeats };
        double ms = Median(device, o, () => ops.Linear(a, w), ops);
        return 2.0 * n * n * n / (ms * 1e-3) / 1e12;
    }

    /// <summary>Seeded UNet inputs of one image (never zeros): latent N(0,1), text states N(0,1), pooled N(0,1), SDXL time ids.</summary>
    public sealed record ParityCase(float[] Sample, float Timestep, float[] EncoderHiddenStates, int TextTokens, float[] TextEmbeds, float[] TimeIds);

    public static ParityCase ParityInputs(UNetConfig cfg, int latentHeight, int latentWidth, long seed, int textTokens = 77)
    {
        float[] N(string name, int count)
        {
            var rng = SeededNormal.For(seed, name);
            var v = new float[count];
            for (int i = 0; i < count; i++) v[i] = (float)rng.NextNormal();
            return v;
        }
        int pooled = cfg.AdditionEmbedType == "text_time" ? cfg.ProjectionClassEmbeddingsInputDim - 6 * cfg.AdditionTimeEmbedDim : 0;
        int h = latentHeight * 8, w = latentWidth * 8;
        return new ParityCase(N("sample", cfg.InChannels * latentHeight * latentWidth), 501f,
            N("encoder_hidden_states", textTokens * cfg.CrossAttentionDim), textTokens, N("text_embeds", pooled),
            pooled > 0 ? SdxlTimeIds.ForSize(h, w) : []);
    }

    /// <summary>
    /// The parity case as safetensors (F32): sample [1,C,h,w], timestep [1], encoder_hidden_states
    /// [1,S,D], text_embeds [1,P], time_ids [1,6], and our output [1,C,h,w]; backend name in the metadata.
    /// </summary>
    public static void WriteParityCase(string path, ParityCase c, float[] output, UNetConfig cfg, int latentHeight, int latentWidth,
        string backend = "cuda-f16")
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        long[] latent = [1, cfg.InChannels, latentHeight, latentWidth];
        var tensors = new List<WeightTensor>
        {
            ArrayWeightTensor.FromFloat32("sample", latent, c.Sample, DType.F32),
            ArrayWeightTensor.FromFloat32("timestep", [1], [c.Timestep], DType.F32),
            ArrayWeightTensor.FromFloat32("encoder_hidden_states", [1, c.TextTokens, cfg.CrossAttentionDim], c.EncoderHiddenStates, DType.F32),
            ArrayWeightTensor.FromFloat32("output", [1, cfg.OutChannels, latentHeight, latentWidth], output, DType.F32),
        };
        if (c.TextEmbeds.Length > 0)
        {
            tensors.Add(ArrayWeightTensor.FromFloat32("text_embeds", [1, c.TextEmbeds.Length], c.TextEmbeds, DType.F32));
            tensors.Add(ArrayWeightTensor.FromFloat32("time_ids", [1, c.TimeIds.Length], c.TimeIds, DType.F32));
        }
        SafeTensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["backend"] = backend });
    }

    /// <summary>Runs the parity case's evaluation on any backend (the CPU reference for the tiny plumbing check).</summary>
    public static float[] Evaluate(IOps backend, UNet2DConditionModel unet, ParityCase c, int latentHeight, int latentWidth)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(unet);
        var cfg = unet.Config;
        using var sample = backend.FromHost(c.Sample, 1, cfg.InChannels, latentHeight, latentWidth);
        using var ehs = backend.FromHost(c.EncoderHiddenStates, 1, c.TextTokens, cfg.CrossAttentionDim);
        using var te = c.TextEmbeds.Length > 0 ? backend.FromHost(c.TextEmbeds, 1, c.TextEmbeds.Length) : null;
        using var y = unet.Forward(sample, [c.Timestep], ehs, te, c.TimeIds);
        return backend.ToHost(y);
    }

    static float[] Repeat(float[] x, int times)
    {
        var r = new float[x.Length * times];
        for (int i = 0; i < times; i++) x.CopyTo(r, i * x.Length);
        return r;
    }

    public static string ToMarkdown(UNetBenchResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(inv, $"Device: {r.Device}; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; SDXL UNet, random full-size fp16 weights, {r.Width}x{r.Height}; median of {r.Repeats} CUDA-event times");
        sb.AppendLine();
        sb.AppendLine("| measure | value | target |");
        sb.AppendLine("| --- | ---: | ---: |");
        sb.AppendLine(inv, $"| UNet FLOPs per image (counted on the graph) | {r.FlopsPerImage / 1e12:F2} TFLOP | DESIGN §6: ~6.8 |");
        sb.AppendLine(inv, $"| measured fp16 GEMM peak (8192^3) | {r.GemmPeakTflops:F1} TFLOP/s | |");
        sb.AppendLine(inv, $"| UNet evaluation, batch 1 (unet_eval_ms) | {r.UnetEvalMs:F2} ms ({r.UnetEvalTflops:F1} TFLOP/s) | |");
        sb.AppendLine(inv, $"| UNet batch 2 alone | {r.GuidedUnetMs:F2} ms | |");
        sb.AppendLine(inv, $"| guided step: UNet batch 2 + CFG + Euler (guided_step_ms) | {r.GuidedStepMs:F2} ms ({r.GuidedStepTflops:F1} TFLOP/s, {r.FractionOfPeak * 100:F0}% of the GEMM peak; wall {r.GuidedStepWallMs:F2} ms) | <= 30 ms (diffusers eager ~67) |");
        sb.AppendLine(inv, $"| LayerFusion triplet, {r.TripletSteps} steps, end to end incl. decoding (triplet_e2e_s) | {(r.TripletE2eS is double t ? t.ToString("F2", inv) + " s" : "not measured")} | <= 3.5 s |");
        sb.AppendLine(inv, $"| peak device memory in use (peak_memory_gib) | {r.PeakMemoryGiB:F2} GiB | |");
        sb.AppendLine(inv, $"| checkpoint load (read + upload) | {r.LoadSeconds:F1} s | |");
        return sb.ToString();
    }

    /// <summary>The measures this harness owns, as they appear in perf/results.json.</summary>
    public static readonly string[] MeasureNames =
        ["unet_flops_per_image", "gemm_peak_tflops", "unet_eval_ms", "unet_eval_tflops", "guided_unet_ms", "guided_step_ms", "guided_step_tflops",
         "guided_step_fraction_of_peak", "triplet_e2e_s", "peak_memory_gib", "checkpoint_load_s"];

    /// <summary>
    /// Merges <paramref name="r"/> into an existing perf/results.json text (null or empty: a new
    /// document): this harness's measures replace earlier ones of the same name and shape, other
    /// measures (the attention benchmark's) stay, and the names measured now leave not_measured.
    /// </summary>
    public static string MergeResultsJson(string? existing, UNetBenchResult r, DateTime date, int? arch = null)
    {
        ArgumentNullException.ThrowIfNull(r);
        JsonObject root;
        try
        {
            root = string.IsNullOrWhiteSpace(existing) ? new JsonObject() : JsonNode.Parse(existing) as JsonObject ?? new JsonObject();
        }
        catch (JsonException e)
        {
            throw new UserInputException($"results.json is not valid JSON ({e.Message}); move it away or fix it");
        }
        root["device"] ??= r.Device;
        if (arch is int a) root["arch"] ??= a;
        root["date"] = date.ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
        root["storage"] ??= "fp16";
        root["method"] ??= "CUDA events on the backend stream; warm-up, then the median of repeats; random inputs";
        string shape = $"sdxl unet {r.Width}x{r.Height}";
        if (root["measures"] is not JsonArray measures)
        {
            measures = new JsonArray();
            root["measures"] = measures;
        }
        for (int i = measures.Count - 1; i >= 0; i--)
            if (measures[i] is JsonObject m && (string?)m["shape"] == shape && MeasureNames.Contains((string?)m["name"]))
                measures.RemoveAt(i);
        void Add(string name, string kernel, double value, string unit) => measures.Add(new JsonObject
        {
            ["name"] = name, ["shape"] = shape, ["kernel"] = kernel, ["value"] = Math.Round(value, 4), ["unit"] = unit,
        });
        Add("unet_flops_per_image", "counted on the model graph (linear, conv, attention)", r.FlopsPerImage / 1e12, "TFLOP");
        Add("gemm_peak_tflops", "fp16 GEMM 8192^3 via CudaOps.Linear (measured peak)", r.GemmPeakTflops, "TFLOP/s");
        Add("unet_eval_ms", "UNet2DConditionModel batch 1", r.UnetEvalMs, "ms");
        Add("unet_eval_tflops", "UNet2DConditionModel batch 1", r.UnetEvalTflops, "TFLOP/s");
        Add("guided_unet_ms", "UNet2DConditionModel batch 2", r.GuidedUnetMs, "ms");
        Add("guided_step_ms", "SdxlPipeline.PredictNoise (batch 2, CFG) + Euler step", r.GuidedStepMs, "ms");
        Add("guided_step_tflops", "SdxlPipeline.PredictNoise (batch 2, CFG) + Euler step", r.GuidedStepTflops, "TFLOP/s");
        Add("guided_step_fraction_of_peak", "guided_step_tflops / gemm_peak_tflops", r.FractionOfPeak, "fraction");
        if (r.TripletE2eS is double t) Add("triplet_e2e_s", $"LayerFusionPipeline.Generate, {r.TripletSteps} steps, incl. decoding (wall)", t, "s");
        Add("peak_memory_gib", "device memory in use (cuMemGetInfo, after each phase)", r.PeakMemoryGiB, "GiB");
        Add("checkpoint_load_s", "LayerFusionPipeline.Load (wall)", r.LoadSeconds, "s");
        if (root["not_measured"] is JsonArray pending)
        {
            var measured = new HashSet<string> { "guided_step_ms", "unet_eval_ms" };
            if (r.TripletE2eS is not null) measured.Add("triplet_e2e_s");
            for (int i = pending.Count - 1; i >= 0; i--)
                if (measured.Contains((string?)pending[i] ?? "")) pending.RemoveAt(i);
        }
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
