using System.Text.Json.Nodes;
using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Models.Unet;
using LayerFusion.Tests.Checkpoints;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Configs;
using LayerFusion.WeightsLoader.Tiny;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Models;

/// <summary>
/// UNet config fields beyond SDXL's defaults (issue 10): the implemented ones change the output the way
/// diffusers v0.25 does (UNetParityTests' unet_fields, unet_odd), each one matters, the inert ones change
/// nothing, and what we refuse is refused by the config reader every loader calls.
/// </summary>
public class UNetConfigFieldTests
{
    static float[] Run(ModelFixture fx, JsonObject config)
    {
        var ops = new CpuBackend();
        var unet = new UNet2DConditionModel(fx.Store(ops, "unet"), UNetConfig.Read(ConfigJson.Reader(config, "unet_fields")));
        using var sample = fx.Input(ops, "sample");
        using var ehs = fx.Input(ops, "encoder_hidden_states");
        using var textEmbeds = fx.Input(ops, "text_embeds");
        using var y = unet.Forward(sample, fx.Values("timestep"), ehs, textEmbeds, fx.Values("time_ids"));
        return ops.ToHost(y);
    }

    static JsonObject FixtureConfig(ModelFixture fx) => JsonNode.Parse(File.ReadAllText(Path.Combine(fx.Dir, "config.json")))!.AsObject();

    [Theory]
    [InlineData("center_input_sample")]
    [InlineData("time_embedding_act_fn")]
    [InlineData("timestep_post_act")]
    [InlineData("mid_block_scale_factor")]
    public void Each_implemented_field_changes_the_output(string key)
    {
        // with the field back at its default our output leaves diffusers' by far more than the parity bound
        using var fx = new ModelFixture("unet_fields");
        var config = FixtureConfig(fx);
        Assert.True(config.Remove(key));
        double rel = ModelFixture.RelErr(Run(fx, config), fx.Values("out"));
        Assert.True(rel > 100 * ModelFixture.Tol, $"{key}: removing it moved the output only by {rel:E3}");
    }

    [Fact]
    public void The_fields_that_only_reach_other_block_types_change_nothing()
    {
        using var fx = new ModelFixture("unet_fields");
        var config = FixtureConfig(fx);
        Assert.Equal(3.0, (double)config["resnet_out_scale_factor"]!);
        Assert.True((bool)config["resnet_skip_time_act"]!);
        Assert.True((bool)config["mid_block_only_cross_attention"]!);
        var with = Run(fx, config);
        foreach (var key in new[] { "resnet_out_scale_factor", "resnet_skip_time_act", "mid_block_only_cross_attention" }) config.Remove(key);
        Assert.Equal(with, Run(fx, config));
    }

    [Theory]
    [InlineData("time_embedding_act_fn", "\"mish\"")]
    [InlineData("timestep_post_act", "\"relu\"")]
    [InlineData("class_embed_type", "\"timestep\"")]
    [InlineData("only_cross_attention", "true")]
    public void A_refused_field_fails_in_a_diffusers_folder_load(string key, string value)
    {
        using var tmp = new TempDir();
        var dir = tmp.Sub("tiny");
        TinyCheckpoint.Write(dir, CheckpointLayout.DiffusersFolder, 3, DType.F16, TinyCheckpoint.DefaultConfigs());
        var path = Path.Combine(dir, "unet", "config.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        json[key] = JsonNode.Parse(value);
        File.WriteAllText(path, json.ToJsonString());
        var e = Assert.Throws<UserInputException>(() => { using var c = Checkpoint.Open(dir); });
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public void The_cli_refuses_an_unimplemented_field_in_one_error_line()
    {
        using var tmp = new TempDir();
        var dir = tmp.Sub("tiny");
        TinyCheckpoint.Write(dir, CheckpointLayout.DiffusersFolder, 3, DType.F16, TinyCheckpoint.DefaultConfigs());
        var path = Path.Combine(dir, "unet", "config.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        json["timestep_post_act"] = "mish";
        File.WriteAllText(path, json.ToJsonString());
        var (code, _, err) = LayerFusion.Tests.Cli.SdxlCliTests.Run("sdxl", "--model", dir, "--prompt", "a cat", "--steps", "1",
            "--width", "64", "--height", "64", "--out", tmp.Sub("x.png"));
        Assert.Equal(2, code);
        var line = Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", line);
        Assert.Contains("timestep_post_act", line);
        Assert.False(File.Exists(tmp.Sub("x.png")));
    }

    [Fact]
    public void An_implemented_field_reaches_the_model_through_a_diffusers_folder_load()
    {
        using var tmp = new TempDir();
        var dir = tmp.Sub("tiny");
        TinyCheckpoint.Write(dir, CheckpointLayout.DiffusersFolder, 3, DType.F16, TinyCheckpoint.DefaultConfigs());
        var path = Path.Combine(dir, "unet", "config.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        json["center_input_sample"] = true;
        json["time_embedding_act_fn"] = "GELU";
        json["timestep_post_act"] = "silu";
        json["mid_block_scale_factor"] = 1.4142;
        json["attention_head_dim"] = new JsonArray(3, 4);   // tiny's level 0 is a DownBlock2D of 32 channels
        File.WriteAllText(path, json.ToJsonString());
        using var c = Checkpoint.Open(dir);
        var cfg = c.Unet.Config;
        Assert.Equal((true, "gelu", "silu", 1.4142), (cfg.CenterInputSample, cfg.TimeEmbeddingActFn, cfg.TimestepPostAct, cfg.MidBlockScaleFactor));
        Assert.Equal([3, 4], cfg.NumAttentionHeads);
    }

    [Fact]
    public void A_head_count_that_does_not_divide_an_attention_level_is_still_refused()
    {
        using var fx = new ModelFixture("unet_odd");
        var config = FixtureConfig(fx);
        config["attention_head_dim"] = new JsonArray(3, 5, 2);   // level 1 (12 channels) has attention
        var e = Assert.Throws<UserInputException>(() => UNetConfig.Read(ConfigJson.Reader(config, "unet_odd")));
        Assert.Contains("attention_head_dim", e.Message);
    }

    [Theory]
    [InlineData(1, 3, new[] { 0, 0, 0 })]
    [InlineData(2, 4, new[] { 0, 0, 1, 1 })]
    [InlineData(4, 9, new[] { 0, 0, 0, 1, 1, 2, 2, 3, 3 })]
    [InlineData(3, 7, new[] { 0, 0, 0, 1, 1, 2, 2 })]
    [InlineData(5, 5, new[] { 0, 1, 2, 3, 4 })]
    public void Nearest_indices_are_pytorchs(int input, int output, int[] expected) =>
        // torch.nn.functional.interpolate(torch.arange(input).view(1, 1, input).float(), size=output, mode="nearest")
        Assert.Equal(expected, Upsample2D.NearestIndex(input, output));
}
