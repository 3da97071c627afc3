using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>
/// Shared shape of diffusers' UNet up blocks: resnet i takes cat([h, skip], dim=1) with the skips
/// popped from the end; resnet_in = prev_output_channel for i = 0 else out_channels; skip channels =
/// in_channels for the last resnet else out_channels. Optionally an attention after each resnet and a
/// final upsampler. Never disposes its input or the skips (the caller owns them).
/// </summary>
public abstract class UpBlockBase
{
    readonly ResnetBlock2D[] _resnets;
    readonly Upsample2D? _up;

    protected UpBlockBase(ParameterStore p, int inChannels, int outChannels, int prevOutputChannels, int? tembChannels, int numLayers,
        bool addUpsample, float eps, int groups)
    {
        _resnets = Enumerable.Range(0, numLayers)
            .Select(i =>
            {
                int skip = i == numLayers - 1 ? inChannels : outChannels;
                int resnetIn = i == 0 ? prevOutputChannels : outChannels;
                return new ResnetBlock2D(p.Scope($"resnets.{i}"), resnetIn + skip, outChannels, tembChannels, groups, eps);
            })
            .ToArray();
        _up = addUpsample ? new Upsample2D(p.Scope("upsamplers.0"), outChannels, outChannels) : null;
    }

    /// <summary>How many skip states this block consumes.</summary>
    public int NumResnets => _resnets.Length;

    /// <summary>The attention after resnet <paramref name="i"/> (identity when the block has none).</summary>
    protected abstract Tensor Attend(int i, Tensor h, Tensor? encoderHiddenStates, AttentionRuntime rt);
    protected abstract bool HasAttention { get; }

    protected Tensor Run(Tensor x, IReadOnlyList<Tensor> skips, Tensor? tembSilu, Tensor? encoderHiddenStates, (int H, int W)? upsampleSize,
        AttentionRuntime rt)
    {
        if (skips.Count != _resnets.Length)
            throw new ArgumentException($"up block needs {_resnets.Length} skip states, got {skips.Count}");
        var ops = x.Ops;
        var h = x;
        bool owned = false;
        for (int i = 0; i < _resnets.Length; i++)
        {
            var skip = skips[skips.Count - 1 - i];
            Tensor r;
            using (var cat = ops.Concat([h, skip], 1))
                r = _resnets[i].Forward(cat, tembSilu);
            if (owned) h.Dispose();
            if (HasAttention)
            {
                using (r) h = Attend(i, r, encoderHiddenStates, rt);
            }
            else h = r;
            owned = true;
        }
        if (_up is null) return h;
        if (!owned) return _up.Forward(h, upsampleSize);
        using (h) return _up.Forward(h, upsampleSize);
    }
}

/// <summary>diffusers UpBlock2D.</summary>
public sealed class UpBlock2D(ParameterStore p, int inChannels, int outChannels, int prevOutputChannels, int? tembChannels, int numLayers,
    bool addUpsample, float eps, int groups)
    : UpBlockBase(p, inChannels, outChannels, prevOutputChannels, tembChannels, numLayers, addUpsample, eps, groups)
{
    protected override bool HasAttention => false;
    protected override Tensor Attend(int i, Tensor h, Tensor? e, AttentionRuntime rt) => throw new InvalidOperationException();

    public Tensor Forward(Tensor x, IReadOnlyList<Tensor> skips, Tensor? tembSilu, (int H, int W)? upsampleSize = null)
        => Run(x, skips, tembSilu, null, upsampleSize, default);
}

/// <summary>diffusers CrossAttnUpBlock2D: a Transformer2DModel after every resnet.</summary>
public sealed class CrossAttnUpBlock2D : UpBlockBase
{
    readonly Transformer2DModel[] _attentions;

    public CrossAttnUpBlock2D(ParameterStore p, int inChannels, int outChannels, int prevOutputChannels, int tembChannels, int numLayers,
        int transformerLayers, int heads, int crossAttentionDim, bool addUpsample, float eps, int groups, bool useLinearProjection, int level)
        : base(p, inChannels, outChannels, prevOutputChannels, tembChannels, numLayers, addUpsample, eps, groups)
    {
        _attentions = Enumerable.Range(0, numLayers)
            .Select(i => new Transformer2DModel(p.Scope($"attentions.{i}"), heads, outChannels / heads, outChannels, transformerLayers,
                crossAttentionDim, groups, useLinearProjection, level))
            .ToArray();
    }

    public IReadOnlyList<Transformer2DModel> Attentions => _attentions;
    protected override bool HasAttention => true;
    protected override Tensor Attend(int i, Tensor h, Tensor? e, AttentionRuntime rt) => _attentions[i].Forward(h, e!, rt);

    public Tensor Forward(Tensor x, IReadOnlyList<Tensor> skips, Tensor tembSilu, Tensor encoderHiddenStates, (int H, int W)? upsampleSize,
        AttentionRuntime rt)
        => Run(x, skips, tembSilu, encoderHiddenStates, upsampleSize, rt);
}

/// <summary>diffusers AttnUpBlock2D (LayerDiffuse's decoder): GroupNorm self-attention after every resnet.</summary>
public sealed class AttnUpBlock2D : UpBlockBase
{
    readonly SpatialAttention[] _attentions;

    public AttnUpBlock2D(ParameterStore p, int inChannels, int outChannels, int prevOutputChannels, int? tembChannels, int numLayers,
        int attentionHeadDim, bool addUpsample, float eps, int groups, int level)
        : base(p, inChannels, outChannels, prevOutputChannels, tembChannels, numLayers, addUpsample, eps, groups)
    {
        _attentions = Enumerable.Range(0, numLayers)
            .Select(i => new SpatialAttention(p.Scope($"attentions.{i}"), outChannels, outChannels / attentionHeadDim, attentionHeadDim,
                groups, eps, 1f, level))
            .ToArray();
    }

    protected override bool HasAttention => true;
    protected override Tensor Attend(int i, Tensor h, Tensor? e, AttentionRuntime rt) => _attentions[i].Forward(h, rt);

    /// <remarks>diffusers' AttnUpBlock2D ignores upsample_size (plain 2x).</remarks>
    public Tensor Forward(Tensor x, IReadOnlyList<Tensor> skips, Tensor? tembSilu, AttentionRuntime rt)
        => Run(x, skips, tembSilu, null, null, rt);
}

/// <summary>diffusers UpDecoderBlock2D (VAE decoder): resnets without skips or temb, then an optional upsampler.</summary>
public sealed class UpDecoderBlock2D
{
    readonly ResnetBlock2D[] _resnets;
    readonly Upsample2D? _up;

    public UpDecoderBlock2D(ParameterStore p, int inChannels, int outChannels, int numLayers, bool addUpsample, float eps, int groups)
    {
        _resnets = Enumerable.Range(0, numLayers)
            .Select(i => new ResnetBlock2D(p.Scope($"resnets.{i}"), i == 0 ? inChannels : outChannels, outChannels, null, groups, eps))
            .ToArray();
        _up = addUpsample ? new Upsample2D(p.Scope("upsamplers.0"), outChannels, outChannels) : null;
    }

    public Tensor Forward(Tensor x)
    {
        var h = x;
        bool owned = false;
        foreach (var r in _resnets)
        {
            var next = r.Forward(h, null);
            if (owned) h.Dispose();
            h = next;
            owned = true;
        }
        if (_up is null) return h;
        if (!owned) return _up.Forward(h);
        using (h) return _up.Forward(h);
    }
}
