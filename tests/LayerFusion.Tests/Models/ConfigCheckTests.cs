using LayerFusion.Core.Models.Unet;
using LayerFusion.Core.Models.Vae;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.Models;

public class ConfigCheckTests
{
    static string FixtureConfig(string name)
    {
        using var fx = new ModelFixture(name);
        return File.ReadAllText(Path.Combine(fx.Dir, "config.json"));
    }

    static string With(string json, string key, string value)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        node[key] = System.Text.Json.Nodes.JsonNode.Parse(value);
        return node.ToJsonString();
    }

    [Theory]
    [InlineData("time_embedding_dim", "64")]
    [InlineData("reverse_transformer_layers_per_block", "[[1], [2]]")]
    [InlineData("resnet_time_scale_shift", "\"scale_shift\"")]
    [InlineData("only_cross_attention", "[false, true]")]
    [InlineData("class_embed_type", "\"timestep\"")]
    [InlineData("time_embedding_act_fn", "\"mish\"")]
    [InlineData("timestep_post_act", "\"relu\"")]
    [InlineData("mid_block_scale_factor", "0")]
    public void UNetVariantsWeDoNotImplementAreRejected(string key, string value)
    {
        var e = Assert.Throws<UserInputException>(() =>
            UNet2DConditionModel.ReadConfig(ConfigReader.FromText(With(FixtureConfig("unet_a"), key, value), "unet/config.json")));
        Assert.Contains($"'{key}'", e.Message);
        Assert.Contains("unet/config.json", e.Message);
    }

    [Theory]
    [InlineData("unet_a")]
    [InlineData("unet_b")]
    [InlineData("unet_fields")]
    [InlineData("unet_odd")]
    public void DiffusersFullConfigsAreAccepted(string name)
    {
        // the fixtures' config.json files list every field diffusers v0.25 writes, defaults included
        var c = UNet2DConditionModel.ReadConfig(ConfigReader.FromText(FixtureConfig(name), name));
        Assert.Equal("text_time", c.AdditionEmbedType);
    }

    [Fact]
    public void VaeVariantsWeDoNotImplementAreRejected()
    {
        var json = FixtureConfig("vae");
        AutoencoderKL.ReadConfig(ConfigReader.FromText(json, "vae"));
        var e = Assert.Throws<UserInputException>(() => AutoencoderKL.ReadConfig(ConfigReader.FromText(
            With(json, "up_block_types", "[\"UpDecoderBlock2D\", \"AttnUpDecoderBlock2D\", \"UpDecoderBlock2D\"]"), "vae")));
        Assert.Contains("'up_block_types'", e.Message);
    }
}
