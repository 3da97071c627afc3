using LayerFusion.WeightsLoader.Checkpoints;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.Checkpoints;

/// <summary>The schemas and ldm names at SDXL base's real configs (no weights needed).</summary>
public class SdxlScaleTests
{
    static readonly UNetConfig Unet = UNetConfig.Read(ConfigJson.Reader(SdxlDefaults.UNet(), "sdxl unet"));
    static readonly AutoencoderKLConfig Vae = AutoencoderKLConfig.Read(ConfigJson.Reader(SdxlDefaults.Vae(), "sdxl vae"));
    static readonly ClipTextConfig ClipL = ClipTextConfig.Read(ConfigJson.Reader(SdxlDefaults.TextEncoder(), "sdxl te"));
    static readonly ClipTextConfig ClipG = ClipTextConfig.Read(ConfigJson.Reader(SdxlDefaults.TextEncoder2(), "sdxl te2"));

    [Fact]
    public void TensorCountsAreSdxlBases()
    {
        // SDXL base 1.0's files: unet 1680, vae 248, text_encoder 196 (+ position_ids in some), text_encoder_2 517.
        Assert.Equal(1680, UNetSchema.Parameters(Unet).Count);
        Assert.Equal(248, AutoencoderKLSchema.Parameters(Vae).Count);
        Assert.Equal(196, ClipTextSchema.Parameters(ClipL).Count);
        Assert.Equal(517, ClipTextSchema.Parameters(ClipG).Count);
        Assert.Equal(2_567_463_684L, UNetSchema.Parameters(Unet).Sum(p => p.Shape.Aggregate(1L, (a, d) => a * d)));
        // OpenCLIP keeps q/k/v fused: 32 layers x 12 tensors + embeddings, ln_final, projection.
        Assert.Equal(32 * 12 + 5, LdmKeyMap.OpenClip(ClipG).Count);
    }

    [Fact]
    public void KnownSdxlSingleFileKeysMapWhereTheyShould()
    {
        var unet = LdmKeyMap.UNet(Unet).ToDictionary(r => r.DiffusersNames[0], r => r.LdmName);
        Assert.Equal("label_emb.0.0.weight", unet["add_embedding.linear_1.weight"]);
        Assert.Equal("input_blocks.3.0.op.weight", unet["down_blocks.0.downsamplers.0.conv.weight"]);
        Assert.Equal("input_blocks.6.0.op.bias", unet["down_blocks.1.downsamplers.0.conv.bias"]);
        Assert.Equal("input_blocks.4.1.transformer_blocks.1.attn1.to_k.weight", unet["down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_k.weight"]);
        Assert.Equal("input_blocks.8.1.transformer_blocks.9.ff.net.2.weight", unet["down_blocks.2.attentions.1.transformer_blocks.9.ff.net.2.weight"]);
        Assert.Equal("middle_block.1.transformer_blocks.9.attn2.to_v.weight", unet["mid_block.attentions.0.transformer_blocks.9.attn2.to_v.weight"]);
        Assert.Equal("middle_block.2.emb_layers.1.weight", unet["mid_block.resnets.1.time_emb_proj.weight"]);
        Assert.Equal("output_blocks.2.2.conv.weight", unet["up_blocks.0.upsamplers.0.conv.weight"]);
        Assert.Equal("output_blocks.5.2.conv.weight", unet["up_blocks.1.upsamplers.0.conv.weight"]);
        Assert.Equal("output_blocks.8.0.skip_connection.weight", unet["up_blocks.2.resnets.2.conv_shortcut.weight"]);
        Assert.Equal("out.2.weight", unet["conv_out.weight"]);
        Assert.Equal(1680, unet.Values.Distinct().Count());

        var vae = LdmKeyMap.Vae(Vae).ToDictionary(r => r.DiffusersNames[0]);
        Assert.Equal("decoder.up.3.upsample.conv.weight", vae["decoder.up_blocks.0.upsamplers.0.conv.weight"].LdmName);
        Assert.Equal("decoder.up.0.block.0.nin_shortcut.weight", vae["decoder.up_blocks.3.resnets.0.conv_shortcut.weight"].LdmName);
        Assert.Equal("encoder.mid.attn_1.proj_out.weight", vae["encoder.mid_block.attentions.0.to_out.0.weight"].LdmName);
        Assert.Equal(LdmTransform.Conv1x1, vae["encoder.mid_block.attentions.0.to_out.0.weight"].Transform);
        Assert.Equal(LdmTransform.Rename, vae["encoder.mid_block.attentions.0.to_out.0.bias"].Transform);
        Assert.Equal("encoder.norm_out.weight", vae["encoder.conv_norm_out.weight"].LdmName);
    }
}
