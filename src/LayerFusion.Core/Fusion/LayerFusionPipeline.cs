using LayerFusion.Core.Imaging;
using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Models.Transparent;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Models.Vae;
using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Schedulers;
using LayerFusion.Core.Tensors;
using LayerFusion.Core.Text;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.LayerDiffuse;

namespace LayerFusion.Core.Fusion;

/// <summary>One triplet to generate.</summary>
public sealed record LayerFusionRequest
{
    /// <summary>The transparent foreground's prompt (required, not empty: the priors come from its tokens).</summary>
    public required string Foreground { get; init; }
    public required string Background { get; init; }
    /// <summary>Negative prompt for all three streams; null/empty = zeros (SDXL's force_zeros_for_empty_prompt).</summary>
    public string? Negative { get; init; }
    public int Steps { get; init; } = 30;
    /// <summary>Classifier-free guidance scale; the default is diffusers' SDXL default, as for <see cref="SdxlRequest"/> and the CLI's --cfg-scale.</summary>
    public float GuidanceScale { get; init; } = 5f;
    public ulong Seed { get; init; }
    /// <summary>Width in pixels (a positive multiple of the VAE factor); null = the model's default size (1024 for SDXL).</summary>
    public int? Width { get; init; }
    /// <summary>Height in pixels; null = the model's default size.</summary>
    public int? Height { get; init; }
    /// <summary>A <see cref="Samplers"/> name; null = the checkpoint's scheduler.</summary>
    public string? Sampler { get; init; }
    /// <summary>Record s', c and the masks at t = 0.8T (and the prior layer's probabilities on small models).</summary>
    public bool DumpPriors { get; init; }
    public LayerFusionOptions Options { get; init; } = new();

    /// <summary>What can be checked without a model; bad values throw <see cref="UserInputException"/> (an <see cref="ArgumentException"/>).</summary>
    public void Validate()
    {
        if (Foreground is null) throw new ArgumentNullException(nameof(Foreground));
        if (Background is null) throw new ArgumentNullException(nameof(Background));
        if (string.IsNullOrWhiteSpace(Foreground))
            throw new UserInputException("the foreground prompt is empty; LayerFusion's priors come from the foreground's tokens, so it needs one");
        if (Width is { } w && (w <= 0 || w % 8 != 0) || Height is { } h && (h <= 0 || h % 8 != 0))
            throw new UserInputException($"width and height must be positive multiples of 8, got {Width?.ToString() ?? "default"}x{Height?.ToString() ?? "default"}");
        if (Steps < 1 || Steps > 1000) throw new UserInputException($"steps must be 1..1000, got {Steps}");
        if (!float.IsFinite(GuidanceScale) || GuidanceScale < 0) throw new UserInputException($"guidance scale must be a finite number >= 0, got {GuidanceScale}");
        if (Options is null) throw new ArgumentNullException(nameof(Options));
        Options.Validate();
    }
}

/// <summary>What a pipeline is doing when it reports progress.</summary>
public enum LayerFusionPhase
{
    /// <summary>Uploading weights: Step of Steps weights.</summary>
    Load,
    /// <summary>Denoising: Step of Steps steps.</summary>
    Denoise,
    /// <summary>Decoding: Step of Steps decoder passes (background, blend, foreground + transparent).</summary>
    Decode,
}

/// <summary>Progress of loading or of one generation.</summary>
public sealed record LayerFusionProgress(LayerFusionPhase Phase, int Step, int Steps);

/// <summary>The maps of one denoising step (t closest to 0.8T) for inspection (paper Fig. 3).</summary>
/// <param name="VisualizedSite">The cross-attention layer whose c and masks the PNGs show (the prior layer's block).</param>
public sealed record LayerFusionPriorDump(int Step, float Timestep, StructurePrior Structure, IReadOnlyDictionary<string, LayerFusionMaps> Maps,
    string VisualizedSite, float[]? PriorProbabilities);

/// <summary>A generated triplet as in-memory images (straight-alpha RGBA foreground).</summary>
public sealed record LayerFusionResult(Image8 Foreground, Image8 Background, Image8 Blend, Image8 AlphaComposite,
    IReadOnlyDictionary<string, string> Parameters, IReadOnlyList<string> Warnings, LayerFusionPriorDump? Priors);

/// <summary>Where the LayerDiffuse files are: the attention offsets (dense or LoRA) and the transparent decoder.</summary>
public sealed record LayerDiffuseFiles(string Attention, string TransparentDecoder)
{
    /// <summary>Files with LayerDiffuse's released names in <paramref name="dir"/> (the dense attention file preferred).</summary>
    public static LayerDiffuseFiles InDirectory(string dir)
    {
        if (!Directory.Exists(dir)) throw new UserInputException($"'{dir}': LayerDiffuse folder not found");
        string? attn = new[] { LayerDiffuseTiny.DenseAttentionFileName, LayerDiffuseTiny.LoraAttentionFileName }
            .Select(n => Path.Combine(dir, n)).FirstOrDefault(File.Exists);
        var dec = Path.Combine(dir, LayerDiffuseTiny.TransparentDecoderFileName);
        if (attn is null)
            throw new UserInputException($"'{dir}' has no LayerDiffuse attention file ({LayerDiffuseTiny.DenseAttentionFileName} or {LayerDiffuseTiny.LoraAttentionFileName})");
        if (!File.Exists(dec)) throw new UserInputException($"'{dir}' has no transparent decoder ({LayerDiffuseTiny.TransparentDecoderFileName})");
        return new LayerDiffuseFiles(attn, dec);
    }
}

/// <summary>
/// LayerFusion triplet generation (paper Sec. 3, DESIGN §5) over one resident SDXL checkpoint plus
/// the LayerDiffuse foreground offsets and transparent decoder. Load once, generate many times
/// (generations are serialized). Per denoising step: the prior pass (FG cond, batch 1) then the
/// interaction pass over [FG, BLEND, BG] x [uncond, cond] as one UNet batch; CFG and the sampler
/// step per stream. All three streams start from the same seeded noise, so with sharing off the BG
/// stream is exactly a plain SDXL run of the BG prompt with that seed. The library writes nothing
/// to the console.
/// </summary>
public sealed partial class LayerFusionPipeline : IDisposable
{
    // one generation at a time; Dispose cancels the running one and waits for it
    readonly GenerationGate _gate;

    LayerFusionPipeline(SdxlPipeline sdxl, IReadOnlyDictionary<string, WeightTensor> merged, TransparentDecoderFile decoder, Action uploaded)
    {
        _gate = new GenerationGate(this, ReleaseResources);
        Sdxl = sdxl;
        ForegroundWeights = new LayerDiffuseAttentionWeights(Unet.AttentionWeights, Ops, merged);
        var decoderStore = new ParameterStore(sdxl.Vae.Ops, decoder.Tensors, "transparent_decoder");
        // Uploaded now, like every other weight: the file is closed after loading, so a file replaced
        // or truncated later cannot reach a generation.
        foreach (var name in decoder.Tensors.Keys)
        {
            _ = decoderStore[name];
            uploaded();
        }
        TransparentDecoder = new TransparentVaeDecoder(new UNet1024(decoderStore, decoder.Config));
        // the transparent decoder injects the latent where its features have the latent's size, so
        // its latent_inject_level must match diffusers' vae_scale_factor (a mismatched pair cannot decode)
        if (1 << decoder.Config.LatentInjectLevel != VaeScaleFactor)
            throw new UserInputException($"the transparent decoder injects latents at 1/{1 << decoder.Config.LatentInjectLevel} of the image size, " +
                $"but this checkpoint's VAE decodes latents {VaeScaleFactor}x up (latent_inject_level must be {int.Log2(VaeScaleFactor)})");
    }

    /// <summary>The plain SDXL pipeline whose text encoders, UNet, VAE, samplers and noise the triplet shares.</summary>
    public SdxlPipeline Sdxl { get; }
    public IOps Ops => Sdxl.Ops;
    public UNet2DConditionModel Unet => Sdxl.Unet;
    public LayerDiffuseAttentionWeights ForegroundWeights { get; }
    public AutoencoderKL Vae => Sdxl.Vae;
    public TransparentVaeDecoder TransparentDecoder { get; }
    public SdxlTextConditioning Text => Sdxl.Text;
    public SchedulerConfig SchedulerConfig => Sdxl.SchedulerConfig;
    /// <summary>Image pixels per latent pixel (8 for SDXL).</summary>
    public int VaeScaleFactor => Sdxl.VaeScaleFactor;

    /// <summary>Opens a checkpoint (diffusers folder or single file) and the LayerDiffuse files; keeps the weights resident.</summary>
    /// <param name="ops">Backend of the text encoders and the UNet.</param>
    /// <param name="vaeOps">Backend of the VAE and transparent decoder when it differs from <paramref name="ops"/>
    /// (fp32 on a GPU: SDXL's VAE overflows in fp16; <c>LayerFusion.Cuda.CudaBackendPair</c> makes that pair); null: the same backend.</param>
    /// <param name="ownsOps">Dispose the backend(s) with the pipeline (also when loading fails).</param>
    /// <param name="progress">Reports <see cref="LayerFusionPhase.Load"/>: weights uploaded of all weights.</param>
    /// <param name="cancellationToken">Checked between weight uploads.</param>
    public static LayerFusionPipeline Load(IOps ops, string modelPath, LayerDiffuseFiles layerDiffuse, IOps? vaeOps = null,
        bool ownsOps = false, IProgress<LayerFusionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(ops);
            ArgumentNullException.ThrowIfNull(modelPath);
            ArgumentNullException.ThrowIfNull(layerDiffuse);
            ArgumentException.ThrowIfNullOrWhiteSpace(modelPath);
            return LoadCore(ops, modelPath, layerDiffuse, vaeOps, ownsOps, progress, cancellationToken);
        }
        catch when (ownsOps)
        {
            DisposeBackends(ops, vaeOps);
            throw;
        }
    }

    /// <summary><see cref="Load"/> on the thread pool (null arguments throw here, before a task starts).</summary>
    public static Task<LayerFusionPipeline> LoadAsync(IOps ops, string modelPath, LayerDiffuseFiles layerDiffuse, IOps? vaeOps = null,
        bool ownsOps = false, IProgress<LayerFusionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        // Load's own checks (and its disposal of owned backends) run synchronously for bad arguments
        if (ops is null || layerDiffuse is null || string.IsNullOrWhiteSpace(modelPath))
            return Task.FromResult(Load(ops!, modelPath!, layerDiffuse!, vaeOps, ownsOps, progress, cancellationToken)); // throws
        return Task.Run(() => Load(ops, modelPath, layerDiffuse, vaeOps, ownsOps, progress, cancellationToken), cancellationToken);
    }

    static LayerFusionPipeline LoadCore(IOps ops, string modelPath, LayerDiffuseFiles layerDiffuse, IOps? vaeOps, bool ownsOps,
        IProgress<LayerFusionProgress>? progress, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        var checkpoint = Checkpoint.Open(modelPath);
        SdxlPipeline? sdxl = null;
        TransparentDecoderFile? decoder = null;
        try
        {
            var offsets = LayerDiffuseAttention.Load(layerDiffuse.Attention, checkpoint.Unet.Config);
            var merged = LayerDiffuseAttention.Merge(checkpoint.Unet.Weights, offsets);
            decoder = TransparentDecoderFile.Load(layerDiffuse.TransparentDecoder);
            int total = checkpoint.Unet.Weights.Count + checkpoint.Vae.Weights.Count + checkpoint.TextEncoder.Weights.Count
                + checkpoint.TextEncoder2.Weights.Count + decoder.Tensors.Count;
            int done = 0;
            void Uploaded()
            {
                ct.ThrowIfCancellationRequested();
                done++;
                if (progress is not null && (done % 64 == 0 || done == total)) progress.Report(new LayerFusionProgress(LayerFusionPhase.Load, done, total));
            }
            // ownsOps is the LayerFusion pipeline's: SdxlPipeline's Dispose then frees the backends
            sdxl = SdxlPipeline.Load(checkpoint, ops, new SdxlPipelineOptions { VaeOps = vaeOps }, Uploaded);
            var pipeline = new LayerFusionPipeline(sdxl, merged, decoder, Uploaded);
            pipeline._ownsOps = ownsOps;
            return pipeline;
        }
        catch
        {
            sdxl?.Dispose();
            throw;
        }
        finally
        {
            // SdxlPipeline.Load uploaded every weight, Merge copied the offset ones, the constructor
            // uploaded the decoder's
            decoder?.Dispose();
            checkpoint.Dispose();
        }
    }

    bool _ownsOps;

    static void DisposeBackends(IOps ops, IOps? vaeOps)
    {
        if (vaeOps is not null && !ReferenceEquals(vaeOps, ops)) (vaeOps as IDisposable)?.Dispose();
        (ops as IDisposable)?.Dispose();
    }

    /// <summary><see cref="Generate"/> on the thread pool; bad arguments throw here, before a task starts.</summary>
    public Task<LayerFusionResult> GenerateAsync(LayerFusionRequest request, IProgress<LayerFusionProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        _gate.ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(request);
        request.Validate();
        return Task.Run(() => Generate(request, progress, cancellationToken), cancellationToken);
    }

    /// <summary>
    /// Generates one triplet. Generations are serialized; <see cref="Dispose"/> cancels a running one
    /// (it then throws <see cref="ObjectDisposedException"/>) and waits for it to stop.
    /// </summary>
    public LayerFusionResult Generate(LayerFusionRequest request, IProgress<LayerFusionProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        _gate.ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(request);
        request.Validate();
        var (height, width) = Sdxl.ResolveSize(request.Width, request.Height);
        MemoryEstimate.ForTriplet(this, width, height).Require();
        return _gate.Run(cancellationToken, ct => Run(request with { Width = width, Height = height }, width, height, progress, ct));
    }

    LayerFusionResult Run(LayerFusionRequest req, int width, int height, IProgress<LayerFusionProgress>? progress, CancellationToken ct)
    {
        var ops = Ops;
        var opt = req.Options;
        var priorSite = opt.ResolvePriorLayer(Unet.AttentionSites);
        string blendPrompt = opt.BlendPromptFor(req.Foreground, req.Background);
        int lh = height / VaeScaleFactor, lw = width / VaeScaleFactor, lc = Unet.Config.InChannels;
        int latentSize = lc * lh * lw;

        // <EOS> of the FG prompt: the first end-of-text id in CLIP-L's ids (padding repeats it after)
        var fgIds = Text.Tokenizer.Tokenize(req.Foreground).Ids;
        int eos = Array.IndexOf(fgIds, Text.Tokenizer.EosId);
        if (eos < 0) throw new InvalidOperationException("the FG prompt's tokens have no <EOS>");

        var warnings = new List<string>();
        using var fgEnc = Text.Encode(req.Foreground, req.Negative);
        using var blEnc = Text.Encode(blendPrompt, req.Negative);
        using var bgEnc = Text.Encode(req.Background, req.Negative);
        foreach (var w in fgEnc.Warnings.Concat(blEnc.Warnings).Concat(bgEnc.Warnings).Distinct()) warnings.Add(w);
        FiniteCheck.Require(fgEnc, "foreground");
        FiniteCheck.Require(blEnc, "blend");
        FiniteCheck.Require(bgEnc, "background");
        var encs = new[] { fgEnc, blEnc, bgEnc };
        using var ehs = ops.Concat(encs.SelectMany(e => new[] { e.Negative.PromptEmbeds, e.Positive.PromptEmbeds }).ToArray(), 0);
        using var pooled = ops.Concat(encs.SelectMany(e => new[] { e.Negative.PooledPromptEmbeds, e.Positive.PooledPromptEmbeds }).ToArray(), 0);
        var timeIds = SdxlTimeIds.ForSize(height, width);
        var timeIds6 = SdxlTimeIds.Repeat(timeIds, TripletLayout.Rows);

        var schedulers = new IScheduler[TripletLayout.Streams];
        for (int s = 0; s < schedulers.Length; s++)
        {
            schedulers[s] = Sdxl.CreateScheduler(req.Sampler);
            schedulers[s].SetTimesteps(req.Steps);
        }
        int steps = schedulers[0].StepCount;
        // every stream starts from the noise a plain SDXL run of this seed draws and, with a stochastic
        // sampler, takes the same per-step noise as that run (docs/decisions.md, Schedulers)
        var latents = new float[TripletLayout.Streams][];
        var noiseSources = new GaussianNoise[TripletLayout.Streams];
        for (int s = 0; s < latents.Length; s++)
        {
            noiseSources[s] = new GaussianNoise(req.Seed);
            latents[s] = Sdxl.InitialLatents(noiseSources[s], 1, lh, lw, schedulers[s].InitNoiseSigma);
        }
        bool guided = SdxlPipeline.UsesGuidance(req.GuidanceScale);

        int dumpStep = -1;
        if (req.DumpPriors)
        {
            double target = 0.8 * SchedulerConfig.NumTrainTimesteps;
            var ts = schedulers[0].Timesteps;
            dumpStep = Enumerable.Range(0, steps).MinBy(i => Math.Abs(ts[i] - target));
        }
        var loop = new DenoiseInputs(req, priorSite, eos, ehs, pooled, timeIds, timeIds6, schedulers, noiseSources, lh, lw, guided, dumpStep);
        var (final, dump) = StepPath == LayerFusionStepPath.HostReference
            ? DenoiseHost(loop, latents, progress, ct)
            : DenoiseDevice(loop, latents, progress, ct);
        latents = final;
        // the device path reads the latents back once, here: the cheap non-finite check of its loop
        for (int s = 0; s < TripletLayout.Streams; s++)
            FiniteCheck.Require(latents[s], "denoising loop (unet and sampler)", $"after {steps} steps, {StreamName(s)} stream");
        LastLatents = latents.Select(l => (float[])l.Clone()).ToArray();

        ct.ThrowIfCancellationRequested();
        progress?.Report(new LayerFusionProgress(LayerFusionPhase.Decode, 0, DecodeSteps(req.Options.TransparentAugment)));
        var images = Decode(latents, lh, lw, req.Options.TransparentAugment, progress, ct);
        var parameters = new Dictionary<string, string>
        {
            ["layerfusion:fg"] = req.Foreground,
            ["layerfusion:bg"] = req.Background,
            ["layerfusion:blend"] = blendPrompt,
            ["layerfusion:negative"] = req.Negative ?? "",
            ["layerfusion:steps"] = req.Steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["layerfusion:cfg"] = req.GuidanceScale.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
            ["layerfusion:seed"] = req.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["layerfusion:size"] = $"{width}x{height}",
            ["layerfusion:sampler"] = schedulers[0].Name,
            ["layerfusion:options"] = $"sharing={opt.Sharing} exclusion={opt.Exclusion} d={opt.D.ToString("R", System.Globalization.CultureInfo.InvariantCulture)} " +
                $"blend_self={opt.BlendSelfAttention} blend_cross={opt.BlendCrossAttention} blend_cross_reads_bg={opt.BlendCrossReadsBackgroundPrompt} prior_layer={priorSite.Path} augment={opt.TransparentAugment}",
        };
        return new LayerFusionResult(images.Fg, images.Bg, images.Blend, images.Composite, parameters, warnings, dump);
    }

    /// <summary>Decode progress steps: three VAE decodes (BG, BLEND, FG), then the transparent decoder's passes.</summary>
    static int DecodeSteps(bool augment) => 3 + (augment ? 8 : 1);

    static string StreamName(int s) => s == TripletLayout.Foreground ? "foreground" : s == TripletLayout.Background ? "background" : "blend";

    /// <summary>Materializing the prior layer's [M, M] head-mean map is only for small models (tests, tiny).</summary>
    static bool IsSmall(int lh, int lw, AttentionSite site)
    {
        long m = (long)Math.Max(1, lh >> site.Level) * Math.Max(1, lw >> site.Level);
        return m * m <= 1 << 22;
    }

    (Image8 Fg, Image8 Bg, Image8 Blend, Image8 Composite) Decode(float[][] latents, int lh, int lw, bool augment,
        IProgress<LayerFusionProgress>? progress, CancellationToken ct)
    {
        // the VAE and the transparent decoder live on the VAE backend (fp32 on a GPU), not on Ops
        var ops = Vae.Ops;
        int lc = Unet.Config.InChannels;
        int f = VaeScaleFactor, h = lh * f, w = lw * f;
        float[] VaeDecode(float[] latent)
        {
            using var y = Sdxl.DecodeLatents(latent, 1, lh, lw);
            if (y.Dim(2) != h || y.Dim(3) != w || y.Dim(1) != 3)
                throw new UserInputException($"the VAE decoded a {lh}x{lw} latent to {ShapeUtil.Format(y.Shape)}, expected [1, 3, {h}, {w}]");
            var px = ops.ToHost(y);
            FiniteCheck.Require(px, "vae", "in a decoded image");
            return px;
        }
        var bgPx = VaeDecode(latents[TripletLayout.Background]);
        progress?.Report(new LayerFusionProgress(LayerFusionPhase.Decode, 1, DecodeSteps(augment)));
        ct.ThrowIfCancellationRequested();
        var blendPx = VaeDecode(latents[TripletLayout.Blend]);
        progress?.Report(new LayerFusionProgress(LayerFusionPhase.Decode, 2, DecodeSteps(augment)));
        ct.ThrowIfCancellationRequested();
        var fgPx = VaeDecode(latents[TripletLayout.Foreground]);
        progress?.Report(new LayerFusionProgress(LayerFusionPhase.Decode, 3, DecodeSteps(augment)));
        ct.ThrowIfCancellationRequested();
        float[] fgLatent;
        using (var z = Sdxl.UnscaledLatents(latents[TripletLayout.Foreground], 1, lh, lw)) fgLatent = ops.ToHost(z);

        // the transparent decoder runs on sizes padded to its size multiple (64 for the released
        // architecture) by edge replication, cropped after
        int mult = Math.Max(TransparentDecoder.Model.SizeMultiple, f);
        int ph = (h + mult - 1) / mult * mult, pw = (w + mult - 1) / mult * mult;
        var fgUnit = fgPx.Select(v => Math.Clamp(v * 0.5f + 0.5f, 0f, 1f)).ToArray();
        float[] rgba;
        using (var pixel = ops.FromHost(PadEdge(fgUnit, 3, h, w, ph, pw), 1, 3, ph, pw))
        using (var latent = ops.FromHost(PadEdge(fgLatent, lc, lh, lw, ph / f, pw / f), 1, lc, ph / f, pw / f))
        using (var y = TransparentDecoder.Decode(pixel, latent, augment, (done, _) =>
        {
            // one progress step per decoder pass (after the three VAE decodes)
            progress?.Report(new LayerFusionProgress(LayerFusionPhase.Decode, 3 + done, DecodeSteps(augment)));
            ct.ThrowIfCancellationRequested();
        }))
        {
            if (y.Dim(1) != 4) throw new UserInputException($"the transparent decoder gives {y.Dim(1)} channels; alpha + RGB needs 4");
            rgba = Crop(ops.ToHost(y), 4, ph, pw, h, w);
            FiniteCheck.Require(rgba, "transparent decoder", "in the foreground's alpha and colors");
        }
        int plane = h * w;
        var alpha = rgba.AsSpan(0, plane);
        var fgRgb = rgba.AsSpan(plane, 3 * plane);
        var fg = ImageConvert.RgbaFromUnitPlanes(fgRgb, alpha, h, w);
        var bg = ImageConvert.FromSignedNchw(bgPx, 0, 3, h, w);
        var blend = ImageConvert.FromSignedNchw(blendPx, 0, 3, h, w);
        // alpha blending: straight FG over the BG image, in float, quantized once
        var comp = new float[3 * plane];
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < plane; i++)
            {
                float a = alpha[i];
                float b = Math.Clamp(bgPx[c * plane + i] * 0.5f + 0.5f, 0f, 1f);
                comp[c * plane + i] = fgRgb[c * plane + i] * a + b * (1 - a);
            }
        return (fg, bg, blend, ImageConvert.FromUnitNchw(comp, 0, 3, h, w));
    }

    internal static float[] PadEdge(float[] x, int channels, int h, int w, int ph, int pw)
    {
        if (ph == h && pw == w) return x;
        var r = new float[channels * ph * pw];
        for (int c = 0; c < channels; c++)
            for (int y = 0; y < ph; y++)
                for (int xx = 0; xx < pw; xx++)
                    r[(c * ph + y) * pw + xx] = x[(c * h + Math.Min(y, h - 1)) * w + Math.Min(xx, w - 1)];
        return r;
    }

    internal static float[] Crop(float[] x, int channels, int ph, int pw, int h, int w)
    {
        if (ph == h && pw == w) return x;
        var r = new float[channels * h * w];
        for (int c = 0; c < channels; c++)
            for (int y = 0; y < h; y++)
                Array.Copy(x, (c * ph + y) * pw, r, (c * h + y) * w, w);
        return r;
    }

    /// <summary>
    /// Cancels a running generation and waits for it to stop (on a GPU its kernels must not outlive
    /// the weights), then frees the weights (and the backends when the pipeline owns them). Called from
    /// the generation's own progress callback, it cancels and the generation frees them on its way out.
    /// </summary>
    public void Dispose() => _gate.Dispose();

    void ReleaseResources()
    {
        Sdxl.Dispose();
        if (_ownsOps) DisposeBackends(Sdxl.Ops, Sdxl.Vae.Ops);
    }
}
