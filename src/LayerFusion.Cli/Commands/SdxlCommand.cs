using System.CommandLine;
using System.Globalization;
using LayerFusion.Cli.Shared;
using LayerFusion.Core.Imaging;
using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Schedulers;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli.Commands;

/// <summary>
/// `layerfusion sdxl`: plain SDXL text-to-image (diffusers' StableDiffusionXLPipeline semantics) into
/// PNGs carrying the generation parameters (A1111's `parameters` text and our `layerfusion:*` keys).
/// Same arguments, same bytes.
/// </summary>
internal static class SdxlCommand
{
    /// <summary>Prompt files larger than this are refused (a prompt is a line, not a book).</summary>
    const long MaxPromptFileBytes = 1 << 20;

    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m") { Description = "SDXL checkpoint: a diffusers folder or a single .safetensors file. Default: the built-in demo model (models/demo: coloured shapes over backgrounds, 64x64)." };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "The prompt (required unless --prompt-file is given)." };
        var promptFile = new Option<string?>("--prompt-file") { Description = "Read the prompt from this UTF-8 text file instead." };
        var negative = CliOptions.Negative();
        var steps = CliOptions.Steps();
        var cfg = CliOptions.Cfg();
        var seed = CliOptions.Seed();
        var batch = CliOptions.BatchCount();
        var width = CliOptions.Width();
        var height = CliOptions.Height();
        var sampler = CliOptions.Sampler();
        var backend = CliOptions.Backend();
        var noCudaGraph = CliOptions.NoCudaGraph();
        var output = new Option<string>("--out", "-o") { Description = "Output PNG file (written atomically); with --batch-count N also NAME_2.png ... NAME_N.png.", Required = true };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace existing output files (otherwise an existing file is an error)." };
        var command = new Command("sdxl", "Generate images with SDXL (text to image).")
        {
            model, prompt, promptFile, negative, steps, cfg, seed, batch, width, height, sampler, backend, noCudaGraph, output, overwrite,
        };
        command.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var interrupts = Interrupts.Current;
            var text = CliOptions.CheckPrompt(parse.GetValue(promptFile) is null ? "--prompt" : "--prompt-file",
                ReadPrompt(parse.GetValue(prompt), parse.GetValue(promptFile)))!;
            var neg = CliOptions.CheckPrompt("--negative-prompt", parse.GetValue(negative));
            int? w = parse.GetValue(width), h = parse.GetValue(height);
            CheckSize("--width", w);
            CheckSize("--height", h);
            int n = parse.GetValue(steps);
            float scale = parse.GetValue(cfg);
            var samplerName = CheckSampler(parse.GetValue(sampler));
            int count = parse.GetValue(batch);
            var (seeds, randomSeed) = CliOptions.Seeds(parse.GetValue(seed), count);
            var outPath = OutputPaths.CheckFile(parse.GetRequiredValue(output), ".png");
            var targets = Enumerable.Range(1, count).Select(k => OutputPaths.Numbered(outPath, k, count)).ToArray();
            OutputPaths.CheckNotThere(targets, parse.GetValue(overwrite));
            TempNames.SweepStale(Path.GetDirectoryName(outPath));
            interrupts.Watch(Path.GetDirectoryName(outPath));
            var modelPath = InputPaths.Model(parse.GetValue(model));
            var backends = BackendFactory.CreatePair(parse.GetValue(backend), stderr);

            var progress = ProgressLine.For(stderr);
            interrupts.Progress = progress;
            try
            {
                modelPath = BuiltInModel.Resolve(modelPath, stderr);
                progress.Begin("loading model");
                using var pipeline = SdxlPipeline.Open(modelPath, backends.Main, new SdxlPipelineOptions { VaeOps = backends.Vae });
                pipeline.StepGraphs = !parse.GetValue(noCudaGraph);
                interrupts.Token.ThrowIfCancellationRequested();
                string modelName = Infotext.ModelName(modelPath);
                for (int k = 0; k < count; k++)
                {
                    progress.Prefix = count > 1 ? $"[{k + 1}/{count}] " : "";
                    var request = new SdxlRequest
                    {
                        Prompt = text,
                        NegativePrompt = neg,
                        Width = w,
                        Height = h,
                        Steps = n,
                        GuidanceScale = scale,
                        Seed = seeds[k],
                        Sampler = samplerName,
                    };
                    progress.Begin("encoding text");
                    var result = pipeline.Generate(request, new SdxlSteps(progress), interrupts.Token);
                    progress.Finish();
                    foreach (var warning in result.Warnings) stderr.WriteLine($"warning: {warning}");
                    PngFile.Write(targets[k], result.Images[0], Metadata(request, result, modelName), srgb: true);
                    stdout.WriteLine($"wrote {targets[k]} ({result.Width}x{result.Height}, {result.Sampler}, {n} steps, seed {request.Seed}{(randomSeed ? ", random" : "")}{CliOptions.GraphNote(pipeline.LastGraphSteps, n)})");
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

    /// <summary>Denoising steps, then the VAE decode, onto the progress line.</summary>
    sealed class SdxlSteps(ProgressLine line) : IProgress<StepProgress>
    {
        public void Report(StepProgress value)
        {
            line.Step("denoising", value.Step, value.TotalSteps);
            if (value.Step == value.TotalSteps) line.Begin("decoding (VAE)");
        }
    }

    /// <summary>
    /// The PNG's text entries: A1111's <c>parameters</c> (what PNG Info, ComfyUI and civitai read) and
    /// our machine-readable <c>layerfusion:*</c> keys; every parameter needed to make the same image again.
    /// No bare <c>prompt</c> key: ComfyUI reads that one as its workflow JSON.
    /// </summary>
    internal static IReadOnlyList<KeyValuePair<string, string>> Metadata(SdxlRequest request, SdxlResult result, string modelName)
    {
        var fields = Infotext.StandardFields(request.Steps, result.Sampler, request.GuidanceScale, request.Seed, result.Width, result.Height, modelName);
        return
        [
            new(Infotext.Keyword, Infotext.Format(request.Prompt, request.NegativePrompt, fields)),
            new("layerfusion:prompt", request.Prompt),
            new("layerfusion:negative_prompt", request.NegativePrompt ?? ""),
            new("layerfusion:seed", request.Seed.ToString(CultureInfo.InvariantCulture)),
            new("layerfusion:steps", request.Steps.ToString(CultureInfo.InvariantCulture)),
            new("layerfusion:cfg", request.GuidanceScale.ToString("R", CultureInfo.InvariantCulture)),
            new("layerfusion:sampler", result.Sampler),
            new("layerfusion:size", $"{result.Width}x{result.Height}"),
            new("layerfusion:model", modelName),
            new("layerfusion:version", Infotext.Version),
            new("software", "LayerFusion.Native layerfusion sdxl"),
        ];
    }

    /// <summary>--prompt or --prompt-file, exactly one.</summary>
    internal static string ReadPrompt(string? prompt, string? promptFile)
    {
        if (prompt is not null && promptFile is not null) throw new UserInputException("give either --prompt or --prompt-file, not both");
        if (promptFile is null) return prompt ?? throw new UserInputException("a prompt is required: --prompt TEXT (-p) or --prompt-file FILE");
        if (Directory.Exists(promptFile)) throw new UserInputException($"--prompt-file '{promptFile}' is a folder, not a text file");
        if (!File.Exists(promptFile) && !Directory.Exists(promptFile))
            throw new UserInputException($"--prompt-file '{promptFile}': no such file");
        // the shared opener: links followed to a regular file (not a FIFO or device), its own size
        // against the limit, bounded read, strict UTF-8 (bytes that are not text are an error)
        var text = UntrustedFile.ReadAllText(promptFile, MaxPromptFileBytes, $"--prompt-file '{promptFile}'");
        // a file's trailing newline is not part of the prompt
        return text.TrimEnd('\r', '\n');
    }

    internal static void CheckSize(string option, int? value)
    {
        if (value is { } v && (v <= 0 || v % 8 != 0))
            throw new UserInputException($"{option} must be a positive multiple of 8, got {v}");
    }

    /// <summary>A sampler name from <see cref="Samplers.Names"/> (the registry), case-insensitive.</summary>
    internal static string? CheckSampler(string? name)
    {
        if (name is null) return null;
        return Samplers.Resolve(name); // canonical name; aliases and A1111 labels accepted
    }

    /// <summary>Fails before any work when the output cannot be written where asked.</summary>
    internal static void CheckOutput(string path, string extension) => OutputPaths.CheckFile(path, extension);
}
