using System.Text;
using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.LayerDiffuse;
using LayerFusion.WeightsLoader.SafeTensors;
using LayerFusion.WeightsLoader.Tiny;

namespace LayerFusion.Cuda.Bench;

/// <summary>
/// A benchmark checkpoint: SDXL's real configs (<see cref="SdxlDefaults"/>) or any other
/// <see cref="TinyConfigs"/>, seeded random weights (<see cref="TinyCheckpoint.RandomWeights"/>, one
/// stream per tensor, so the values equal what TinyCheckpoint.Write draws for the same configs and
/// seed), written as a diffusers folder, plus LayerDiffuse files beside it (dense fp16 attention
/// offsets, a transparent decoder of the released architecture). Tensors are drawn in parallel: the
/// full SDXL set is about 3.5 G values (7 GB in fp16), which one thread draws in minutes.
/// Tokenizers are the project's tiny BPE (ids stay below CLIP's vocabulary): benchmarks need
/// shapes, not words.
/// </summary>
public static class RandomSdxlCheckpoint
{
    public const string LayerDiffuseFolder = "layerdiffuse";
    static readonly System.Text.Json.JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>SDXL base 1.0's configs, unchanged.</summary>
    public static TinyConfigs FullSizeConfigs() =>
        new(SdxlDefaults.UNet(), SdxlDefaults.Vae(), SdxlDefaults.TextEncoder(), SdxlDefaults.TextEncoder2(), SdxlDefaults.Scheduler());

    /// <summary>
    /// Writes the checkpoint into <paramref name="dir"/> (unet/, vae/, text_encoder/, text_encoder_2/,
    /// tokenizer/, tokenizer_2/, scheduler/, model_index.json, layerdiffuse/). A folder that already
    /// holds a complete checkpoint of the same configs and seed (marker file) is reused.
    /// </summary>
    public static LayerDiffuseFilesPaths Write(string dir, TinyConfigs configs, long seed, TransparentDecoderConfig? decoder = null,
        Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(configs);
        decoder ??= new TransparentDecoderConfig();
        var ld = Path.Combine(dir, LayerDiffuseFolder);
        var paths = new LayerDiffuseFilesPaths(Path.Combine(ld, LayerDiffuseTiny.DenseAttentionFileName), Path.Combine(ld, LayerDiffuseTiny.TransparentDecoderFileName));
        string marker = Path.Combine(dir, ".random-checkpoint");
        string identity = Identity(configs, seed, decoder);
        if (File.Exists(marker) && File.ReadAllText(marker) == identity) return paths;
        if (File.Exists(marker)) File.Delete(marker);

        Directory.CreateDirectory(dir);
        var raw = new Dictionary<string, JsonObject>
        {
            ["unet"] = configs.Unet, ["vae"] = configs.Vae, ["text_encoder"] = configs.TextEncoder, ["text_encoder_2"] = configs.TextEncoder2,
        };
        foreach (var name in Checkpoint.ComponentNames)
        {
            var schema = TinyCheckpoint.SchemaOf(configs, name);
            log?.Invoke($"random weights: {name} ({schema.Count} tensors, {schema.Sum(p => p.Shape.Aggregate(1L, (a, b) => a * b)) / 1e6:F0} M values)");
            string sub = Path.Combine(dir, name);
            Directory.CreateDirectory(sub);
            WriteText(Path.Combine(sub, "config.json"), raw[name].ToJsonString(Indented));
            string file = name.StartsWith("text_encoder", StringComparison.Ordinal) ? "model.safetensors" : "diffusion_pytorch_model.safetensors";
            SafeTensorsWriter.Write(Path.Combine(sub, file), ParallelRandom(name, schema, seed, DType.F16));
        }
        int maxLen = configs.TextEncoderConfig.MaxPositionEmbeddings;
        TinyTokenizer.Write(Path.Combine(dir, "tokenizer"), TinyTokenizer.EndOfText, maxLength: maxLen);
        TinyTokenizer.Write(Path.Combine(dir, "tokenizer_2"), "!", maxLength: maxLen);
        Directory.CreateDirectory(Path.Combine(dir, "scheduler"));
        WriteText(Path.Combine(dir, "scheduler", "scheduler_config.json"), configs.Scheduler.ToJsonString(Indented));
        WriteText(Path.Combine(dir, "model_index.json"), TinyCheckpoint.ModelIndex().ToJsonString(Indented));

        Directory.CreateDirectory(ld);
        log?.Invoke("random weights: LayerDiffuse attention offsets and transparent decoder");
        SafeTensorsWriter.Write(paths.Attention, AttentionOffsets(configs.UnetConfig, seed), new Dictionary<string, string> { ["format"] = "pt" });
        TransparentDecoderSchema.Validate(decoder, paths.TransparentDecoder);
        var decoderSchema = TransparentDecoderSchema.Enumerate(decoder).Select(s => new ParamSpec(s.Name, s.Shape)).ToList();
        SafeTensorsWriter.Write(paths.TransparentDecoder, ParallelRandom("transparent_decoder", decoderSchema, seed, DType.F16),
            new Dictionary<string, string> { ["format"] = "pt", [TransparentDecoderFile.ConfigMetadataKey] = LayerDiffuseTiny.ConfigJson(decoder) });
        File.WriteAllText(marker, identity, new UTF8Encoding(false));
        return paths;
    }

    /// <summary>TinyCheckpoint.RandomWeights, one tensor per task (each tensor has its own stream, so the order does not matter).</summary>
    public static IReadOnlyList<WeightTensor> ParallelRandom(string component, IReadOnlyList<ParamSpec> schema, long seed, DType dtype)
    {
        var result = new WeightTensor[schema.Count];
        Parallel.For(0, schema.Count, i => result[i] = TinyCheckpoint.RandomWeights(component, [schema[i]], seed, dtype)[0]);
        return result;
    }

    /// <summary>
    /// Dense LayerDiffuse offsets for every attention projection weight: N(0, (0.1 / sqrt(in))^2), a
    /// tenth of a unit-variance-preserving weight, like the LoRA-derived tiny offsets (biases carry
    /// no offset, as in the released file).
    /// </summary>
    public static IReadOnlyList<WeightTensor> AttentionOffsets(UNetConfig unet, long seed)
    {
        var projections = UNetAttentionLayout.Enumerate(unet).Where(p => !p.IsBias).ToList();
        var result = new WeightTensor[projections.Count];
        Parallel.For(0, projections.Count, i =>
        {
            var p = projections[i];
            var rng = SeededNormal.For(seed, "layerdiffuse/" + p.Name);
            long count = p.Shape.Aggregate(1L, (a, b) => a * b);
            double std = 0.1 / Math.Sqrt(p.Shape[1]);
            var values = new float[count];
            for (long j = 0; j < count; j++) values[j] = (float)(std * rng.NextNormal());
            result[i] = ArrayWeightTensor.FromFloat32(p.Name, p.Shape, values, DType.F16);
        });
        return result;
    }

    static string Identity(TinyConfigs c, long seed, TransparentDecoderConfig decoder) =>
        $"seed {seed}\n{c.Unet.ToJsonString()}\n{c.Vae.ToJsonString()}\n{c.TextEncoder.ToJsonString()}\n{c.TextEncoder2.ToJsonString()}\n" +
        $"{c.Scheduler.ToJsonString()}\n{LayerDiffuseTiny.ConfigJson(decoder)}\n";

    static void WriteText(string path, string text) => File.WriteAllText(path, text + "\n", new UTF8Encoding(false));
}

/// <summary>Where <see cref="RandomSdxlCheckpoint.Write"/> put the LayerDiffuse files.</summary>
public sealed record LayerDiffuseFilesPaths(string Attention, string TransparentDecoder);
