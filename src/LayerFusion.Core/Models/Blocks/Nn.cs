using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Models.Blocks;

/// <summary>
/// Layer helpers that check a checkpoint tensor's shape against what the config implies before
/// using it, so a mismatched checkpoint is one clear user error rather than a failing op deep inside.
/// </summary>
public static class Nn
{
    public static Tensor CheckedWeight(ParameterStore p, string name, params int[] expected)
    {
        var shape = p.ShapeOf(name);
        if (shape.Length != expected.Length || !shape.Select(d => (long)d).SequenceEqual(expected.Select(d => (long)d)))
            throw new UserInputException(
                $"{p.Component}: weight '{p.FullName(name)}' has shape [{string.Join(", ", shape)}], the config implies [{string.Join(", ", expected)}]");
        return p[name];
    }

    public static Tensor? CheckedBias(ParameterStore p, string name, int size)
        => p.Contains(name) ? CheckedWeight(p, name, size) : null;

    /// <summary>torch.nn.Linear(inFeatures, outFeatures) named <paramref name="name"/> (weight, optional bias).</summary>
    public static Tensor Linear(ParameterStore p, string name, Tensor x, int inFeatures, int outFeatures)
    {
        var s = p.Scope(name);
        return x.Ops.Linear(x, CheckedWeight(s, "weight", outFeatures, inFeatures), CheckedBias(s, "bias", outFeatures));
    }

    /// <summary>torch.nn.Conv2d(inChannels, outChannels, kernel, stride, padding) named <paramref name="name"/>.</summary>
    public static Tensor Conv2d(ParameterStore p, string name, Tensor x, int inChannels, int outChannels, int kernel, int stride = 1, int padding = 0)
    {
        var s = p.Scope(name);
        return x.Ops.Conv2d(x, CheckedWeight(s, "weight", outChannels, inChannels, kernel, kernel), CheckedBias(s, "bias", outChannels), stride, padding);
    }

    /// <summary>torch.nn.GroupNorm(groups, channels, eps, affine=True) named <paramref name="name"/>, optionally followed by SiLU.</summary>
    public static Tensor GroupNorm(ParameterStore p, string name, Tensor x, int groups, int channels, float eps, bool silu = false)
    {
        var s = p.Scope(name);
        return x.Ops.GroupNorm(x, groups, CheckedWeight(s, "weight", channels), CheckedWeight(s, "bias", channels), eps, silu);
    }

    /// <summary>torch.nn.LayerNorm(dim, eps, elementwise_affine=True) named <paramref name="name"/>.</summary>
    public static Tensor LayerNorm(ParameterStore p, string name, Tensor x, int dim, float eps)
    {
        var s = p.Scope(name);
        return x.Ops.LayerNorm(x, CheckedWeight(s, "weight", dim), CheckedWeight(s, "bias", dim), eps);
    }

    /// <summary>The module path of a scope ("down_blocks.1.attentions.0"), as diffusers names modules.</summary>
    public static string PathOf(ParameterStore p) => p.FullName("").TrimEnd('.');

    /// <summary>diffusers get_activation: only SiLU ("silu"/"swish") occurs in the models we run.</summary>
    public static void RequireSilu(string actFn, string component)
    {
        if (actFn is not ("silu" or "swish"))
            throw new UserInputException($"{component}: act_fn '{actFn}' is not supported (only silu)");
    }

    /// <summary>diffusers get_activation by (lower-case) name, for the names UNetConfig accepts.</summary>
    public static Tensor Activation(Tensor x, string name) => name switch
    {
        "silu" or "swish" => x.Ops.Silu(x),
        "gelu" => x.Ops.Gelu(x),
        _ => throw new UserInputException($"activation '{name}' is not supported (silu, swish, gelu)"),
    };

    public static void RequireDivisible(int channels, int groups, string what)
    {
        if (groups <= 0 || channels % groups != 0)
            throw new UserInputException($"{what}: {channels} channels are not divisible into {groups} groups");
    }
}

/// <summary>What attention computes for one model call: the processor and where projections come from.</summary>
public readonly record struct AttentionRuntime(IAttentionProcessor Processor, IAttentionWeights Weights);
