namespace LayerFusion.WeightsLoader.Configs;

/// <summary>diffusers UNet2DConditionModel config (the fields SDXL uses), defaults as diffusers v0.25.</summary>
public sealed record UNetConfig
{
    public int SampleSize { get; init; } = 128;
    public int InChannels { get; init; } = 4;
    public int OutChannels { get; init; } = 4;
    public bool FlipSinToCos { get; init; } = true;
    public int FreqShift { get; init; }
    public string[] DownBlockTypes { get; init; } = ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"];
    public string MidBlockType { get; init; } = "UNetMidBlock2DCrossAttn";
    public string[] UpBlockTypes { get; init; } = ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"];
    public int[] BlockOutChannels { get; init; } = [320, 640, 1280];
    public int LayersPerBlock { get; init; } = 2;
    public int DownsamplePadding { get; init; } = 1;
    public string ActFn { get; init; } = "silu";
    public int NormNumGroups { get; init; } = 32;
    public double NormEps { get; init; } = 1e-5;
    public int CrossAttentionDim { get; init; } = 2048;
    /// <summary>Per down level (the up path uses it reversed).</summary>
    public int[] TransformerLayersPerBlock { get; init; } = [1, 2, 10];
    /// <summary>Heads per level. diffusers quirk: `attention_head_dim` in SDXL configs is the head COUNT
    /// (num_attention_heads = num_attention_heads or attention_head_dim); head dim = channels / heads.</summary>
    public int[] NumAttentionHeads { get; init; } = [5, 10, 20];
    public bool UseLinearProjection { get; init; } = true;
    public bool UpcastAttention { get; init; }
    public string? AdditionEmbedType { get; init; } = "text_time";
    public int AdditionTimeEmbedDim { get; init; } = 256;
    public int ProjectionClassEmbeddingsInputDim { get; init; } = 2816;
    public int ConvInKernel { get; init; } = 3;
    public int ConvOutKernel { get; init; } = 3;
    /// <summary>diffusers center_input_sample: the model sees 2 * sample - 1.</summary>
    public bool CenterInputSample { get; init; }
    /// <summary>diffusers time_embedding_act_fn: an activation on the summed time (+ add) embedding, before the resnets' own SiLU.</summary>
    public string? TimeEmbeddingActFn { get; init; }
    /// <summary>diffusers timestep_post_act: an activation after time_embedding's linear_2 (not the add embedding's).</summary>
    public string? TimestepPostAct { get; init; }
    /// <summary>diffusers mid_block_scale_factor: the mid block resnets' output_scale_factor.</summary>
    public double MidBlockScaleFactor { get; init; } = 1;
    public int Levels => BlockOutChannels.Length;
    public int TimeEmbedDim => BlockOutChannels[0] * 4;

    /// <summary>Upper bound on the transformer blocks a config may imply (SDXL: 70; bound computed as if every level had attention).</summary>
    public const int MaxTransformerBlocks = 4096;

    /// <summary>Activations diffusers' get_activation knows that our ops implement (mish and relu are refused).</summary>
    public static readonly IReadOnlyList<string> SupportedActivations = ["silu", "swish", "gelu"];

    /// <summary>
    /// Fields that would make diffusers build another model than ours are refused here, so every load
    /// path refuses them. resnet_out_scale_factor, resnet_skip_time_act and mid_block_only_cross_attention
    /// only reach block types we do not build (ResnetDownsampleBlock2D, the Simple cross-attention
    /// blocks), so they are accepted with any value; dropout does nothing at inference.
    /// </summary>
    static readonly UnsupportedConfig.Rule[] Unsupported =
    [
        UnsupportedConfig.MustBeNull("reverse_transformer_layers_per_block"),
        UnsupportedConfig.MustBeNull("class_embed_type"),
        UnsupportedConfig.MustBeNull("num_class_embeds"),
        UnsupportedConfig.MustBeNull("encoder_hid_dim"),
        UnsupportedConfig.MustBeNull("encoder_hid_dim_type"),
        UnsupportedConfig.MustBeNull("time_cond_proj_dim"),
        UnsupportedConfig.MustBeNull("time_embedding_dim"),
        UnsupportedConfig.MustBeNull("cross_attention_norm"),
        UnsupportedConfig.MustBe("time_embedding_type", "positional"),
        UnsupportedConfig.MustBe("resnet_time_scale_shift", "default"),
        UnsupportedConfig.MustBe("attention_type", "default"),
        UnsupportedConfig.MustBeFalse("only_cross_attention"),
        UnsupportedConfig.MustBeFalse("dual_cross_attention"),
        UnsupportedConfig.MustBeFalse("class_embeddings_concat"),
    ];

    static string? Activation(ConfigReader r, string key)
    {
        var name = r.OptionalString(key)?.ToLowerInvariant();   // diffusers lower-cases the name
        r.Require(name is null || SupportedActivations.Contains(name), key,
            $"'{name}' is not supported (supported: null, {string.Join(", ", SupportedActivations)})");
        return name;
    }

    public static UNetConfig Read(ConfigReader r)
    {
        UnsupportedConfig.Check(r, "UNet2DConditionModel", Unsupported);
        var d = new UNetConfig();
        var blocks = r.Ints("block_out_channels", d.BlockOutChannels, 1, 1 << 16);
        int n = blocks.Length;
        r.Require(n >= 1, "block_out_channels", "must not be empty");
        var heads = r.IntsOrScalar("num_attention_heads", n, r.IntsOrScalar("attention_head_dim", n, d.NumAttentionHeads, 1, 4096), 1, 4096);
        var c = new UNetConfig
        {
            SampleSize = r.Int("sample_size", d.SampleSize, 1, 1 << 16),
            InChannels = r.Int("in_channels", d.InChannels, 1, 4096),
            OutChannels = r.Int("out_channels", d.OutChannels, 1, 4096),
            FlipSinToCos = r.Bool("flip_sin_to_cos", d.FlipSinToCos),
            FreqShift = r.Int("freq_shift", d.FreqShift, 0, 1 << 16),
            DownBlockTypes = r.Strings("down_block_types", d.DownBlockTypes),
            MidBlockType = r.String("mid_block_type", d.MidBlockType),
            UpBlockTypes = r.Strings("up_block_types", d.UpBlockTypes),
            BlockOutChannels = blocks,
            LayersPerBlock = r.Int("layers_per_block", d.LayersPerBlock, 1, 64),
            DownsamplePadding = r.Int("downsample_padding", d.DownsamplePadding, 0, 8),
            ActFn = r.String("act_fn", d.ActFn),
            NormNumGroups = r.Int("norm_num_groups", d.NormNumGroups, 1, 4096),
            NormEps = r.Double("norm_eps", d.NormEps, 0, 1, minExclusive: true),
            CrossAttentionDim = r.Int("cross_attention_dim", d.CrossAttentionDim, 1, 1 << 16),
            TransformerLayersPerBlock = r.IntsOrScalar("transformer_layers_per_block", n, Enumerable.Repeat(1, n).ToArray(), 0, 256),
            NumAttentionHeads = heads,
            UseLinearProjection = r.Bool("use_linear_projection", d.UseLinearProjection),
            UpcastAttention = r.Bool("upcast_attention", false),
            AdditionEmbedType = r.OptionalString("addition_embed_type"),
            AdditionTimeEmbedDim = r.Int("addition_time_embed_dim", d.AdditionTimeEmbedDim, 1, 1 << 16),
            ProjectionClassEmbeddingsInputDim = r.Int("projection_class_embeddings_input_dim", d.ProjectionClassEmbeddingsInputDim, 1, 1 << 20),
            ConvInKernel = r.Int("conv_in_kernel", d.ConvInKernel, 1, 15),
            ConvOutKernel = r.Int("conv_out_kernel", d.ConvOutKernel, 1, 15),
            CenterInputSample = r.Bool("center_input_sample", false),
            TimeEmbeddingActFn = Activation(r, "time_embedding_act_fn"),
            TimestepPostAct = Activation(r, "timestep_post_act"),
            MidBlockScaleFactor = r.Double("mid_block_scale_factor", d.MidBlockScaleFactor),
        };
        r.Require(double.IsFinite(c.MidBlockScaleFactor) && c.MidBlockScaleFactor > 0, "mid_block_scale_factor", "must be a finite number > 0");
        r.Require(c.DownBlockTypes.Length == n, "down_block_types", $"must have one entry per block_out_channels ({n})");
        r.Require(c.UpBlockTypes.Length == n, "up_block_types", $"must have one entry per block_out_channels ({n})");
        r.Require(c.TransformerLayersPerBlock.Length == n, "transformer_layers_per_block", $"must have {n} entries");
        r.Require(c.NumAttentionHeads.Length == n, "attention_head_dim", $"must have {n} entries");
        // Each bound above is modest alone, but their product is not: 64 levels x 129 attention
        // slots x 256 blocks would make a 1 KB config.json enumerate tens of millions of tensors.
        long blocksUpperBound = (long)c.TransformerLayersPerBlock.Sum(d => (long)d) * (2 * c.LayersPerBlock + 1) + c.TransformerLayersPerBlock[n - 1];
        r.Require(blocksUpperBound <= MaxTransformerBlocks, "transformer_layers_per_block",
            $"with layers_per_block {c.LayersPerBlock} implies up to {blocksUpperBound} transformer blocks, more than the {MaxTransformerBlocks} allowed (SDXL has 70)");
        for (int i = 0; i < n; i++)
        {
            r.Require(blocks[i] % c.NormNumGroups == 0, "block_out_channels", $"entry {i} ({blocks[i]}) must be divisible by norm_num_groups ({c.NormNumGroups})");
            // heads matter only where a level has attention: its down block, the up block that mirrors
            // it, or the mid block (the last level); a DownBlock2D/UpBlock2D level ignores its entry
            bool attention = c.DownBlockTypes[i].StartsWith("CrossAttn", StringComparison.Ordinal)
                || c.UpBlockTypes[n - 1 - i].StartsWith("CrossAttn", StringComparison.Ordinal)
                || (i == n - 1 && c.MidBlockType.Contains("CrossAttn", StringComparison.Ordinal));
            if (attention)
                r.Require(blocks[i] % c.NumAttentionHeads[i] == 0, "attention_head_dim", $"head count {c.NumAttentionHeads[i]} must divide block_out_channels[{i}] ({blocks[i]}) at a level with attention");
        }
        return c;
    }
}
