using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.Configs;

public class ConfigReaderTests
{
    [Fact]
    public void NumbersBuiltInCodeReadLikeParsedOnes()
    {
        var built = new ConfigReader(new JsonObject { ["a"] = 7, ["b"] = 7L, ["c"] = 0.5, ["d"] = 0.25f }, "built");
        var parsed = ConfigReader.FromText("""{"a": 7, "b": 7, "c": 0.5, "d": 0.25}""", "parsed");
        foreach (var r in new[] { built, parsed })
        {
            Assert.Equal(7, r.Int("a", 0));
            Assert.Equal(7, r.Int("b", 0));
            Assert.Equal(0.5, r.Double("c", 0));
            Assert.Equal(0.25, r.Double("d", 0));
        }
    }

    [Theory]
    [InlineData("""{"a": 1.5}""", "must be an integer")]
    [InlineData("""{"a": "7"}""", "must be an integer")]
    [InlineData("""{"a": 99}""", "outside")]
    [InlineData("""[1, 2]""", "must be a JSON object")]
    [InlineData("""{"a": """, "not valid JSON")]
    public void BadFieldsNameTheSourceAndField(string json, string expected)
    {
        var e = Assert.Throws<UserInputException>(() => ConfigReader.FromText(json, "cfg.json").Int("a", 0, 0, 10));
        Assert.Contains("cfg.json", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void UNetConfigRejectsInconsistentLists()
    {
        var r = ConfigReader.FromText("""{"block_out_channels": [32, 64], "down_block_types": ["DownBlock2D"]}""", "unet/config.json");
        var e = Assert.Throws<UserInputException>(() => UNetConfig.Read(r));
        Assert.Contains("down_block_types", e.Message);
    }
}
