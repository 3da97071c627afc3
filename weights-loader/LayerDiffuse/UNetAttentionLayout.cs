using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.WeightsLoader.LayerDiffuse;

/// <summary>One attention projection parameter of the UNet that LayerDiffuse may offset.</summary>
/// <param name="Name">diffusers UNet name, e.g. <c>down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight</c>.</param>
/// <param name="LdmName">the same parameter in ldm/sgm naming (without <c>diffusion_model.</c>), e.g. <c>input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight</c>.</param>
/// <param name="Shape">[out, in] for weights, [out] for the to_out.0 bias.</param>
public sealed record AttentionProjection(string Name, string LdmName, long[] Shape)
{
    public bool IsBias => Name.EndsWith(".bias", StringComparison.Ordinal);
}

/// <summary>
/// The transformer-attention projections (attn1/attn2 to_q, to_k, to_v, to_out.0) of a diffusers
/// UNet2DConditionModel, named both ways. Every index comes from the config; the ldm numbering
/// follows diffusers v0.25 convert_from_ckpt.py (convert_ldm_unet_checkpoint): each down level owns
/// layers_per_block input blocks plus one downsampler block, so down level L, attention j lives in
/// input_blocks[L*(lpb+1) + j + 1][1]; each up level owns lpb+1 output blocks, so up level L,
/// attention j lives in output_blocks[L*(lpb+1) + j][1]; the mid-block attention is middle_block[1].
/// </summary>
public static class UNetAttentionLayout
{
    static readonly string[] Projections = ["to_q", "to_k", "to_v", "to_out.0"];

    /// <summary>All offsettable parameters: every weight, plus each to_out.0 bias (dense files may carry them).</summary>
    public static IReadOnlyList<AttentionProjection> Enumerate(UNetConfig unet)
    {
        var list = new List<AttentionProjection>();
        int n = unet.Levels;
        int lpb = unet.LayersPerBlock;
        for (int level = 0; level < n; level++)
        {
            if (!HasTransformers(unet.DownBlockTypes[level], "down_block_types")) continue;
            for (int j = 0; j < lpb; j++)
                AddAttention(list, unet, $"down_blocks.{level}.attentions.{j}", $"input_blocks.{level * (lpb + 1) + j + 1}.1",
                    unet.BlockOutChannels[level], unet.TransformerLayersPerBlock[level]);
        }
        if (unet.MidBlockType == "UNetMidBlock2DCrossAttn")
            AddAttention(list, unet, "mid_block.attentions.0", "middle_block.1", unet.BlockOutChannels[n - 1], unet.TransformerLayersPerBlock[n - 1]);
        else if (unet.MidBlockType != "UNetMidBlock2D" && unet.MidBlockType != "")
            throw new UserInputException($"UNet config: mid_block_type '{unet.MidBlockType}' is not supported (UNetMidBlock2DCrossAttn or UNetMidBlock2D)");
        for (int level = 0; level < n; level++)
        {
            if (!HasTransformers(unet.UpBlockTypes[level], "up_block_types")) continue;
            // diffusers reverses the per-level lists for the up path
            int channels = unet.BlockOutChannels[n - 1 - level];
            int depth = unet.TransformerLayersPerBlock[n - 1 - level];
            for (int j = 0; j < lpb + 1; j++)
                AddAttention(list, unet, $"up_blocks.{level}.attentions.{j}", $"output_blocks.{level * (lpb + 1) + j}.1", channels, depth);
        }
        return list;
    }

    static bool HasTransformers(string blockType, string field) => blockType switch
    {
        "CrossAttnDownBlock2D" or "CrossAttnUpBlock2D" => true,
        "DownBlock2D" or "UpBlock2D" => false,
        _ => throw new UserInputException($"UNet config: {field} entry '{blockType}' is not supported"),
    };

    static void AddAttention(List<AttentionProjection> list, UNetConfig unet, string diffusers, string ldm, int channels, int depth)
    {
        for (int t = 0; t < depth; t++)
        {
            foreach (var attn in new[] { "attn1", "attn2" })
            {
                // self-attention keys/values read the hidden states; cross-attention ones the text embeddings
                int kvIn = attn == "attn1" ? channels : unet.CrossAttentionDim;
                foreach (var p in Projections)
                {
                    string suffix = $".transformer_blocks.{t}.{attn}.{p}.weight";
                    long inDim = p is "to_k" or "to_v" ? kvIn : channels;
                    list.Add(new AttentionProjection(diffusers + suffix, ldm + suffix, [channels, inDim]));
                }
                string bias = $".transformer_blocks.{t}.{attn}.to_out.0.bias";
                list.Add(new AttentionProjection(diffusers + bias, ldm + bias, [channels]));
            }
        }
    }
}
