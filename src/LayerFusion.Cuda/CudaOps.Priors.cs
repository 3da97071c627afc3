using LayerFusion.Core.Fusion;
using LayerFusion.Core.Tensors;
using LayerFusion.Cuda.Fusion;
using LayerFusion.Cuda.Runtime;

namespace LayerFusion.Cuda;

// The LayerFusion prior ops (IOps.Priors.cs) on the device. Per-query vectors are tensors in this
// backend's storage type. The attention with statistics runs the fused tensor-core kernel
// (attention_priors.cu through Fusion.CudaPriorAttention) where it applies (fp16/bf16, sm_80+,
// head dim a multiple of 16 up to 128, 16-byte rows); elsewhere the plain attention kernel plus
// prior_ops.cu's CUDA-core statistics kernel. Nothing here copies to or from the host.
public sealed unsafe partial class CudaOps : IStepArena
{
    const int StatsWarps = 4;

    Tensor IStepArena.Persist(Tensor x) => Persist(x);
    void IStepArena.CopyInto(Tensor destination, Tensor source) => CopyInto(destination, source);
    CudaPriorAttention? _priorAttention;

    void DisposePriorOps() => _priorAttention?.Dispose();

    /// <summary>Whether PriorAttention of this shape takes the fused tensor-core kernel.</summary>
    public bool UsesFusedPriorKernel(int headDim, int width) =>
        Storage != StorageType.F32 && Device.Arch >= 80 && headDim % 16 == 0 && headDim <= 128 && width % 8 == 0;

    public PriorAttentionOutputs PriorAttention(Tensor q, Tensor k, Tensor v, int heads, bool sparsity, int column)
    {
        var qs = Dev(q);
        var ks = Dev(k);
        var vs = Dev(v);
        if (qs.Rank != 3 || ks.Rank != 3) throw new ArgumentException("prior attention expects q [B, M, H*D], k and v [B, N, H*D]");
        int b = qs.Shape[0], m = qs.Shape[1], c = qs.Shape[2], n = ks.Shape[1];
        if (heads <= 0 || c % heads != 0) throw new ArgumentException($"prior attention: width {c} not divisible by {heads} heads");
        if (n < 1) throw new ArgumentException("prior attention needs at least one key");
        if (column >= n) throw new ArgumentOutOfRangeException(nameof(column), $"prior attention: column {column} is outside {n} keys");
        int d = c / heads;
        bool stats = sparsity || column >= 0;
        var s = sparsity ? New([b, m]) : null;
        var col = column >= 0 ? New([b, m]) : null;
        if (stats && m > 0 && UsesFusedPriorKernel(d, c) && SharedFits(d, heads, sparsity))
        {
            _priorAttention ??= new CudaPriorAttention(this);
            var y = New(qs.Shape);
            // fp32 scratch for the kernel's [B, M] outputs: a storage tensor of twice the elements is 4 bytes per value
            using var scratch = New([2 * 2 * b * m]);
            using var sf = new DeviceFloats(Device, scratch.Ptr, (long)b * m);
            using var cf = new DeviceFloats(Device, scratch.Ptr + (ulong)(4L * b * m), (long)b * m);
            _priorAttention.Run(qs, ks, vs, heads, new PriorAttentionOptions(sparsity, column), output: y,
                sparsity: sparsity ? sf : null, eosColumn: column >= 0 ? cf : null);
            if (s is not null) ToStorage(sf.Ptr, s);
            if (col is not null) ToStorage(cf.Ptr, col);
            return new PriorAttentionOutputs(y, s, col);
        }
        var o = (CudaTensor)Attention(qs, ks, vs, heads);
        if (stats && m > 0)
        {
            int shared = 2 * heads * StatsWarps * 4;
            if (shared > Device.MaxSharedMemoryPerBlockOptin)
                throw new NotSupportedException($"prior statistics over {heads} heads need {shared} bytes of shared memory; the device offers {Device.MaxSharedMemoryPerBlockOptin}");
            Launch(Spec(KernelCatalog.PriorOps), "lf_attention_stats", ((uint)((m + StatsWarps - 1) / StatsWarps), (uint)b, 1u), 32 * StatsWarps,
                new KernelArgs().Ptr(qs.Ptr).Ptr(ks.Ptr).Ptr(s?.Ptr ?? 0).Ptr(col?.Ptr ?? 0).I32(Math.Max(column, -1)).I32(m).I32(n)
                    .I32(heads).I32(d).F32(1f / MathF.Sqrt(d)), (uint)shared);
        }
        return new PriorAttentionOutputs(o, s, col);
    }

    bool SharedFits(int headDim, int heads, bool sparsity) =>
        CudaPriorAttention.SharedBytes(headDim, 1, heads, sparsity) <= Device.MaxSharedMemoryPerBlockOptin;

    void ToStorage(ulong f32, CudaTensor y) =>
        Launch(Spec(KernelCatalog.PriorOps), "lf_f32_to_storage", Grid1D(y.ElementCount), Threads,
            new KernelArgs().Ptr(f32).Ptr(y.Ptr).I64(y.ElementCount));

    CudaTensor Vectors(Tensor x, string what)
    {
        var t = Dev(x);
        if (t.Rank != 2) throw new ArgumentException($"{what}: expected per-query vectors [B, M], got {ShapeUtil.Format(t.Shape)}");
        return t;
    }

    public Tensor DensityPrior(Tensor sparsity)
    {
        var s = Vectors(sparsity, "density prior");
        var y = New(s.Shape);
        if (y.ElementCount > 0)
            Launch(Spec(KernelCatalog.PriorOps), "lf_po_density", ((uint)s.Shape[0], 1u, 1u), Threads, new KernelArgs().Ptr(s.Ptr).Ptr(y.Ptr).I32(s.Shape[1]));
        return y;
    }

    public Tensor ResizeBilinear(Tensor maps, int height, int width, int outHeight, int outWidth)
    {
        var x = Vectors(maps, "bilinear resize");
        if (height < 1 || width < 1 || outHeight < 1 || outWidth < 1 || (long)height * width != x.Shape[1])
            throw new ArgumentException($"bilinear resize: maps {ShapeUtil.Format(x.Shape)} are not {height}x{width} grids, or the target {outHeight}x{outWidth} is empty");
        var y = New([x.Shape[0], outHeight * outWidth]);
        if (y.ElementCount > 0)
            Launch(Spec(KernelCatalog.PriorOps), "lf_po_resize_bilinear", Grid1D(y.ElementCount), Threads,
                new KernelArgs().Ptr(x.Ptr).Ptr(y.Ptr).I32(height).I32(width).I32(outHeight).I32(outWidth).I64(y.ElementCount));
        return y;
    }

    public (Tensor Soft, Tensor Hard) PriorMasks(Tensor density, Tensor content, float d)
    {
        var a = Vectors(density, "prior masks density");
        var c = Vectors(content, "prior masks content");
        if (!a.Shape.AsSpan().SequenceEqual(c.Shape)) throw new ArgumentException($"prior masks: density {ShapeUtil.Format(a.Shape)} and content {ShapeUtil.Format(c.Shape)} differ");
        if (!float.IsFinite(d)) throw new ArgumentException($"prior masks: d must be finite, got {d}");
        var soft = New(a.Shape);
        var hard = New(a.Shape);
        if (soft.ElementCount > 0)
            Launch(Spec(KernelCatalog.PriorOps), "lf_po_masks", ((uint)a.Shape[0], 1u, 1u), Threads,
                new KernelArgs().Ptr(a.Ptr).Ptr(c.Ptr).Ptr(soft.Ptr).Ptr(hard.Ptr).I32(a.Shape[1]).F32(d));
        return (soft, hard);
    }

    public (Tensor Fg, Tensor Blend) PriorBlend(Tensor fg, Tensor blend, Tensor soft, Tensor hard)
    {
        var f = Dev(fg);
        var x = Dev(blend);
        var sm = Dev(soft);
        var hm = Dev(hard);
        if (f.Rank != 3 || !f.Shape.AsSpan().SequenceEqual(x.Shape)) throw new ArgumentException("prior blend: fg and blend must both be [B, T, C]");
        int t = f.Shape[1], c = f.Shape[2];
        if (sm.ElementCount != t || hm.ElementCount != t) throw new ArgumentException($"prior blend: masks must hold one value per token ({t})");
        var fy = New(f.Shape);
        var by = New(f.Shape);
        if (fy.ElementCount > 0)
            Launch(Spec(KernelCatalog.PriorOps), "lf_po_blend", Grid1D(fy.ElementCount), Threads,
                new KernelArgs().Ptr(f.Ptr).Ptr(x.Ptr).Ptr(sm.Ptr).Ptr(hm.Ptr).Ptr(fy.Ptr).Ptr(by.Ptr).I32(t).I32(c).I64(fy.ElementCount));
        return (fy, by);
    }

    public Tensor ExclusionKeyBias(Tensor hard, int rows, int openKeys)
    {
        var hm = Dev(hard);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(openKeys);
        int t = checked((int)hm.ElementCount), n = checked(openKeys + t);
        var y = New([rows, n]);
        if (y.ElementCount > 0)
            Launch(Spec(KernelCatalog.PriorOps), "lf_po_exclusion_bias", Grid1D(y.ElementCount), Threads,
                new KernelArgs().Ptr(hm.Ptr).Ptr(y.Ptr).I32(openKeys).I32(t).I64(y.ElementCount));
        return y;
    }
}
