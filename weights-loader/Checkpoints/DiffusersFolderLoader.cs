using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.WeightsLoader.Checkpoints;

/// <summary>diffusers' SDXL folder: model_index.json and one subfolder per component.</summary>
internal static class DiffusersFolderLoader
{
    public static Checkpoint Load(string root)
    {
        root = Path.GetFullPath(root);
        ConfigReader.FromFile(Path.Combine(root, "model_index.json"));
        var files = new List<SafeTensorsFile>();
        try
        {
            var unet = Component(root, "unet", "diffusion_pytorch_model", files, UNetConfig.Read, UNetSchema.Parameters, "UNet2DConditionModel");
            var vae = Component(root, "vae", "diffusion_pytorch_model", files, AutoencoderKLConfig.Read, AutoencoderKLSchema.Parameters, "AutoencoderKL");
            var te = Component(root, "text_encoder", "model", files, ClipTextConfig.Read, ClipTextSchema.Parameters, "CLIPTextModel");
            var te2 = Component(root, "text_encoder_2", "model", files, ClipTextConfig.Read, ClipTextSchema.Parameters, "CLIPTextModelWithProjection");
            var tok = TokenizerFiles.Find(Path.Combine(root, "tokenizer"), "tokenizer");
            var tok2 = TokenizerFiles.Find(Path.Combine(root, "tokenizer_2"), "tokenizer_2");
            var schedPath = Path.Combine(root, "scheduler", "scheduler_config.json");
            if (!File.Exists(schedPath)) throw new UserInputException($"scheduler: '{schedPath}' not found");
            var sched = ConfigReader.FromFile(schedPath);
            return new Checkpoint(CheckpointLayout.DiffusersFolder, root, unet, vae, te, te2, tok, tok2,
                SchedulerConfig.Read(sched), sched.Json, files);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    static ModelComponent<T> Component<T>(string root, string name, string weightsBase, List<SafeTensorsFile> open,
        Func<ConfigReader, T> read, Func<T, IReadOnlyList<ParamSpec>> schemaOf, string expectedClass) where T : class
    {
        string dir = Path.Combine(root, name);
        if (!Directory.Exists(dir)) throw new UserInputException($"{name}: component folder '{dir}' not found");
        var reader = ConfigReader.FromFile(Path.Combine(dir, "config.json"));
        var config = read(reader);
        var schema = schemaOf(config);
        var (weights, sources) = ReadWeights(dir, name, weightsBase, open);
        string source = sources.Count == 1 ? sources[0] : dir;
        var checkedWeights = ComponentValidator.Check(name, source, schema, weights,
            k => name.StartsWith("text_encoder", StringComparison.Ordinal) && k == ClipTextSchema.PositionIdsBuffer);
        string cls = reader.OptionalString("_class_name") ?? reader.Strings("architectures", [expectedClass]).FirstOrDefault() ?? expectedClass;
        return new ModelComponent<T>(name, cls, config, reader.Json, schema, checkedWeights, sources);
    }

    static (Dictionary<string, WeightTensor>, List<string>) ReadWeights(string dir, string component, string baseName, List<SafeTensorsFile> open)
    {
        var single = new[] { $"{baseName}.safetensors", $"{baseName}.fp16.safetensors" }.Select(f => Path.Combine(dir, f)).FirstOrDefault(File.Exists);
        if (single is not null)
        {
            var f = SafeTensorsFile.Open(single);
            open.Add(f);
            return (f.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal), [single]);
        }
        var index = new[] { $"{baseName}.safetensors.index.json", $"{baseName}.safetensors.index.fp16.json" }.Select(f => Path.Combine(dir, f)).FirstOrDefault(File.Exists);
        if (index is not null) return ReadSharded(index, dir, component, open);
        bool hasBin = Directory.GetFiles(dir, "*.bin").Length > 0;
        throw new UserInputException($"{component}: no {baseName}.safetensors in '{dir}'" + (hasBin ? " (PyTorch .bin weights are not supported; convert them to safetensors)" : ""));
    }

    static (Dictionary<string, WeightTensor>, List<string>) ReadSharded(string index, string dir, string component, List<SafeTensorsFile> open)
    {
        var reader = ConfigReader.FromFile(index);
        if (!reader.Json.TryGetPropertyValue("weight_map", out var mapNode) || mapNode is not JsonObject map)
            throw new UserInputException($"{index}: field 'weight_map' must be an object of tensor name -> shard file");
        var shards = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        var result = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        foreach (var (tensor, fileNode) in map)
        {
            if (fileNode is not JsonValue v || !v.TryGetValue<string>(out var file) || file.Length == 0
                || file.IndexOfAny(['/', '\\']) >= 0 || file is "." or "..")
                throw new UserInputException($"{index}: weight_map entry '{tensor}' must name a shard file in the same folder");
            if (!shards.TryGetValue(file, out var sf))
            {
                sf = SafeTensorsFile.Open(Path.Combine(dir, file));
                open.Add(sf);
                shards.Add(file, sf);
            }
            if (!sf.ByName.TryGetValue(tensor, out var t))
                throw new UserInputException($"{component} ({index}): weight_map puts '{tensor}' in '{file}', which has no such tensor");
            result[tensor] = t;
        }
        return (result, shards.Values.Select(s => s.Path).ToList());
    }
}
