using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Cli.Commands;

/// <summary>
/// `layerfusion inspect PATH [--json]`: what a checkpoint (either layout), a LayerDiffuse file or any
/// safetensors file holds. One report object feeds both the text and the JSON output.
/// </summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("PATH") { Description = "A diffusers folder, a single-file checkpoint, a LayerDiffuse file, or any .safetensors file." };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON." };
        var command = new Command("inspect", "Show the layout, components, configs, tensor and parameter counts, dtypes and bytes of a checkpoint or file.")
        {
            path, json,
        };
        command.SetAction(parse =>
        {
            var report = Inspect(parse.GetRequiredValue(path));
            var output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(json)) output.WriteLine(report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            else WriteText(report, output);
            return 0;
        });
        return command;
    }

    public static JsonObject Inspect(string path)
    {
        if (Directory.Exists(path))
        {
            using var ckpt = Checkpoint.Open(path);
            return Describe(ckpt);
        }
        if (!File.Exists(path)) throw new UserInputException($"'{path}': no such file or folder");
        var kind = Shared.InputPaths.Sniff(path);
        if (kind.StartsWith("a PNG image", StringComparison.Ordinal)) return DescribePng(path);
        if (kind != "safetensors")
            throw new UserInputException($"'{path}' is {kind}, not a checkpoint or safetensors file (inspect reads diffusers folders, .safetensors files and PNGs)");
        using (var file = SafeTensorsFile.Open(path))
        {
            if (!file.ByName.Keys.Any(k => k.StartsWith(LdmKeyMap.UNetPrefix, StringComparison.Ordinal)))
                return DescribeFile(path, file);
        }
        using var single = Checkpoint.Open(path);
        return Describe(single);
    }

    /// <summary>A PNG: its size, channels and text entries (our outputs' generation parameters).</summary>
    static JsonObject DescribePng(string path)
    {
        var bytes = UntrustedFile.ReadAllBytes(path, Core.Imaging.PngReadLimits.Default.MaxFileBytes);
        var header = Core.Imaging.PngFile.ReadHeader(bytes, path);
        var report = Base(path, "png-image");
        report["summary"] = $"{header.Width}x{header.Height}, {header.ColorType switch { 0 => "gray", 2 => "RGB", 3 => "palette", 4 => "gray+alpha", 6 => "RGBA", var c => $"color type {c}" }}, {header.BitDepth}-bit";
        var text = new JsonObject();
        foreach (var (k, v) in Core.Imaging.PngFile.ReadText(bytes, path)) text[k] = v;
        report["text"] = text;
        return report;
    }

    static JsonObject DescribeFile(string path, SafeTensorsFile file)
    {
        if (file.Metadata.ContainsKey(TransparentDecoderFile.ConfigMetadataKey) || file.ByName.ContainsKey("latent_conv_in.weight"))
            return DescribeTransparentDecoder(path, file);
        if (LooksLikeAttentionOffsets(file))
            return DescribeAttentionOffsets(path, file);
        var report = Base(path, "safetensors");
        report["tensors"] = Summary(file.Tensors);
        report["metadata_keys"] = new JsonArray(file.Metadata.Keys.Order(StringComparer.Ordinal).Select(k => (JsonNode?)k).ToArray());
        return report;
    }

    static bool LooksLikeAttentionOffsets(SafeTensorsFile file) => file.Tensors.Count > 0 && file.ByName.Keys.All(k =>
        k.Contains("::lora::", StringComparison.Ordinal) || (k.Contains(".attn", StringComparison.Ordinal) && k.Contains("blocks", StringComparison.Ordinal)));

    static JsonObject Base(string path, string kind) => new() { ["path"] = Path.GetFullPath(path), ["kind"] = kind };

    static JsonObject Describe(Checkpoint c)
    {
        var report = Base(c.SourcePath, "sdxl-checkpoint");
        report["layout"] = c.Layout == CheckpointLayout.DiffusersFolder ? "diffusers" : "single-file";
        var comps = new JsonArray();
        foreach (var m in c.Components)
        {
            var o = new JsonObject
            {
                ["name"] = m.Name,
                ["class"] = m.ClassName,
                ["summary"] = ConfigSummary(m.ConfigObject),
            };
            foreach (var (k, v) in Summary(m.Weights.Values.ToList())) o[k] = v?.DeepClone();
            o["files"] = new JsonArray(m.Files.Select(f => (JsonNode?)f).ToArray());
            o["config"] = m.RawConfig.DeepClone();
            comps.Add(o);
        }
        report["components"] = comps;
        report["tokenizers"] = new JsonObject
        {
            ["tokenizer"] = TokenizerInfo(c.Tokenizer),
            ["tokenizer_2"] = TokenizerInfo(c.Tokenizer2),
        };
        var s = c.Scheduler;
        report["scheduler"] = new JsonObject
        {
            ["summary"] = $"{s.ClassName}: {s.BetaSchedule} betas {s.BetaStart.ToString(CultureInfo.InvariantCulture)}..{s.BetaEnd.ToString(CultureInfo.InvariantCulture)}, {s.NumTrainTimesteps} train steps, {s.PredictionType}, {s.TimestepSpacing} spacing, steps_offset {s.StepsOffset}",
            ["config"] = c.SchedulerRawConfig.DeepClone(),
        };
        report["total"] = Summary(c.Components.SelectMany(m => m.Weights.Values).ToList());
        return report;
    }

    static JsonNode? TokenizerInfo(TokenizerFiles? t)
    {
        if (t is null) return null;
        // Same bounds as the tokenizer loader (ClipTokenizer): a giant merges.txt is refused, not streamed.
        CheckTokenizerFileSize(t.MergesTxt);
        int merges = File.ReadLines(t.MergesTxt).Skip(1).Count(l => l.Length > 0);
        int vocab = (ReadJson(t.VocabJson) as JsonObject)?.Count ?? throw new UserInputException($"{t.VocabJson}: not a JSON object");
        string? pad = null;
        if (t.SpecialTokensMapJson is { } sp && ReadJson(sp) is JsonObject so && so["pad_token"] is JsonValue pv && pv.TryGetValue<string>(out var ps))
            pad = ps;
        return new JsonObject { ["dir"] = t.Directory, ["vocab"] = vocab, ["merges"] = merges, ["pad_token"] = pad };
    }

    const long MaxTokenizerFileBytes = 64L << 20;

    static void CheckTokenizerFileSize(string path)
    {
        // Links followed, regular files only (a FIFO or device would block or never end), the target's size.
        if (UntrustedFile.CheckRegularFile(path, MaxTokenizerFileBytes) == 0) throw new UserInputException($"{path}: empty");
    }

    static JsonNode? ReadJson(string path) => ConfigReader.ReadJsonFile(path, MaxTokenizerFileBytes);

    static string ConfigSummary(object config) => config switch
    {
        UNetConfig u => $"block_out_channels [{J(u.BlockOutChannels)}], layers_per_block {u.LayersPerBlock}, transformer_layers_per_block [{J(u.TransformerLayersPerBlock)}], heads [{J(u.NumAttentionHeads)}], cross_attention_dim {u.CrossAttentionDim}, addition {u.AdditionEmbedType ?? "none"} (time dim {u.AdditionTimeEmbedDim}, input {u.ProjectionClassEmbeddingsInputDim}), norm groups {u.NormNumGroups}",
        AutoencoderKLConfig v => $"block_out_channels [{J(v.BlockOutChannels)}], layers_per_block {v.LayersPerBlock}, latent_channels {v.LatentChannels}, norm groups {v.NormNumGroups}, scaling_factor {v.ScalingFactor.ToString(CultureInfo.InvariantCulture)}",
        ClipTextConfig t => $"hidden {t.HiddenSize}, layers {t.NumHiddenLayers}, heads {t.NumAttentionHeads}, intermediate {t.IntermediateSize}, vocab {t.VocabSize}, positions {t.MaxPositionEmbeddings}, {t.HiddenAct}" + (t.WithProjection ? $", projection {t.ProjectionDim}" : ""),
        _ => config.ToString() ?? "",
    };

    static string J(int[] v) => string.Join(", ", v);

    static JsonObject Summary(IReadOnlyList<WeightTensor> tensors)
    {
        var dtypes = new JsonObject();
        foreach (var g in tensors.GroupBy(t => t.DType).OrderBy(g => g.Key.ToString(), StringComparer.Ordinal)) dtypes[g.Key.ToString()] = g.Count();
        return new JsonObject
        {
            ["tensors"] = tensors.Count,
            ["parameters"] = tensors.Sum(t => t.ElementCount),
            ["bytes"] = tensors.Sum(t => t.ByteLength),
            ["dtypes"] = dtypes,
        };
    }

    static JsonObject DescribeTransparentDecoder(string path, SafeTensorsFile file)
    {
        using var dec = TransparentDecoderFile.Load(path);
        var report = Base(path, "layerdiffuse-transparent-decoder");
        var c = dec.Config;
        report["summary"] = $"UNet1024: block_out_channels [{J(c.BlockOutChannels)}], layers_per_block {c.LayersPerBlock}, norm groups {c.NormNumGroups}, attention head dim {c.AttentionHeadDim}, latent inject level {c.LatentInjectLevel}"
            + (file.Metadata.ContainsKey(TransparentDecoderFile.ConfigMetadataKey) ? " (config from metadata)" : " (released architecture)");
        report["tensors"] = Summary(dec.Tensors.Values.ToList());
        return report;
    }

    static JsonObject DescribeAttentionOffsets(string path, SafeTensorsFile file)
    {
        var format = LayerDiffuseAttention.DetectFormat(file.ByName.Keys);
        // The offsets are checked against the UNet they belong to: the checkpoint beside the file
        // (make-tiny writes them together), else SDXL's.
        var (unet, against) = SiblingUNetConfig(path);
        var offsets = LayerDiffuseAttention.FromTensors(file.Tensors, unet, path);
        var report = Base(path, "layerdiffuse-attention");
        report["format"] = format == LayerDiffuseAttentionFormat.LoraLdm ? "lora (Forge/ComfyUI ::lora::)" : "dense (diffusers offsets)";
        report["validated_against"] = against;
        report["offsets"] = offsets.Count;
        report["tensors"] = Summary(file.Tensors);
        return report;
    }

    static (UNetConfig, string) SiblingUNetConfig(string path)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string unetConfig = Path.Combine(dir, "unet", "config.json");
        if (File.Exists(unetConfig)) return (UNetConfig.Read(ConfigReader.FromFile(unetConfig)), unetConfig);
        var single = Directory.GetFiles(dir, "*.safetensors").Where(f => !Checkpoint.IsLayerDiffuseFileName(f)).ToArray();
        if (single.Length == 1)
        {
            using var ckpt = Checkpoint.Open(single[0]);
            return (ckpt.Unet.Config, single[0]);
        }
        var sdxl = SdxlDefaults.UNet();
        return (UNetConfig.Read(ConfigJson.Reader(sdxl, "SDXL default unet config")), "SDXL base UNet config");
    }

    static void WriteText(JsonObject r, TextWriter o)
    {
        o.WriteLine($"path: {r["path"]}");
        o.WriteLine($"kind: {r["kind"]}");
        if (r["layout"] is { } layout) o.WriteLine($"layout: {layout}");
        if (r["components"] is JsonArray comps)
        {
            foreach (var c in comps.OfType<JsonObject>())
            {
                o.WriteLine($"{c["name"]} ({c["class"]}): {Counts(c)}");
                o.WriteLine($"  {c["summary"]}");
            }
            if (r["tokenizers"] is JsonObject toks)
                foreach (var (k, v) in toks)
                    o.WriteLine(v is JsonObject t ? $"{k}: {t["dir"]} (vocab {t["vocab"]}, merges {t["merges"]}, pad {t["pad_token"]})" : $"{k}: not found (put tokenizer/ and tokenizer_2/ beside the file)");
            o.WriteLine($"scheduler: {r["scheduler"]?["summary"]}");
            o.WriteLine($"total: {Counts((JsonObject)r["total"]!)}");
            return;
        }
        foreach (var key in new[] { "summary", "format", "validated_against", "offsets" })
            if (r[key] is { } v) o.WriteLine($"{key.Replace('_', ' ')}: {v}");
        if (r["tensors"] is JsonObject ts) o.WriteLine($"tensors: {Counts(ts)}");
        if (r["metadata_keys"] is JsonArray mk && mk.Count > 0) o.WriteLine($"metadata: {string.Join(", ", mk)}");
        if (r["text"] is JsonObject text)
            foreach (var (k, v) in text) o.WriteLine($"text {k}: {v?.GetValue<string>().ReplaceLineEndings(" | ")}");
    }

    static string Counts(JsonObject c)
    {
        var dtypes = c["dtypes"] is JsonObject d ? string.Join(", ", d.Select(kv => $"{kv.Key} x{kv.Value}")) : "";
        long bytes = c["bytes"]!.GetValue<long>();
        return $"{c["tensors"]} tensors, {c["parameters"]!.GetValue<long>().ToString("N0", CultureInfo.InvariantCulture)} parameters, {Bytes(bytes)} ({dtypes})";
    }

    static string Bytes(long b) => b >= 1 << 30 ? string.Create(CultureInfo.InvariantCulture, $"{b / (double)(1 << 30):F2} GiB") : b >= 1 << 20 ? string.Create(CultureInfo.InvariantCulture, $"{b / (double)(1 << 20):F2} MiB") : b >= 1 << 10 ? string.Create(CultureInfo.InvariantCulture, $"{b / 1024.0:F1} KiB") : $"{b} B";
}
