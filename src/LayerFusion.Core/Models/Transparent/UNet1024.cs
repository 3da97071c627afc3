using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Models.Transparent;

/// <summary>
/// LayerDiffuse's transparent VAE decoder network (lllyasviel/LayerDiffuse_DiffusersCLI
/// lib_layerdiffuse/vae.py, UNet1024), assembled from diffusers' blocks: conv_in (3x3), the
/// 1x1 latent_conv_in added before down block <see cref="TransparentDecoderConfig.LatentInjectLevel"/>,
/// DownBlock2D for the first levels and AttnDownBlock2D for the last three, UNetMidBlock2D with
/// attention, AttnUpBlock2D x3 then UpBlock2D (layers_per_block + 1 resnets), conv_norm_out + SiLU,
/// conv_out. No time embedding; norm eps 1e-5; downsample padding 1; attention heads =
/// channels / attention_head_dim.
/// </summary>
public sealed class UNet1024
{
    /// <summary>UNet1024's down path ends with this many AttnDownBlock2D levels (and its up path starts with as many AttnUpBlock2D).</summary>
    public const int AttentionLevels = 3;
    const float Eps = 1e-5f;
    readonly ParameterStore _p;
    readonly TransparentDecoderConfig _c;
    readonly object[] _down;
    readonly UNetMidBlock2D _mid;
    readonly UpBlockBase[] _up;
    readonly int _latentChannelsOut;

    public UNet1024(ParameterStore p, TransparentDecoderConfig config)
    {
        _p = p;
        _c = config;
        var ch = config.BlockOutChannels;
        int n = ch.Length, g = config.NormNumGroups, hd = config.AttentionHeadDim, L = config.LayersPerBlock;
        if (n <= AttentionLevels)
            throw new UserInputException($"{p.Component}: block_out_channels needs more than {AttentionLevels} entries");
        if (config.LatentInjectLevel >= n)
            throw new UserInputException($"{p.Component}: latent_inject_level {config.LatentInjectLevel} is beyond the {n} levels");
        // the latent is added to the input of down block LatentInjectLevel (LayerDiffuse: block_out_channels[2], before block 3)
        _latentChannelsOut = ch[Math.Max(config.LatentInjectLevel - 1, 0)];

        _down = new object[n];
        int output = ch[0];
        for (int i = 0; i < n; i++)
        {
            int input = output;
            output = ch[i];
            bool final = i == n - 1;
            var s = p.Scope($"down_blocks.{i}");
            _down[i] = i < n - AttentionLevels
                ? new DownBlock2D(s, input, output, null, L, !final, Eps, g, 1)
                : new AttnDownBlock2D(s, input, output, null, L, hd, !final, Eps, g, 1, i);
        }
        _mid = new UNetMidBlock2D(p.Scope("mid_block"), ch[n - 1], null, Eps, g, hd, 1f, true, n - 1);
        var rev = ch.Reverse().ToArray();
        _up = new UpBlockBase[n];
        output = rev[0];
        for (int i = 0; i < n; i++)
        {
            int prev = output;
            output = rev[i];
            int input = rev[Math.Min(i + 1, n - 1)];
            bool final = i == n - 1;
            var s = p.Scope($"up_blocks.{i}");
            _up[i] = i < AttentionLevels
                ? new AttnUpBlock2D(s, input, output, prev, null, L + 1, hd, !final, Eps, g, n - 1 - i)
                : new UpBlock2D(s, input, output, prev, null, L + 1, !final, Eps, g);
        }
    }

    public TransparentDecoderConfig Config => _c;

    /// <summary>Total downsampling: inputs must have H and W divisible by this.</summary>
    public int SizeMultiple => 1 << (_c.BlockOutChannels.Length - 1);

    /// <summary>Processor for the attention layers (default: plain SDPA).</summary>
    public IAttentionProcessor Processor { get; set; } = SdpaAttentionProcessor.Instance;

    /// <summary>
    /// One pass. <paramref name="pixel"/> [B, in_channels, H, W] is the VAE-decoded RGB mapped to [0,1]
    /// ((x + 1) / 2, clipped); <paramref name="latent"/> [B, latent_channels, H/8, W/8] is the unscaled latent
    /// the VAE decoded (latent spatial size must equal the feature size at the injection level).
    /// Returns the raw output [B, out_channels, H, W] (channel 0 alpha, then RGB), not clipped.
    /// </summary>
    public Tensor Forward(Tensor pixel, Tensor latent)
    {
        var ops = pixel.Ops;
        var ch = _c.BlockOutChannels;
        int m = SizeMultiple;
        if (pixel.Rank != 4 || pixel.Dim(1) != _c.InChannels || pixel.Dim(2) % m != 0 || pixel.Dim(3) % m != 0)
            throw new UserInputException($"{_p.Component}: pixels must be [B, {_c.InChannels}, H, W] with H, W multiples of {m}, got {ShapeUtil.Format(pixel.Shape)}");
        int f = 1 << _c.LatentInjectLevel;
        if (latent.Rank != 4 || latent.Dim(0) != pixel.Dim(0) || latent.Dim(1) != _c.LatentChannels
            || latent.Dim(2) * f != pixel.Dim(2) || latent.Dim(3) * f != pixel.Dim(3))
            throw new UserInputException($"{_p.Component}: latent must be [{pixel.Dim(0)}, {_c.LatentChannels}, {pixel.Dim(2) / f}, {pixel.Dim(3) / f}], got {ShapeUtil.Format(latent.Shape)}");
        var rt = new AttentionRuntime(Processor, new CheckpointAttentionWeights(_p));

        using var sampleLatent = Nn.Conv2d(_p, "latent_conv_in", latent, _c.LatentChannels, _latentChannelsOut, 1);
        var skips = new List<Tensor> { Nn.Conv2d(_p, "conv_in", pixel, _c.InChannels, ch[0], 3, 1, 1) };
        Tensor? injected = null;
        try
        {
            var h = skips[0];
            for (int i = 0; i < _down.Length; i++)
            {
                if (i == _c.LatentInjectLevel)
                {
                    // diffusers' blocks see `sample + sample_latent` as input; the un-injected tensor stays a skip
                    injected = ops.Add(h, sampleLatent);
                    h = injected;
                }
                var (hidden, states) = _down[i] switch
                {
                    DownBlock2D d => d.Forward(h, null),
                    AttnDownBlock2D d => d.Forward(h, null, rt),
                    _ => throw new InvalidOperationException(),
                };
                skips.AddRange(states);
                h = hidden;
            }
            h = _mid.Forward(h, null, rt);
            foreach (var block in _up)
            {
                int k = block.NumResnets;
                var res = skips.GetRange(skips.Count - k, k);
                skips.RemoveRange(skips.Count - k, k);
                var next = block switch
                {
                    UpBlock2D u => u.Forward(h, res, null),
                    AttnUpBlock2D u => u.Forward(h, res, null, rt),
                    _ => throw new InvalidOperationException(),
                };
                h.Dispose();
                foreach (var r in res) r.Dispose();
                h = next;
            }
            using (h)
            using (var normed = Nn.GroupNorm(_p, "conv_norm_out", h, _c.NormNumGroups, ch[0], Eps, silu: true))
                return Nn.Conv2d(_p, "conv_out", normed, ch[0], _c.OutChannels, 3, 1, 1);
        }
        finally
        {
            injected?.Dispose();
            foreach (var s in skips) s.Dispose();
        }
    }
}
