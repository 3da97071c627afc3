using System.Text.Json;
using System.Text.Json.Nodes;

namespace LayerFusion.WeightsLoader.Configs;

/// <summary>
/// Defensive reads of a diffusers/transformers config.json: a field of the wrong type or out of
/// range is a <see cref="UserInputException"/> naming the file and the field, never a crash.
/// Absent fields take diffusers' defaults (given by the caller).
/// </summary>
public sealed class ConfigReader
{
    public const long MaxConfigBytes = 4 << 20;

    public ConfigReader(JsonObject json, string source)
    {
        Json = json;
        Source = source;
    }

    public JsonObject Json { get; }
    public string Source { get; }

    public static ConfigReader FromFile(string path)
    {
        // Links followed, regular files only (a FIFO or device would block or never end), bounded.
        var text = UntrustedFile.ReadAllText(path, MaxConfigBytes);
        if (text.Length == 0) throw new UserInputException($"{path}: config file is empty");
        return FromText(text, path);
    }

    public static ConfigReader FromText(string text, string source) => FromText(text, source, MaxConfigBytes);

    /// <summary><see cref="FromText(string, string)"/> with a size limit of the caller's (vocabularies are larger than configs).</summary>
    public static ConfigReader FromText(string text, string source, long maxChars)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(source);
        // Configs also arrive as text from safetensors __metadata__ (up to the 100 MB header limit).
        if (text.Length > maxChars) throw new UserInputException($"{source}: config is {text.Length} characters, more than the {maxChars} allowed");
        var node = ParseJson(text, source);
        if (node is not JsonObject obj) throw new UserInputException($"{source}: config must be a JSON object");
        return new ConfigReader(obj, source);
    }

    /// <summary>
    /// The one JSON policy for every file and metadata string we are given (configs, model_index.json,
    /// tokenizer files, single-file config metadata): strict JSON as diffusers' and transformers'
    /// json.loads read it (no comments, no trailing commas), depth bounded, and duplicate names
    /// refused (JsonObject would otherwise throw a bare ArgumentException on first access, and which
    /// value Python's json keeps, the last, is no rule to rely on).
    /// </summary>
    public static JsonNode? ParseJson(string text, string source)
    {
        try
        {
            return JsonNode.Parse(text, documentOptions: JsonPolicy);
        }
        catch (JsonException e)
        {
            throw new UserInputException($"{source}: not valid JSON ({e.Message})");
        }
    }

    static readonly JsonDocumentOptions JsonPolicy = new()
    {
        MaxDepth = 64,
        AllowTrailingCommas = false,
        CommentHandling = JsonCommentHandling.Disallow,
        AllowDuplicateProperties = false,
    };

    /// <summary>A JSON file read with <see cref="UntrustedFile"/> and parsed with <see cref="ParseJson"/>.</summary>
    public static JsonNode? ReadJsonFile(string path, long maxBytes = MaxConfigBytes)
    {
        var text = UntrustedFile.ReadAllText(path, maxBytes);
        if (text.Length == 0) throw new UserInputException($"{path}: the file is empty");
        return ParseJson(text, path);
    }

    bool TryGet(string key, out JsonNode? node) => Json.TryGetPropertyValue(key, out node) && node is not null;

    UserInputException Bad(string key, string what) => new($"{Source}: field '{key}' {what}");

    public int Int(string key, int fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        if (!TryGet(key, out var node)) return fallback;
        return CheckRange(key, ToInt(key, node!), min, max);
    }

    public int? OptionalInt(string key, int min = int.MinValue, int max = int.MaxValue)
        => TryGet(key, out var node) ? CheckRange(key, ToInt(key, node!), min, max) : null;

    int CheckRange(string key, int value, int min, int max)
        => value < min || value > max ? throw Bad(key, $"is {value}, outside [{min}, {max}]") : value;

    int ToInt(string key, JsonNode node)
    {
        if (TryNumber(node, out var d) && d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue)
            return (int)d;
        throw Bad(key, $"must be an integer, found {node.ToJsonString()}");
    }

    public double Double(string key, double fallback)
    {
        if (!TryGet(key, out var node)) return fallback;
        if (TryNumber(node!, out var d) && double.IsFinite(d)) return d;
        throw Bad(key, $"must be a finite number, found {node!.ToJsonString()}");
    }

    /// <summary>
    /// A finite number in [min, max] (or (min, max] when <paramref name="minExclusive"/>): a value the
    /// model would compute garbage from (a zero scaling factor, a negative epsilon) is refused by name.
    /// </summary>
    public double Double(string key, double fallback, double min, double max, bool minExclusive = false)
    {
        double v = Double(key, fallback);
        if (v < min || v > max || (minExclusive && v == min))
            throw Bad(key, $"is {v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}, outside {(minExclusive ? "(" : "[")}{Fmt(min)}, {Fmt(max)}]");
        return v;
    }

    static string Fmt(double v) => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>A list of finite numbers of at most <paramref name="maxCount"/> entries, or null when absent (or null).</summary>
    public double[]? OptionalDoubles(string key, int maxCount)
    {
        if (!TryGet(key, out var node)) return null;
        if (node is not JsonArray a || a.Count > maxCount) throw Bad(key, $"must be an array of at most {maxCount} numbers");
        var result = new double[a.Count];
        for (int i = 0; i < a.Count; i++)
            result[i] = a[i] is { } e && TryNumber(e, out var d) && double.IsFinite(d) ? d : throw Bad(key, $"entry {i} must be a finite number");
        return result;
    }

    /// <summary>A JSON number, whether parsed from text (a JsonElement) or built in code (int, long, float...).</summary>
    static bool TryNumber(JsonNode node, out double value)
    {
        value = 0;
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number) return false;
        if (v.TryGetValue(out double d)) { value = d; return true; }
        if (v.TryGetValue(out long l)) { value = l; return true; }
        if (v.TryGetValue(out int i)) { value = i; return true; }
        if (v.TryGetValue(out float f)) { value = f; return true; }
        if (v.TryGetValue(out decimal m)) { value = (double)m; return true; }
        return false;
    }

    public bool Bool(string key, bool fallback)
    {
        if (!TryGet(key, out var node)) return fallback;
        if (node is JsonValue v && v.TryGetValue<bool>(out var b)) return b;
        throw Bad(key, $"must be true or false, found {node!.ToJsonString()}");
    }

    public string String(string key, string fallback) => OptionalString(key) ?? fallback;

    public string? OptionalString(string key)
    {
        if (!TryGet(key, out var node)) return null;
        if (node is JsonValue v && v.TryGetValue<string>(out var s)) return s;
        throw Bad(key, $"must be a string, found {node!.ToJsonString()}");
    }

    public string[] Strings(string key, string[] fallback)
    {
        if (!TryGet(key, out var node)) return fallback;
        if (node is not JsonArray a || a.Count > 64) throw Bad(key, "must be an array of at most 64 strings");
        var result = new string[a.Count];
        for (int i = 0; i < a.Count; i++)
            result[i] = a[i] is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Bad(key, $"entry {i} must be a string");
        return result;
    }

    /// <summary>An int list; a single int is repeated <paramref name="count"/> times (diffusers accepts both).</summary>
    public int[] IntsOrScalar(string key, int count, int[] fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        if (!TryGet(key, out var node)) return fallback;
        if (node is JsonValue) return Enumerable.Repeat(CheckRange(key, ToInt(key, node!), min, max), count).ToArray();
        return Ints(key, fallback, min, max);
    }

    public int[] Ints(string key, int[] fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        if (!TryGet(key, out var node)) return fallback;
        if (node is not JsonArray a || a.Count > 64) throw Bad(key, "must be an array of at most 64 integers");
        var result = new int[a.Count];
        for (int i = 0; i < a.Count; i++)
            result[i] = a[i] is null ? throw Bad(key, $"entry {i} is null") : CheckRange(key, ToInt(key, a[i]!), min, max);
        return result;
    }

    public void Require(bool condition, string key, string what)
    {
        if (!condition) throw Bad(key, what);
    }
}
