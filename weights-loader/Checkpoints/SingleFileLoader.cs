using System.Text.Json;
using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.WeightsLoader.Checkpoints;

/// <summary>
/// A single-file SDXL checkpoint (sgm/ldm names). Configs come from tensor shapes; what shapes
/// cannot tell comes from `__metadata__["layerfusion.configs"]` when present, else SDXL's defaults.
/// </summary>
internal static class SingleFileLoader
{
    /// <summary>Top-level keys real SDXL files carry outside the four models (sampler buffers).</summary>
    static bool ToleratedTopLevel(string key) => key.StartsWith("denoiser.", StringComparison.Ordinal);

    public static Checkpoint Load(string path, CheckpointOptions options)
    {
        path = Path.GetFullPath(path);
        var file = SafeTensorsFile.Open(path);
        try
        {
            return Load(file, path, options);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    static Checkpoint Load(SafeTensorsFile file, string path, CheckpointOptions options)
    {
        var keys = file.ByName;
        if (!keys.Keys.Any(k => k.StartsWith(LdmKeyMap.UNetPrefix, StringComparison.Ordinal)))
        {
            string hint = keys.Keys.Any(k => k.StartsWith("cond_stage_model.", StringComparison.Ordinal)) ? " (it looks like an SD 1.x/2.x checkpoint; only SDXL is supported)" : "";
            throw new UserInputException($"'{path}' is not an SDXL single-file checkpoint: no {LdmKeyMap.UNetPrefix}* tensors{hint}");
        }
        string[] prefixes = [LdmKeyMap.UNetPrefix, LdmKeyMap.VaePrefix, LdmKeyMap.ClipLPrefix, LdmKeyMap.ClipGPrefix];
        var stray = keys.Keys.Where(k => !prefixes.Any(p => k.StartsWith(p, StringComparison.Ordinal)) && !ToleratedTopLevel(k)).Order(StringComparer.Ordinal).ToList();
        ComponentValidator.CheckNames("checkpoint", path, [], stray);

        var meta = MetadataConfigs(file, path);
        var shapes = new ShapeQuery(keys);
        var te2Reader = ConfigJson.Reader(InferOpenClip(shapes, meta, path), path + " [text_encoder_2]");
        var te2Cfg = ClipTextConfig.Read(te2Reader);
        var teReader = ConfigJson.Reader(InferClipL(shapes, meta, path), path + " [text_encoder]");
        var teCfg = ClipTextConfig.Read(teReader);
        var unetReader = ConfigJson.Reader(InferUNet(shapes, meta, path, te2Cfg), path + " [unet]");
        var unetCfg = UNetConfig.Read(unetReader);
        var vaeReader = ConfigJson.Reader(InferVae(shapes, meta, path), path + " [vae]");
        var vaeCfg = AutoencoderKLConfig.Read(vaeReader);
        var schedReader = ConfigJson.Reader(meta.TryGetPropertyValue("scheduler", out var s) && s is JsonObject so ? so : SdxlDefaults.Scheduler(), path + " [scheduler]");
        var sched = SchedulerConfig.Read(schedReader);
        JsonObject unetRaw = unetReader.Json, vaeRaw = vaeReader.Json, teRaw = teReader.Json, te2Raw = te2Reader.Json, schedRaw = schedReader.Json;

        var unet = Map("unet", "UNet2DConditionModel", unetCfg, unetRaw, UNetSchema.Parameters(unetCfg), LdmKeyMap.UNet(unetCfg), LdmKeyMap.UNetPrefix, file);
        var vae = Map("vae", "AutoencoderKL", vaeCfg, vaeRaw, AutoencoderKLSchema.Parameters(vaeCfg), LdmKeyMap.Vae(vaeCfg), LdmKeyMap.VaePrefix, file);
        var te = Map("text_encoder", teCfg.Architecture, teCfg, teRaw, ClipTextSchema.Parameters(teCfg), LdmKeyMap.ClipL(teCfg), LdmKeyMap.ClipLPrefix, file);
        var te2 = Map("text_encoder_2", te2Cfg.Architecture, te2Cfg, te2Raw, ClipTextSchema.Parameters(te2Cfg), LdmKeyMap.OpenClip(te2Cfg), LdmKeyMap.ClipGPrefix, file);

        string dir = Path.GetDirectoryName(path)!;
        var tok = options.TokenizerDir is { } t1 ? TokenizerFiles.Find(t1, "tokenizer") : TokenizerFiles.TryFind(Path.Combine(dir, "tokenizer"));
        var tok2 = options.Tokenizer2Dir is { } t2 ? TokenizerFiles.Find(t2, "tokenizer_2") : TokenizerFiles.TryFind(Path.Combine(dir, "tokenizer_2"));
        return new Checkpoint(CheckpointLayout.SingleFile, path, unet, vae, te, te2, tok, tok2, sched, schedRaw, [file]);
    }

    static ModelComponent<T> Map<T>(string name, string cls, T config, JsonObject raw, IReadOnlyList<ParamSpec> schema,
        IReadOnlyList<LdmRule> rules, string prefix, SafeTensorsFile file) where T : class
    {
        var byName = schema.ToDictionary(p => p.Name, p => p.Shape, StringComparer.Ordinal);
        var consumed = new HashSet<string>(StringComparer.Ordinal);
        var missing = new List<string>();
        // The name each rule is read under: its own, or its alternative's when only that is present.
        rules = rules.Select(r => Resolve(r, prefix, file, name)).ToList();
        foreach (var r in rules)
        {
            string key = prefix + r.LdmName;
            if (file.ByName.ContainsKey(key)) consumed.Add(key); else missing.Add(key);
        }
        var unexpected = file.ByName.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal) && !consumed.Contains(k)
            && !LdmKeyMap.IsTolerated(name, k[prefix.Length..])).Order(StringComparer.Ordinal);
        ComponentValidator.CheckNames(name, file.Path, missing, unexpected);

        var result = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        foreach (var r in rules)
        {
            string key = prefix + r.LdmName;
            var t = file.ByName[key];
            var d0 = byName[r.DiffusersNames[0]];
            switch (r.Transform)
            {
                case LdmTransform.Rename:
                    Expect(name, file.Path, key, d0, t.Shape);
                    result[r.DiffusersNames[0]] = ArrayWeightTensor.Rename(t, r.DiffusersNames[0]);
                    break;
                case LdmTransform.Conv1x1:
                    // Some converted files already store these as Linear weights; both are accepted.
                    if (!t.Shape.SequenceEqual(d0)) Expect(name, file.Path, key, [.. d0, 1, 1], t.Shape);
                    result[r.DiffusersNames[0]] = TensorOps.Reshape(r.DiffusersNames[0], t, d0);
                    break;
                case LdmTransform.Transpose:
                    Expect(name, file.Path, key, [.. d0.Reverse()], t.Shape);
                    result[r.DiffusersNames[0]] = TensorOps.Transpose2D(r.DiffusersNames[0], t);
                    break;
                case LdmTransform.FusedRows:
                    var parts = r.DiffusersNames.Select(n => byName[n]).ToList();
                    long[] fused = [parts.Sum(p => p[0]), .. d0.Skip(1)];
                    Expect(name, file.Path, key, fused, t.Shape);
                    long row = 0;
                    for (int i = 0; i < parts.Count; i++)
                    {
                        result[r.DiffusersNames[i]] = TensorOps.Rows(r.DiffusersNames[i], t, row, parts[i][0]);
                        row += parts[i][0];
                    }
                    break;
            }
        }
        var weights = ComponentValidator.Check(name, file.Path, schema, result, _ => false);
        return new ModelComponent<T>(name, cls, config, raw, schema, weights, [file.Path]);
    }

    static LdmRule Resolve(LdmRule rule, string prefix, SafeTensorsFile file, string component)
    {
        if (rule.Alternative is not { } alt) return rule;
        bool main = file.ByName.ContainsKey(prefix + rule.LdmName), other = file.ByName.ContainsKey(prefix + alt.LdmName);
        if (main && other)
            throw new UserInputException($"{file.Path}: {component} has both '{prefix + rule.LdmName}' and '{prefix + alt.LdmName}', two layouts of one tensor; which one holds the weights is ambiguous");
        return other ? alt : rule;
    }

    static void Expect(string component, string source, string key, long[] expected, long[] found)
    {
        if (!expected.SequenceEqual(found)) throw ComponentValidator.ShapeError(component, source, key, expected, found);
    }

    static JsonObject MetadataConfigs(SafeTensorsFile file, string path)
    {
        if (!file.Metadata.TryGetValue(Checkpoint.SingleFileConfigsKey, out var text)) return [];
        if (text.Length > ConfigReader.MaxConfigBytes)
            throw new UserInputException($"{path}: __metadata__ '{Checkpoint.SingleFileConfigsKey}' is {text.Length} characters, more than the {ConfigReader.MaxConfigBytes} allowed");
        if (ConfigReader.ParseJson(text, $"{path}: __metadata__ '{Checkpoint.SingleFileConfigsKey}'") is JsonObject o)
        {
            foreach (var (k, v) in o)
                if (v is not JsonObject) throw new UserInputException($"{path}: __metadata__ '{Checkpoint.SingleFileConfigsKey}' entry '{k}' must be a JSON object");
            return o;
        }
        throw new UserInputException($"{path}: __metadata__ '{Checkpoint.SingleFileConfigsKey}' must be a JSON object {{component: config}}");
    }

    static JsonObject Start(JsonObject meta, string component, Func<JsonObject> fallback)
        => meta.TryGetPropertyValue(component, out var n) && n is JsonObject o ? (JsonObject)o.DeepClone() : fallback();

    static JsonArray Arr(IEnumerable<int> v) => new(v.Select(x => (JsonNode?)JsonValue.Create(x)).ToArray());
    static JsonArray Arr(IEnumerable<string> v) => new(v.Select(x => (JsonNode?)JsonValue.Create(x)).ToArray());

    static JsonObject InferUNet(ShapeQuery q, JsonObject meta, string path, ClipTextConfig te2)
    {
        const string P = LdmKeyMap.UNetPrefix;
        var raw = Start(meta, "unet", SdxlDefaults.UNet);
        var convIn = q.Need(P + "input_blocks.0.0.weight", 4, path);
        int inputs = q.MaxIndex(P + "input_blocks.") + 1, outputs = q.MaxIndex(P + "output_blocks.") + 1;
        int firstOp = Enumerable.Range(1, Math.Max(0, inputs - 1)).FirstOrDefault(k => q.Has($"{P}input_blocks.{k}.0.op.weight"), -1);
        int L = firstOp > 0 ? firstOp - 1 : inputs - 1;
        if (L < 1 || outputs % (L + 1) != 0 || inputs != outputs)
            throw new UserInputException($"{path}: cannot infer the UNet's levels from {inputs} input_blocks and {outputs} output_blocks");
        int n = outputs / (L + 1);
        // Checked before the per-level loop below scans every key per level (UNetConfig.Read allows 64 levels).
        if (n > 64) throw new UserInputException($"{path}: {n} UNet levels inferred from {inputs} input_blocks; at most 64 are supported");
        var channels = new int[n];
        var down = new string[n];
        var up = new string[n];
        var depth = new int[n];
        bool? linear = null;
        int? cross = null;
        for (int i = 0; i < n; i++)
        {
            int id = 1 + i * (L + 1);
            channels[i] = (int)q.Need($"{P}input_blocks.{id}.0.out_layers.3.weight", 4, path)[0];
            bool attn = q.Has($"{P}input_blocks.{id}.1.proj_in.weight");
            down[i] = attn ? "CrossAttnDownBlock2D" : "DownBlock2D";
            depth[i] = attn ? q.MaxIndex($"{P}input_blocks.{id}.1.transformer_blocks.") + 1 : 1;
            if (attn)
            {
                linear ??= q.Get($"{P}input_blocks.{id}.1.proj_in.weight")!.Length == 2;
                cross ??= (int)q.Need($"{P}input_blocks.{id}.1.transformer_blocks.0.attn2.to_k.weight", 2, path)[1];
            }
            up[i] = q.Has($"{P}output_blocks.{i * (L + 1)}.1.proj_in.weight") ? "CrossAttnUpBlock2D" : "UpBlock2D";
        }
        if (cross is null && q.Has(P + "middle_block.1.transformer_blocks.0.attn2.to_k.weight"))
            cross = (int)q.Need(P + "middle_block.1.transformer_blocks.0.attn2.to_k.weight", 2, path)[1];
        var convOut = q.Need(P + "out.2.weight", 4, path);
        raw["block_out_channels"] = Arr(channels);
        raw["layers_per_block"] = L;
        raw["down_block_types"] = Arr(down);
        raw["up_block_types"] = Arr(up);
        raw["mid_block_type"] = "UNetMidBlock2DCrossAttn";
        raw["transformer_layers_per_block"] = Arr(depth);
        raw["in_channels"] = (int)convIn[1];
        raw["conv_in_kernel"] = (int)convIn[2];
        raw["out_channels"] = (int)convOut[0];
        raw["conv_out_kernel"] = (int)convOut[2];
        if (linear is bool lin) raw["use_linear_projection"] = lin;
        if (cross is int ca) raw["cross_attention_dim"] = ca;
        if (q.Get(P + "label_emb.0.0.weight") is { Length: 2 } label)
        {
            raw["addition_embed_type"] = "text_time";
            int pcei = (int)label[1];
            raw["projection_class_embeddings_input_dim"] = pcei;
            // SDXL: pooled text_embeds (text_encoder_2's projection) + 6 time ids embedded at addition_time_embed_dim each.
            int rest = pcei - te2.ProjectionDim;
            if (rest > 0 && rest % 6 == 0) raw["addition_time_embed_dim"] = rest / 6;
        }
        else raw["addition_embed_type"] = null;
        if (!meta.ContainsKey("unet"))
        {
            // Head counts are invisible in shapes; sgm's SDXL uses 64-channel heads.
            if (channels.Any(c => c % SdxlDefaults.UNetHeadDim != 0))
                throw new UserInputException($"{path}: UNet channels [{string.Join(", ", channels)}] are not multiples of {SdxlDefaults.UNetHeadDim}, so the head counts are unknown; store the configs in __metadata__ '{Checkpoint.SingleFileConfigsKey}'");
            raw.Remove("num_attention_heads");
            raw["attention_head_dim"] = Arr(channels.Select(c => c / SdxlDefaults.UNetHeadDim));
        }
        return raw;
    }

    static JsonObject InferVae(ShapeQuery q, JsonObject meta, string path)
    {
        const string P = LdmKeyMap.VaePrefix;
        var raw = Start(meta, "vae", SdxlDefaults.Vae);
        var convIn = q.Need(P + "encoder.conv_in.weight", 4, path);
        int n = q.MaxIndex(P + "encoder.down.") + 1;
        int L = q.MaxIndex(P + "encoder.down.0.block.") + 1;
        if (n < 1 || L < 1) throw new UserInputException($"{path}: cannot infer the VAE's levels (no {P}encoder.down.N.block.M tensors)");
        var channels = Enumerable.Range(0, n).Select(i => (int)q.Need($"{P}encoder.down.{i}.block.0.conv2.weight", 4, path)[0]).ToArray();
        raw["block_out_channels"] = Arr(channels);
        raw["layers_per_block"] = L;
        raw["in_channels"] = (int)convIn[1];
        raw["latent_channels"] = (int)q.Need(P + "post_quant_conv.weight", 4, path)[0];
        raw["out_channels"] = (int)q.Need(P + "decoder.conv_out.weight", 4, path)[0];
        raw["down_block_types"] = Arr(Enumerable.Repeat("DownEncoderBlock2D", n));
        raw["up_block_types"] = Arr(Enumerable.Repeat("UpDecoderBlock2D", n));
        return raw;
    }

    static JsonObject InferClipL(ShapeQuery q, JsonObject meta, string path)
    {
        const string P = LdmKeyMap.ClipLPrefix + "text_model.";
        var raw = Start(meta, "text_encoder", SdxlDefaults.TextEncoder);
        var tok = q.Need(P + "embeddings.token_embedding.weight", 2, path);
        int layers = q.MaxIndex(P + "encoder.layers.") + 1;
        raw["vocab_size"] = (int)tok[0];
        raw["hidden_size"] = (int)tok[1];
        raw["max_position_embeddings"] = (int)q.Need(P + "embeddings.position_embedding.weight", 2, path)[0];
        raw["num_hidden_layers"] = layers;
        raw["intermediate_size"] = (int)q.Need(P + "encoder.layers.0.mlp.fc1.weight", 2, path)[0];
        if (!meta.ContainsKey("text_encoder")) raw["num_attention_heads"] = HeadsOf((int)tok[1], "text_encoder", path);
        return raw;
    }

    static JsonObject InferOpenClip(ShapeQuery q, JsonObject meta, string path)
    {
        const string P = LdmKeyMap.ClipGPrefix;
        var raw = Start(meta, "text_encoder_2", SdxlDefaults.TextEncoder2);
        var tok = q.Need(P + "token_embedding.weight", 2, path);
        raw["vocab_size"] = (int)tok[0];
        raw["hidden_size"] = (int)tok[1];
        raw["max_position_embeddings"] = (int)q.Need(P + "positional_embedding", 2, path)[0];
        raw["num_hidden_layers"] = q.MaxIndex(P + "transformer.resblocks.") + 1;
        raw["intermediate_size"] = (int)q.Need(P + "transformer.resblocks.0.mlp.c_fc.weight", 2, path)[0];
        // text_projection is [hidden, proj]; the converter's text_projection.weight is [proj, hidden]
        raw["projection_dim"] = q.Has(P + "text_projection") || !q.Has(P + "text_projection.weight")
            ? (int)q.Need(P + "text_projection", 2, path)[1]
            : (int)q.Need(P + "text_projection.weight", 2, path)[0];
        if (!meta.ContainsKey("text_encoder_2")) raw["num_attention_heads"] = HeadsOf((int)tok[1], "text_encoder_2", path);
        return raw;
    }

    static int HeadsOf(int hidden, string component, string path) => hidden % SdxlDefaults.ClipHeadDim == 0 ? hidden / SdxlDefaults.ClipHeadDim
        : throw new UserInputException($"{path}: {component} hidden size {hidden} is not a multiple of {SdxlDefaults.ClipHeadDim}, so its head count is unknown; store the configs in __metadata__ '{Checkpoint.SingleFileConfigsKey}'");

    /// <summary>Shape look-ups by ldm key with clear errors for absent or odd tensors.</summary>
    sealed class ShapeQuery(IReadOnlyDictionary<string, WeightTensor> keys)
    {
        public bool Has(string key) => keys.ContainsKey(key);
        public long[]? Get(string key) => keys.TryGetValue(key, out var t) ? t.Shape : null;

        public long[] Need(string key, int rank, string path)
        {
            var s = Get(key) ?? throw new UserInputException($"{path}: tensor '{key}' is missing; it is needed to infer the config");
            if (s.Length != rank || s.Any(d => d <= 0 || d > int.MaxValue))
                throw new UserInputException($"{path}: tensor '{key}' has shape {ComponentValidator.Shape(s)}, expected {rank} positive dimensions");
            return s;
        }

        /// <summary>Largest N among keys `prefix` + N + "." (-1 if none).</summary>
        public int MaxIndex(string prefix)
        {
            int max = -1;
            foreach (var k in keys.Keys)
            {
                if (!k.StartsWith(prefix, StringComparison.Ordinal)) continue;
                int end = k.IndexOf('.', prefix.Length);
                if (end > prefix.Length && end - prefix.Length <= 6 && int.TryParse(k.AsSpan(prefix.Length, end - prefix.Length), System.Globalization.NumberStyles.None, null, out int v))
                    max = Math.Max(max, v);
            }
            return max;
        }
    }
}
