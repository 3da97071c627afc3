using System.CommandLine;
using System.Globalization;
using System.Text;
using LayerFusion.Cli.Shared;
using LayerFusion.Core.Imaging;
using LayerFusion.Core.Pipelines;
using LayerFusion.Core.Schedulers;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cli.Commands;

/// <summary>
/// `layerfusion sdxl`: plain SDXL text-to-image (diffusers' StableDiffusionXLPipeline semantics) into
/// one PNG carrying the generation parameters as text metadata. Same arguments, same bytes.
/// </summary>
internal static class SdxlCommand
{
    /// <summary>Prompt files larger than this are refused (a prompt is a line, not a book).</summary>
    const long MaxPromptFileBytes = 1 << 20;

    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "SDXL checkpoint: a diffusers folder or a single .safetensors file. Default: a built-in tiny checkpoint (random weights), written on first use." };
        var prompt = new Option<string?>("--prompt") { Description = "The prompt." };
        var promptFile = new Option<string?>("--prompt-file") { Description = "Read the prompt from this UTF-8 text file instead." };
        var negative = new Option<string?>("--negative") { Description = "Negative prompt (empty: zero embeddings, as SDXL does)." };
        var steps = new Option<int>("--steps") { Description = "Denoising steps.", DefaultValueFactory = _ => 30 };
        var cfg = new Option<float>("--cfg") { Description = "Classifier-free guidance scale (<= 1: no guidance).", DefaultValueFactory = _ => 5f };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the initial noise.", DefaultValueFactory = _ => 0UL };
        var width = new Option<int?>("--width") { Description = "Width in pixels, a multiple of 8 (default: the model's, 1024 for SDXL)." };
        var height = new Option<int?>("--height") { Description = "Height in pixels, a multiple of 8 (default: the model's)." };
        var sampler = new Option<string?>("--sampler") { Description = $"Sampler: {string.Join(", ", Samplers.Names)} (default: the checkpoint's scheduler)." };
        var backend = new Option<string?>("--backend") { Description = "cpu or cuda (default: cuda when a device is usable, else cpu, said once on stderr)." };
        var output = new Option<string>("--out") { Description = "Output PNG file (written atomically).", Required = true };
        var command = new Command("sdxl", "Generate one image with SDXL (text to image).")
        {
            model, prompt, promptFile, negative, steps, cfg, seed, width, height, sampler, backend, output,
        };
        command.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var text = ReadPrompt(parse.GetValue(prompt), parse.GetValue(promptFile));
            int? w = parse.GetValue(width), h = parse.GetValue(height);
            CheckSize("--width", w);
            CheckSize("--height", h);
            int n = parse.GetValue(steps);
            if (n < 1) throw new UserInputException($"--steps must be at least 1, got {n}");
            float scale = parse.GetValue(cfg);
            if (!float.IsFinite(scale)) throw new UserInputException($"--cfg must be a finite number, got {scale.ToString(CultureInfo.InvariantCulture)}");
            var samplerName = CheckSampler(parse.GetValue(sampler));
            var outPath = parse.GetRequiredValue(output);
            CheckOutput(outPath, ".png");
            var backendName = parse.GetValue(backend);
            var backends = BackendFactory.CreatePair(backendName, stderr);

            var modelPath = BuiltInModel.Resolve(parse.GetValue(model), stderr);
            using var pipeline = SdxlPipeline.Open(modelPath, backends.Main, new SdxlPipelineOptions { VaeOps = backends.Vae });
            var request = new SdxlRequest
            {
                Prompt = text,
                NegativePrompt = parse.GetValue(negative),
                Width = w,
                Height = h,
                Steps = n,
                GuidanceScale = scale,
                Seed = parse.GetValue(seed),
                Sampler = samplerName,
            };
            var progress = TerminalProgress.For(stderr);
            SdxlResult result;
            try
            {
                result = pipeline.Generate(request, progress);
            }
            finally
            {
                progress.Finish();
            }
            foreach (var warning in result.Warnings) stderr.WriteLine($"warning: {warning}");
            PngFile.Write(outPath, result.Images[0], Metadata(request, result, Path.GetFullPath(modelPath)));
            stdout.WriteLine($"wrote {outPath} ({result.Width}x{result.Height}, {result.Sampler}, {n} steps, seed {request.Seed})");
            return 0;
        });
        return command;
    }

    /// <summary>The PNG's tEXt entries: every parameter needed to make the same image again.</summary>
    internal static IReadOnlyList<KeyValuePair<string, string>> Metadata(SdxlRequest request, SdxlResult result, string model) =>
    [
        new("prompt", request.Prompt),
        new("negative_prompt", request.NegativePrompt ?? ""),
        new("seed", request.Seed.ToString(CultureInfo.InvariantCulture)),
        new("steps", request.Steps.ToString(CultureInfo.InvariantCulture)),
        new("cfg", request.GuidanceScale.ToString("R", CultureInfo.InvariantCulture)),
        new("sampler", result.Sampler),
        new("size", $"{result.Width}x{result.Height}"),
        new("model", model),
        new("software", "LayerFusion.Native layerfusion sdxl"),
    ];

    /// <summary>--prompt or --prompt-file, exactly one.</summary>
    internal static string ReadPrompt(string? prompt, string? promptFile)
    {
        if (prompt is not null && promptFile is not null) throw new UserInputException("give either --prompt or --prompt-file, not both");
        if (promptFile is null) return prompt ?? throw new UserInputException("a prompt is required: --prompt TEXT or --prompt-file FILE");
        string text;
        try
        {
            if (Directory.Exists(promptFile)) throw new UserInputException($"--prompt-file '{promptFile}' is a folder, not a text file");
            var info = new FileInfo(promptFile);
            if (!info.Exists) throw new UserInputException($"--prompt-file '{promptFile}': no such file");
            if (info.Length > MaxPromptFileBytes) throw new UserInputException($"--prompt-file '{promptFile}': {info.Length} bytes, more than the {MaxPromptFileBytes} allowed");
            // strict: a file that is not UTF-8 text would otherwise become a prompt of U+FFFD characters
            text = File.ReadAllText(promptFile, StrictUtf8);
        }
        catch (UserInputException) { throw; } // an ArgumentException too: not to be rewrapped below
        catch (DecoderFallbackException)
        {
            throw new UserInputException($"--prompt-file '{promptFile}': not UTF-8 text");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new UserInputException($"--prompt-file '{promptFile}': cannot read it ({e.Message})");
        }
        // a file's trailing newline is not part of the prompt
        return text.TrimEnd('\r', '\n');
    }

    internal static void CheckSize(string option, int? value)
    {
        if (value is { } v && (v <= 0 || v % 8 != 0))
            throw new UserInputException($"{option} must be a positive multiple of 8, got {v}");
    }

    internal static string? CheckSampler(string? name)
    {
        if (name is null) return null;
        var s = name.Trim().ToLowerInvariant();
        if (!Samplers.Names.Contains(s)) throw new UserInputException($"unknown sampler '{name}' (one of: {string.Join(", ", Samplers.Names)})");
        return s;
    }

    /// <summary>Fails before any work when the output cannot be written where asked.</summary>
    internal static void CheckOutput(string path, string extension)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new UserInputException("--out must name a file");
        if (Directory.Exists(path)) throw new UserInputException($"--out '{path}' is a folder; give a {extension} file name");
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null && !Directory.Exists(dir)) throw new UserInputException($"--out '{path}': folder '{dir}' does not exist");
    }
}
