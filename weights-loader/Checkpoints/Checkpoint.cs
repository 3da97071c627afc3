using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.WeightsLoader.Checkpoints;

public enum CheckpointLayout { DiffusersFolder, SingleFile }

/// <summary>One model of a checkpoint: its config and its tensors by diffusers name.</summary>
public abstract class ModelComponent
{
    protected ModelComponent(string name, string className, JsonObject rawConfig, IReadOnlyList<ParamSpec> schema,
        IReadOnlyDictionary<string, WeightTensor> weights, IReadOnlyList<string> files)
    {
        Name = name;
        ClassName = className;
        RawConfig = rawConfig;
        Schema = schema;
        Weights = weights;
        Files = files;
    }

    /// <summary>diffusers folder name: unet, vae, text_encoder, text_encoder_2.</summary>
    public string Name { get; }
    public string ClassName { get; }
    /// <summary>The config as diffusers' config.json would hold it (for single files: the inferred one).</summary>
    public JsonObject RawConfig { get; }
    /// <summary>Every parameter the config implies, in module order; <see cref="Weights"/> has exactly these names.</summary>
    public IReadOnlyList<ParamSpec> Schema { get; }
    public IReadOnlyDictionary<string, WeightTensor> Weights { get; }
    /// <summary>The files the weights were read from.</summary>
    public IReadOnlyList<string> Files { get; }
    public abstract object ConfigObject { get; }

    public WeightTensor this[string name] => Weights.TryGetValue(name, out var t) ? t
        : throw new UserInputException($"{Name}: no tensor '{name}'");

    public long ParameterCount => Weights.Values.Sum(t => t.ElementCount);
    public long ByteCount => Weights.Values.Sum(t => t.ByteLength);
}

public sealed class ModelComponent<TConfig> : ModelComponent where TConfig : class
{
    internal ModelComponent(string name, string className, TConfig config, JsonObject rawConfig, IReadOnlyList<ParamSpec> schema,
        IReadOnlyDictionary<string, WeightTensor> weights, IReadOnlyList<string> files)
        : base(name, className, rawConfig, schema, weights, files) => Config = config;

    public TConfig Config { get; }
    public override object ConfigObject => Config;
}

/// <summary>A CLIP tokenizer folder (transformers format).</summary>
public sealed record TokenizerFiles(string Directory, string VocabJson, string MergesTxt, string? SpecialTokensMapJson, string? TokenizerConfigJson)
{
    public static TokenizerFiles? TryFind(string dir)
    {
        if (!System.IO.Directory.Exists(dir)) return null;
        string vocab = Path.Combine(dir, "vocab.json"), merges = Path.Combine(dir, "merges.txt");
        if (!File.Exists(vocab) || !File.Exists(merges)) return null;
        string? Opt(string f) => File.Exists(Path.Combine(dir, f)) ? Path.Combine(dir, f) : null;
        return new TokenizerFiles(Path.GetFullPath(dir), vocab, merges, Opt("special_tokens_map.json"), Opt("tokenizer_config.json"));
    }

    public static TokenizerFiles Find(string dir, string what) => TryFind(dir)
        ?? throw new UserInputException($"{what}: '{dir}' is not a tokenizer folder (needs vocab.json and merges.txt)");
}

public sealed record CheckpointOptions
{
    /// <summary>Tokenizer folders for a single-file checkpoint (default: sibling `tokenizer/` and `tokenizer_2/`).</summary>
    public string? TokenizerDir { get; init; }
    public string? Tokenizer2Dir { get; init; }
}

/// <summary>
/// An SDXL checkpoint in either layout, presented as one typed view: per component its config and
/// its tensors by diffusers name (zero-copy views into memory-mapped files where the layout allows).
/// Dispose to unmap the files.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    public const string SingleFileConfigsKey = "layerfusion.configs";
    public static readonly string[] ComponentNames = ["unet", "vae", "text_encoder", "text_encoder_2"];

    readonly List<SafeTensorsFile> _files;

    internal Checkpoint(CheckpointLayout layout, string path, ModelComponent<UNetConfig> unet, ModelComponent<AutoencoderKLConfig> vae,
        ModelComponent<ClipTextConfig> te, ModelComponent<ClipTextConfig> te2, TokenizerFiles? tok, TokenizerFiles? tok2,
        SchedulerConfig scheduler, JsonObject schedulerRaw, List<SafeTensorsFile> files)
    {
        Layout = layout;
        SourcePath = path;
        Unet = unet;
        Vae = vae;
        TextEncoder = te;
        TextEncoder2 = te2;
        Tokenizer = tok;
        Tokenizer2 = tok2;
        Scheduler = scheduler;
        SchedulerRawConfig = schedulerRaw;
        _files = files;
    }

    public CheckpointLayout Layout { get; }
    /// <summary>The folder (diffusers) or the .safetensors file (single file).</summary>
    public string SourcePath { get; }
    public ModelComponent<UNetConfig> Unet { get; }
    public ModelComponent<AutoencoderKLConfig> Vae { get; }
    /// <summary>CLIP ViT-L (CLIPTextModel).</summary>
    public ModelComponent<ClipTextConfig> TextEncoder { get; }
    /// <summary>OpenCLIP bigG (CLIPTextModelWithProjection).</summary>
    public ModelComponent<ClipTextConfig> TextEncoder2 { get; }
    /// <summary>Null only for a single file with no tokenizer folders beside it.</summary>
    public TokenizerFiles? Tokenizer { get; }
    public TokenizerFiles? Tokenizer2 { get; }
    public SchedulerConfig Scheduler { get; }
    public JsonObject SchedulerRawConfig { get; }

    public IReadOnlyList<ModelComponent> Components => [Unet, Vae, TextEncoder, TextEncoder2];

    public ModelComponent Component(string name) => Components.FirstOrDefault(c => c.Name == name)
        ?? throw new UserInputException($"checkpoint has no component '{name}' ({string.Join(", ", ComponentNames)})");

    /// <summary>
    /// Opens a diffusers folder (has model_index.json), a single .safetensors file, or a folder holding
    /// exactly one single-file checkpoint. Every problem is a <see cref="UserInputException"/>.
    /// </summary>
    public static Checkpoint Open(string path, CheckpointOptions? options = null)
    {
        options ??= new CheckpointOptions();
        if (Directory.Exists(path))
        {
            if (File.Exists(Path.Combine(path, "model_index.json"))) return DiffusersFolderLoader.Load(path);
            var candidates = Directory.GetFiles(path, "*.safetensors").Where(f => !IsLayerDiffuseFileName(f)).ToArray();
            if (candidates.Length == 1) return SingleFileLoader.Load(candidates[0], options);
            throw new UserInputException(candidates.Length == 0
                ? $"'{path}' is not a checkpoint: no model_index.json (diffusers folder) and no single-file .safetensors checkpoint in it"
                : $"'{path}' has no model_index.json and {candidates.Length} .safetensors files; pass the single-file checkpoint itself");
        }
        if (File.Exists(path)) return SingleFileLoader.Load(path, options);
        throw new UserInputException($"'{path}': no such file or folder");
    }

    /// <summary>LayerDiffuse's released file names (they sit beside checkpoints but are not checkpoints).</summary>
    public static bool IsLayerDiffuseFileName(string path)
    {
        var name = Path.GetFileName(path);
        return name.StartsWith("ld_", StringComparison.Ordinal) || name.StartsWith("layer_", StringComparison.Ordinal)
            || name.Contains("layer_xl", StringComparison.Ordinal) || name.Contains("vae_transparent", StringComparison.Ordinal);
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
