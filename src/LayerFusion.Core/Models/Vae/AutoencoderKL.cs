using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Models.Vae;

/// <summary>
/// The decode path of diffusers' AutoencoderKL: post_quant_conv (1x1), then <see cref="Decoder"/>.
/// Input is the UNSCALED latent: the pipeline divides the denoised latent by
/// <see cref="AutoencoderKLConfig.ScalingFactor"/> (0.13025 for SDXL) before calling
/// <see cref="Decode"/>, as diffusers' pipelines do (`latents / vae.config.scaling_factor`); that same
/// unscaled latent is what LayerDiffuse's transparent decoder takes. Output is RGB in about [-1, 1].
/// </summary>
public sealed class AutoencoderKL
{
    readonly ParameterStore _p;
    readonly CheckpointAttentionWeights _weights;

    public AutoencoderKL(ParameterStore p, AutoencoderKLConfig config)
    {
        _p = p;
        Config = config;
        Decoder = new Decoder(p.Scope("decoder"), config);
        _weights = new CheckpointAttentionWeights(p);
    }


    public AutoencoderKLConfig Config { get; }
    public Decoder Decoder { get; }
    /// <summary>The backend this VAE's weights live on (may differ from the UNet's: fp32/bf16 on a GPU).</summary>
    public IOps Ops => _p.Ops;

    /// <summary><see cref="AutoencoderKLConfig.Read"/>, which also refuses decoders other than the one implemented
    /// (UpDecoderBlock2D levels, group norms, the mid-block attention, post_quant_conv).</summary>
    public static AutoencoderKLConfig ReadConfig(ConfigReader r) => AutoencoderKLConfig.Read(r);

    /// <summary>Processor for the mid-block attention (default: plain SDPA).</summary>
    public IAttentionProcessor Processor { get; set; } = SdpaAttentionProcessor.Instance;

    /// <param name="z">[B, latent_channels, h, w], already divided by the scaling factor.</param>
    /// <returns>[B, out_channels, 8h, 8w]-style image (one 2x per up block but the last).</returns>
    public Tensor Decode(Tensor z)
    {
        int lc = Config.LatentChannels;
        if (z.Rank != 4 || z.Dim(1) != lc)
            throw new UserInputException($"{_p.Component}: latent must be [B, {lc}, h, w], got {ShapeUtil.Format(z.Shape)}");
        using var q = Nn.Conv2d(_p, "post_quant_conv", z, lc, lc, 1);
        return Decoder.Forward(q, new AttentionRuntime(Processor, _weights));
    }
}

/// <summary>
/// diffusers' VAE Decoder (norm_type "group"): conv_in, UNetMidBlock2D with one single-head attention
/// (eps 1e-6), UpDecoderBlock2D per level over the reversed channels (layers_per_block + 1 resnets,
/// upsampling but at the last), conv_norm_out (eps 1e-6) + SiLU, conv_out.
/// </summary>
public sealed class Decoder
{
    const float Eps = 1e-6f;
    readonly ParameterStore _p;
    readonly AutoencoderKLConfig _c;
    readonly UNetMidBlock2D _mid;
    readonly UpDecoderBlock2D[] _up;

    public Decoder(ParameterStore p, AutoencoderKLConfig config)
    {
        _p = p;
        _c = config;
        Nn.RequireSilu(config.ActFn, p.Component);
        var ch = config.BlockOutChannels;
        int n = ch.Length;
        // attention_head_dim = block_out_channels[-1]: one head over all channels
        // level 0: the mid block runs at the latent's own resolution
        _mid = new UNetMidBlock2D(p.Scope("mid_block"), ch[n - 1], null, Eps, config.NormNumGroups, ch[n - 1], 1f, true, 0);
        var rev = ch.Reverse().ToArray();
        _up = new UpDecoderBlock2D[n];
        int output = rev[0];
        for (int i = 0; i < n; i++)
        {
            int prev = output;
            output = rev[i];
            _up[i] = new UpDecoderBlock2D(p.Scope($"up_blocks.{i}"), prev, output, config.LayersPerBlock + 1, i != n - 1, Eps, config.NormNumGroups);
        }
    }

    public Tensor Forward(Tensor z, AttentionRuntime rt)
    {
        var ch = _c.BlockOutChannels;
        int n = ch.Length;
        var h = Nn.Conv2d(_p, "conv_in", z, _c.LatentChannels, ch[n - 1], 3, 1, 1);
        using (var hin = h) h = _mid.Forward(hin, null, rt);
        foreach (var block in _up)
            using (var hin = h) h = block.Forward(hin);
        using (h)
        using (var normed = Nn.GroupNorm(_p, "conv_norm_out", h, _c.NormNumGroups, ch[0], Eps, silu: true))
            return Nn.Conv2d(_p, "conv_out", normed, ch[0], _c.OutChannels, 3, 1, 1);
    }
}
