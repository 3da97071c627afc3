using System.CommandLine;
using LayerFusion.Cli.Shared;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Imaging;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli.Commands;

/// <summary>
/// `layerfusion generate`: LayerFusion triplets (paper Sec. 3). Each triplet goes to its own numbered
/// folder OUT/NNNNN-SEED/ (fg.png RGBA, bg.png, blend.png, alpha-composite.png, optionally
/// layers.psd and the priors at t = 0.8T), written in a temporary folder inside OUT and renamed into
/// place whole, so a failed or interrupted run leaves nothing and two runs never mix their files.
/// Every ablation switch of the method is an option.
/// </summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var fg = new Option<string>("--fg", "--fg-prompt") { Description = "Foreground prompt (the transparent layer).", Required = true };
        var bg = new Option<string>("--bg", "--bg-prompt") { Description = "Background prompt.", Required = true };
        var blend = new Option<string?>("--blend", "--blend-prompt") { Description = "Prompt of the blended image (default: \"<fg>, <bg>\")." };
        var negative = CliOptions.Negative();
        negative.Description = "Negative prompt for all three streams (empty: zero embeddings).";
        var model = new Option<string?>("--model", "-m") { Description = "SDXL checkpoint: a diffusers folder or a single .safetensors file. Default: the built-in demo model (models/demo) with its LayerDiffuse files." };
        var layerDiffuse = new Option<string[]>("--layerdiffuse")
        {
            Description = "LayerDiffuse files: a folder holding them, or the attention file (dense ld_diffusers_sdxl_attn or LoRA layer_xl_transparent_attn) " +
                "and the transparent decoder (ld_diffusers_sdxl_vae_transparent_decoder or vae_transparent_decoder) themselves; repeatable. Default: the --model folder.",
            AllowMultipleArgumentsPerToken = true,
        };
        var steps = CliOptions.Steps();
        var cfg = CliOptions.Cfg();
        var seed = CliOptions.Seed("Seed of the initial noise (the same for all three streams)");
        var batch = CliOptions.BatchCount();
        var width = CliOptions.Width();
        var height = CliOptions.Height();
        var sampler = CliOptions.Sampler();
        var backend = CliOptions.Backend();
        var noCudaGraph = CliOptions.NoCudaGraph();
        var output = new Option<string>("--out", "-o") { Description = "Output folder (created if absent); each triplet goes to a new numbered subfolder NNNNN-SEED.", DefaultValueFactory = _ => "out" };
        var psd = new Option<bool>("--psd") { Description = "Also write layers.psd: background and transparent foreground as layers, the blend as a hidden third (Photoshop, GIMP, Krita, Photopea)." };
        var dump = new Option<bool>("--dump-priors") { Description = "Also write s', c, mask_soft and mask_hard at t = 0.8T (PNGs and raw safetensors) to the triplet's priors/ folder." };
        var noSharing = new Option<bool>("--no-sharing") { Description = "Ablation: no BG<->BLEND attention sharing." };
        var noExclusion = new Option<bool>("--no-exclusion") { Description = "Ablation: BG queries also see BLEND keys inside the foreground." };
        var d = new Option<float>("--mask-boundary", "--d")
        {
            Description = "Decision-boundary coefficient d of the hard mask (paper Sec. 3: mask_hard = sigmoid(d * (mask_soft - 0.5)), d = 10); --d is the paper's name for it.",
            DefaultValueFactory = _ => 10f,
            CustomParser = r => CliOptions.Float(r, -1e6f, 1e6f, 10f),
        };
        var blendAttention = new Option<string>("--blend-attention") { Description = "Which attention outputs are blended: both, self, cross or none.", DefaultValueFactory = _ => "both" };
        var priorLayer = new Option<string?>("--prior-layer") { Description = "Self-attention layer of the structure prior (default: up_blocks.1.attentions.2.transformer_blocks.1.attn1, else the last)." };
        var blendOwnPrompt = new Option<bool>("--blend-own-prompt") { Description = "With sharing, BLEND's cross-attention reads the blend prompt instead of the BG prompt (Alg. 3 reads p_BG)." };
        var noAugment = new Option<bool>("--no-augment") { Description = "One transparent-decoder pass instead of the 8-way flip/rotation median." };
        var command = new Command("generate", "Generate layered triplets: transparent foreground, background, blended image and alpha composite.")
        {
            fg, bg, blend, negative, model, layerDiffuse, steps, cfg, seed, batch, width, height, sampler, backend, noCudaGraph, output, psd, dump,
            noSharing, noExclusion, d, blendAttention, priorLayer, blendOwnPrompt, noAugment,
        };
        command.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var interrupts = Interrupts.Current;
            var fgText = CliOptions.CheckPrompt("--fg", parse.GetRequiredValue(fg))!;
            var bgText = CliOptions.CheckPrompt("--bg", parse.GetRequiredValue(bg))!;
            if (string.IsNullOrWhiteSpace(fgText)) throw new UserInputException("--fg is empty; the foreground needs a prompt");
            var blendText = CliOptions.CheckPrompt("--blend", parse.GetValue(blend));
            var neg = CliOptions.CheckPrompt("--negative-prompt", parse.GetValue(negative));
            int? w = parse.GetValue(width), h = parse.GetValue(height);
            SdxlCommand.CheckSize("--width", w);
            SdxlCommand.CheckSize("--height", h);
            int n = parse.GetValue(steps);
            float scale = parse.GetValue(cfg);
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
                BlendPrompt = blendText,
                TransparentAugment = !parse.GetValue(noAugment),
                BlendCrossReadsBackgroundPrompt = !parse.GetValue(blendOwnPrompt),
            };
            options.Validate();
            var samplerName = SdxlCommand.CheckSampler(parse.GetValue(sampler));
            int count = parse.GetValue(batch);
            var (seeds, randomSeed) = CliOptions.Seeds(parse.GetValue(seed), count);
            string userOut = parse.GetValue(output)!;
            var outDir = OutputPaths.CheckFolder(userOut);
            TempNames.SweepStale(outDir);
            interrupts.Watch(outDir);
            var modelGiven = InputPaths.Model(parse.GetValue(model));
            var ldGiven = parse.GetValue(layerDiffuse);
            var backends = BackendFactory.CreatePair(parse.GetValue(backend), stderr);

            var progress = ProgressLine.For(stderr);
            interrupts.Progress = progress;
            try
            {
                var modelPath = BuiltInModel.Resolve(modelGiven, stderr);
                var ld = InputPaths.LayerDiffuse(ldGiven, modelPath);
                progress.Begin("loading model");
                using var pipeline = LayerFusionPipeline.Load(backends.Main, modelPath, ld, backends.Vae, ownsOps: true);
                pipeline.StepGraphs = !parse.GetValue(noCudaGraph);
                interrupts.Token.ThrowIfCancellationRequested();
                var (ph, pw) = pipeline.Sdxl.ResolveSize(w, h);
                var writeOptions = new LayerFusionWriteOptions { ModelName = Infotext.ModelName(modelPath), Psd = parse.GetValue(psd) };
                for (int k = 0; k < count; k++)
                {
                    progress.Prefix = count > 1 ? $"[{k + 1}/{count}] " : "";
                    var request = new LayerFusionRequest
                    {
                        Foreground = fgText,
                        Background = bgText,
                        Negative = neg,
                        Steps = n,
                        GuidanceScale = scale,
                        Seed = seeds[k],
                        Width = pw,
                        Height = ph,
                        Sampler = samplerName,
                        DumpPriors = parse.GetValue(dump),
                        Options = options,
                    };
                    progress.Begin("encoding text");
                    var result = pipeline.Generate(request, new TripletSteps(progress), interrupts.Token);
                    progress.Finish();
                    foreach (var warning in result.Warnings) stderr.WriteLine($"warning: {warning}");
                    var folder = WriteSet(outDir, userOut, result, writeOptions, request.Seed, interrupts.Token);
                    stdout.WriteLine($"wrote {folder} ({pw}x{ph}, {result.Parameters["layerfusion:sampler"]}, {n} steps, seed {request.Seed}{(randomSeed ? ", random" : "")}{CliOptions.GraphNote(pipeline.LastGraphSteps, n)})");
                }
            }
            finally
            {
                progress.Finish();
                interrupts.Progress = null;
            }
            return 0;
        });
        return command;
    }

    /// <summary>The triplet's files into a temporary folder inside <paramref name="outDir"/>, then renamed to the next NNNNN-SEED.</summary>
    internal static string WriteSet(string outDir, string userOut, LayerFusionResult result, LayerFusionWriteOptions options, ulong seed, CancellationToken token)
    {
        var temp = Path.Combine(outDir, TempNames.New());
        try
        {
            try
            {
                LayerFusionOutputs.Write(temp, result, options);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UserInputException($"--out '{userOut}': cannot write the results: {TempNames.Scrub(e.Message, temp, userOut)}");
            }
            token.ThrowIfCancellationRequested();
            return OutputPaths.PublishRun(temp, outDir, userOut, seed);
        }
        finally
        {
            if (Directory.Exists(temp))
                try { Directory.Delete(temp, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>The triplet's denoising steps and decoder passes onto the progress line.</summary>
    sealed class TripletSteps(ProgressLine line) : IProgress<LayerFusionProgress>
    {
        public void Report(LayerFusionProgress value)
        {
            // by name: the phase may be a string or an enum
            var phase = value.Phase.ToString()!;
            if (phase.Equals("denoise", StringComparison.OrdinalIgnoreCase)) line.Step("denoising", value.Step, value.Steps);
            else if (phase.Equals("decode", StringComparison.OrdinalIgnoreCase)) line.Step("decoding (VAE x3, transparent decoder)", value.Step, value.Steps);
            else line.Begin(phase.ToLowerInvariant());
        }
    }
}
