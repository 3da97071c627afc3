using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>
/// diffusers Transformer2DModel for continuous inputs: GroupNorm (eps 1e-6), proj_in (1x1 conv before
/// flattening, or linear after it when use_linear_projection), transformer_blocks, proj_out, plus the input.
/// </summary>
public sealed class Transformer2DModel
{
    const float NormEps = 1e-6f;
    readonly ParameterStore _p;
    readonly int _in, _inner, _groups;
    readonly bool _linear;

    public Transformer2DModel(ParameterStore p, int heads, int headDim, int inChannels, int numLayers,
        int crossAttentionDim, int groups, bool useLinearProjection, int level)
    {
        Nn.RequireDivisible(inChannels, groups, Nn.PathOf(p) + ".norm");
        _p = p;
        _in = inChannels;
        _inner = heads * headDim;
        _groups = groups;
        _linear = useLinearProjection;
        Blocks = Enumerable.Range(0, numLayers)
            .Select(i => new BasicTransformerBlock(p.Scope($"transformer_blocks.{i}"), _inner, heads, headDim, crossAttentionDim, level))
            .ToArray();
    }

    public IReadOnlyList<BasicTransformerBlock> Blocks { get; }

    public Tensor Forward(Tensor x, Tensor encoderHiddenStates, AttentionRuntime rt)
    {
        var ops = x.Ops;
        int b = x.Dim(0), h = x.Dim(2), w = x.Dim(3);
        Tensor tokens;
        using (var normed = Nn.GroupNorm(_p, "norm", x, _groups, _in, NormEps))
        {
            if (_linear)
            {
                using var perm = ops.Permute(normed, 0, 2, 3, 1);
                tokens = Nn.Linear(_p, "proj_in", perm.Reshape(b, h * w, _in), _in, _inner);
            }
            else
            {
                using var conv = Nn.Conv2d(_p, "proj_in", normed, _in, _inner, 1);
                tokens = ops.Permute(conv, 0, 2, 3, 1);
            }
        }
        // `owner` is the op output whose storage `seq` views; views are never disposed themselves.
        var owner = tokens;
        var seq = tokens.Reshape(b, h * w, _inner);
        foreach (var block in Blocks)
        {
            var next = block.Forward(seq, encoderHiddenStates, h, w, rt);
            owner.Dispose();
            owner = seq = next;
        }
        Tensor image;
        using (owner)
        {
            if (_linear)
            {
                using var proj = Nn.Linear(_p, "proj_out", seq, _inner, _in);
                image = ops.Permute(proj.Reshape(b, h, w, _in), 0, 3, 1, 2);
            }
            else
            {
                using var perm = ops.Permute(seq.Reshape(b, h, w, _inner), 0, 3, 1, 2);
                image = Nn.Conv2d(_p, "proj_out", perm, _inner, _in, 1);
            }
        }
        using (image) return ops.Add(image, x);
    }
}
