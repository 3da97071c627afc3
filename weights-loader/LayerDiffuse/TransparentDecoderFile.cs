using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.WeightsLoader.LayerDiffuse;

/// <summary>
/// A loaded, validated transparent decoder file (<c>ld_diffusers_sdxl_vae_transparent_decoder.safetensors</c>).
/// Tensors are views into the memory-mapped file: keep this object alive while they are used.
/// </summary>
public sealed class TransparentDecoderFile : IDisposable
{
    /// <summary>__metadata__ key under which tiny checkpoints store their config (TransparentDecoderConfig's JSON field names).</summary>
    public const string ConfigMetadataKey = "layerfusion.config";

    readonly SafeTensorsFile _file;

    TransparentDecoderFile(SafeTensorsFile file, TransparentDecoderConfig config, IReadOnlyDictionary<string, WeightTensor> tensors)
    {
        _file = file;
        Config = config;
        Tensors = tensors;
    }

    public string Path => _file.Path;
    public TransparentDecoderConfig Config { get; }
    public IReadOnlyDictionary<string, WeightTensor> Tensors { get; }

    /// <summary>
    /// Opens the file; the config comes from metadata <see cref="ConfigMetadataKey"/> when present,
    /// else it is the released model's fixed architecture. Every tensor of the schema must be
    /// present with its shape and a float dtype, and nothing else may be.
    /// </summary>
    public static TransparentDecoderFile Load(string path)
    {
        var file = SafeTensorsFile.Open(path);
        try
        {
            var config = file.Metadata.TryGetValue(ConfigMetadataKey, out var json)
                ? TransparentDecoderConfig.Read(ConfigReader.FromText(json, $"{path} (metadata {ConfigMetadataKey})"))
                : new TransparentDecoderConfig();
            TransparentDecoderSchema.Validate(config, path);
            var tensors = Validate(file.Tensors, config, path);
            return new TransparentDecoderFile(file, config, tensors);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Checks tensors against the schema of <paramref name="config"/>; returns them by name.</summary>
    public static IReadOnlyDictionary<string, WeightTensor> Validate(IReadOnlyList<WeightTensor> tensors, TransparentDecoderConfig config, string source)
    {
        var schema = TransparentDecoderSchema.Enumerate(config);
        var byName = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        foreach (var t in tensors) byName[t.Name] = t;
        var expected = schema.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        var missing = schema.Where(s => !byName.ContainsKey(s.Name)).Select(s => s.Name).ToList();
        var unexpected = tensors.Where(t => !expected.Contains(t.Name)).Select(t => t.Name).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"{missing.Count} missing (first: {LayerDiffuseAttention.FirstNames(missing)})");
            if (unexpected.Count > 0) parts.Add($"{unexpected.Count} unexpected (first: {LayerDiffuseAttention.FirstNames(unexpected)})");
            throw new UserInputException($"{source}: not a transparent decoder for this config: {string.Join("; ", parts)}");
        }
        foreach (var s in schema)
        {
            var t = byName[s.Name];
            if (!DTypes.IsFloat(t.DType))
                throw new UserInputException($"{source}: tensor '{s.Name}' has dtype {t.DType}; the transparent decoder needs F16, BF16, F32 or F64");
            if (!t.Shape.AsSpan().SequenceEqual(s.Shape))
                throw new UserInputException($"{source}: tensor '{s.Name}' has shape {LayerDiffuseAttention.FormatShape(t.Shape)}, the transparent decoder config expects {LayerDiffuseAttention.FormatShape(s.Shape)}");
        }
        return byName;
    }

    public void Dispose() => _file.Dispose();
}
