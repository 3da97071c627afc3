using System.Globalization;
using System.Reflection;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace LayerFusion.Core.Imaging;

/// <summary>
/// The generation-parameters text that AUTOMATIC1111/Forge write to a PNG's <c>parameters</c> tEXt
/// entry and read back in PNG Info (and that ComfyUI, InvokeAI and civitai import):
/// <code>
/// prompt (may span lines)
/// Negative prompt: negative
/// Steps: 30, Sampler: Euler, CFG scale: 5, Seed: 1, Size: 1024x1024, Model: name, Version: layerfusion 0.1.0
/// </code>
/// The last line is "Key: value" pairs separated by ", "; a value holding ',', ':' or a newline is
/// written as a JSON string, which the reader unquotes.
/// </summary>
public static class Infotext
{
    /// <summary>The PNG text keyword A1111 reads.</summary>
    public const string Keyword = "parameters";

    /// <summary>"layerfusion X.Y.Z": our name and the assembly's version (without the source-revision suffix).</summary>
    public static string Version { get; } = "layerfusion " + AssemblyVersion();

    static string AssemblyVersion()
    {
        var asm = typeof(Infotext).Assembly;
        var v = asm.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
                ?? asm.GetName().Version?.ToString() ?? "0.0.0";
        int plus = v.IndexOf('+', StringComparison.Ordinal);
        return plus < 0 ? v : v[..plus];
    }

    /// <summary>A1111's display name of one of our sampler names (its "Sampler" field; other readers map
    /// these labels to their own samplers). An unknown name is written as it is.</summary>
    public static string SamplerLabel(string sampler) => sampler.Trim().ToLowerInvariant() switch
    {
        "euler" => "Euler",
        "euler-a" or "euler-ancestral" or "euler_a" => "Euler a",
        "euler-karras" => "Euler Karras",
        "dpmpp-2m" => "DPM++ 2M",
        "dpmpp-2m-karras" => "DPM++ 2M Karras",
        "dpmpp-2m-sde" => "DPM++ 2M SDE",
        "dpmpp-2m-sde-karras" => "DPM++ 2M SDE Karras",
        "ddim" => "DDIM",
        var other => other,
    };

    /// <summary>The model's name as A1111 shows it: the file (or diffusers folder) name, never the local path.</summary>
    public static string ModelName(string modelPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelPath));
        var name = Path.GetFileName(full);
        if (name.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) name = name[..^".safetensors".Length];
        return name.Length > 0 ? name : full;
    }

    /// <summary>The whole text: prompt, "Negative prompt:" line, then the fields in order.</summary>
    public static string Format(string prompt, string? negative, IEnumerable<KeyValuePair<string, string>> fields)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(fields);
        var line = string.Join(", ", fields.Select(kv => $"{CheckKey(kv.Key)}: {Quote(kv.Value)}"));
        // the reader strips and splits on '\n': a CR would survive into the prompt, a lone one would hide a line
        return $"{prompt.ReplaceLineEndings("\n")}\nNegative prompt: {(negative ?? "").ReplaceLineEndings("\n")}\n{line}";
    }

    /// <summary>The standard leading fields, in A1111's order.</summary>
    public static List<KeyValuePair<string, string>> StandardFields(int steps, string sampler, float cfg, ulong seed, int width, int height, string? modelName) =>
    [
        new("Steps", steps.ToString(CultureInfo.InvariantCulture)),
        new("Sampler", SamplerLabel(sampler)),
        new("CFG scale", cfg.ToString("R", CultureInfo.InvariantCulture)),
        new("Seed", seed.ToString(CultureInfo.InvariantCulture)),
        new("Size", $"{width}x{height}"),
        .. modelName is null ? Array.Empty<KeyValuePair<string, string>>() : [new("Model", modelName)],
        new("Version", Version),
    ];

    static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>A value as A1111 writes it: as is, or a JSON string when it holds ',', ':', a quote or a line break.</summary>
    public static string Quote(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.IndexOfAny([',', ':', '\n', '\r', '"']) < 0 && value.Trim() == value && value.Length > 0
            ? value
            : JsonSerializer.Serialize(value, Json);
    }

    static string CheckKey(string key)
    {
        // A1111's field pattern: a word character, then word characters, spaces, '-' or '/'
        if (key.Length < 2 || !char.IsLetterOrDigit(key[0]) && key[0] != '_' || key.Any(c => !(char.IsLetterOrDigit(c) || c is '_' or ' ' or '-' or '/')))
            throw new ArgumentException($"'{key}' cannot be an infotext field name");
        return key;
    }
}
