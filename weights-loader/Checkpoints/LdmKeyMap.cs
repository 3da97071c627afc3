namespace LayerFusion.WeightsLoader.Checkpoints;

/// <summary>How an ldm (single-file) tensor relates to its diffusers tensor(s).</summary>
public enum LdmTransform
{
    /// <summary>Same bytes, same shape, another name.</summary>
    Rename,
    /// <summary>Same bytes; ldm stores a Linear as a 1x1 conv ([C, C, 1, 1], the VAE mid attention).</summary>
    Conv1x1,
    /// <summary>ldm concatenates q, k, v along dim 0 (OpenCLIP `in_proj_weight/bias`); diffusers names list q, k, v.</summary>
    FusedRows,
    /// <summary>ldm stores the transpose (OpenCLIP `text_projection` is [hidden, proj]).</summary>
    Transpose,
}

/// <summary>
/// One ldm tensor and the diffusers tensor(s) it holds. <paramref name="Alternative"/>: another name
/// and layout some converters write for the same tensor (exactly one of the two may be present).
/// </summary>
public sealed record LdmRule(string LdmName, string[] DiffusersNames, LdmTransform Transform, LdmRule? Alternative = null);

/// <summary>
/// Single-file (ldm/sgm) names of SDXL components, following diffusers v0.25
/// `pipelines/stable_diffusion/convert_from_ckpt.py`. Rules are derived from the component's
/// diffusers schema, so one table serves loading (ldm -> diffusers) and the tiny single-file writer.
/// </summary>
public static class LdmKeyMap
{
    public const string UNetPrefix = "model.diffusion_model.";
    public const string VaePrefix = "first_stage_model.";
    public const string ClipLPrefix = "conditioner.embedders.0.transformer.";
    public const string ClipGPrefix = "conditioner.embedders.1.model.";

    /// <summary>Keys (after the component prefix) real single files carry that no model parameter uses.</summary>
    public static bool IsTolerated(string component, string ldmKey) => component switch
    {
        "text_encoder" => ldmKey == ClipTextSchema.PositionIdsBuffer,
        "text_encoder_2" => ldmKey is "logit_scale" or "attn_mask",
        _ => false,
    };

    // ---- UNet ----

    static readonly (string D, string L)[] ResnetInner =
    [
        ("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
        ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"),
    ];

    static readonly (string D, string L)[] VaeResnetInner =
    [
        ("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"), ("conv_shortcut", "nin_shortcut"),
    ];

    public static IReadOnlyList<LdmRule> UNet(Configs.UNetConfig c)
    {
        // (diffusers prefix, ldm prefix, inner renames or null)
        var map = new List<(string D, string L, (string D, string L)[]? Inner)>
        {
            ("conv_in.", "input_blocks.0.0.", null),
            ("time_embedding.linear_1.", "time_embed.0.", null),
            ("time_embedding.linear_2.", "time_embed.2.", null),
            ("add_embedding.linear_1.", "label_emb.0.0.", null),
            ("add_embedding.linear_2.", "label_emb.0.2.", null),
            ("conv_norm_out.", "out.0.", null),
            ("conv_out.", "out.2.", null),
            ("mid_block.resnets.0.", "middle_block.0.", ResnetInner),
            ("mid_block.attentions.0.", "middle_block.1.", null),
            ("mid_block.resnets.1.", "middle_block.2.", ResnetInner),
        };
        int n = c.Levels, L = c.LayersPerBlock;
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < L; j++)
            {
                int id = 1 + i * (L + 1) + j;
                map.Add(($"down_blocks.{i}.resnets.{j}.", $"input_blocks.{id}.0.", ResnetInner));
                map.Add(($"down_blocks.{i}.attentions.{j}.", $"input_blocks.{id}.1.", null));
            }
            map.Add(($"down_blocks.{i}.downsamplers.0.conv.", $"input_blocks.{1 + i * (L + 1) + L}.0.op.", null));
            bool upAttn = c.UpBlockTypes[i] == "CrossAttnUpBlock2D";
            for (int j = 0; j < L + 1; j++)
            {
                int id = i * (L + 1) + j;
                map.Add(($"up_blocks.{i}.resnets.{j}.", $"output_blocks.{id}.0.", ResnetInner));
                map.Add(($"up_blocks.{i}.attentions.{j}.", $"output_blocks.{id}.1.", null));
            }
            // convert_from_ckpt: the upsampler is the module after the resnet (and attention, if any).
            map.Add(($"up_blocks.{i}.upsamplers.0.conv.", $"output_blocks.{i * (L + 1) + L}.{(upAttn ? 2 : 1)}.conv.", null));
        }
        return FromPrefixes(UNetSchema.Parameters(c), map);
    }

    // ---- VAE ----

    public static IReadOnlyList<LdmRule> Vae(Configs.AutoencoderKLConfig c)
    {
        var map = new List<(string D, string L, (string D, string L)[]? Inner)>
        {
            ("encoder.conv_norm_out.", "encoder.norm_out.", null),
            ("decoder.conv_norm_out.", "decoder.norm_out.", null),
            ("encoder.conv_in.", "encoder.conv_in.", null),
            ("encoder.conv_out.", "encoder.conv_out.", null),
            ("decoder.conv_in.", "decoder.conv_in.", null),
            ("decoder.conv_out.", "decoder.conv_out.", null),
            ("quant_conv.", "quant_conv.", null),
            ("post_quant_conv.", "post_quant_conv.", null),
        };
        int n = c.BlockOutChannels.Length;
        foreach (var part in new[] { "encoder", "decoder" })
        {
            map.Add(($"{part}.mid_block.resnets.0.", $"{part}.mid.block_1.", VaeResnetInner));
            map.Add(($"{part}.mid_block.resnets.1.", $"{part}.mid.block_2.", VaeResnetInner));
            map.Add(($"{part}.mid_block.attentions.0.group_norm.", $"{part}.mid.attn_1.norm.", null));
            map.Add(($"{part}.mid_block.attentions.0.to_q.", $"{part}.mid.attn_1.q.", null));
            map.Add(($"{part}.mid_block.attentions.0.to_k.", $"{part}.mid.attn_1.k.", null));
            map.Add(($"{part}.mid_block.attentions.0.to_v.", $"{part}.mid.attn_1.v.", null));
            map.Add(($"{part}.mid_block.attentions.0.to_out.0.", $"{part}.mid.attn_1.proj_out.", null));
        }
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < c.LayersPerBlock; j++)
                map.Add(($"encoder.down_blocks.{i}.resnets.{j}.", $"encoder.down.{i}.block.{j}.", VaeResnetInner));
            map.Add(($"encoder.down_blocks.{i}.downsamplers.0.conv.", $"encoder.down.{i}.downsample.conv.", null));
            // ldm numbers decoder levels from the lowest resolution up; diffusers in run order.
            for (int j = 0; j < c.LayersPerBlock + 1; j++)
                map.Add(($"decoder.up_blocks.{i}.resnets.{j}.", $"decoder.up.{n - 1 - i}.block.{j}.", VaeResnetInner));
            map.Add(($"decoder.up_blocks.{i}.upsamplers.0.conv.", $"decoder.up.{n - 1 - i}.upsample.conv.", null));
        }
        var rules = FromPrefixes(AutoencoderKLSchema.Parameters(c), map);
        // ldm's VAE attention projections are 1x1 convs.
        return rules.Select(r => r.DiffusersNames[0].Contains(".mid_block.attentions.0.to_") && r.DiffusersNames[0].EndsWith(".weight")
            ? r with { Transform = LdmTransform.Conv1x1 } : r).ToList();
    }

    // ---- text encoders ----

    /// <summary>CLIP ViT-L: the transformers names, unchanged, under the component prefix.</summary>
    public static IReadOnlyList<LdmRule> ClipL(Configs.ClipTextConfig c)
        => ClipTextSchema.Parameters(c).Select(p => new LdmRule(p.Name, [p.Name], LdmTransform.Rename)).ToList();

    /// <summary>OpenCLIP bigG (open_clip names; fused q/k/v, transposed projection).</summary>
    public static IReadOnlyList<LdmRule> OpenClip(Configs.ClipTextConfig c)
    {
        var rules = new List<LdmRule>
        {
            new("token_embedding.weight", ["text_model.embeddings.token_embedding.weight"], LdmTransform.Rename),
            new("positional_embedding", ["text_model.embeddings.position_embedding.weight"], LdmTransform.Rename),
        };
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string d = $"text_model.encoder.layers.{l}.", o = $"transformer.resblocks.{l}.";
            foreach (var s in new[] { "weight", "bias" })
            {
                rules.Add(new(o + "attn.in_proj_" + s, [d + "self_attn.q_proj." + s, d + "self_attn.k_proj." + s, d + "self_attn.v_proj." + s], LdmTransform.FusedRows));
                rules.Add(new(o + "attn.out_proj." + s, [d + "self_attn.out_proj." + s], LdmTransform.Rename));
                rules.Add(new(o + "ln_1." + s, [d + "layer_norm1." + s], LdmTransform.Rename));
                rules.Add(new(o + "ln_2." + s, [d + "layer_norm2." + s], LdmTransform.Rename));
                rules.Add(new(o + "mlp.c_fc." + s, [d + "mlp.fc1." + s], LdmTransform.Rename));
                rules.Add(new(o + "mlp.c_proj." + s, [d + "mlp.fc2." + s], LdmTransform.Rename));
            }
        }
        rules.Add(new("ln_final.weight", ["text_model.final_layer_norm.weight"], LdmTransform.Rename));
        rules.Add(new("ln_final.bias", ["text_model.final_layer_norm.bias"], LdmTransform.Rename));
        // Released SDXL files store OpenCLIP's text_projection ([hidden, proj], applied as x @ P);
        // diffusers' convert_diffusers_to_original_sdxl.py writes text_projection.weight, the Linear's
        // own [proj, hidden] weight. Both are the same projection (ComfyUI accepts both too).
        if (c.WithProjection)
            rules.Add(new("text_projection", ["text_projection.weight"], LdmTransform.Transpose,
                Alternative: new("text_projection.weight", ["text_projection.weight"], LdmTransform.Rename)));
        return rules;
    }

    static List<LdmRule> FromPrefixes(IReadOnlyList<ParamSpec> schema, List<(string D, string L, (string D, string L)[]? Inner)> map)
    {
        var rules = new List<LdmRule>(schema.Count);
        foreach (var p in schema)
        {
            var matches = map.Where(m => p.Name.StartsWith(m.D, StringComparison.Ordinal)).ToList();
            if (matches.Count == 0) throw new InvalidOperationException($"no ldm name for diffusers parameter '{p.Name}'");
            var best = matches.MaxBy(m => m.D.Length);
            if (best.D is null) throw new InvalidOperationException($"no ldm name for diffusers parameter '{p.Name}'");
            string rest = p.Name[best.D.Length..];
            if (best.Inner is not null)
            {
                int dot = rest.IndexOf('.');
                string head = rest[..dot];
                var inner = best.Inner.FirstOrDefault(x => x.D == head);
                if (inner.D is null) throw new InvalidOperationException($"no ldm name for diffusers parameter '{p.Name}'");
                rest = inner.L + rest[dot..];
            }
            rules.Add(new LdmRule(best.L + rest, [p.Name], LdmTransform.Rename));
        }
        return rules;
    }
}
