namespace LayerFusion.WeightsLoader.Configs;

/// <summary>diffusers AutoencoderKL config, defaults as diffusers v0.25 / SDXL's VAE.</summary>
public sealed record AutoencoderKLConfig
{
    public int InChannels { get; init; } = 3;
    public int OutChannels { get; init; } = 3;
    public int[] BlockOutChannels { get; init; } = [128, 256, 512, 512];
    public int LayersPerBlock { get; init; } = 2;
    public string ActFn { get; init; } = "silu";
    public int LatentChannels { get; init; } = 4;
    public int NormNumGroups { get; init; } = 32;
    public int SampleSize { get; init; } = 1024;
    public double ScalingFactor { get; init; } = 0.13025;
    public bool ForceUpcast { get; init; } = true;

    public static AutoencoderKLConfig Read(ConfigReader r)
    {
        UnsupportedConfig.Check(r, "AutoencoderKL decoder",
        [
            UnsupportedConfig.MustBe("norm_type", "group"),
            new UnsupportedConfig.Rule("mid_block_add_attention", n => n.GetValueKind() == System.Text.Json.JsonValueKind.True, "true"),
            new UnsupportedConfig.Rule("use_post_quant_conv", n => n.GetValueKind() == System.Text.Json.JsonValueKind.True, "true"),
        ]);
        var d = new AutoencoderKLConfig();
        var c = new AutoencoderKLConfig
        {
            InChannels = r.Int("in_channels", d.InChannels, 1, 64),
            OutChannels = r.Int("out_channels", d.OutChannels, 1, 64),
            BlockOutChannels = r.Ints("block_out_channels", [64], 1, 1 << 16),
            LayersPerBlock = r.Int("layers_per_block", 1, 1, 64),
            ActFn = r.String("act_fn", d.ActFn),
            LatentChannels = r.Int("latent_channels", d.LatentChannels, 1, 1024),
            NormNumGroups = r.Int("norm_num_groups", d.NormNumGroups, 1, 4096),
            SampleSize = r.Int("sample_size", d.SampleSize, 1, 1 << 16),
            // latents are divided by it before decoding: 0 or a negative value decodes garbage
            ScalingFactor = r.Double("scaling_factor", 0.18215, 0, 1e6, minExclusive: true),
            ForceUpcast = r.Bool("force_upcast", d.ForceUpcast),
        };
        r.Require(c.BlockOutChannels.Length >= 1, "block_out_channels", "must not be empty");
        // Not stored (the graph follows block_out_channels), but a config naming other blocks
        // describes another model: diffusers would build that one, so it is refused here.
        int n = c.BlockOutChannels.Length;
        foreach (var (key, block) in new[] { ("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D") })
        {
            var types = r.Strings(key, Enumerable.Repeat(block, n).ToArray());
            r.Require(types.Length == n, key, $"must have one entry per block_out_channels ({n})");
            for (int i = 0; i < n; i++)
                r.Require(types[i] == block, key, $"entry {i} '{types[i]}' is not supported ({block})");
        }
        foreach (var ch in c.BlockOutChannels)
            r.Require(ch % c.NormNumGroups == 0, "block_out_channels", $"entry {ch} must be divisible by norm_num_groups ({c.NormNumGroups})");
        return c;
    }
}
