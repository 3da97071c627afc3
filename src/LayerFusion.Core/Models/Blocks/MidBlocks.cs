using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>diffusers UNetMidBlock2DCrossAttn (num_layers 1): resnet, Transformer2DModel, resnet.</summary>
public sealed class UNetMidBlock2DCrossAttn
{
    readonly ResnetBlock2D[] _resnets;
    readonly Transformer2DModel[] _attentions;

    public UNetMidBlock2DCrossAttn(ParameterStore p, int channels, int tembChannels, int transformerLayers, int heads,
        int crossAttentionDim, float eps, int groups, bool useLinearProjection, float outputScaleFactor, int level)
    {
        _resnets = Enumerable.Range(0, 2)
            .Select(i => new ResnetBlock2D(p.Scope($"resnets.{i}"), channels, channels, tembChannels, groups, eps, outputScaleFactor))
            .ToArray();
        _attentions = [new Transformer2DModel(p.Scope("attentions.0"), heads, channels / heads, channels, transformerLayers,
            crossAttentionDim, groups, useLinearProjection, level)];
    }

    public IReadOnlyList<Transformer2DModel> Attentions => _attentions;

    public Tensor Forward(Tensor x, Tensor tembSilu, Tensor encoderHiddenStates, AttentionRuntime rt)
    {
        var h = _resnets[0].Forward(x, tembSilu);
        for (int i = 0; i < _attentions.Length; i++)
        {
            using var hin = h;
            using var a = _attentions[i].Forward(hin, encoderHiddenStates, rt);
            h = _resnets[i + 1].Forward(a, tembSilu);
        }
        return h;
    }
}

/// <summary>
/// diffusers UNetMidBlock2D (num_layers 1, as the VAE decoder and LayerDiffuse's decoder build it):
/// resnet, GroupNorm self-attention (attn_groups = resnet_groups), resnet.
/// </summary>
public sealed class UNetMidBlock2D
{
    readonly ResnetBlock2D[] _resnets;
    readonly SpatialAttention? _attention;

    public UNetMidBlock2D(ParameterStore p, int channels, int? tembChannels, float eps, int groups, int attentionHeadDim,
        float outputScaleFactor, bool addAttention, int level)
    {
        _resnets = Enumerable.Range(0, 2)
            .Select(i => new ResnetBlock2D(p.Scope($"resnets.{i}"), channels, channels, tembChannels, groups, eps, outputScaleFactor))
            .ToArray();
        _attention = addAttention
            ? new SpatialAttention(p.Scope("attentions.0"), channels, channels / attentionHeadDim, attentionHeadDim, groups, eps,
                outputScaleFactor, level)
            : null;
    }

    public Tensor Forward(Tensor x, Tensor? tembSilu, AttentionRuntime rt)
    {
        using var h = _resnets[0].Forward(x, tembSilu);
        if (_attention is null) return _resnets[1].Forward(h, tembSilu);
        using var a = _attention.Forward(h, rt);
        return _resnets[1].Forward(a, tembSilu);
    }
}
