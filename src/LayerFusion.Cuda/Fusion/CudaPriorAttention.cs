using System.Collections.Concurrent;
using LayerFusion.Core.Fusion;
using LayerFusion.Core.Tensors;
using LayerFusion.Cuda.Interop;
using LayerFusion.Cuda.Runtime;

namespace LayerFusion.Cuda.Fusion;

/// <summary>An fp32 vector in ordinary device memory (the per-query priors and masks, [B, M]).</summary>
public sealed unsafe class DeviceFloats : IDisposable
{
    readonly CudaDevice _device;
    readonly bool _owns = true;
    bool _disposed;

    public DeviceFloats(CudaDevice device, long count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        _device = device;
        Count = count;
        device.MakeCurrent();
        Driver.Check(Driver.cuMemAlloc(out var p, (nuint)(count * 4)), "cuMemAlloc(DeviceFloats)");
        Ptr = p;
    }

    /// <summary>A view of fp32 scratch another owner frees (CudaOps' prior ops carve it from a step's arena).</summary>
    internal DeviceFloats(CudaDevice device, ulong ptr, long count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        _device = device;
        Count = count;
        Ptr = ptr;
        _owns = false;
    }

    public static DeviceFloats From(CudaDevice device, ReadOnlySpan<float> values)
    {
        var d = new DeviceFloats(device, values.Length);
        d.Upload(values);
        return d;
    }

    public ulong Ptr { get; }
    public long Count { get; }

    public void Upload(ReadOnlySpan<float> values)
    {
        if (values.Length != Count) throw new ArgumentException($"{values.Length} values for a vector of {Count}");
        _device.MakeCurrent();
        fixed (float* p = values)
        {
            Driver.Check(Driver.cuMemcpyHtoDAsync(Ptr, p, (nuint)(Count * 4), _device.Stream), "cuMemcpyHtoDAsync");
            Driver.Check(Driver.cuStreamSynchronize(_device.Stream), "cuStreamSynchronize");
        }
    }

    /// <summary>Fills with NaN (stream-ordered), so an element the next kernel fails to write shows.</summary>
    public void Poison()
    {
        _device.MakeCurrent();
        Driver.Check(Driver.cuMemsetD32Async(Ptr, 0x7fc00000u, (nuint)Count, _device.Stream), "cuMemsetD32Async");
    }

    public float[] Download()
    {
        var result = new float[Count];
        _device.MakeCurrent();
        fixed (float* p = result)
        {
            Driver.Check(Driver.cuMemcpyDtoHAsync(p, Ptr, (nuint)(Count * 4), _device.Stream), "cuMemcpyDtoHAsync");
            Driver.Check(Driver.cuStreamSynchronize(_device.Stream), "cuStreamSynchronize");
        }
        return result;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (!_owns) return;
        _device.MakeCurrent();
        Driver.cuStreamSynchronize(_device.Stream);
        Driver.cuMemFree(Ptr);
    }
}


/// <summary>Output [B, M, H*D] and the per-query priors [B, M] asked for (null otherwise).</summary>
public sealed record CudaPriorAttentionResult(Tensor Output, DeviceFloats? Sparsity, DeviceFloats? EosColumn);

/// <summary>
/// Launches kernels/attention_priors.cu (tensor-core flash attention that emits the LayerFusion
/// priors in the same launch) and the O(M) mask and after-to_out blend kernels of
/// kernels/prior_masks.cu on a <see cref="CudaOps"/> backend's stream. fp16 or bf16 storage, sm_80+.
/// </summary>
public sealed unsafe class CudaPriorAttention : IDisposable
{
    public const string AttentionFile = "attention_priors.cu";
    public const string MasksFile = "prior_masks.cu";
    public const int KeyTile = 64;
    const int VectorThreads = 256;

    readonly CudaOps _ops;
    readonly string _target;
    readonly ConcurrentDictionary<string, IntPtr> _modules = new();
    readonly ConcurrentDictionary<string, IntPtr> _functions = new();

    public CudaPriorAttention(CudaOps ops)
    {
        if (ops.Storage == StorageType.F32)
            throw new NotSupportedException("the tensor-core prior attention needs fp16 or bf16 storage");
        if (ops.Device.Arch < 80)
            throw new NotSupportedException($"the tensor-core prior attention needs sm_80 or newer; the device is sm_{ops.Device.Arch}");
        _ops = ops;
        _target = CudaOps.ChooseTarget(ops.Device.Arch, NvrtcCompiler.SupportedArchs());
    }

    /// <summary>The -D specialization of attention_priors.cu for one call shape and feature set.</summary>
    public static ModuleSpec Spec(StorageType storage, int headDim, int warps, int heads, PriorAttentionOptions options, bool keyBias)
    {
        var d = new List<string> { $"-DLF_HEAD_DIM={headDim}", $"-DLF_WARPS={warps}" };
        if (options.EmitsPriors)
        {
            d.Add("-DLF_PRIORS=1");
            d.Add($"-DLF_HEADS={heads}");
            if (options.Sparsity) d.Add("-DLF_SPARSITY=1");
            if (options.EosIndex >= 0) d.Add("-DLF_EOS=1");
        }
        if (keyBias) d.Add("-DLF_KEY_BIAS=1");
        return new ModuleSpec(AttentionFile, storage, d);
    }

    /// <summary>Dynamic shared memory: double-buffered k and v tiles (rows padded by 16 B) plus, for s, each head's row max and 1/normalizer.</summary>
    public static int SharedBytes(int headDim, int warps, int heads, bool sparsity) =>
        2 * 2 * KeyTile * (headDim + 8) * 2 + (sparsity ? 2 * heads * 16 * warps * 4 : 0);

    /// <summary>
    /// Warps per block (16 query rows each): 4 shares each k/v tile among the most rows, but a
    /// batch-1 prior pass (all heads in one block) has few query tiles, so fewer warps per block
    /// are taken until the grid covers every multiprocessor at least once.
    /// </summary>
    public static int ChooseWarps(int queries, int batch, int headsPerGrid, int multiprocessors)
    {
        foreach (var w in new[] { 4, 2 })
            if ((long)((queries + 16 * w - 1) / (16 * w)) * batch * headsPerGrid >= multiprocessors) return w;
        return 1;
    }

    public static void CheckHeadDim(int headDim)
    {
        if (headDim % 16 != 0 || headDim > 128)
            throw new NotSupportedException($"the tensor-core prior attention takes head dims that are multiples of 16 up to 128, not {headDim}");
    }

    IntPtr Function(ModuleSpec spec, string entry, int dynamicShared)
    {
        var key = spec + "|" + entry;
        var fn = _functions.GetOrAdd(key, _ =>
        {
            var module = _modules.GetOrAdd(spec.ToString(), _ => CudaOps.LoadModule(_ops.Device, _ops.Cache, spec, _target));
            Driver.Check(Driver.cuModuleGetFunction(out var f, module, entry), $"cuModuleGetFunction({entry})");
            return f;
        });
        if (dynamicShared > 48 * 1024)
            Driver.Check(Driver.cuFuncSetAttribute(fn, Driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, dynamicShared), "cuFuncSetAttribute");
        return fn;
    }

    void Launch(ModuleSpec spec, string entry, (uint, uint, uint) grid, uint block, KernelArgs args, int shared)
    {
        _ops.Device.MakeCurrent();
        args.Launch(Function(spec, entry, shared), grid, block, (uint)shared, _ops.Device.Stream, entry);
        if (_ops.SynchronizeEachOp) Driver.Check(Driver.cuStreamSynchronize(_ops.Device.Stream), $"{entry} (synchronize)");
    }

    CudaTensor Own(Tensor t, string what) => t as CudaTensor is { } c && ReferenceEquals(c.Ops, _ops)
        ? c : throw new ArgumentException($"{what} is not a tensor of this CUDA backend");

    static void CheckAligned(CudaTensor t, string what)
    {
        if (t.Ptr % 16 != 0) throw new ArgumentException($"{what} must start on a 16-byte boundary for the tensor-core attention");
    }

    /// <summary>
    /// out = softmax(q k^T / sqrt(D) + key_bias) v per head, plus the priors <paramref name="options"/>
    /// asks for (the blends act after to_out: <see cref="BlendAfterOut"/>).
    /// Preallocated outputs may be passed (benchmarks); otherwise they are allocated here.
    /// </summary>
    public CudaPriorAttentionResult Run(Tensor q, Tensor k, Tensor v, int heads, PriorAttentionOptions options,
        Tensor? keyBias = null, Tensor? output = null, DeviceFloats? sparsity = null,
        DeviceFloats? eosColumn = null, int warps = 0)
    {
        ArgumentNullException.ThrowIfNull(options);
        var qs = Own(q, "q");
        var ks = Own(k, "k");
        var vs = Own(v, "v");
        if (qs.Rank != 3 || ks.Rank != 3 || vs.Rank != 3)
            throw new ArgumentException("prior attention expects q [B, M, H*D], k and v [B, N, H*D]");
        int b = qs.Shape[0], m = qs.Shape[1], c = qs.Shape[2], n = ks.Shape[1];
        if (heads <= 0 || c % heads != 0) throw new ArgumentException($"prior attention: width {c} not divisible by {heads} heads");
        if (ks.Shape[0] != b || vs.Shape[0] != b || ks.Shape[2] != c || vs.Shape[2] != c || vs.Shape[1] != n)
            throw new ArgumentException($"prior attention: shapes q {ShapeUtil.Format(qs.Shape)} k {ShapeUtil.Format(ks.Shape)} v {ShapeUtil.Format(vs.Shape)} disagree");
        if (b < 1 || m < 1 || n < 1) throw new ArgumentException("prior attention needs at least one batch row, query and key");
        int d = c / heads;
        CheckHeadDim(d);
        if (c % 8 != 0) throw new ArgumentException($"prior attention: row width {c} must be a multiple of 8 (16-byte rows)");
        options.Validate(n);
        foreach (var (t, name) in new[] { (qs, "q"), (ks, "k"), (vs, "v") }) CheckAligned(t, name);
        CudaTensor? bias = null;
        if (keyBias is not null)
        {
            bias = Own(keyBias, "key bias");
            if (bias.ElementCount != (long)b * n) throw new ArgumentException($"prior attention: key bias must be [B, N] = [{b}, {n}]");
        }

        var y = output is null ? (CudaTensor)_ops.Zeros(qs.Shape) : Own(output, "output");
        if (!y.Shape.SequenceEqual(qs.Shape)) throw new ArgumentException("prior attention: output must have q's shape");
        CheckAligned(y, "output");
        if (_ops.PoisonOutputs) _ops.Fill(y, float.NaN);
        DeviceFloats? s = null, col = null;
        if (options.Sparsity)
        {
            s = sparsity ?? new DeviceFloats(_ops.Device, (long)b * m);
            if (s.Count != (long)b * m) throw new ArgumentException($"sparsity output must hold [B, M] = {b * m} values");
            if (_ops.PoisonOutputs) s.Poison();
        }
        if (options.EosIndex >= 0)
        {
            col = eosColumn ?? new DeviceFloats(_ops.Device, (long)b * m);
            if (col.Count != (long)b * m) throw new ArgumentException($"<EOS> column output must hold [B, M] = {b * m} values");
            if (_ops.PoisonOutputs) col.Poison();
        }

        int headsPerGrid = options.EmitsPriors ? 1 : heads;
        int w = warps > 0 ? warps : ChooseWarps(m, b, headsPerGrid, _ops.Device.MultiprocessorCount);
        if (w is not (1 or 2 or 4)) throw new ArgumentException($"warps per block must be 1, 2 or 4, not {w}");
        int shared = SharedBytes(d, w, heads, options.Sparsity);
        if (shared > _ops.Device.MaxSharedMemoryPerBlockOptin)
            throw new NotSupportedException($"prior attention with {heads} heads of {d} needs {shared} bytes of shared memory; the device offers {_ops.Device.MaxSharedMemoryPerBlockOptin}");
        var spec = Spec(_ops.Storage, d, w, heads, options, bias is not null);
        int rows = 16 * w;
        Launch(spec, "lf_prior_attention", ((uint)((m + rows - 1) / rows), (uint)headsPerGrid, (uint)b), (uint)(32 * w),
            new KernelArgs().Ptr(qs.Ptr).Ptr(ks.Ptr).Ptr(vs.Ptr).Ptr(bias?.Ptr ?? 0).Ptr(y.Ptr).Ptr(s?.Ptr ?? 0).Ptr(col?.Ptr ?? 0)
                .I32(Math.Max(options.EosIndex, 0)).I32(m).I32(n).I32(heads).F32(1f / MathF.Sqrt(d)), shared);
        return new CudaPriorAttentionResult(y, s, col);
    }

    ModuleSpec MasksSpec => KernelCatalog.Plain(MasksFile, _ops.Storage);

    /// <summary>s' = 1 - minmax(s) per batch row ([batch, m] vectors).</summary>
    public void DensityPrior(DeviceFloats sparsity, DeviceFloats density, int batch, int m)
    {
        if (sparsity.Count != (long)batch * m || density.Count != sparsity.Count) throw new ArgumentException("density prior: vectors must be [batch, m]");
        Launch(MasksSpec, "lf_density_prior", ((uint)batch, 1u, 1u), VectorThreads,
            new KernelArgs().Ptr(sparsity.Ptr).Ptr(density.Ptr).I32(m), 0);
    }

    /// <summary>mask_soft = minmax(s' c), mask_hard = sigmoid(d (mask_soft - 0.5)) per batch row.</summary>
    public void Masks(DeviceFloats density, DeviceFloats content, DeviceFloats soft, DeviceFloats hard, int batch, int m, float d)
    {
        long count = (long)batch * m;
        if (density.Count != count || content.Count != count || soft.Count != count || hard.Count != count)
            throw new ArgumentException("masks: vectors must be [batch, m]");
        Launch(MasksSpec, "lf_prior_masks", ((uint)batch, 1u, 1u), VectorThreads,
            new KernelArgs().Ptr(density.Ptr).Ptr(content.Ptr).Ptr(soft.Ptr).Ptr(hard.Ptr).I32(m).F32(d), 0);
    }

    /// <summary>Eq. 1 / Eq. 2 on [B, T, C] outputs after to_out, in place (blend receives a'_blend, fg a'_fg).</summary>
    public void BlendAfterOut(Tensor fg, Tensor blend, DeviceFloats soft, DeviceFloats hard, int maskBatchStride)
    {
        var f = Own(fg, "fg");
        var x = Own(blend, "blend");
        if (f.Rank != 3 || !f.Shape.SequenceEqual(x.Shape)) throw new ArgumentException("blend: fg and blend must both be [B, T, C]");
        int b = f.Shape[0], t = f.Shape[1], c = f.Shape[2];
        long need = (long)(b - 1) * maskBatchStride + t;
        if (maskBatchStride < 0 || soft.Count < need || hard.Count < need) throw new ArgumentException($"blend: masks need {need} values");
        long total = f.ElementCount;
        if (total == 0) return;
        long blocks = Math.Min((total + VectorThreads - 1) / VectorThreads, (long)_ops.Device.MultiprocessorCount * 32);
        Launch(MasksSpec, "lf_prior_blend", ((uint)blocks, 1u, 1u), VectorThreads,
            new KernelArgs().Ptr(f.Ptr).Ptr(x.Ptr).Ptr(soft.Ptr).Ptr(hard.Ptr).I32(maskBatchStride).I32(t).I32(c).I64(total), 0);
    }

    public void Dispose()
    {
        _ops.Device.MakeCurrent();
        foreach (var m in _modules.Values) Driver.cuModuleUnload(m);
        _modules.Clear();
        _functions.Clear();
    }
}
