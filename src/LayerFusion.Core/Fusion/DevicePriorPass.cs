using LayerFusion.Core.Models.Blocks;
using LayerFusion.Core.Tensors;

namespace LayerFusion.Core.Fusion;

/// <summary>
/// The structure prior of one step as backend tensors: s and s' [1, M] at the prior layer's grid, and
/// s' resized to each layer's grid once per step (cached by grid).
/// </summary>
public sealed class DeviceStructurePrior : IDisposable
{
    readonly Dictionary<(int, int), Tensor> _resized = new();

    public DeviceStructurePrior(Tensor sparsity, Tensor density, int height, int width)
    {
        Sparsity = sparsity;
        Density = density;
        Height = height;
        Width = width;
    }

    public Tensor Sparsity { get; }
    public Tensor Density { get; }
    public int Height { get; }
    public int Width { get; }

    /// <summary>s' at a layer's token grid, [1, height * width]; owned by this prior (do not dispose).</summary>
    public Tensor DensityAt(int height, int width)
    {
        if (height == Height && width == Width) return Density;
        if (!_resized.TryGetValue((height, width), out var t))
            _resized[(height, width)] = t = Density.Ops.ResizeBilinear(Density, Height, Width, height, width);
        return t;
    }

    /// <summary>The host form (for --dump-priors and tests): one read of s and s'.</summary>
    public StructurePrior ToHost() =>
        new(Sparsity.Ops.ToHost(Sparsity), Density.Ops.ToHost(Density), Height, Width);

    public void Dispose()
    {
        Sparsity.Dispose();
        Density.Dispose();
        foreach (var t in _resized.Values) t.Dispose();
        _resized.Clear();
    }
}

/// <summary>
/// The prior pass (Alg. 1 and 2) on the backend: the FG cond branch alone, plain attention, with s
/// from <see cref="IOps.PriorAttention"/> at the prior layer and c (the &lt;EOS&gt; column) at every
/// cross-attention layer, all as device tensors. <see cref="IsComplete"/> turns true once every
/// output the interaction pass needs exists, so the UNet can stop there. The host form
/// (<see cref="StructurePriorProcessor"/>) is the tests' float64-checked reference.
/// </summary>
public sealed class DevicePriorPass : IAttentionProcessor, IDisposable
{
    readonly Dictionary<string, Tensor> _content = new();
    readonly HashSet<string> _needed;

    /// <param name="neededContent">cross-attention site paths whose c the interaction pass reads (attn1 masks).</param>
    /// <param name="captureProbabilities">also materialize the prior layer's head-mean map on the host (dump step, small models).</param>
    public DevicePriorPass(string priorLayer, int eosIndex, IEnumerable<string> neededContent, bool captureProbabilities = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(eosIndex);
        PriorLayer = priorLayer;
        EosIndex = eosIndex;
        _needed = neededContent.ToHashSet(StringComparer.Ordinal);
        CaptureProbabilities = captureProbabilities;
    }

    public string PriorLayer { get; }
    public int EosIndex { get; }
    public bool CaptureProbabilities { get; }
    public DeviceStructurePrior? Prior { get; private set; }
    public float[]? PriorProbabilities { get; private set; }
    /// <summary>c [1, M] per cross-attention site path; owned by this pass.</summary>
    public IReadOnlyDictionary<string, Tensor> Content => _content;

    /// <summary>The prior layer and every needed content site have been computed.</summary>
    public bool IsComplete => Prior is not null && _needed.All(_content.ContainsKey);

    /// <summary>Hands s/s' over (the caller then owns it) and frees the content priors.</summary>
    public DeviceStructurePrior TakePrior()
    {
        var p = Prior ?? throw new InvalidOperationException($"the prior pass never reached {PriorLayer}");
        Prior = null;
        return p;
    }

    public Tensor Process(AttentionCall call)
    {
        if (call.Batch != 1) throw new ArgumentException($"the prior pass runs the FG cond branch alone (batch 1), got {call.Batch}");
        var site = call.Site;
        var w = call.Weights;
        var ops = call.Ops;
        using var q = w.Query(call.Hidden);
        using var k = w.Key(call.KeyValueSource);
        using var v = w.Value(call.KeyValueSource);
        bool prior = site.Path == PriorLayer, cross = site.Kind == AttentionKind.Cross;
        if (cross && EosIndex >= k.Dim(1))
            throw new ArgumentException($"{site.Path}: <EOS> position {EosIndex} is outside the {k.Dim(1)} context tokens");
        if (!prior && !cross)
        {
            using var plain = ops.Attention(q, k, v, site.Heads);
            return w.Out(plain);
        }
        if (prior && CaptureProbabilities)
            PriorProbabilities = AttentionStatistics.HeadMeanProbabilities(ops.ToHost(q), ops.ToHost(k), q.Dim(1), k.Dim(1), site.Heads, site.HeadDim);
        // the statistics are kept (owned here); only the attention output is released after to_out
        var r = ops.PriorAttention(q, k, v, site.Heads, sparsity: prior, column: cross ? EosIndex : -1);
        using (r.Output)
        {
            if (prior)
            {
                Prior?.Dispose();
                Prior = new DeviceStructurePrior(r.Sparsity!, ops.DensityPrior(r.Sparsity!), call.Height, call.Width);
            }
            if (cross)
            {
                if (_content.Remove(site.Path, out var old)) old.Dispose();
                _content[site.Path] = r.Column!;
            }
            return w.Out(r.Output);
        }
    }

    public void Dispose()
    {
        Prior?.Dispose();
        Prior = null;
        foreach (var t in _content.Values) t.Dispose();
        _content.Clear();
    }
}
