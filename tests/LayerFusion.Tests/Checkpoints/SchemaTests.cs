using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.Checkpoints;

/// <summary>Our parameter lists against the state_dicts of diffusers v0.25 models (tests/reference/diffusers_schema.py).</summary>
public class SchemaTests
{
    static JsonObject Reference => (JsonObject)JsonNode.Parse(Fixtures.Read("diffusers_schema.json"))!;

    static Dictionary<string, string> Expected(JsonObject entry) => entry["params"]!.AsArray()
        .ToDictionary(p => p![0]!.GetValue<string>(), p => string.Join(",", p![1]!.AsArray().Select(d => d!.GetValue<long>())));

    static Dictionary<string, string> Ours(IReadOnlyList<ParamSpec> specs) => specs.ToDictionary(p => p.Name, p => string.Join(",", p.Shape));

    public static TheoryData<string> Cases => new("tiny", "three_levels");

    [Theory, MemberData(nameof(Cases))]
    public void UNetParametersMatchDiffusers(string name)
    {
        var entry = Reference["unet"]![name]!.AsObject();
        var config = UNetConfig.Read(ConfigJson.Reader(entry["config"]!.AsObject(), name));
        var ours = UNetSchema.Parameters(config);
        Assert.Equal(ours.Count, ours.Select(p => p.Name).Distinct().Count());
        Assert.Equal(Expected(entry).OrderBy(kv => kv.Key, StringComparer.Ordinal), Ours(ours).OrderBy(kv => kv.Key, StringComparer.Ordinal));
    }

    [Theory, MemberData(nameof(Cases))]
    public void VaeParametersMatchDiffusers(string name)
    {
        var entry = Reference["vae"]![name]!.AsObject();
        var config = AutoencoderKLConfig.Read(ConfigJson.Reader(entry["config"]!.AsObject(), name));
        var ours = AutoencoderKLSchema.Parameters(config);
        Assert.Equal(Expected(entry).OrderBy(kv => kv.Key, StringComparer.Ordinal), Ours(ours).OrderBy(kv => kv.Key, StringComparer.Ordinal));
    }

    [Fact]
    public void FixtureCoversTheTinyCheckpointConfigs()
    {
        // The "tiny" reference configs are make-tiny's: the schemas checked above are the ones it writes.
        var tiny = WeightsLoader.Tiny.TinyCheckpoint.DefaultConfigs();
        var refUnet = UNetConfig.Read(ConfigJson.Reader(Reference["unet"]!["tiny"]!["config"]!.AsObject(), "ref"));
        Assert.Equal(Ours(UNetSchema.Parameters(refUnet)), Ours(UNetSchema.Parameters(tiny.UnetConfig)));
        var refVae = AutoencoderKLConfig.Read(ConfigJson.Reader(Reference["vae"]!["tiny"]!["config"]!.AsObject(), "ref"));
        Assert.Equal(Ours(AutoencoderKLSchema.Parameters(refVae)), Ours(AutoencoderKLSchema.Parameters(tiny.VaeConfig)));
    }

    [Fact]
    public void ClipTextSchemaHasTransformersNames()
    {
        var c = new ClipTextConfig { Architecture = "CLIPTextModelWithProjection", HiddenSize = 8, IntermediateSize = 12, NumHiddenLayers = 2, NumAttentionHeads = 2, VocabSize = 10, MaxPositionEmbeddings = 5, ProjectionDim = 6 };
        var s = Ours(ClipTextSchema.Parameters(c));
        Assert.Equal("10,8", s["text_model.embeddings.token_embedding.weight"]);
        Assert.Equal("5,8", s["text_model.embeddings.position_embedding.weight"]);
        Assert.Equal("8,8", s["text_model.encoder.layers.1.self_attn.q_proj.weight"]);
        Assert.Equal("8", s["text_model.encoder.layers.1.self_attn.out_proj.bias"]);
        Assert.Equal("12,8", s["text_model.encoder.layers.0.mlp.fc1.weight"]);
        Assert.Equal("8,12", s["text_model.encoder.layers.0.mlp.fc2.weight"]);
        Assert.Equal("8", s["text_model.final_layer_norm.weight"]);
        Assert.Equal("6,8", s["text_projection.weight"]);
        Assert.False(s.ContainsKey("text_projection.bias"));
        Assert.Equal(2 + 2 * 16 + 2 + 1, s.Count);
        Assert.False(Ours(ClipTextSchema.Parameters(c with { Architecture = "CLIPTextModel" })).ContainsKey("text_projection.weight"));
    }
}
