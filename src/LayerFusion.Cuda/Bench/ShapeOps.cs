using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cuda.Bench;

/// <summary>
/// A backend that computes only shapes, checking each op's shape contract as a real backend would:
/// the real-size models (2.6 B parameters) run through it in milliseconds, so their layouts can be
/// compared with diffusers' without weights. Uploads are recorded by name.
/// </summary>
public sealed class ShapeOps : IOps
{
    sealed class ShapeTensor(ShapeOps ops, int[] shape) : Tensor(shape)
    {
        public override IOps Ops => ops;
        public override Tensor Reshape(params int[] s) => new ShapeTensor(ops, ShapeUtil.Resolve(s, ElementCount));
    }

    readonly Dictionary<string, long[]> _uploaded = new();

    /// <summary>Multiply-add FLOPs (2 per MAC) of the matrix ops, by kind: "linear", "conv", "matmul", "attention",
    /// "prior-stats" (the fused kernel's second score sweep for s; the &lt;EOS&gt; column costs no extra MACs).</summary>
    public Dictionary<string, double> Flops { get; } = new() { ["linear"] = 0, ["conv"] = 0, ["matmul"] = 0, ["attention"] = 0, ["prior-stats"] = 0 };
    /// <summary>Attention FLOPs by key count (self-attention has many keys, cross-attention 77).</summary>
    public Dictionary<int, double> AttentionFlopsByKeys { get; } = new();
    public IReadOnlyDictionary<string, long[]> Uploaded => _uploaded;

    Tensor T(params int[] shape) => new ShapeTensor(this, shape);

    static void Require(bool ok, string op, params Tensor?[] ts)
    {
        if (!ok) throw new ArgumentException($"{op}: bad shapes {string.Join(", ", ts.Select(t => t is null ? "null" : ShapeUtil.Format(t.Shape)))}");
    }

    static void Same(Tensor? a, int n, string op)
    {
        if (a is not null) Require(a.Rank == 1 && a.Dim(0) == n, op, a);
    }

    public string Name => "shapes";
    public Tensor FromHost(ReadOnlySpan<float> data, params int[] shape)
    {
        Require(data.Length == ShapeUtil.ElementCount(shape), "FromHost");
        return T(shape);
    }
    public float[] ToHost(Tensor x) => new float[x.ElementCount];
    public Tensor Zeros(params int[] shape) => T(shape);
    public Tensor Upload(WeightTensor weight)
    {
        _uploaded[weight.Name] = weight.Shape;
        return T(weight.ShapeInt32);
    }

    public Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        Require(weight.Rank == 2 && x.Dim(-1) == weight.Dim(1), "Linear", x, weight);
        Same(bias, weight.Dim(0), "Linear bias");
        var s = (int[])x.Shape.Clone();
        s[^1] = weight.Dim(0);
        Flops["linear"] += 2.0 * (x.ElementCount / x.Dim(-1)) * weight.Dim(0) * weight.Dim(1);
        return T(s);
    }

    public Tensor MatMul(Tensor a, Tensor b, bool transposeB = false, float alpha = 1)
    {
        int k = transposeB ? b.Dim(-1) : b.Dim(-2), n = transposeB ? b.Dim(-2) : b.Dim(-1);
        Require(a.Rank == b.Rank && a.Dim(-1) == k && a.Shape[..^2].SequenceEqual(b.Shape[..^2]), "MatMul", a, b);
        var s = (int[])a.Shape.Clone();
        s[^1] = n;
        return T(s);
    }

    public Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, int stride = 1, int padding = 0)
    {
        Require(x.Rank == 4 && weight.Rank == 4 && x.Dim(1) == weight.Dim(1), "Conv2d", x, weight);
        Same(bias, weight.Dim(0), "Conv2d bias");
        int h = (x.Dim(2) + 2 * padding - weight.Dim(2)) / stride + 1, w = (x.Dim(3) + 2 * padding - weight.Dim(3)) / stride + 1;
        Require(h > 0 && w > 0, "Conv2d", x, weight);
        Flops["conv"] += 2.0 * x.Dim(0) * h * w * weight.ElementCount;
        return T(x.Dim(0), weight.Dim(0), h, w);
    }

    public Tensor GroupNorm(Tensor x, int groups, Tensor? gamma, Tensor? beta, float eps, bool fuseSilu = false)
    {
        Require(x.Rank >= 2 && groups > 0 && x.Dim(1) % groups == 0, "GroupNorm", x);
        Same(gamma, x.Dim(1), "GroupNorm gamma");
        Same(beta, x.Dim(1), "GroupNorm beta");
        return T(x.Shape);
    }

    public Tensor LayerNorm(Tensor x, Tensor? gamma, Tensor? beta, float eps)
    {
        Same(gamma, x.Dim(-1), "LayerNorm gamma");
        Same(beta, x.Dim(-1), "LayerNorm beta");
        return T(x.Shape);
    }

    public Tensor Silu(Tensor x) => T(x.Shape);
    public Tensor Gelu(Tensor x, bool tanhApproximation = false) => T(x.Shape);
    public Tensor QuickGelu(Tensor x) => T(x.Shape);
    public Tensor Softmax(Tensor x) => T(x.Shape);

    public Tensor Geglu(Tensor x)
    {
        Require(x.Dim(-1) % 2 == 0, "Geglu", x);
        var s = (int[])x.Shape.Clone();
        s[^1] /= 2;
        return T(s);
    }

    public Tensor Attention(Tensor q, Tensor k, Tensor v, int heads, Tensor? keyBias = null, bool causal = false)
    {
        Require(q.Rank == 3 && k.Rank == 3 && v.Rank == 3 && heads > 0 && q.Dim(2) % heads == 0 && k.Dim(2) == q.Dim(2)
            && v.Shape.SequenceEqual(k.Shape) && k.Dim(0) == q.Dim(0), "Attention", q, k, v);
        double f = 2.0 * 2.0 * q.Dim(0) * q.Dim(1) * k.Dim(1) * q.Dim(2);
        Flops["attention"] += f;
        AttentionFlopsByKeys[k.Dim(1)] = AttentionFlopsByKeys.GetValueOrDefault(k.Dim(1)) + f;
        return T(q.Shape);
    }

    public Tensor Upsample2xNearest(Tensor x)
    {
        Require(x.Rank == 4, "Upsample2xNearest", x);
        return T(x.Dim(0), x.Dim(1), 2 * x.Dim(2), 2 * x.Dim(3));
    }

    public Tensor TimestepEmbedding(ReadOnlySpan<float> timesteps, int dim, bool flipSinToCos, float downscaleFreqShift, float scale = 1,
        int maxPeriod = 10000) => T(timesteps.Length, dim);

    public Tensor Gather(Tensor table, ReadOnlySpan<int> ids) => T(ids.Length, table.Dim(1));

    Tensor Broadcast(Tensor a, Tensor b, string op)
    {
        bool ok = b.Rank <= a.Rank;
        for (int i = 1; ok && i <= b.Rank; i++) ok = b.Dim(-i) == a.Dim(-i) || b.Dim(-i) == 1;
        Require(ok, op, a, b);
        return T(a.Shape);
    }

    public Tensor Add(Tensor a, Tensor b) => Broadcast(a, b, "Add");
    public Tensor Sub(Tensor a, Tensor b) => Broadcast(a, b, "Sub");
    public Tensor Mul(Tensor a, Tensor b) => Broadcast(a, b, "Mul");
    public Tensor Affine(Tensor x, float alpha, float beta = 0) => T(x.Shape);
    public Tensor Clamp(Tensor x, float min, float max) => T(x.Shape);

    public Tensor Concat(IReadOnlyList<Tensor> parts, int axis)
    {
        var s = (int[])parts[0].Shape.Clone();
        int ax = axis < 0 ? axis + s.Length : axis;
        s[ax] = 0;
        foreach (var p in parts)
        {
            for (int i = 0; i < s.Length; i++)
                Require(p.Rank == s.Length && (i == ax || p.Dim(i) == s[i]), "Concat", parts.ToArray());
            s[ax] += p.Dim(ax);
        }
        return T(s);
    }

    public Tensor Slice(Tensor x, int axis, int start, int length)
    {
        int ax = axis < 0 ? axis + x.Rank : axis;
        Require(start >= 0 && length >= 0 && start + length <= x.Dim(ax), "Slice", x);
        var s = (int[])x.Shape.Clone();
        s[ax] = length;
        return T(s);
    }

    public Tensor Permute(Tensor x, params int[] axes)
    {
        Require(axes.Length == x.Rank && axes.Order().SequenceEqual(Enumerable.Range(0, x.Rank)), "Permute", x);
        return T(axes.Select(a => x.Dim(a)).ToArray());
    }

    // ---- LayerFusion prior ops -----------------------------------------------------------------

    public PriorAttentionOutputs PriorAttention(Tensor q, Tensor k, Tensor v, int heads, bool sparsity, int column)
    {
        var o = Attention(q, k, v, heads);
        Require(column < k.Dim(1), "PriorAttention column", k);
        if (sparsity) Flops["prior-stats"] += 2.0 * q.Dim(0) * q.Dim(1) * k.Dim(1) * q.Dim(2);
        return new PriorAttentionOutputs(o, sparsity ? T(q.Dim(0), q.Dim(1)) : null, column >= 0 ? T(q.Dim(0), q.Dim(1)) : null);
    }

    public Tensor DensityPrior(Tensor sparsity)
    {
        Require(sparsity.Rank == 2, "DensityPrior", sparsity);
        return T(sparsity.Shape);
    }

    public Tensor ResizeBilinear(Tensor maps, int height, int width, int outHeight, int outWidth)
    {
        Require(maps.Rank == 2 && (long)height * width == maps.Dim(1) && outHeight > 0 && outWidth > 0, "ResizeBilinear", maps);
        return T(maps.Dim(0), outHeight * outWidth);
    }

    public (Tensor Soft, Tensor Hard) PriorMasks(Tensor density, Tensor content, float d)
    {
        Require(density.Rank == 2 && density.Shape.SequenceEqual(content.Shape), "PriorMasks", density, content);
        return (T(density.Shape), T(density.Shape));
    }

    public (Tensor Fg, Tensor Blend) PriorBlend(Tensor fg, Tensor blend, Tensor soft, Tensor hard)
    {
        Require(fg.Rank == 3 && fg.Shape.SequenceEqual(blend.Shape) && soft.ElementCount == fg.Dim(1) && hard.ElementCount == fg.Dim(1),
            "PriorBlend", fg, blend, soft, hard);
        return (T(fg.Shape), T(fg.Shape));
    }

    public Tensor ExclusionKeyBias(Tensor hard, int rows, int openKeys)
    {
        Require(rows > 0 && openKeys >= 0, "ExclusionKeyBias", hard);
        return T(rows, openKeys + (int)hard.ElementCount);
    }

    sealed class ShapeStepScalars(int steps, int columns, int constants) : StepScalars(steps, columns, constants);

    public StepScalars CreateStepScalars(ReadOnlySpan<float> perStep, int steps, int columns, ReadOnlySpan<float> constants)
    {
        StepScalars.CheckShape(perStep, steps, columns);
        return new ShapeStepScalars(steps, columns, constants.Length);
    }

    public void AdvanceStep(StepScalars scalars) { }

    public Tensor TimestepEmbedding(StepScalar first, int count, int repeat, int dim, bool flipSinToCos, float downscaleFreqShift,
        float scale = 1f, int maxPeriod = 10000)
    {
        first.Table.CheckRun(first, count, "TimestepEmbedding");
        return T(count * repeat, dim);
    }

    public Tensor StepCombine(Tensor x, StepScalar a, Tensor y, StepScalar b)
    {
        Require(x.Shape.SequenceEqual(y.Shape), "StepCombine", x, y);
        return T(x.Shape);
    }

    public Tensor StepScale(Tensor x, StepScalar a) => T(x.Shape);

    public Tensor StepRow(Tensor rows, StepScalars scalars)
    {
        Require(rows.Rank >= 2 && rows.Dim(0) == scalars.Steps, "StepRow", rows);
        return T(rows.Shape[1..]);
    }
}
