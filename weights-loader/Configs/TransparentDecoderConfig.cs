namespace LayerFusion.WeightsLoader.Configs;

/// <summary>
/// LayerDiffuse's transparent VAE decoder (UNet1024). The released file has no config; these are
/// its fixed architecture values (DESIGN.md §3). A tiny checkpoint stores its own values in the
/// file's __metadata__ under "layerfusion.config" (same JSON field names).
/// </summary>
public sealed record TransparentDecoderConfig
{
    public int InChannels { get; init; } = 3;
    public int OutChannels { get; init; } = 4;
    public int LatentChannels { get; init; } = 4;
    public int[] BlockOutChannels { get; init; } = [32, 32, 64, 128, 256, 512, 512];
    public int LayersPerBlock { get; init; } = 2;
    public int NormNumGroups { get; init; } = 4;
    public int AttentionHeadDim { get; init; } = 8;
    /// <summary>Down-block index before which the 1x1 `latent_conv_in` output (64 ch) is added.</summary>
    public int LatentInjectLevel { get; init; } = 3;

    public static TransparentDecoderConfig Read(ConfigReader r)
    {
        var d = new TransparentDecoderConfig();
        var c = new TransparentDecoderConfig
        {
            InChannels = r.Int("in_channels", d.InChannels, 1, 64),
            OutChannels = r.Int("out_channels", d.OutChannels, 1, 64),
            LatentChannels = r.Int("latent_channels", d.LatentChannels, 1, 64),
            BlockOutChannels = r.Ints("block_out_channels", d.BlockOutChannels, 1, 1 << 16),
            LayersPerBlock = r.Int("layers_per_block", d.LayersPerBlock, 1, 64),
            NormNumGroups = r.Int("norm_num_groups", d.NormNumGroups, 1, 4096),
            AttentionHeadDim = r.Int("attention_head_dim", d.AttentionHeadDim, 1, 4096),
            LatentInjectLevel = r.Int("latent_inject_level", d.LatentInjectLevel, 0, 64),
        };
        r.Require(c.BlockOutChannels.Length == 7, "block_out_channels", "must have 7 entries (UNet1024: 4 plain + 3 attention levels)");
        return c;
    }
}
