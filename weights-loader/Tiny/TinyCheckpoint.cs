using System.Text;
using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.WeightsLoader.Tiny;

/// <summary>The configs a tiny checkpoint is built from (diffusers config.json contents).</summary>
public sealed record TinyConfigs(JsonObject Unet, JsonObject Vae, JsonObject TextEncoder, JsonObject TextEncoder2, JsonObject Scheduler)
{
    public UNetConfig UnetConfig => UNetConfig.Read(ConfigJson.Reader(Unet, "tiny unet"));
    public AutoencoderKLConfig VaeConfig => AutoencoderKLConfig.Read(ConfigJson.Reader(Vae, "tiny vae"));
    public ClipTextConfig TextEncoderConfig => ClipTextConfig.Read(ConfigJson.Reader(TextEncoder, "tiny text_encoder"));
    public ClipTextConfig TextEncoder2Config => ClipTextConfig.Read(ConfigJson.Reader(TextEncoder2, "tiny text_encoder_2"));
}

/// <summary>
/// Writes complete SDXL-shaped checkpoints with seeded random weights, in either layout. Small
/// dimensions live only in the configs written here; loaders read every dimension from them.
/// </summary>
public static class TinyCheckpoint
{
    public const string SingleFileName = "sdxl_tiny.safetensors";

    /// <summary>SDXL's structure at toy width: two text encoders of width 32 whose concatenation (64) is the cross-attention dim.</summary>
    public static TinyConfigs DefaultConfigs()
    {
        int vocab = TinyTokenizer.VocabSize();
        JsonObject Clip(string arch, string act) => new()
        {
            ["architectures"] = new JsonArray(arch), ["attention_dropout"] = 0.0, ["bos_token_id"] = 0, ["dropout"] = 0.0,
            ["eos_token_id"] = 2, ["hidden_act"] = act, ["hidden_size"] = 32, ["initializer_factor"] = 1.0,
            ["initializer_range"] = 0.02, ["intermediate_size"] = 64, ["layer_norm_eps"] = 1e-05,
            ["max_position_embeddings"] = 77, ["model_type"] = "clip_text_model", ["num_attention_heads"] = 2,
            ["num_hidden_layers"] = 2, ["pad_token_id"] = 1, ["projection_dim"] = 32, ["vocab_size"] = vocab,
        };
        var unet = SdxlDefaults.UNet();
        unet["sample_size"] = 32;
        unet["block_out_channels"] = new JsonArray(32, 64);
        unet["attention_head_dim"] = new JsonArray(2, 4);
        unet["transformer_layers_per_block"] = new JsonArray(1, 2);
        unet["down_block_types"] = new JsonArray("DownBlock2D", "CrossAttnDownBlock2D");
        unet["up_block_types"] = new JsonArray("CrossAttnUpBlock2D", "UpBlock2D");
        unet["cross_attention_dim"] = 64;
        unet["addition_time_embed_dim"] = 8;
        unet["projection_class_embeddings_input_dim"] = 32 + 6 * 8;
        unet["norm_num_groups"] = 8;
        var vae = SdxlDefaults.Vae();
        vae["block_out_channels"] = new JsonArray(32, 64);
        vae["down_block_types"] = new JsonArray("DownEncoderBlock2D", "DownEncoderBlock2D");
        vae["up_block_types"] = new JsonArray("UpDecoderBlock2D", "UpDecoderBlock2D");
        vae["layers_per_block"] = 1;
        vae["norm_num_groups"] = 8;
        vae["sample_size"] = 64;
        return new TinyConfigs(unet, vae, Clip("CLIPTextModel", "quick_gelu"), Clip("CLIPTextModelWithProjection", "gelu"), SdxlDefaults.Scheduler());
    }

    /// <summary>
    /// Seeded weights for a schema: linear/conv/embedding weights N(0, 1/sqrt(fan_in)), norm weights
    /// 1 + N(0, 0.1), biases N(0, 0.05). Each tensor from its own stream (seed, component/name).
    /// </summary>
    public static IReadOnlyList<WeightTensor> RandomWeights(string component, IReadOnlyList<ParamSpec> schema, long seed, DType dtype)
    {
        var result = new List<WeightTensor>(schema.Count);
        foreach (var p in schema)
        {
            var rng = SeededNormal.For(seed, component + "/" + p.Name);
            long count = p.Shape.Aggregate(1L, (a, d) => a * d);
            var values = new float[count];
            bool vector = p.Shape.Length == 1;
            bool normWeight = vector && p.Name.EndsWith(".weight", StringComparison.Ordinal);
            double scale = vector ? (normWeight ? 0.1 : 0.05) : 1.0 / Math.Sqrt(p.Shape.Skip(1).Aggregate(1L, (a, d) => a * d));
            for (long i = 0; i < count; i++)
                values[i] = (float)((normWeight ? 1.0 : 0.0) + scale * rng.NextNormal());
            result.Add(ArrayWeightTensor.FromFloat32(p.Name, p.Shape, values, dtype));
        }
        return result;
    }

    public static IReadOnlyList<ParamSpec> SchemaOf(TinyConfigs c, string component) => component switch
    {
        "unet" => UNetSchema.Parameters(c.UnetConfig),
        "vae" => AutoencoderKLSchema.Parameters(c.VaeConfig),
        "text_encoder" => ClipTextSchema.Parameters(c.TextEncoderConfig),
        "text_encoder_2" => ClipTextSchema.Parameters(c.TextEncoder2Config),
        _ => throw new ArgumentException($"unknown component '{component}'"),
    };

    /// <summary>
    /// Writes the checkpoint into <paramref name="dir"/>: a diffusers folder, or one single-file
    /// checkpoint (<see cref="SingleFileName"/>, configs in its __metadata__) with `tokenizer/` and
    /// `tokenizer_2/` beside it. Same inputs, same bytes.
    /// </summary>
    public static void Write(string dir, CheckpointLayout layout, long seed, DType dtype = DType.F16, TinyConfigs? configs = null)
    {
        if (dtype is not (DType.F16 or DType.BF16 or DType.F32)) throw new UserInputException($"make-tiny: dtype {dtype} is not supported (F16, BF16 or F32)");
        configs ??= DefaultConfigs();
        Directory.CreateDirectory(dir);
        var weights = Checkpoint.ComponentNames.ToDictionary(n => n, n => RandomWeights(n, SchemaOf(configs, n), seed, dtype));
        var rawConfigs = new Dictionary<string, JsonObject>
        {
            ["unet"] = configs.Unet, ["vae"] = configs.Vae, ["text_encoder"] = configs.TextEncoder, ["text_encoder_2"] = configs.TextEncoder2,
        };
        int maxLen = configs.TextEncoderConfig.MaxPositionEmbeddings;
        TinyTokenizer.Write(Path.Combine(dir, "tokenizer"), TinyTokenizer.EndOfText, maxLength: maxLen);
        TinyTokenizer.Write(Path.Combine(dir, "tokenizer_2"), "!", maxLength: maxLen);

        if (layout == CheckpointLayout.DiffusersFolder)
        {
            foreach (var name in Checkpoint.ComponentNames)
            {
                string sub = Path.Combine(dir, name);
                Directory.CreateDirectory(sub);
                WriteJson(Path.Combine(sub, "config.json"), rawConfigs[name]);
                string file = name.StartsWith("text_encoder", StringComparison.Ordinal) ? "model.safetensors" : "diffusion_pytorch_model.safetensors";
                SafeTensorsWriter.Write(Path.Combine(sub, file), weights[name]);
            }
            Directory.CreateDirectory(Path.Combine(dir, "scheduler"));
            WriteJson(Path.Combine(dir, "scheduler", "scheduler_config.json"), configs.Scheduler);
            WriteJson(Path.Combine(dir, "model_index.json"), ModelIndex());
        }
        else
        {
            var tensors = new List<WeightTensor>();
            void Add(string prefix, IReadOnlyList<LdmRule> rules, IReadOnlyList<WeightTensor> ws)
            {
                var by = ws.ToDictionary(t => t.Name, StringComparer.Ordinal);
                foreach (var r in rules)
                {
                    string key = prefix + r.LdmName;
                    var first = by[r.DiffusersNames[0]];
                    tensors.Add(r.Transform switch
                    {
                        LdmTransform.Rename => ArrayWeightTensor.Rename(first, key),
                        LdmTransform.Conv1x1 => TensorOps.Reshape(key, first, [.. first.Shape, 1, 1]),
                        LdmTransform.Transpose => TensorOps.Transpose2D(key, first),
                        LdmTransform.FusedRows => TensorOps.ConcatRows(key, r.DiffusersNames.Select(n => by[n]).ToList()),
                        _ => throw new InvalidOperationException(),
                    });
                }
            }
            Add(LdmKeyMap.UNetPrefix, LdmKeyMap.UNet(configs.UnetConfig), weights["unet"]);
            Add(LdmKeyMap.VaePrefix, LdmKeyMap.Vae(configs.VaeConfig), weights["vae"]);
            Add(LdmKeyMap.ClipLPrefix, LdmKeyMap.ClipL(configs.TextEncoderConfig), weights["text_encoder"]);
            Add(LdmKeyMap.ClipGPrefix, LdmKeyMap.OpenClip(configs.TextEncoder2Config), weights["text_encoder_2"]);
            var all = new JsonObject();
            foreach (var (k, v) in rawConfigs) all[k] = v.DeepClone();
            all["scheduler"] = configs.Scheduler.DeepClone();
            SafeTensorsWriter.Write(Path.Combine(dir, SingleFileName), tensors,
                new Dictionary<string, string> { ["format"] = "pt", [Checkpoint.SingleFileConfigsKey] = all.ToJsonString() });
        }
    }

    /// <summary>model_index.json of an SDXL diffusers folder (the pipeline's component classes).</summary>
    public static JsonObject ModelIndex() => new()
    {
        ["_class_name"] = "StableDiffusionXLPipeline",
        ["_diffusers_version"] = "0.25.0",
        ["force_zeros_for_empty_prompt"] = true,
        ["scheduler"] = new JsonArray("diffusers", "EulerDiscreteScheduler"),
        ["text_encoder"] = new JsonArray("transformers", "CLIPTextModel"),
        ["text_encoder_2"] = new JsonArray("transformers", "CLIPTextModelWithProjection"),
        ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
        ["tokenizer_2"] = new JsonArray("transformers", "CLIPTokenizer"),
        ["unet"] = new JsonArray("diffusers", "UNet2DConditionModel"),
        ["vae"] = new JsonArray("diffusers", "AutoencoderKL"),
    };

    static void WriteJson(string path, JsonObject o) => File.WriteAllText(path, o.ToJsonString(TinyTokenizer.Indented) + "\n", new UTF8Encoding(false));
}
