using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>
/// diffusers DownBlock2D: resnets, then an optional stride-2 conv. Returns the hidden states and the
/// skip states (each resnet output, then the downsampled one); the last skip is the returned hidden.
/// Blocks never dispose their input; the states they return are owned by the caller.
/// </summary>
public sealed class DownBlock2D
{
    readonly ResnetBlock2D[] _resnets;
    readonly Downsample2D? _down;

    public DownBlock2D(ParameterStore p, int inChannels, int outChannels, int? tembChannels, int numLayers, bool addDownsample,
        float eps, int groups, int downsamplePadding)
    {
        _resnets = Enumerable.Range(0, numLayers)
            .Select(i => new ResnetBlock2D(p.Scope($"resnets.{i}"), i == 0 ? inChannels : outChannels, outChannels, tembChannels, groups, eps))
            .ToArray();
        _down = addDownsample ? new Downsample2D(p.Scope("downsamplers.0"), outChannels, outChannels, downsamplePadding) : null;
    }

    public (Tensor Hidden, List<Tensor> States) Forward(Tensor x, Tensor? tembSilu)
    {
        var states = new List<Tensor>();
        var h = x;
        foreach (var r in _resnets)
        {
            h = r.Forward(h, tembSilu);
            states.Add(h);
        }
        if (_down is not null)
        {
            h = _down.Forward(h);
            states.Add(h);
        }
        return (h, states);
    }
}

/// <summary>diffusers CrossAttnDownBlock2D: (resnet, Transformer2DModel) per layer, then an optional downsampler.</summary>
public sealed class CrossAttnDownBlock2D
{
    readonly ResnetBlock2D[] _resnets;
    readonly Transformer2DModel[] _attentions;
    readonly Downsample2D? _down;

    public CrossAttnDownBlock2D(ParameterStore p, int inChannels, int outChannels, int tembChannels, int numLayers,
        int transformerLayers, int heads, int crossAttentionDim, bool addDownsample, float eps, int groups, int downsamplePadding,
        bool useLinearProjection, int level)
    {
        _resnets = Enumerable.Range(0, numLayers)
            .Select(i => new ResnetBlock2D(p.Scope($"resnets.{i}"), i == 0 ? inChannels : outChannels, outChannels, tembChannels, groups, eps))
            .ToArray();
        _attentions = Enumerable.Range(0, numLayers)
            .Select(i => new Transformer2DModel(p.Scope($"attentions.{i}"), heads, outChannels / heads, outChannels, transformerLayers,
                crossAttentionDim, groups, useLinearProjection, level))
            .ToArray();
        _down = addDownsample ? new Downsample2D(p.Scope("downsamplers.0"), outChannels, outChannels, downsamplePadding) : null;
    }

    public IReadOnlyList<Transformer2DModel> Attentions => _attentions;

    public (Tensor Hidden, List<Tensor> States) Forward(Tensor x, Tensor tembSilu, Tensor encoderHiddenStates, AttentionRuntime rt)
    {
        var states = new List<Tensor>();
        var h = x;
        for (int i = 0; i < _resnets.Length; i++)
        {
            using var r = _resnets[i].Forward(h, tembSilu);
            h = _attentions[i].Forward(r, encoderHiddenStates, rt);
            states.Add(h);
        }
        if (_down is not null)
        {
            h = _down.Forward(h);
            states.Add(h);
        }
        return (h, states);
    }
}

/// <summary>diffusers AttnDownBlock2D (LayerDiffuse's decoder): (resnet, GroupNorm self-attention) per layer,
/// attention heads = out_channels / attention_head_dim, then an optional conv downsampler.</summary>
public sealed class AttnDownBlock2D
{
    readonly ResnetBlock2D[] _resnets;
    readonly SpatialAttention[] _attentions;
    readonly Downsample2D? _down;

    public AttnDownBlock2D(ParameterStore p, int inChannels, int outChannels, int? tembChannels, int numLayers, int attentionHeadDim,
        bool addDownsample, float eps, int groups, int downsamplePadding, int level)
    {
        _resnets = Enumerable.Range(0, numLayers)
            .Select(i => new ResnetBlock2D(p.Scope($"resnets.{i}"), i == 0 ? inChannels : outChannels, outChannels, tembChannels, groups, eps))
            .ToArray();
        _attentions = Enumerable.Range(0, numLayers)
            .Select(i => new SpatialAttention(p.Scope($"attentions.{i}"), outChannels, outChannels / attentionHeadDim, attentionHeadDim,
                groups, eps, 1f, level))
            .ToArray();
        _down = addDownsample ? new Downsample2D(p.Scope("downsamplers.0"), outChannels, outChannels, downsamplePadding) : null;
    }

    public (Tensor Hidden, List<Tensor> States) Forward(Tensor x, Tensor? tembSilu, AttentionRuntime rt)
    {
        var states = new List<Tensor>();
        var h = x;
        for (int i = 0; i < _resnets.Length; i++)
        {
            using var r = _resnets[i].Forward(h, tembSilu);
            h = _attentions[i].Forward(r, rt);
            states.Add(h);
        }
        if (_down is not null)
        {
            h = _down.Forward(h);
            states.Add(h);
        }
        return (h, states);
    }
}
