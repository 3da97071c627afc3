using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using LayerFusion.Cli.Shared;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Pipelines;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli.Commands;

/// <summary>
/// `layerfusion generate`: a LayerFusion triplet (paper Sec. 3): fg.png (RGBA), bg.png, blend.png and
/// alpha-composite.png in --out, optionally the priors at t = 0.8T. Every ablation switch of the
/// method is an option.
/// </summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var fg = new Option<string>("--fg") { Description = "Foreground prompt (the transparent layer).", Required = true };
        var bg = new Option<string>("--bg") { Description = "Background prompt.", Required = true };
        var blend = new Option<string?>("--blend") { Description = "Prompt of the blended image (default: \"<fg>, <bg>\")." };
        var negative = new Option<string?>("--negative") { Description = "Negative prompt for all three streams (empty: zero embeddings)." };
        var model = new Option<string?>("--model") { Description = "SDXL checkpoint: a diffusers folder or a single .safetensors file. Default: the built-in tiny checkpoint with its LayerDiffuse files." };
        var layerDiffuse = new Option<string?>("--layerdiffuse") { Description = "Folder with LayerDiffuse's attention file (dense or LoRA) and transparent decoder (default: the --model folder)." };
        var steps = new Option<int>("--steps") { Description = "Denoising steps.", DefaultValueFactory = _ => 30 };
        var cfg = new Option<float>("--cfg") { Description = "Classifier-free guidance scale (<= 1: no guidance).", DefaultValueFactory = _ => 7f };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the initial noise (the same for all three streams).", DefaultValueFactory = _ => 0UL };
        var width = new Option<int?>("--width") { Description = "Width in pixels, a multiple of 8 (default: the model's)." };
        var height = new Option<int?>("--height") { Description = "Height in pixels, a multiple of 8 (default: the model's)." };
        var sampler = new Option<string?>("--sampler") { Description = "Sampler (default: the checkpoint's scheduler)." };
        var backend = new Option<string?>("--backend") { Description = "cpu or cuda (default: cuda when a device is usable, else cpu)." };
        var output = new Option<string>("--out") { Description = "Output folder (created if absent).", DefaultValueFactory = _ => "." };
        var dump = new Option<bool>("--dump-priors") { Description = "Also write s', c, mask_soft and mask_hard at t = 0.8T (PNGs and raw safetensors) to OUT/priors." };
        var noSharing = new Option<bool>("--no-sharing") { Description = "Ablation: no BG<->BLEND attention sharing." };
        var noExclusion = new Option<bool>("--no-exclusion") { Description = "Ablation: BG queries also see BLEND keys inside the foreground." };
        var d = new Option<float>("--d") { Description = "Decision-boundary coefficient of mask_hard.", DefaultValueFactory = _ => 10f };
        var blendAttention = new Option<string>("--blend-attention") { Description = "Which attention outputs are blended: both, self, cross or none.", DefaultValueFactory = _ => "both" };
        var priorLayer = new Option<string?>("--prior-layer") { Description = "Self-attention layer of the structure prior (default: up_blocks.1.attentions.2.transformer_blocks.1.attn1, else the last)." };
        var blendOwnPrompt = new Option<bool>("--blend-own-prompt") { Description = "With sharing, BLEND's cross-attention reads the blend prompt instead of the BG prompt (Alg. 3 reads p_BG)." };
        var noAugment = new Option<bool>("--no-augment") { Description = "One transparent-decoder pass instead of the 8-way flip/rotation median." };
        var command = new Command("generate", "Generate a layered triplet: transparent foreground, background, blended image and alpha composite.")
        {
            fg, bg, blend, negative, model, layerDiffuse, steps, cfg, seed, width, height, sampler, backend, output, dump,
            noSharing, noExclusion, d, blendAttention, priorLayer, blendOwnPrompt, noAugment,
        };
        command.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            int? w = parse.GetValue(width), h = parse.GetValue(height);
            SdxlCommand.CheckSize("--width", w);
            SdxlCommand.CheckSize("--height", h);
            int n = parse.GetValue(steps);
            if (n < 1) throw new UserInputException($"--steps must be at least 1, got {n}");
            float scale = parse.GetValue(cfg);
            if (!float.IsFinite(scale)) throw new UserInputException($"--cfg must be a finite number, got {scale.ToString(CultureInfo.InvariantCulture)}");
            var (blendSelf, blendCross) = parse.GetValue(blendAttention)!.Trim().ToLowerInvariant() switch
            {
                "both" => (true, true),
                "self" => (true, false),
                "cross" => (false, true),
                "none" => (false, false),
                var other => throw new UserInputException($"--blend-attention must be both, self, cross or none, not '{other}'"),
            };
            var options = new LayerFusionOptions
            {
                Sharing = !parse.GetValue(noSharing),
                Exclusion = !parse.GetValue(noExclusion),
                D = parse.GetValue(d),
                BlendSelfAttention = blendSelf,
                BlendCrossAttention = blendCross,
                PriorLayer = parse.GetValue(priorLayer),
                BlendPrompt = parse.GetValue(blend),
                TransparentAugment = !parse.GetValue(noAugment),
                BlendCrossReadsBackgroundPrompt = !parse.GetValue(blendOwnPrompt),
            };
            options.Validate();
            var samplerName = SdxlCommand.CheckSampler(parse.GetValue(sampler));
            var outDir = parse.GetValue(output)!;
            if (File.Exists(outDir)) throw new UserInputException($"--out '{outDir}' is a file; give a folder");

            var backends = BackendFactory.CreatePair(parse.GetValue(backend), stderr);
            var modelPath = BuiltInModel.Resolve(parse.GetValue(model), stderr);
            var ldDir = parse.GetValue(layerDiffuse) ?? (Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(Path.GetFullPath(modelPath))!);
            using var pipeline = LayerFusionPipeline.Load(backends.Main, modelPath, LayerDiffuseFiles.InDirectory(ldDir), backends.Vae, ownsOps: true);
            var (ph, pw) = pipeline.Sdxl.ResolveSize(w, h);
            var request = new LayerFusionRequest
            {
                Foreground = parse.GetRequiredValue(fg),
                Background = parse.GetRequiredValue(bg),
                Negative = parse.GetValue(negative),
                Steps = n,
                GuidanceScale = scale,
                Seed = parse.GetValue(seed),
                Width = pw,
                Height = ph,
                Sampler = samplerName,
                DumpPriors = parse.GetValue(dump),
                Options = options,
            };
            var terminal = TerminalProgress.For(stderr);
            var clock = Stopwatch.StartNew();
            LayerFusionResult result;
            try
            {
                result = pipeline.Generate(request, new StepReporter(terminal, clock));
            }
            finally
            {
                terminal.Finish();
            }
            foreach (var warning in result.Warnings) stderr.WriteLine($"warning: {warning}");
            var written = LayerFusionOutputs.Write(outDir, result);
            stdout.WriteLine($"wrote {written.Count} files to {Path.GetFullPath(outDir)} ({pw}x{ph}, {result.Parameters["layerfusion:sampler"]}, {n} steps, seed {request.Seed})");
            return 0;
        });
        return command;
    }

    /// <summary>Denoising steps onto the shared terminal progress line.</summary>
    sealed class StepReporter(TerminalProgress terminal, Stopwatch clock) : IProgress<LayerFusionProgress>
    {
        public void Report(LayerFusionProgress value)
        {
            if (value.Phase == LayerFusionPhase.Denoise) terminal.Report(new StepProgress(value.Step, value.Steps, 0f, clock.Elapsed));
        }
    }
}
