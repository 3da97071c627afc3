using System.Text.Json;
using System.Text.Json.Nodes;

namespace LayerFusion.WeightsLoader.Configs;

/// <summary>
/// Rejects config fields whose non-default values would change what diffusers computes but that our
/// graphs do not implement (the typed configs simply ignore unknown fields, which would silently give
/// a different model). Absent, null, or the default value are accepted. The typed configs' Read
/// methods apply their rules, so every load path (diffusers folder, single file, tiny) refuses alike.
/// </summary>
public static class UnsupportedConfig
{
    /// <summary>A field and the predicate its present, non-null value must satisfy, with a description of what is supported.</summary>
    public sealed record Rule(string Key, Func<JsonNode, bool> IsSupported, string Supported);

    public static Rule MustBe(string key, string value) =>
        new(key, n => n.GetValueKind() == JsonValueKind.String && n.GetValue<string>() == value, $"\"{value}\"");

    public static Rule MustBeFalse(string key) =>
        new(key, n => n.GetValueKind() == JsonValueKind.False
            || (n is JsonArray a && a.All(x => x is not null && x.GetValueKind() == JsonValueKind.False)), "false");

    public static Rule MustBeNumber(string key, double value) =>
        new(key, n => n.GetValueKind() == JsonValueKind.Number && n.GetValue<double>() == value, value.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public static Rule MustBeNull(string key) => new(key, _ => false, "null");

    public static Rule AllStrings(string key, string value) =>
        new(key, n => n is JsonArray a && a.All(x => x is not null && x.GetValueKind() == JsonValueKind.String && x.GetValue<string>() == value),
            $"every entry \"{value}\"");

    public static void Check(ConfigReader r, string model, IEnumerable<Rule> rules)
    {
        foreach (var rule in rules)
        {
            if (!r.Json.TryGetPropertyValue(rule.Key, out var node) || node is null) continue;
            if (!rule.IsSupported(node))
                throw new UserInputException(
                    $"{r.Source}: field '{rule.Key}' = {node.ToJsonString()} is not supported by our {model} (supported: {rule.Supported})");
        }
    }
}
