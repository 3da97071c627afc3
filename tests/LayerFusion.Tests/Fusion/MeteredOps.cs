using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Tests.Fusion;

/// <summary>A pass-through backend that reports a chosen amount of memory and counts uploads and disposals.</summary>
internal sealed class MeteredOps(IOps inner, long availableBytes = long.MaxValue) : IOps, IBackendMemory, IDisposable
{
    int _uploads, _disposals;

    public int Uploads => Volatile.Read(ref _uploads);
    public int Disposals => Volatile.Read(ref _disposals);
    public long AvailableBytes => availableBytes;
    public int ActivationElementBytes => 4;
    public void Dispose() => Interlocked.Increment(ref _disposals);

    public string Name => "metered-" + inner.Name;
    public Tensor FromHost(ReadOnlySpan<float> data, params int[] shape) => (inner.FromHost(data, shape));
    public float[] ToHost(Tensor x) => inner.ToHost((x));
    public Tensor Zeros(params int[] shape) => (inner.Zeros(shape));
    public Tensor Upload(WeightTensor weight)
    {
        Interlocked.Increment(ref _uploads);
        return inner.Upload(weight);
    }
    public Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null) => (inner.Linear((x), (weight), (bias)));
    public Tensor MatMul(Tensor a, Tensor b, bool transposeB = false, float alpha = 1) => (inner.MatMul((a), (b), transposeB, alpha));
    public Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, int stride = 1, int padding = 0) =>
        (inner.Conv2d((x), (weight), (bias), stride, padding));
    public Tensor GroupNorm(Tensor x, int groups, Tensor? gamma, Tensor? beta, float eps, bool fuseSilu = false) =>
        (inner.GroupNorm((x), groups, (gamma), (beta), eps, fuseSilu));
    public Tensor LayerNorm(Tensor x, Tensor? gamma, Tensor? beta, float eps) => (inner.LayerNorm((x), (gamma), (beta), eps));
    public Tensor Silu(Tensor x) => (inner.Silu((x)));
    public Tensor Gelu(Tensor x, bool tanhApproximation = false) => (inner.Gelu((x), tanhApproximation));
    public Tensor QuickGelu(Tensor x) => (inner.QuickGelu((x)));
    public Tensor Geglu(Tensor x) => (inner.Geglu((x)));
    public Tensor Softmax(Tensor x) => (inner.Softmax((x)));
    public Tensor Attention(Tensor q, Tensor k, Tensor v, int heads, Tensor? keyBias = null, bool causal = false) =>
        (inner.Attention((q), (k), (v), heads, (keyBias), causal));
    public PriorAttentionOutputs PriorAttention(Tensor q, Tensor k, Tensor v, int heads, bool sparsity, int column) =>
        inner.PriorAttention(q, k, v, heads, sparsity, column);
    public Tensor DensityPrior(Tensor sparsity) => inner.DensityPrior(sparsity);
    public Tensor ResizeBilinear(Tensor maps, int height, int width, int outHeight, int outWidth) =>
        inner.ResizeBilinear(maps, height, width, outHeight, outWidth);
    public (Tensor Soft, Tensor Hard) PriorMasks(Tensor density, Tensor content, float d) => inner.PriorMasks(density, content, d);
    public (Tensor Fg, Tensor Blend) PriorBlend(Tensor fg, Tensor blend, Tensor soft, Tensor hard) => inner.PriorBlend(fg, blend, soft, hard);
    public Tensor ExclusionKeyBias(Tensor hard, int rows, int openKeys) => inner.ExclusionKeyBias(hard, rows, openKeys);
    public Tensor Upsample2xNearest(Tensor x) => (inner.Upsample2xNearest((x)));
    public Tensor TimestepEmbedding(ReadOnlySpan<float> timesteps, int dim, bool flipSinToCos, float downscaleFreqShift, float scale = 1,
        int maxPeriod = 10000) => (inner.TimestepEmbedding(timesteps, dim, flipSinToCos, downscaleFreqShift, scale, maxPeriod));
    public Tensor Gather(Tensor table, ReadOnlySpan<int> ids) => (inner.Gather((table), ids));
    public Tensor Add(Tensor a, Tensor b) => (inner.Add((a), (b)));
    public Tensor Sub(Tensor a, Tensor b) => (inner.Sub((a), (b)));
    public Tensor Mul(Tensor a, Tensor b) => (inner.Mul((a), (b)));
    public Tensor Affine(Tensor x, float alpha, float beta = 0) => (inner.Affine((x), alpha, beta));
    public Tensor Clamp(Tensor x, float min, float max) => inner.Clamp(x, min, max);
    public StepScalars CreateStepScalars(ReadOnlySpan<float> perStep, int steps, int columns, ReadOnlySpan<float> constants) =>
        inner.CreateStepScalars(perStep, steps, columns, constants);
    public void AdvanceStep(StepScalars scalars) => inner.AdvanceStep(scalars);
    public Tensor TimestepEmbedding(StepScalar first, int count, int repeat, int dim, bool flipSinToCos, float downscaleFreqShift,
        float scale = 1f, int maxPeriod = 10000) => inner.TimestepEmbedding(first, count, repeat, dim, flipSinToCos, downscaleFreqShift, scale, maxPeriod);
    public Tensor StepCombine(Tensor x, StepScalar a, Tensor y, StepScalar b) => inner.StepCombine(x, a, y, b);
    public Tensor StepScale(Tensor x, StepScalar a) => inner.StepScale(x, a);
    public Tensor StepRow(Tensor rows, StepScalars scalars) => inner.StepRow(rows, scalars);
    public Tensor Concat(IReadOnlyList<Tensor> parts, int axis) => (inner.Concat(parts, axis));
    public Tensor Slice(Tensor x, int axis, int start, int length) => (inner.Slice((x), axis, start, length));
    public Tensor Permute(Tensor x, params int[] axes) => (inner.Permute((x), axes));
}
