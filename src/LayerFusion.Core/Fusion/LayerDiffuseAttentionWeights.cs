using LayerFusion.Core.Models;
using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Fusion;

/// <summary>
/// The LayerDiffuse foreground model's attention projections: W + dW where the file offsets a
/// projection (<see cref="LayerFusion.WeightsLoader.LayerDiffuse.LayerDiffuseAttention.Merge"/>'s
/// output), the base model's own tensors everywhere else, so only offset projections take extra memory.
/// </summary>
public sealed class LayerDiffuseAttentionWeights : IAttentionWeights
{
    readonly IAttentionWeights _base;
    readonly ParameterStore _merged;
    readonly Dictionary<string, AttentionProjections> _cache = new();

    public LayerDiffuseAttentionWeights(IAttentionWeights baseWeights, IOps ops, IReadOnlyDictionary<string, WeightTensor> merged)
    {
        _base = baseWeights;
        _merged = new ParameterStore(ops, merged, "unet-layerdiffuse");
        OffsetCount = merged.Count;
    }

    /// <summary>How many parameters the LayerDiffuse file changed.</summary>
    public int OffsetCount { get; }

    public AttentionProjections For(AttentionSite site)
    {
        lock (_cache)
        {
            if (_cache.TryGetValue(site.Path, out var cached)) return cached;
            var b = _base.For(site);
            Tensor Pick(string name, Tensor baseTensor) => _merged.Contains($"{site.Path}.{name}") ? _merged[$"{site.Path}.{name}"] : baseTensor;
            Tensor? PickOptional(string name, Tensor? baseTensor) => _merged.Contains($"{site.Path}.{name}") ? _merged[$"{site.Path}.{name}"] : baseTensor;
            var p = new AttentionProjections(
                Pick("to_q.weight", b.ToQ), PickOptional("to_q.bias", b.ToQBias),
                Pick("to_k.weight", b.ToK), PickOptional("to_k.bias", b.ToKBias),
                Pick("to_v.weight", b.ToV), PickOptional("to_v.bias", b.ToVBias),
                Pick("to_out.0.weight", b.ToOut), PickOptional("to_out.0.bias", b.ToOutBias));
            _cache[site.Path] = p;
            return p;
        }
    }
}
