using System.CommandLine;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.Tiny;

namespace LayerFusion.Cli.Commands;

/// <summary>`layerfusion make-tiny DIR`: a complete SDXL-shaped checkpoint with seeded random weights, plus LayerDiffuse files.</summary>
internal static class MakeTinyCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("DIR") { Description = "Folder to write into (created if absent)." };
        var layout = new Option<string>("--layout") { Description = "diffusers (folder per component) or single-file (one ldm-named .safetensors).", DefaultValueFactory = _ => "diffusers" };
        var seed = new Option<int>("--seed") { Description = "Seed of the random weights (same seed, same bytes).", DefaultValueFactory = _ => 0 };
        var dtype = new Option<string>("--dtype") { Description = "Weight dtype: f16 (as SDXL ships), bf16 or f32.", DefaultValueFactory = _ => "f16" };
        var command = new Command("make-tiny", "Write a tiny SDXL-shaped checkpoint (every component, tokenizers, scheduler) and LayerDiffuse files, for tests and demos.")
        {
            dir, layout, seed, dtype,
        };
        command.SetAction(parse =>
        {
            var outDir = parse.GetRequiredValue(dir);
            var kind = ParseLayout(parse.GetValue(layout)!);
            var type = ParseDType(parse.GetValue(dtype)!);
            int s = parse.GetValue(seed);
            if (string.IsNullOrWhiteSpace(outDir)) throw new UserInputException("make-tiny: DIR is empty; name the folder to write");
            if (File.Exists(outDir)) throw new UserInputException($"make-tiny: '{outDir}' is a file, not a folder");
            var configs = TinyCheckpoint.DefaultConfigs();
            var interrupts = Shared.Interrupts.Current;
            string? parent = Path.GetDirectoryName(Path.GetFullPath(outDir));
            Shared.TempNames.SweepStale(parent);
            interrupts.Watch(parent);
            interrupts.Watch(outDir);
            // Written beside DIR and renamed into place: an interrupted run leaves no half checkpoint at DIR
            // (a signal cancels before the rename; AtomicFolder removes the temporary folder).
            AtomicFolder.Write(outDir, temp =>
            {
                TinyCheckpoint.Write(temp, kind, s, type, configs);
                interrupts.Token.ThrowIfCancellationRequested();
                LayerDiffuseTiny.WriteAll(temp, configs.UnetConfig, s, type, decoder: TinyDecoderFor(configs));
                interrupts.Token.ThrowIfCancellationRequested();
            }, "make-tiny");
            parse.InvocationConfiguration.Output.WriteLine(
                $"wrote a tiny SDXL checkpoint ({(kind == CheckpointLayout.DiffusersFolder ? "diffusers folder" : "single file")}, seed {s}, {type}) and LayerDiffuse files to {Path.GetFullPath(outDir)}");
            return 0;
        });
        return command;
    }

    internal static CheckpointLayout ParseLayout(string s) => s.ToLowerInvariant() switch
    {
        "diffusers" => CheckpointLayout.DiffusersFolder,
        "single-file" or "singlefile" => CheckpointLayout.SingleFile,
        _ => throw new UserInputException($"--layout must be diffusers or single-file, not '{s}'"),
    };

    internal static DType ParseDType(string s) => s.ToLowerInvariant() switch
    {
        "f16" or "fp16" or "float16" => DType.F16,
        "bf16" or "bfloat16" => DType.BF16,
        "f32" or "fp32" or "float32" => DType.F32,
        _ => throw new UserInputException($"--dtype must be f16, bf16 or f32, not '{s}'"),
    };

    /// <summary>The tiny transparent decoder with its latent injected at the tiny VAE's scale (so `generate` can decode it).</summary>
    static WeightsLoader.Configs.TransparentDecoderConfig TinyDecoderFor(TinyConfigs configs) =>
        LayerDiffuseTiny.TinyDecoderConfig with { LatentInjectLevel = int.Log2(1 << (configs.VaeConfig.BlockOutChannels.Length - 1)) };
}
