using System.Buffers.Binary;
using LayerFusion.Core.Fusion;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Cli.Shared;

/// <summary>
/// Inputs the user names, checked with messages that say what is wrong: missing, a file where a
/// folder is expected (or the reverse), or a file of another kind (a PNG given as a model).
/// </summary>
internal static class InputPaths
{
    /// <summary>LayerDiffuse's released names and the names the Forge/ComfyUI extensions save them under.</summary>
    public static readonly string[] AttentionNames = [LayerDiffuseTiny.DenseAttentionFileName, LayerDiffuseTiny.LoraAttentionFileName];
    public static readonly string[] DecoderNames = [LayerDiffuseTiny.TransparentDecoderFileName, "vae_transparent_decoder.safetensors"];

    /// <summary>--model as given (null: none), after checking it exists and is a checkpoint-shaped thing.</summary>
    public static string? Model(string? model, string option = "--model")
    {
        if (model is null) return null;
        if (model.Length == 0) throw new UserInputException($"{option} is empty; give a diffusers folder or a .safetensors file (or leave it out for the built-in demo model)");
        if (Directory.Exists(model)) return model;
        if (!File.Exists(model)) throw new UserInputException($"{option} '{model}': no such file or folder (the SDXL checkpoint: a diffusers folder or a .safetensors file)");
        var kind = Sniff(model);
        if (kind != "safetensors") throw new UserInputException($"{option} '{model}' is {kind}, not an SDXL checkpoint (a diffusers folder or a .safetensors file)");
        return model;
    }

    /// <summary>An existing regular file (not a folder).</summary>
    public static string ExistingFile(string option, string? path, string what)
    {
        if (string.IsNullOrEmpty(path)) throw new UserInputException($"{option}: give {what}");
        if (Directory.Exists(path)) throw new UserInputException($"{option} '{path}' is a folder, not {what}");
        if (!File.Exists(path)) throw new UserInputException($"{option} '{path}': no such file ({what})");
        return path;
    }

    /// <summary>
    /// The LayerDiffuse files: from <paramref name="given"/> (folders to search and/or the files
    /// themselves, told apart by content) or, when nothing is given, the model's folder.
    /// </summary>
    public static LayerDiffuseFiles LayerDiffuse(IReadOnlyList<string>? given, string modelPath)
    {
        string? attention = null, decoder = null;
        bool attentionGiven = false, decoderGiven = false;
        var searched = new List<string>();
        IEnumerable<string> sources = given is { Count: > 0 } ? given
            : [Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(Path.GetFullPath(modelPath))!];
        foreach (var source in sources)
        {
            if (string.IsNullOrEmpty(source)) throw new UserInputException("--layerdiffuse is empty; give a folder or the LayerDiffuse files");
            if (Directory.Exists(source))
            {
                searched.Add(source);
                attention ??= AttentionNames.Select(n => Path.Combine(source, n)).FirstOrDefault(File.Exists);
                decoder ??= DecoderNames.Select(n => Path.Combine(source, n)).FirstOrDefault(File.Exists);
                continue;
            }
            if (!File.Exists(source))
                throw new UserInputException($"--layerdiffuse '{source}': no such file or folder (LayerDiffuse's attention file and transparent decoder, or their folder)");
            var kind = Sniff(source);
            if (kind != "safetensors") throw new UserInputException($"--layerdiffuse '{source}' is {kind}, not a LayerDiffuse .safetensors file");
            if (IsTransparentDecoder(source))
            {
                if (decoderGiven) throw new UserInputException($"--layerdiffuse: two transparent decoders given ('{decoder}', '{source}')");
                decoder = source;
                decoderGiven = true;
            }
            else
            {
                if (attentionGiven) throw new UserInputException($"--layerdiffuse: two attention files given ('{attention}', '{source}')");
                attention = source;
                attentionGiven = true;
            }
        }
        var where = searched.Count == 0 ? "the files given" : string.Join(", ", searched.Select(s => $"'{s}'"));
        if (attention is null)
            throw new UserInputException($"no LayerDiffuse attention file in {where} ({string.Join(" or ", AttentionNames)}); pass --layerdiffuse DIR or the file");
        if (decoder is null)
            throw new UserInputException($"no LayerDiffuse transparent decoder in {where} ({string.Join(" or ", DecoderNames)}); pass --layerdiffuse DIR or the file");
        return new LayerDiffuseFiles(attention, decoder);
    }

    /// <summary>The transparent decoder holds UNet1024's latent_conv_in (or our config in its metadata); the attention file holds attention offsets.</summary>
    static bool IsTransparentDecoder(string path)
    {
        var name = Path.GetFileName(path);
        if (name.Contains("decoder", StringComparison.OrdinalIgnoreCase)) return true;
        if (name.Contains("attn", StringComparison.OrdinalIgnoreCase)) return false;
        using var file = SafeTensorsFile.Open(path);
        return file.Metadata.ContainsKey(TransparentDecoderFile.ConfigMetadataKey) || file.ByName.ContainsKey("latent_conv_in.weight");
    }

    /// <summary>
    /// What a file is, from its first bytes: "safetensors" (8-byte header length, then '{'), or a
    /// phrase naming another kind ("a PNG image (64x48)", "a zip archive (a PyTorch .pt/.ckpt?)").
    /// </summary>
    public static string Sniff(string path)
    {
        var head = new byte[32];
        int n;
        // the shared opener refuses FIFOs and devices (which would block or never end) before opening
        using (var fs = UntrustedFile.OpenRead(path, long.MaxValue, $"'{path}'"))
        {
            try { n = fs.ReadAtLeast(head, head.Length, throwOnEndOfStream: false); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UserInputException($"'{path}': cannot read it ({CliErrors.OneLine(e)})");
            }
        }
        var h = head.AsSpan(0, n);
        if (n == 0) return "an empty file";
        if (n >= 9 && h[8] == (byte)'{' && BinaryPrimitives.ReadUInt64LittleEndian(h) > 1) return "safetensors";
        if (h.StartsWith((ReadOnlySpan<byte>)[0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]))
            return n >= 24 ? $"a PNG image ({BinaryPrimitives.ReadUInt32BigEndian(h[16..])}x{BinaryPrimitives.ReadUInt32BigEndian(h[20..])})" : "a PNG image";
        if (n >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF) return "a JPEG image";
        if (h.StartsWith("GIF8"u8)) return "a GIF image";
        if (n >= 12 && h.StartsWith("RIFF"u8) && h[8..12].SequenceEqual("WEBP"u8)) return "a WebP image";
        if (h.StartsWith("8BPS"u8)) return "a Photoshop (PSD) file";
        if (h.StartsWith("GGUF"u8)) return "a GGUF file (llama.cpp / stable-diffusion.cpp format; convert it to safetensors)";
        if (h.StartsWith("PK\x03\x04"u8)) return "a zip archive (a PyTorch .pt/.ckpt/.bin checkpoint? only .safetensors is read)";
        if (h[0] == 0x80 && n > 1 && h[1] is >= 2 and <= 5) return "a Python pickle (a legacy .ckpt/.bin checkpoint? only .safetensors is read)";
        var first = (char)h.TrimStart(" \t\r\n"u8).ToArray().FirstOrDefault();
        if (first is '{' or '[') return "a JSON file";
        if (h.ToArray().All(b => b is >= 0x20 and < 0x7F or (byte)'\n' or (byte)'\r' or (byte)'\t')) return "a text file";
        return "not a safetensors file (unrecognized contents)";
    }
}
