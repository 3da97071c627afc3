using LayerFusion.Core.Tensors;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Tests.CudaModels;

/// <summary>
/// A host-side stand-in for CudaOps, for machines without a GPU: it computes with the CPU backend,
/// but (1) rejects every call CudaOps would reject (the same argument checks, its own static
/// BroadcastMap/PermuteMap, the rank limit of its index maps, the attention kernel's shared memory
/// against an H100's opt-in limit) and tensors of another backend instance (CudaOps' Dev check, which
/// catches a tensor of the fp16 backend handed to the fp32 VAE backend); (2) rounds every stored value
/// (uploads, FromHost, each op's output) to the storage type, as CudaOps' fp16/bf16 buffers do.
/// It cannot see kernel bugs; it shows the model graphs stay inside the CUDA backend's contract and
/// what fp16 storage alone costs in accuracy. With <paramref name="roundStorage"/> false it only
/// checks (over a shape-only inner backend, for the real-size graphs).
/// </summary>
internal sealed class CudaContractOps(IOps inner, StorageType storage, bool roundStorage = true) : IOps
{
    /// <summary>cudaDevAttrMaxSharedMemoryPerBlockOptin on sm_90 (227 KiB).</summary>
    public const int H100SharedOptin = 232448;

    sealed class T(CudaContractOps owner, Tensor inner) : Tensor(inner.Shape)
    {
        public CudaContractOps Owner { get; } = owner;
        public Tensor Inner { get; } = inner;
        public override IOps Ops => Owner;
        public override Tensor Reshape(params int[] shape) => new T(Owner, Inner.Reshape(shape));
        public override void Dispose()
        {
            Inner.Dispose();
            base.Dispose();
        }
    }

    readonly HashSet<string> _called = new();

    public StorageType Storage => storage;

    /// <summary>The IOps members the graphs called on this instance.</summary>
    public IReadOnlySet<string> Called { get { lock (_called) return _called.ToHashSet(); } }

    public string Name => $"cuda-contract-{storage.ToString().ToLowerInvariant()}";

    Tensor In(Tensor t) =>
        t is T c && ReferenceEquals(c.Owner, this) ? c.Inner : throw new ArgumentException($"{t} does not belong to backend {Name}");

    Tensor? InOpt(Tensor? t) => t is null ? null : In(t);

    Tensor Out(string op, Tensor y)
    {
        lock (_called) _called.Add(op);
        if (storage == StorageType.F32 || !roundStorage) return new T(this, y);
        var v = inner.ToHost(y);
        var shape = y.Shape;
        y.Dispose();
        return new T(this, inner.FromHost(HostConvert.Decode(HostConvert.Encode(v, storage), storage), shape));
    }

    static void Require(bool ok, string message)
    {
        if (!ok) throw new ArgumentException("CudaOps would reject this: " + message);
    }

    public Tensor FromHost(ReadOnlySpan<float> data, params int[] shape) =>
        Out(nameof(FromHost), roundStorage ? inner.FromHost(HostConvert.Decode(HostConvert.Encode(data, storage), storage), shape) : inner.FromHost(data, shape));

    public float[] ToHost(Tensor x) => inner.ToHost(In(x));
    public Tensor Zeros(params int[] shape) => Out(nameof(Zeros), inner.Zeros(shape));

    public Tensor Upload(WeightTensor weight) => Out(nameof(Upload), inner.Upload(weight));

    public Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        var (xs, w) = (In(x), In(weight));
        Require(w.Rank == 2, $"linear weight {ShapeUtil.Format(w.Shape)}");
        Require(xs.Rank > 0 && xs.Shape[^1] == w.Shape[1], $"linear input {ShapeUtil.Format(xs.Shape)} vs weight {ShapeUtil.Format(w.Shape)}");
        Require(bias is null || In(bias).ElementCount == w.Shape[0], "linear bias size");
        return Out(nameof(Linear), inner.Linear(xs, w, InOpt(bias)));
    }

    public Tensor MatMul(Tensor a, Tensor b, bool transposeB = false, float alpha = 1f)
    {
        var (x, z) = (In(a), In(b));
        Require(x.Rank >= 2 && z.Rank == x.Rank, $"matmul ranks {ShapeUtil.Format(x.Shape)} @ {ShapeUtil.Format(z.Shape)}");
        Require(x.Shape.AsSpan(0, x.Rank - 2).SequenceEqual(z.Shape.AsSpan(0, z.Rank - 2)),
            $"matmul leading dims (no broadcasting on the GPU) {ShapeUtil.Format(x.Shape)} @ {ShapeUtil.Format(z.Shape)}");
        Require((transposeB ? z.Shape[^1] : z.Shape[^2]) == x.Shape[^1], "matmul inner dims");
        return Out(nameof(MatMul), inner.MatMul(x, z, transposeB, alpha));
    }

    public Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, int stride = 1, int padding = 0)
    {
        var (xs, w) = (In(x), In(weight));
        Require(xs.Rank == 4 && w.Rank == 4 && xs.Shape[1] == w.Shape[1], $"conv2d {ShapeUtil.Format(xs.Shape)} * {ShapeUtil.Format(w.Shape)}");
        Require(stride >= 1 && padding >= 0, "conv2d stride/padding");
        Require(bias is null || In(bias).ElementCount == w.Shape[0], "conv2d bias size");
        return Out(nameof(Conv2d), inner.Conv2d(xs, w, InOpt(bias), stride, padding));
    }

    public Tensor GroupNorm(Tensor x, int groups, Tensor? gamma, Tensor? beta, float eps, bool fuseSilu = false)
    {
        var xs = In(x);
        Require(xs.Rank >= 2 && groups > 0 && xs.Shape[1] % groups == 0, $"groupnorm {ShapeUtil.Format(xs.Shape)} in {groups} groups");
        Require(gamma is null || In(gamma).ElementCount == xs.Shape[1], "groupnorm gamma size");
        Require(beta is null || In(beta).ElementCount == xs.Shape[1], "groupnorm beta size");
        return Out(nameof(GroupNorm), inner.GroupNorm(xs, groups, InOpt(gamma), InOpt(beta), eps, fuseSilu));
    }

    public Tensor LayerNorm(Tensor x, Tensor? gamma, Tensor? beta, float eps)
    {
        var xs = In(x);
        Require(gamma is null || In(gamma).ElementCount == xs.Shape[^1], "layernorm gamma size");
        Require(beta is null || In(beta).ElementCount == xs.Shape[^1], "layernorm beta size");
        return Out(nameof(LayerNorm), inner.LayerNorm(xs, InOpt(gamma), InOpt(beta), eps));
    }

    public Tensor Silu(Tensor x) => Out(nameof(Silu), inner.Silu(In(x)));
    public Tensor Gelu(Tensor x, bool tanhApproximation = false) => Out(nameof(Gelu), inner.Gelu(In(x), tanhApproximation));
    public Tensor QuickGelu(Tensor x) => Out(nameof(QuickGelu), inner.QuickGelu(In(x)));

    public Tensor Geglu(Tensor x)
    {
        var xs = In(x);
        Require(xs.Shape[^1] % 2 == 0, "geglu odd width");
        return Out(nameof(Geglu), inner.Geglu(xs));
    }

    public Tensor Softmax(Tensor x) => Out(nameof(Softmax), inner.Softmax(In(x)));

    public Tensor Attention(Tensor q, Tensor k, Tensor v, int heads, Tensor? keyBias = null, bool causal = false)
    {
        var (qs, ks, vs) = (In(q), In(k), In(v));
        Require(qs.Rank == 3 && ks.Rank == 3 && vs.Rank == 3, "attention ranks");
        int b = qs.Shape[0], c = qs.Shape[2], n = ks.Shape[1];
        Require(heads > 0 && c % heads == 0, $"attention width {c} / {heads} heads");
        Require(ks.Shape[0] == b && vs.Shape[0] == b && ks.Shape[2] == c && vs.Shape[2] == c && vs.Shape[1] == n, "attention shapes");
        Require(keyBias is null || In(keyBias).ElementCount == (long)b * n, "attention key bias size");
        int d = c / heads;
        int shared = KernelCatalog.AttentionSharedBytes(d, KernelCatalog.RowsPerWarp(d));
        Require(shared <= H100SharedOptin, $"attention head dim {d} needs {shared} bytes of shared memory");
        Require(heads <= 65535 && b <= 65535, "attention grid y/z");
        return Out(nameof(Attention), inner.Attention(qs, ks, vs, heads, InOpt(keyBias), causal));
    }

    public Tensor Upsample2xNearest(Tensor x)
    {
        var xs = In(x);
        Require(xs.Rank == 4, "upsample rank");
        return Out(nameof(Upsample2xNearest), inner.Upsample2xNearest(xs));
    }

    public Tensor TimestepEmbedding(ReadOnlySpan<float> timesteps, int dim, bool flipSinToCos, float downscaleFreqShift,
        float scale = 1f, int maxPeriod = 10000) =>
        Out(nameof(TimestepEmbedding), inner.TimestepEmbedding(timesteps, dim, flipSinToCos, downscaleFreqShift, scale, maxPeriod));

    public Tensor Gather(Tensor table, ReadOnlySpan<int> ids)
    {
        var tb = In(table);
        Require(tb.Rank == 2, "gather table rank");
        return Out(nameof(Gather), inner.Gather(tb, ids));
    }

    Tensor Binary(string op, Tensor a, Tensor b, Func<Tensor, Tensor, Tensor> f)
    {
        var (x, z) = (In(a), In(b));
        // CudaOps' output has a's shape and b broadcasts into it (never the other way round)
        try { CudaOps.BroadcastMap(x.Shape, z.Shape); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException) { Require(false, $"{op}: {e.Message}"); }
        var y = f(x, z);
        Require(y.Shape.AsSpan().SequenceEqual(x.Shape), $"{op}: result {ShapeUtil.Format(y.Shape)} is not a's shape {ShapeUtil.Format(x.Shape)}");
        return Out(op, y);
    }

    public Tensor Add(Tensor a, Tensor b) => Binary(nameof(Add), a, b, inner.Add);
    public Tensor Sub(Tensor a, Tensor b) => Binary(nameof(Sub), a, b, inner.Sub);
    public Tensor Mul(Tensor a, Tensor b) => Binary(nameof(Mul), a, b, inner.Mul);
    public Tensor Affine(Tensor x, float alpha, float beta = 0f) => Out(nameof(Affine), inner.Affine(In(x), alpha, beta));
    public Tensor Clamp(Tensor x, float min, float max) => Out(nameof(Clamp), inner.Clamp(In(x), min, max));
    public StepScalars CreateStepScalars(ReadOnlySpan<float> perStep, int steps, int columns, ReadOnlySpan<float> constants)
    {
        lock (_called) _called.Add(nameof(CreateStepScalars));
        return inner.CreateStepScalars(perStep, steps, columns, constants);
    }
    public void AdvanceStep(StepScalars scalars)
    {
        lock (_called) _called.Add(nameof(AdvanceStep));
        inner.AdvanceStep(scalars);
    }
    public Tensor TimestepEmbedding(StepScalar first, int count, int repeat, int dim, bool flipSinToCos, float downscaleFreqShift,
        float scale = 1f, int maxPeriod = 10000) =>
        Out(nameof(TimestepEmbedding), inner.TimestepEmbedding(first, count, repeat, dim, flipSinToCos, downscaleFreqShift, scale, maxPeriod));
    public Tensor StepCombine(Tensor x, StepScalar a, Tensor y, StepScalar b) => Out(nameof(StepCombine), inner.StepCombine(In(x), a, In(y), b));
    public Tensor StepScale(Tensor x, StepScalar a) => Out(nameof(StepScale), inner.StepScale(In(x), a));
    public Tensor StepRow(Tensor rows, StepScalars scalars) => Out(nameof(StepRow), inner.StepRow(In(rows), scalars));

    public Tensor Concat(IReadOnlyList<Tensor> parts, int axis)
    {
        Require(parts.Count > 0, "concat of nothing");
        var ins = parts.Select(In).ToArray();
        int rank = ins[0].Rank, ax = axis < 0 ? axis + rank : axis;
        Require(ax >= 0 && ax < rank, "concat axis");
        foreach (var t in ins)
            for (int i = 0; i < rank; i++)
                Require(t.Rank == rank && (i == ax || t.Shape[i] == ins[0].Shape[i]), "concat shapes");
        return Out(nameof(Concat), inner.Concat(ins, axis));
    }

    public Tensor Slice(Tensor x, int axis, int start, int length) => Out(nameof(Slice), inner.Slice(In(x), axis, start, length));

    public Tensor Permute(Tensor x, params int[] axes)
    {
        var xs = In(x);
        try { CudaOps.PermuteMap(xs.Shape, axes); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException) { Require(false, $"permute: {e.Message}"); }
        return Out(nameof(Permute), inner.Permute(xs, axes));
    }

    // ---- LayerFusion prior ops (CudaOps.Priors.cs' checks) ------------------------------------------

    public PriorAttentionOutputs PriorAttention(Tensor q, Tensor k, Tensor v, int heads, bool sparsity, int column)
    {
        var (qs, ks, vs) = (In(q), In(k), In(v));
        Require(qs.Rank == 3 && ks.Rank == 3, "prior attention ranks");
        int c = qs.Shape[2], n = ks.Shape[1];
        Require(heads > 0 && c % heads == 0 && n >= 1 && column < n, "prior attention heads / keys / column");
        Require(2 * heads * 4 * 4 <= H100SharedOptin, "prior statistics shared memory");
        Require(ks.Shape[0] <= 65535, "prior statistics grid y");
        var r = inner.PriorAttention(qs, ks, vs, heads, sparsity, column);
        return new PriorAttentionOutputs(Out(nameof(PriorAttention), r.Output), r.Sparsity is null ? null : Out(nameof(PriorAttention), r.Sparsity),
            r.Column is null ? null : Out(nameof(PriorAttention), r.Column));
    }

    public Tensor DensityPrior(Tensor sparsity)
    {
        var s = In(sparsity);
        Require(s.Rank == 2, "density prior vectors [B, M]");
        return Out(nameof(DensityPrior), inner.DensityPrior(s));
    }

    public Tensor ResizeBilinear(Tensor maps, int height, int width, int outHeight, int outWidth) =>
        Out(nameof(ResizeBilinear), inner.ResizeBilinear(In(maps), height, width, outHeight, outWidth));

    public (Tensor Soft, Tensor Hard) PriorMasks(Tensor density, Tensor content, float d)
    {
        var (s, h) = inner.PriorMasks(In(density), In(content), d);
        return (Out(nameof(PriorMasks), s), Out(nameof(PriorMasks), h));
    }

    public (Tensor Fg, Tensor Blend) PriorBlend(Tensor fg, Tensor blend, Tensor soft, Tensor hard)
    {
        var (f, b) = inner.PriorBlend(In(fg), In(blend), In(soft), In(hard));
        return (Out(nameof(PriorBlend), f), Out(nameof(PriorBlend), b));
    }

    public Tensor ExclusionKeyBias(Tensor hard, int rows, int openKeys) =>
        Out(nameof(ExclusionKeyBias), inner.ExclusionKeyBias(In(hard), rows, openKeys));
}
