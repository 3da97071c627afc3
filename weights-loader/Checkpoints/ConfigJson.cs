using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.WeightsLoader.Checkpoints;

public static class ConfigJson
{
    /// <summary>
    /// A <see cref="ConfigReader"/> over a config built in memory. It round-trips through text: a
    /// JsonValue created from a C# int does not answer TryGetValue&lt;double&gt;, which ConfigReader
    /// uses, while one parsed from text does.
    /// </summary>
    public static ConfigReader Reader(JsonObject config, string source) => ConfigReader.FromText(config.ToJsonString(), source);
}
