using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using LayerFusion.Core.Imaging;
using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Models.Vae;
using LayerFusion.Core.Schedulers;
using LayerFusion.Core.Tensors;
using LayerFusion.Core.Text;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;

namespace LayerFusion.Core.Pipelines;

public sealed record SdxlPipelineOptions
{
    /// <summary>Upload every weight at load time (weights resident; the checkpoint may then be
    /// disposed). False: upload on first use, and keep the checkpoint open while the pipeline is used.</summary>
    public bool PreloadWeights { get; init; } = true;
    /// <summary>Overrides model_index.json's force_zeros_for_empty_prompt (absent there: true, as SDXL base).</summary>
    public bool? ForceZerosForEmptyPrompt { get; init; }
    /// <summary>The backend the VAE runs on, when it differs from the UNet's: SDXL's VAE overflows in
    /// fp16, so a GPU backend decodes on an fp32 or bf16 instance (DESIGN.md §4). Null: the same backend.</summary>
    public IOps? VaeOps { get; init; }
    /// <summary>Dispose the backend(s) (<see cref="SdxlPipeline.Ops"/>, <see cref="VaeOps"/>) with the pipeline, and when loading fails.</summary>
    public bool OwnsOps { get; init; }
}

/// <summary>
/// diffusers v0.25 StableDiffusionXLPipeline on an <see cref="IOps"/> backend: loaded once, weights
/// resident, <see cref="Generate(SdxlRequest, IProgress{StepProgress}?, CancellationToken)"/> as often as wanted. No console output; warnings come back in the
/// result. The pieces a pipeline is made of (<see cref="EncodePrompt"/>, <see cref="CreateConditioning"/>,
/// <see cref="InitialLatents(GaussianNoise, int, int, int, float)"/>, <see cref="PredictNoise"/>, <see cref="DecodeLatents"/>,
/// <see cref="Postprocess"/>) are public so other pipelines (the LayerFusion triplet) reuse them.
/// Generations are serialized: one runs at a time per pipeline.
/// </summary>
public sealed class SdxlPipeline : IDisposable
{
    // one generation at a time; Dispose cancels the running one and waits for it
    readonly GenerationGate _gate;
    readonly Checkpoint? _owned;
    bool _ownsOps;

    SdxlPipeline(IOps ops, SdxlTextConditioning text, UNet2DConditionModel unet, AutoencoderKL vae,
        WeightsLoader.Configs.SchedulerConfig scheduler, string source, Checkpoint? owned)
    {
        _gate = new GenerationGate(this, ReleaseResources);
        Ops = ops;
        Text = text;
        Unet = unet;
        Vae = vae;
        SchedulerConfig = scheduler;
        Source = source;
        _owned = owned;
    }

    public IOps Ops { get; }
    /// <summary>Both tokenizers and text encoders (diffusers' encode_prompt).</summary>
    public SdxlTextConditioning Text { get; }
    public UNet2DConditionModel Unet { get; }
    public AutoencoderKL Vae { get; }
    /// <summary>The checkpoint's scheduler config; samplers are built from it (<see cref="CreateScheduler"/>).</summary>
    public WeightsLoader.Configs.SchedulerConfig SchedulerConfig { get; }
    /// <summary>The checkpoint's path.</summary>
    public string Source { get; }

    /// <summary>diffusers' vae_scale_factor: 2^(len(vae.block_out_channels) - 1) (8 for SDXL).</summary>
    public int VaeScaleFactor => 1 << (Vae.Config.BlockOutChannels.Length - 1);
    /// <summary>num_channels_latents = unet.in_channels.</summary>
    public int LatentChannels => Unet.Config.InChannels;
    /// <summary>diffusers' default height/width: unet sample_size x vae_scale_factor.</summary>
    public int DefaultSize => Unet.Config.SampleSize * VaeScaleFactor;

    /// <summary>Opens a checkpoint (diffusers folder or single file), loads it and closes it again.</summary>
    public static SdxlPipeline Open(string path, IOps ops, SdxlPipelineOptions? options = null, CheckpointOptions? checkpointOptions = null)
    {
        options ??= new SdxlPipelineOptions();
        try
        {
            ArgumentNullException.ThrowIfNull(ops);
            ArgumentException.ThrowIfNullOrWhiteSpace(path);
        }
        catch when (options.OwnsOps)
        {
            DisposeBackends(ops, options.VaeOps);
            throw;
        }
        Checkpoint checkpoint;
        try { checkpoint = Checkpoint.Open(path, checkpointOptions); }
        catch when (options.OwnsOps)
        {
            DisposeBackends(ops, options.VaeOps);
            throw;
        }
        try
        {
            var pipeline = Load(checkpoint, ops, options, owned: !options.PreloadWeights, uploaded: null);
            if (options.PreloadWeights) checkpoint.Dispose();
            return pipeline;
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Builds the components from <paramref name="checkpoint"/> onto <paramref name="ops"/>. With
    /// <see cref="SdxlPipelineOptions.PreloadWeights"/> (default) every weight is uploaded here and the
    /// caller may dispose the checkpoint afterwards; otherwise it must outlive the pipeline.
    /// </summary>
    public static SdxlPipeline Load(Checkpoint checkpoint, IOps ops, SdxlPipelineOptions? options = null) =>
        Load(checkpoint, ops, options ?? new SdxlPipelineOptions(), owned: false, uploaded: null);

    /// <summary>For pipelines built on this one: <paramref name="uploaded"/> runs after each weight upload
    /// (progress, and cancellation by throwing).</summary>
    internal static SdxlPipeline Load(Checkpoint checkpoint, IOps ops, SdxlPipelineOptions options, Action uploaded) =>
        Load(checkpoint, ops, options, owned: false, uploaded);

    static SdxlPipeline Load(Checkpoint checkpoint, IOps ops, SdxlPipelineOptions options, bool owned, Action? uploaded)
    {
        try
        {
            var p = LoadCore(checkpoint, ops, options, owned, uploaded);
            p._ownsOps = options.OwnsOps;
            return p;
        }
        catch when (options.OwnsOps)
        {
            DisposeBackends(ops, options.VaeOps);
            throw;
        }
    }

    static void DisposeBackends(IOps? ops, IOps? vaeOps)
    {
        if (vaeOps is not null && !ReferenceEquals(vaeOps, ops)) (vaeOps as IDisposable)?.Dispose();
        (ops as IDisposable)?.Dispose();
    }

    static SdxlPipeline LoadCore(Checkpoint checkpoint, IOps ops, SdxlPipelineOptions options, bool owned, Action? uploaded)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(ops);
        var tok1Files = checkpoint.Tokenizer ?? throw new UserInputException(
            $"{checkpoint.SourcePath}: missing component tokenizer (no tokenizer/ folder with vocab.json and merges.txt)");
        var tok2Files = checkpoint.Tokenizer2 ?? throw new UserInputException(
            $"{checkpoint.SourcePath}: missing component tokenizer_2 (no tokenizer_2/ folder with vocab.json and merges.txt)");

        var unetStore = new ParameterStore(ops, checkpoint.Unet.Weights, checkpoint.Unet.Name);
        var vaeStore = new ParameterStore(options.VaeOps ?? ops, checkpoint.Vae.Weights, checkpoint.Vae.Name);
        var te1Store = new ParameterStore(ops, checkpoint.TextEncoder.Weights, checkpoint.TextEncoder.Name);
        var te2Store = new ParameterStore(ops, checkpoint.TextEncoder2.Weights, checkpoint.TextEncoder2.Name);

        var text = new SdxlTextConditioning(
            ClipTokenizer.FromDirectory(tok1Files.Directory), new ClipTextModel(checkpoint.TextEncoder.Config, te1Store),
            ClipTokenizer.FromDirectory(tok2Files.Directory), new ClipTextModel(checkpoint.TextEncoder2.Config, te2Store),
            options.ForceZerosForEmptyPrompt ?? ReadForceZeros(checkpoint));
        var unet = new UNet2DConditionModel(unetStore, checkpoint.Unet.Config);
        var vae = new AutoencoderKL(vaeStore, checkpoint.Vae.Config);
        int expected = text.EmbeddingChannels;
        if (unet.Config.CrossAttentionDim != expected)
            throw new UserInputException($"{checkpoint.SourcePath}: unet cross_attention_dim is {unet.Config.CrossAttentionDim}, " +
                $"but the text encoders' hidden sizes add up to {expected}");
        if (unet.Config.InChannels != vae.Config.LatentChannels)
            throw new UserInputException($"{checkpoint.SourcePath}: unet in_channels ({unet.Config.InChannels}) differs from vae latent_channels ({vae.Config.LatentChannels})");

        if (options.PreloadWeights)
        {
            // ParameterStore uploads on first access; touching every name makes the weights resident now,
            // so the memory-mapped checkpoint is no longer needed.
            foreach (var (store, component) in new[] { (unetStore, checkpoint.Unet), (vaeStore, (ModelComponent)checkpoint.Vae),
                         (te1Store, checkpoint.TextEncoder), (te2Store, checkpoint.TextEncoder2) })
                foreach (var name in component.Weights.Keys)
                {
                    _ = store[name];
                    uploaded?.Invoke();
                }
        }
        return new SdxlPipeline(ops, text, unet, vae, checkpoint.Scheduler, checkpoint.SourcePath, owned ? checkpoint : null);
    }

    /// <summary>model_index.json's force_zeros_for_empty_prompt (diffusers folders); true when absent, as SDXL base has it.</summary>
    static bool ReadForceZeros(Checkpoint checkpoint)
    {
        if (checkpoint.Layout != CheckpointLayout.DiffusersFolder) return true;
        var path = Path.Combine(checkpoint.SourcePath, "model_index.json");
        if (!File.Exists(path)) return true;
        // The same reader and policy as the checkpoint loader's (ConfigReader): one verdict per file.
        return WeightsLoader.Configs.ConfigReader.FromFile(path).Bool("force_zeros_for_empty_prompt", true);
    }

    // ---- the reusable pieces ------------------------------------------------------------------

    /// <summary>A sampler built from the checkpoint's scheduler config: <paramref name="sampler"/> null = the
    /// checkpoint's own class; otherwise a <see cref="Samplers"/> name (unknown names are a user error).</summary>
    public IScheduler CreateScheduler(string? sampler) =>
        sampler is null ? Samplers.FromConfig(SchedulerConfig) : Samplers.Create(sampler, SchedulerConfig);

    /// <summary>diffusers' do_classifier_free_guidance (time_cond_proj_dim is never set for SDXL).</summary>
    public static bool UsesGuidance(float guidanceScale) => guidanceScale > 1f;

    /// <summary>encode_prompt: the prompt's and the negative's embeddings (zeros for an empty negative
    /// when force_zeros_for_empty_prompt).</summary>
    public SdxlTextEncoding EncodePrompt(string prompt, string? negativePrompt = null, string? prompt2 = null,
        string? negativePrompt2 = null, int clipSkip = 0) =>
        Text.Encode(prompt, negativePrompt, prompt2, negativePrompt2, clipSkip);

    /// <summary>The UNet conditioning rows for a (guided) batch of <paramref name="images"/> images of this size:
    /// add_time_ids = (height, width) + (0, 0) + (height, width).</summary>
    public SdxlUnetConditioning CreateConditioning(SdxlTextEncoding encoding, int images, int height, int width, bool guided) =>
        SdxlUnetConditioning.Create(encoding, images, SdxlTimeIds.ForSize(height, width), guided);

    /// <summary>
    /// prepare_latents: seeded unit noise of shape [images, C, h, w] times init_noise_sigma. Noise is
    /// <see cref="GaussianNoise"/>(seed, stream) filled in row-major order, so image k of a batch is
    /// the same as drawing elements k*C*h*w... of that stream.
    /// </summary>
    public float[] InitialLatents(ulong seed, int images, int latentHeight, int latentWidth, float initNoiseSigma, ulong stream = 0) =>
        InitialLatents(new GaussianNoise(seed, stream), images, latentHeight, latentWidth, initNoiseSigma);

    /// <summary>
    /// prepare_latents drawing from <paramref name="noise"/>, which then continues to feed a stochastic
    /// sampler's steps (diffusers passes the same generator to prepare_latents and scheduler.step).
    /// </summary>
    public float[] InitialLatents(GaussianNoise noise, int images, int latentHeight, int latentWidth, float initNoiseSigma)
    {
        ArgumentNullException.ThrowIfNull(noise);
        long count = (long)images * LatentChannels * latentHeight * latentWidth;
        if (count > Array.MaxLength) throw new UserInputException($"latent of {count} values is too large");
        var latents = noise.Next((int)count);
        for (int i = 0; i < latents.Length; i++) latents[i] *= initNoiseSigma;
        return latents;
    }

    /// <summary>
    /// One UNet evaluation on a host-side batch (already scheduler-scaled): [batch, C, h, w] in, the
    /// raw model output [batch, out_channels, h, w] out. <paramref name="processor"/> and
    /// <paramref name="attentionWeights"/> override the UNet's defaults for this call.
    /// </summary>
    public float[] RunUnet(ReadOnlySpan<float> modelInput, int latentHeight, int latentWidth, float timestep,
        SdxlUnetConditioning conditioning, IAttentionProcessor? processor = null, IAttentionWeights? attentionWeights = null)
    {
        ArgumentNullException.ThrowIfNull(conditioning);
        int batch = conditioning.Batch;
        if (modelInput.Length != (long)batch * LatentChannels * latentHeight * latentWidth)
            throw new ArgumentException($"UNet input has {modelInput.Length} values, the conditioning batch {batch} x {LatentChannels} x {latentHeight} x {latentWidth} needs {(long)batch * LatentChannels * latentHeight * latentWidth}");
        using var sample = Ops.FromHost(modelInput, batch, LatentChannels, latentHeight, latentWidth);
        using var output = Unet.Forward(sample, [timestep], conditioning.EncoderHiddenStates, conditioning.TextEmbeds,
            conditioning.TimeIds, processor, attentionWeights);
        return Ops.ToHost(output);
    }

    /// <summary>
    /// One guided denoiser evaluation at step <paramref name="stepIndex"/>: latent_model_input =
    /// cat([latents] * 2) (guided) scaled by the scheduler, ONE UNet call on the whole batch, then
    /// noise_uncond + scale * (noise_text - noise_uncond). <paramref name="latents"/> holds
    /// conditioning.ImagesPerHalf images. Returns the guided noise prediction (same length as latents).
    /// </summary>
    public float[] PredictNoise(IScheduler scheduler, int stepIndex, ReadOnlySpan<float> latents, int latentHeight, int latentWidth,
        SdxlUnetConditioning conditioning, float guidanceScale, IAttentionProcessor? processor = null, IAttentionWeights? attentionWeights = null)
    {
        ArgumentNullException.ThrowIfNull(scheduler);
        ArgumentNullException.ThrowIfNull(conditioning);
        var input = new float[conditioning.Guided ? 2 * latents.Length : latents.Length];
        latents.CopyTo(input);
        if (conditioning.Guided) latents.CopyTo(input.AsSpan(latents.Length));
        scheduler.ScaleModelInput(input, stepIndex, input);
        var output = RunUnet(input, latentHeight, latentWidth, scheduler.Timesteps[stepIndex], conditioning, processor, attentionWeights);
        FiniteCheck.Require(output, "unet", $"at denoising step {stepIndex + 1} of {scheduler.StepCount}");
        if (!conditioning.Guided) return output;
        if (output.Length != input.Length)
            throw new UserInputException($"unet out_channels ({Unet.Config.OutChannels}) differs from in_channels ({LatentChannels}); an epsilon UNet needs them equal");
        return Guidance.Combine(output, guidanceScale);
    }

    /// <summary>latents / vae.config.scaling_factor as a [images, C, h, w] tensor: what the VAE decoder (and
    /// LayerDiffuse's transparent decoder) take.</summary>
    public Tensor UnscaledLatents(ReadOnlySpan<float> latents, int images, int latentHeight, int latentWidth)
    {
        var z = new float[latents.Length];
        float scale = (float)Vae.Config.ScalingFactor;
        // torch: float32 tensor / python float -> division by the float32 scalar, element by element
        for (int i = 0; i < z.Length; i++) z[i] = latents[i] / scale;
        return Vae.Ops.FromHost(z, images, LatentChannels, latentHeight, latentWidth);
    }

    /// <summary>vae.decode(latents / scaling_factor): RGB in about [-1, 1], [images, 3, H, W]. The CPU
    /// backend computes in fp32 (SDXL's VAE overflows in fp16; diffusers upcasts it too).</summary>
    public Tensor DecodeLatents(ReadOnlySpan<float> latents, int images, int latentHeight, int latentWidth)
    {
        using var z = UnscaledLatents(latents, images, latentHeight, latentWidth);
        return Vae.Decode(z);
    }

    /// <summary>diffusers' VaeImageProcessor.postprocess(output_type="pil"): (x / 2 + 0.5).clamp(0, 1), * 255, round.
    /// (No invisible watermark: diffusers adds one only when the invisible-watermark package is installed.)</summary>
    public static IReadOnlyList<Image8> Postprocess(Tensor image)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (image.Rank != 4) throw new ArgumentException($"image must be [B, C, H, W], got {ShapeUtil.Format(image.Shape)}");
        var host = image.Ops.ToHost(image);
        FiniteCheck.Require(host, "vae", "in the decoded image");
        int b = image.Dim(0), c = image.Dim(1), h = image.Dim(2), w = image.Dim(3);
        var result = new Image8[b];
        for (int i = 0; i < b; i++) result[i] = ImageConvert.FromSignedNchw(host, i, c, h, w);
        return result;
    }

    /// <summary>Checks a size against diffusers' rule (positive multiples of 8) and the VAE's factor.</summary>
    public (int Height, int Width) ResolveSize(int? width, int? height)
    {
        int w = width ?? DefaultSize, h = height ?? DefaultSize;
        int m = Math.Max(8, VaeScaleFactor);
        if (w <= 0 || h <= 0 || w % m != 0 || h % m != 0)
            throw new UserInputException($"width and height must be positive multiples of {m}, got {w}x{h}");
        return (h, w);
    }

    // ---- the whole pipeline ---------------------------------------------------------------------

    /// <summary>
    /// StableDiffusionXLPipeline.__call__: encode prompts, seeded initial latents, the denoising loop
    /// (one UNet call per step on the [uncond, cond] batch), VAE decode, postprocess. Progress is
    /// reported after every step; cancellation is checked before every step.
    /// </summary>
    public SdxlResult Generate(SdxlRequest request, IProgress<StepProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        _gate.ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(request);
        Validate(request);
        return _gate.Run(cancellationToken, ct =>
        {
            using var encoding = EncodePrompt(request.Prompt, request.NegativePrompt, request.Prompt2, request.NegativePrompt2, request.ClipSkip);
            FiniteCheck.Require(encoding, "request's");
            return GenerateCore(request, encoding, progress, ct);
        });
    }

    /// <summary>
    /// <see cref="Generate(SdxlRequest, IProgress{StepProgress}?, CancellationToken)"/> with precomputed text
    /// embeddings (diffusers' prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds and
    /// negative_pooled_prompt_embeds arguments): the request's prompts are ignored. Not disposed here.
    /// </summary>
    public SdxlResult Generate(SdxlRequest request, SdxlTextEncoding encoding, IProgress<StepProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        _gate.ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(encoding);
        Validate(request);
        return _gate.Run(cancellationToken, ct => GenerateCore(request, encoding, progress, ct));
    }

    void Validate(SdxlRequest request)
    {
        if (request.Prompt is null) throw new ArgumentNullException(nameof(request), "the request's Prompt is null");
        var (height, width) = ResolveSize(request.Width, request.Height);
        if (request.Steps < 1 || request.Steps > 1000) throw new UserInputException($"steps must be 1..1000, got {request.Steps}");
        if (request.NumImages < 1 || request.NumImages > 64) throw new UserInputException($"the number of images must be 1..64, got {request.NumImages}");
        if (!float.IsFinite(request.GuidanceScale)) throw new UserInputException($"guidance scale must be a finite number, got {request.GuidanceScale}");
        if (request.ClipSkip < 0) throw new UserInputException($"clip skip must be >= 0, got {request.ClipSkip}");
        MemoryEstimate.ForSdxl(this, width, height, request.NumImages, UsesGuidance(request.GuidanceScale)).Require();
    }

    SdxlResult GenerateCore(SdxlRequest request, SdxlTextEncoding encoding, IProgress<StepProgress>? progress, CancellationToken cancellationToken)
    {
        var (height, width) = ResolveSize(request.Width, request.Height);
        var scheduler = CreateScheduler(request.Sampler);
        int n = request.NumImages, lh = height / VaeScaleFactor, lw = width / VaeScaleFactor;
        long latentCount = (long)n * LatentChannels * lh * lw;
        if (request.InitialNoise is { } given && given.Length != latentCount)
            throw new UserInputException($"initial noise has {given.Length} values; {n} x {LatentChannels} x {lh} x {lw} = {latentCount} are needed");

        {
            cancellationToken.ThrowIfCancellationRequested();
            scheduler.SetTimesteps(request.Steps);
            bool guided = UsesGuidance(request.GuidanceScale);
            using var conditioning = CreateConditioning(encoding, n, height, width, guided);
            float[] latents;
            // one seeded stream: the initial latents, then (stochastic samplers) every step's noise
            var noiseSource = new GaussianNoise(request.Seed);
            if (request.InitialNoise is { } noise0)
            {
                latents = new float[noise0.Length];
                for (int i = 0; i < latents.Length; i++) latents[i] = noise0[i] * scheduler.InitNoiseSigma;
            }
            else latents = InitialLatents(noiseSource, n, lh, lw, scheduler.InitNoiseSigma);

            var clock = Stopwatch.StartNew();
            using var device = HostReferenceLoop ? null : DeviceSampler.TryCreate(scheduler, SchedulerConfig);
            if (device is not null)
            {
                var initial = latents;
                latents = DenoiseOnDevice(device, latents, n, lh, lw, conditioning, request.GuidanceScale, noiseSource, progress, clock, cancellationToken);
                // read back once at the end: the device loop's cheap non-finite check. Only on failure,
                // one host-checked UNet call on the first step's input says whether the UNet is to blame.
                if (latents.Any(v => !float.IsFinite(v)))
                {
                    FiniteCheck.Require(PredictNoise(scheduler, 0, initial, lh, lw, conditioning, request.GuidanceScale), "unet",
                        $"at denoising step 1 of {scheduler.StepCount}");
                    FiniteCheck.Require(latents, "denoising loop (unet and sampler)", $"after {scheduler.StepCount} steps");
                }
            }
            else
                for (int i = 0; i < scheduler.StepCount; i++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var noise = PredictNoise(scheduler, i, latents, lh, lw, conditioning, request.GuidanceScale);
                    scheduler.Step(noise, i, latents, latents, noiseSource);
                    FiniteCheck.Require(latents, "sampler", $"({scheduler.Name}) at denoising step {i + 1} of {scheduler.StepCount}");
                    progress?.Report(new StepProgress(i + 1, scheduler.StepCount, scheduler.Timesteps[i], clock.Elapsed));
                }
            cancellationToken.ThrowIfCancellationRequested();

            IReadOnlyList<Image8> images;
            using (var decoded = DecodeLatents(latents, n, lh, lw))
                images = Postprocess(decoded);
            return new SdxlResult
            {
                Images = images,
                Latents = latents,
                LatentShape = [n, LatentChannels, lh, lw],
                Width = width,
                Height = height,
                Sampler = scheduler.Name,
                Warnings = encoding.Warnings,
            };
        }
    }

    /// <summary>
    /// Run the denoising loop on the host (latents read back and written again around every UNet
    /// call, CFG and the sampler in managed code): the reference the device loop is checked against.
    /// Default false: latents, CFG and the sampler step stay on the backend (<see cref="DeviceSampler"/>);
    /// samplers without a device form always take the host loop.
    /// </summary>
    public bool HostReferenceLoop { get; set; }

    /// <summary>
    /// On a backend with step graphs (CUDA): capture the second denoising step once and replay it for
    /// every later step (the first runs uncaptured: it loads the kernels and grows the step arena).
    /// Default true; false runs every step op by op (CLI --no-cuda-graph), for comparison.
    /// </summary>
    public bool StepGraphs { get; set; } = true;

    /// <summary>After each generation: how many of its denoising steps ran as a launch of the captured step graph.</summary>
    public int LastGraphSteps { get; private set; }

    float[] DenoiseOnDevice(DeviceSampler sampler, float[] initial, int n, int lh, int lw, SdxlUnetConditioning conditioning, float guidanceScale,
        INoiseSource noise, IProgress<StepProgress>? progress, Stopwatch clock, CancellationToken ct)
    {
        var scheduler = sampler.Host;
        int steps = scheduler.StepCount;
        // the generation's scalars on the backend, uploaded once: [timestep, sampler columns] per step, the time ids
        int columns = 1 + sampler.Columns;
        var rows = new float[steps * columns];
        for (int i = 0; i < steps; i++) rows[i * columns] = scheduler.Timesteps[i];
        sampler.WriteColumns(rows, columns, 1);
        using var table = Ops.CreateStepScalars(rows, steps, columns, conditioning.TimeIds);
        var time = new UNetStepTime(table.Column(0), table.Constant(0), conditioning.TimeIds.Length);
        int[] shape = [n, LatentChannels, lh, lw];
        var x = Ops.FromHost(initial, shape);
        sampler.Bind(Ops, table, 1, shape, noise);
        var arena = Ops as IStepArena;
        IStepGraph? graph = null;
        LastGraphSteps = 0;
        void Step(int i)
        {
            Tensor next;
            using (var scaled = sampler.ScaleModelInput(x, i))
            using (var input = conditioning.Guided ? Ops.Concat([scaled, scaled], 0) : null)
            using (var output = Unet.Forward(input ?? scaled, time, conditioning.EncoderHiddenStates, conditioning.TextEmbeds))
            {
                if (output.Dim(1) != LatentChannels)
                    throw new UserInputException($"unet out_channels ({Unet.Config.OutChannels}) differs from in_channels ({LatentChannels}); an epsilon UNet needs them equal");
                if (conditioning.Guided)
                {
                    using var uncond = Ops.Slice(output, 0, 0, n);
                    using var cond = Ops.Slice(output, 0, n, n);
                    using var noise = DeviceGuidance.Combine(uncond, cond, guidanceScale);
                    next = sampler.Step(noise, i, x);
                }
                else next = sampler.Step(output, i, x);
            }
            if (arena is not null)
            {
                // the latents keep their memory (a captured step reads and writes the same buffer every replay)
                arena.CopyInto(x, next);
                next.Dispose();
            }
            else
            {
                x.Dispose();
                x = next;
            }
            Ops.AdvanceStep(table);
        }
        try
        {
            for (int i = 0; i < steps; i++)
            {
                ct.ThrowIfCancellationRequested();
                using (var stepScope = arena?.BeginStep())
                {
                    if (graph is not null)
                    {
                        graph.Launch();
                        LastGraphSteps++;
                    }
                    else if (arena is not null && StepGraphs && i == 1 && (graph = arena.TryCapture(() => Step(1))) is not null)
                    {
                        graph.Launch();
                        LastGraphSteps++;
                    }
                    else Step(i);
                }
                progress?.Report(new StepProgress(i + 1, steps, scheduler.Timesteps[i], clock.Elapsed));
            }
            return Ops.ToHost(x);
        }
        finally
        {
            graph?.Dispose();
            x.Dispose();
        }
    }

    /// <summary><see cref="Generate(SdxlRequest, IProgress{StepProgress}?, CancellationToken)"/> on the thread pool.</summary>
    public Task<SdxlResult> GenerateAsync(SdxlRequest request, IProgress<StepProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        // bad arguments throw here, before a task starts
        _gate.ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(request);
        Validate(request);
        return Task.Run(() => Generate(request, progress, cancellationToken), cancellationToken);
    }

    /// <summary>
    /// Cancels a running generation and waits for it to stop, then closes the checkpoint (when this
    /// pipeline opened it without preloading) and the backends (when it owns them). Called from the
    /// generation's own progress callback, it cancels and the generation releases on its way out.
    /// </summary>
    public void Dispose() => _gate.Dispose();

    void ReleaseResources()
    {
        _owned?.Dispose();
        if (_ownsOps) DisposeBackends(Ops, Vae.Ops);
    }
}
