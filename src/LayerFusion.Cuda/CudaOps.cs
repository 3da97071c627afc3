using System.Collections.Concurrent;
using LayerFusion.Core.Tensors;
using LayerFusion.Cuda.Interop;
using LayerFusion.Cuda.Runtime;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Cuda;

/// <summary>
/// The CUDA backend of <see cref="IOps"/>: our NVRTC kernels (kernels/) plus cuBLAS/cuBLASLt GEMMs.
/// Every tensor of one instance has the same storage type (fp16 for UNet/text encoders; fp32 or
/// bf16 for the VAE, whose activations overflow fp16); arithmetic and accumulation are fp32.
/// Calls are stream-ordered on the device's stream; <see cref="ToHost"/> synchronizes.
/// </summary>
public sealed unsafe partial class CudaOps : IOps, IDisposable, IBackendMemory
{
    const int Threads = 256;

    readonly ConcurrentDictionary<(ModuleSpec, string), IntPtr> _functions = new();
    readonly ConcurrentDictionary<ModuleSpec, IntPtr> _modules = new();
    readonly ConcurrentQueue<ulong> _pendingFree = new();
    readonly BumpAllocator _arena;
    readonly IntPtr _cublas, _cublasLt;
    readonly ulong _ltWorkspace;
    readonly string _target;
    bool _inStep, _disposed;

    public const long LtWorkspaceBytes = 32L << 20;

    public CudaOps(CudaDevice device, StorageType storage = StorageType.F16, KernelCache? cache = null)
    {
        // Fail up front, with one message, if any library is missing.
        NativeLibraries.Require(CudaLibrary.Nvrtc);
        NativeLibraries.Require(CudaLibrary.Cublas);
        NativeLibraries.Require(CudaLibrary.CublasLt);
        Device = device;
        Storage = storage;
        Cache = cache ?? new KernelCache();
        _target = ChooseTarget(device.Arch, NvrtcCompiler.SupportedArchs());
        device.MakeCurrent();
        device.AddRef();
        try
        {
            // cuBLAS that cannot initialise here (a library newer than the driver, no memory for its
            // handle) means the backend is unavailable, like a missing library: callers fall back
            // and tests skip with the reason, instead of every GPU test failing.
            CreateHandle(Cublas.cublasCreate(out _cublas), "cublasCreate", CudaLibrary.Cublas);
            Cublas.Check(Cublas.cublasSetStream(_cublas, device.Stream), "cublasSetStream");
            Cublas.Check(Cublas.cublasSetMathMode(_cublas, Cublas.CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION), "cublasSetMathMode");
            CreateHandle(CublasLt.cublasLtCreate(out _cublasLt), "cublasLtCreate", CudaLibrary.CublasLt);
            Driver.Check(Driver.cuMemAlloc(out _ltWorkspace, (nuint)LtWorkspaceBytes), "cuMemAlloc");
        }
        catch
        {
            if (_cublasLt != IntPtr.Zero) CublasLt.cublasLtDestroy(_cublasLt);
            if (_cublas != IntPtr.Zero) Cublas.cublasDestroy(_cublas);
            device.Release();
            throw;
        }
        _arena = new BumpAllocator(bytes =>
        {
            Driver.Check(Driver.cuMemAlloc(out var p, (nuint)bytes), "cuMemAlloc(arena)");
            return p;
        }, p => Driver.cuMemFree(p));
        SynchronizeEachOp = Environment.GetEnvironmentVariable("LAYERFUSION_CUDA_SYNC") == "1";
    }

    void CreateHandle(int status, string call, CudaLibrary lib)
    {
        if (status == 0) return;
        throw new CudaUnavailableException(
            $"CUDA backend unavailable: {call} failed: cublasStatus {status} ({NativeLibraries.LoadedFrom(lib) ?? lib.ToString()}; the driver supports CUDA " +
            $"{Device.DriverVersion / 1000}.{Device.DriverVersion % 1000 / 10}): install the cuBLAS of that CUDA major or older, or " +
            $"point {NativeLibraries.OverrideVariable(lib)} at it; --backend cpu does not need it.");
    }

    /// <summary>Opens device 0 and a backend that owns it; throws <see cref="CudaUnavailableException"/> when CUDA cannot run here.</summary>
    public static CudaOps Create(StorageType storage = StorageType.F16)
    {
        using var device = CudaDevice.Open();
        return new CudaOps(device, storage);   // the backend's reference keeps the device; the opener's goes here
    }

    /// <summary>
    /// For the CLI's default backend choice: a backend on device 0, or null and the one-line reason
    /// (missing library, no device) to print once before falling back to the CPU backend.
    /// </summary>
    public static CudaOps? TryCreate(StorageType storage, out string reason)
    {
        using var device = CudaDevice.TryOpen(out reason);
        if (device is null) return null;
        try { return new CudaOps(device, storage); }
        catch (CudaUnavailableException e)
        {
            reason = e.Message;
            return null;
        }
    }

    public CudaDevice Device { get; }
    public StorageType Storage { get; }
    public KernelCache Cache { get; }
    public string Name => $"cuda-{Storage.ToString().ToLowerInvariant()}";

    /// <summary>Free device memory now (cuMemGetInfo: device-wide, other processes included).</summary>
    public long AvailableBytes
    {
        get
        {
            Device.MakeCurrent();
            Driver.Check(Driver.cuMemGetInfo(out var free, out _), "cuMemGetInfo");
            return (long)free;
        }
    }

    public int ActivationElementBytes => Storage == StorageType.F32 ? 4 : 2;
    /// <summary>Fill every op's output with NaN before the kernel runs, so unwritten elements show (tests).</summary>
    public bool PoisonOutputs { get; set; }
    /// <summary>Synchronize after each op so an asynchronous fault is reported by the op that caused it.</summary>
    public bool SynchronizeEachOp { get; set; }
    /// <summary>The arena's statistics (bytes at high water, driver allocations so far).</summary>
    public (long HighWater, long Capacity, int DriverAllocations) ArenaStats => (_arena.HighWater, _arena.Capacity, _arena.DriverAllocations);

    /// <summary>The NVRTC target: exact sm_XY (CUBIN) when this NVRTC knows the device, else PTX for the newest arch it knows below it.</summary>
    public static string ChooseTarget(int deviceArch, IReadOnlyCollection<int> nvrtcArchs)
    {
        if (nvrtcArchs.Contains(deviceArch)) return $"sm_{deviceArch}";
        var below = nvrtcArchs.Where(a => a <= deviceArch).DefaultIfEmpty(-1).Max();
        if (below < 0) throw new CudaUnavailableException($"CUDA backend unavailable: NVRTC cannot target sm_{deviceArch}.");
        return $"compute_{below}";
    }

    // ---- steps and memory ----------------------------------------------------------------

    /// <summary>
    /// Until the returned scope is disposed, op outputs are carved from the device arena (no driver
    /// allocations once the arena has grown to a step's high water). Disposing resets the arena:
    /// tensors created inside the step are invalid after it; copy survivors out with
    /// <see cref="Persist"/> or <see cref="CopyInto"/> first. It does not wait for the step's work
    /// (the next step's work is behind it on the same stream), except when the reset replaces the
    /// arena's chunks, whose frees must not overtake the kernels still using them.
    /// </summary>
    public IDisposable BeginStep()
    {
        if (_inStep) throw new InvalidOperationException("a step is already open on this backend");
        _inStep = true;
        return new StepScope(this);
    }

    sealed class StepScope(CudaOps ops) : IDisposable
    {
        bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            if (ops._arena.ResetReallocates) ops.Device.Synchronize();
            ops._arena.Reset();
            ops._inStep = false;
        }
    }

    /// <summary>A copy of <paramref name="x"/> in ordinary (non-arena) device memory.</summary>
    public CudaTensor Persist(Tensor x)
    {
        var src = Dev(x);
        bool was = _inStep;
        _inStep = false;
        try
        {
            var y = New(src.Shape, poison: false);
            Driver.Check(Driver.cuMemcpyDtoDAsync(y.Ptr, src.Ptr, (nuint)Bytes(src), Device.Stream), "cuMemcpyDtoDAsync");
            return y;
        }
        finally { _inStep = was; }
    }

    internal void FreeLater(ulong ptr) => _pendingFree.Enqueue(ptr);

    void DrainFrees()
    {
        // cuMemFree inside a capture would invalidate it (the queue fills from finalizers at any time)
        if (_pendingFree.IsEmpty || Device.IsCapturing) return;
        Device.MakeCurrent();
        while (_pendingFree.TryDequeue(out var p)) Driver.cuMemFree(p);
    }

    long Bytes(Tensor t) => checked(t.ElementCount * HostConvert.SizeOf(Storage));

    CudaTensor New(int[] shape, bool? poison = null)
    {
        Device.MakeCurrent();
        // cuMemFree synchronizes the device: queued frees wait for the next allocation outside a step
        if (!_inStep) DrainFrees();
        long bytes = checked(ShapeUtil.ElementCount(shape) * HostConvert.SizeOf(Storage));
        ulong ptr;
        if (Device.IsCapturing)
        {
            // the driver refuses allocation inside a capture (and invalidates it)
            if (!_inStep)
                throw new InvalidOperationException("cannot allocate device memory during a CUDA graph capture: capture inside a step (BeginStep)");
            if (!_arena.TryAllocateInPlace(bytes, out ptr))
                throw new InvalidOperationException($"the step arena cannot hold {bytes} more bytes during a CUDA graph capture, " +
                    "and it may not grow from the driver then: run the same work once uncaptured in a step first");
        }
        else if (_inStep) ptr = _arena.Allocate(bytes);
        else Driver.Check(Driver.cuMemAlloc(out ptr, (nuint)Math.Max(bytes, 1)), $"cuMemAlloc({bytes} bytes)");
        var t = new CudaTensor(this, new DeviceStorage(this, ptr, bytes, _inStep), (int[])shape.Clone());
        if ((poison ?? PoisonOutputs) && bytes > 0) Poison(t);
        return t;
    }

    /// <summary>Sets every element of <paramref name="x"/> to <paramref name="value"/> (stream-ordered); NaN poisons.</summary>
    public void Fill(Tensor x, float value)
    {
        var t = Dev(x);
        if (t.ElementCount == 0) return;
        var one = HostConvert.Encode([value], Storage);
        if (Storage == StorageType.F32)
            Driver.Check(Driver.cuMemsetD32Async(t.Ptr, BitConverter.ToUInt32(one), (nuint)t.ElementCount, Device.Stream), "cuMemsetD32Async");
        else
            Driver.Check(Driver.cuMemsetD16Async(t.Ptr, BitConverter.ToUInt16(one), (nuint)t.ElementCount, Device.Stream), "cuMemsetD16Async");
    }

    void Poison(CudaTensor t)
    {
        uint nan = HostConvert.NanBits(Storage);
        if (Storage == StorageType.F32)
            Driver.Check(Driver.cuMemsetD32Async(t.Ptr, nan, (nuint)t.ElementCount, Device.Stream), "cuMemsetD32Async");
        else
            Driver.Check(Driver.cuMemsetD16Async(t.Ptr, (ushort)nan, (nuint)t.ElementCount, Device.Stream), "cuMemsetD16Async");
    }

    CudaTensor Dev(Tensor t) => t as CudaTensor is { } c && ReferenceEquals(c.Ops, this)
        ? c
        : throw new ArgumentException($"{t} does not belong to backend {Name}");

    /// <summary>A raw device buffer for temporaries (ids, timesteps); freed after the stream drains.</summary>
    ulong UploadRaw<T>(ReadOnlySpan<T> data) where T : unmanaged
    {
        long bytes = (long)data.Length * sizeof(T);
        Driver.Check(Driver.cuMemAlloc(out var p, (nuint)Math.Max(bytes, 1)), "cuMemAlloc");
        fixed (T* src = data)
        {
            Driver.Check(Driver.cuMemcpyHtoDAsync(p, src, (nuint)bytes, Device.Stream), "cuMemcpyHtoDAsync");
            Driver.Check(Driver.cuStreamSynchronize(Device.Stream), "cuStreamSynchronize");
        }
        return p;
    }

    void FreeAfterStream(ulong p)
    {
        Driver.Check(Driver.cuStreamSynchronize(Device.Stream), "cuStreamSynchronize");
        Driver.cuMemFree(p);
    }

    // ---- kernels ---------------------------------------------------------------------------

    IntPtr Function(ModuleSpec spec, string name, int dynamicShared = 0)
    {
        var fn = _functions.GetOrAdd((spec, name), key =>
        {
            var module = _modules.GetOrAdd(key.Item1, s => LoadModule(Device, Cache, s, _target));
            Driver.Check(Driver.cuModuleGetFunction(out var f, module, key.Item2), $"cuModuleGetFunction({key.Item2})");
            return f;
        });
        if (dynamicShared > 48 * 1024)
            Driver.Check(Driver.cuFuncSetAttribute(fn, Driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, dynamicShared),
                "cuFuncSetAttribute");
        return fn;
    }

    /// <summary>The module of <paramref name="spec"/> loaded on the device (a cached image the driver refuses is recompiled).</summary>
    internal static IntPtr LoadModule(CudaDevice device, KernelCache cache, ModuleSpec spec, string target) =>
        cache.GetOrLoad(spec.File, KernelSources.Get(spec.File), KernelSources.Headers, spec.Options(target), target, compiled =>
        {
            device.MakeCurrent();
            IntPtr m;
            fixed (byte* image = compiled.Image) Driver.Check(Driver.cuModuleLoadData(out m, image), $"cuModuleLoadData({spec})");
            return m;
        });

    void Launch(ModuleSpec spec, string name, (uint, uint, uint) grid, uint block, KernelArgs args, uint shared = 0)
    {
        var fn = Function(spec, name, (int)shared);
        args.Launch(fn, grid, block, shared, Device.Stream, name);
        if (SynchronizeEachOp) Driver.Check(Driver.cuStreamSynchronize(Device.Stream), $"{name} (synchronize)");
    }

    (uint, uint, uint) Grid1D(long n)
    {
        long blocks = Math.Max(1, Math.Min((n + Threads - 1) / Threads, (long)Device.MultiprocessorCount * 32));
        return ((uint)blocks, 1u, 1u);
    }

    ModuleSpec Spec(string file) => KernelCatalog.Plain(file, Storage);

    CudaTensor Unary(Tensor x, string kernel, Action<KernelArgs>? extra = null)
    {
        var src = Dev(x);
        var y = New(src.Shape);
        var args = new KernelArgs().Ptr(src.Ptr).Ptr(y.Ptr).I64(src.ElementCount);
        extra?.Invoke(args);
        if (src.ElementCount > 0) Launch(Spec(KernelCatalog.Elementwise), kernel, Grid1D(src.ElementCount), Threads, args);
        return y;
    }

    // ---- data movement ---------------------------------------------------------------------

    public Tensor FromHost(ReadOnlySpan<float> data, params int[] shape)
    {
        if (ShapeUtil.ElementCount(shape) != data.Length)
            throw new ArgumentException($"{data.Length} values do not fill shape {ShapeUtil.Format(shape)}");
        return FromBytes(HostConvert.Encode(data, Storage), shape);
    }

    CudaTensor FromBytes(ReadOnlySpan<byte> bytes, int[] shape)
    {
        var y = New(shape, poison: false);
        if (bytes.Length > 0)
            fixed (byte* p = bytes)
            {
                Driver.Check(Driver.cuMemcpyHtoDAsync(y.Ptr, p, (nuint)bytes.Length, Device.Stream), "cuMemcpyHtoDAsync");
                Driver.Check(Driver.cuStreamSynchronize(Device.Stream), "cuStreamSynchronize");
            }
        return y;
    }

    public float[] ToHost(Tensor x)
    {
        var src = Dev(x);
        Device.MakeCurrent();
        var bytes = new byte[Bytes(src)];
        if (bytes.Length > 0)
            fixed (byte* p = bytes)
            {
                Driver.Check(Driver.cuMemcpyDtoHAsync(p, src.Ptr, (nuint)bytes.Length, Device.Stream), "cuMemcpyDtoHAsync");
                Driver.Check(Driver.cuStreamSynchronize(Device.Stream), "cuStreamSynchronize");
            }
        return HostConvert.Decode(bytes, Storage);
    }

    public Tensor Zeros(params int[] shape)
    {
        var y = New(shape, poison: false);
        long bytes = Bytes(y);
        if (bytes > 0) Driver.Check(Driver.cuMemsetD8Async(y.Ptr, 0, (nuint)bytes, Device.Stream), "cuMemsetD8Async");
        return y;
    }

    public Tensor Upload(WeightTensor weight)
    {
        var bytes = StorageBytes(weight, Storage);
        bool wasInStep = _inStep;
        _inStep = false;  // weights outlive steps
        try { return FromBytes(bytes, weight.ShapeInt32); }
        finally { _inStep = wasInStep; }
    }

    /// <summary>
    /// A checkpoint tensor's bytes in <paramref name="storage"/>: its own bytes when the dtypes agree,
    /// else its values (F16, BF16, F32, F64) converted. A tensor whose byte count disagrees with its
    /// shape, or with a finite value beyond fp16's range headed for fp16 storage (it would silently
    /// become infinity), is refused with its name.
    /// </summary>
    public static ReadOnlySpan<byte> StorageBytes(WeightTensor weight, StorageType storage)
    {
        ArgumentNullException.ThrowIfNull(weight);
        bool same = (weight.DType, storage) switch
        {
            (DType.F32, StorageType.F32) or (DType.F16, StorageType.F16) or (DType.BF16, StorageType.BF16) => true,
            _ => false,
        };
        if (same)
        {
            var bytes = weight.Bytes; // one read for a file-backed tensor
            if (bytes.Length != weight.ByteLength)
                throw new UserInputException($"tensor '{weight.Name}': {bytes.Length} bytes, its shape and dtype need {weight.ByteLength}");
            return bytes;
        }
        var values = weight.ToFloat32();
        if (storage == StorageType.F16)
            foreach (var v in values)
                if (float.IsFinite(v) && Half.IsInfinity((Half)v))
                    throw new UserInputException($"tensor '{weight.Name}' ({weight.DType}) holds {v}, beyond fp16's range: " +
                        "load this checkpoint on a bf16 or fp32 backend");
        return HostConvert.Encode(values, storage);
    }

    // ---- linear algebra ----------------------------------------------------------------------

    int CudaType => Storage switch
    {
        StorageType.F32 => Cublas.CUDA_R_32F,
        StorageType.F16 => Cublas.CUDA_R_16F,
        _ => Cublas.CUDA_R_16BF,
    };

    public Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        var xs = Dev(x);
        var w = Dev(weight);
        if (w.Rank != 2) throw new ArgumentException($"linear weight must be [out, in], got {ShapeUtil.Format(w.Shape)}");
        int outF = w.Shape[0], inF = w.Shape[1];
        if (xs.Rank == 0 || xs.Shape[^1] != inF)
            throw new ArgumentException($"linear: input {ShapeUtil.Format(xs.Shape)} does not end in {inF}");
        int rows = checked((int)(xs.ElementCount / inF));
        var shape = (int[])xs.Shape.Clone();
        shape[^1] = outF;
        var y = New(shape);
        if (rows == 0) return y;
        CudaTensor? b = null;
        if (bias is not null)
        {
            b = Dev(bias);
            if (b.ElementCount != outF) throw new ArgumentException($"linear bias has {b.ElementCount} values, expected {outF}");
        }
        if (b is not null && TryLtBias(w.Ptr, xs.Ptr, y.Ptr, b.Ptr, outF, rows, inF)) { AfterOp("linear"); return y; }
        // Row-major y[rows, out] = x @ W^T is column-major y^T = W x^T: op(A)=W^T stored [in, out].
        Gemm(GemmPlan.Linear(rows, inF, outF), 1f, w.Ptr, xs.Ptr, y.Ptr);
        if (b is not null)
        {
            using var b1 = (CudaTensor)b.Reshape(outF);
            BinaryInto(y, y, b1, "lf_add");
        }
        AfterOp("linear");
        return y;
    }

    void AfterOp(string name)
    {
        if (SynchronizeEachOp) Driver.Check(Driver.cuStreamSynchronize(Device.Stream), $"{name} (synchronize)");
    }

    void Gemm(GemmPlan g, float alpha, ulong a, ulong b, ulong c)
    {
        float beta = 0f;
        Device.MakeCurrent();
        if (g.Batch == 1)
            Cublas.Check(Cublas.cublasGemmEx(_cublas, g.OpA, g.OpB, g.M, g.N, g.K, &alpha, a, CudaType, g.Lda, b, CudaType, g.Ldb,
                &beta, c, CudaType, g.Ldc, Cublas.CUBLAS_COMPUTE_32F, Cublas.CUBLAS_GEMM_DEFAULT), "cublasGemmEx");
        else
            Cublas.Check(Cublas.cublasGemmStridedBatchedEx(_cublas, g.OpA, g.OpB, g.M, g.N, g.K, &alpha, a, CudaType, g.Lda,
                g.StrideA, b, CudaType, g.Ldb, g.StrideB, &beta, c, CudaType, g.Ldc, g.StrideC, g.Batch, Cublas.CUBLAS_COMPUTE_32F,
                Cublas.CUBLAS_GEMM_DEFAULT), "cublasGemmStridedBatchedEx");
    }

    /// <summary>y^T[out, rows] = W x^T + bias through cuBLASLt's BIAS epilogue; false if Lt offers no algorithm.</summary>
    bool TryLtBias(ulong w, ulong x, ulong y, ulong bias, int outF, int rows, int inF)
    {
        IntPtr desc = 0, aL = 0, bL = 0, cL = 0, pref = 0;
        try
        {
            if (CublasLt.cublasLtMatmulDescCreate(out desc, Cublas.CUBLAS_COMPUTE_32F, Cublas.CUDA_R_32F) != 0) return false;
            var g = GemmPlan.Linear(rows, inF, outF);
            int opT = g.OpA, opN = g.OpB, epi = CublasLt.CUBLASLT_EPILOGUE_BIAS;
            Cublas.Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, CublasLt.CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(int)), "cublasLtMatmulDescSetAttribute");
            Cublas.Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, CublasLt.CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(int)), "cublasLtMatmulDescSetAttribute");
            Cublas.Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, CublasLt.CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(int)), "cublasLtMatmulDescSetAttribute");
            Cublas.Check(CublasLt.cublasLtMatmulDescSetAttribute(desc, CublasLt.CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(ulong)), "cublasLtMatmulDescSetAttribute");
            Cublas.Check(CublasLt.cublasLtMatrixLayoutCreate(out aL, CudaType, (ulong)g.StoredA.Rows, (ulong)g.StoredA.Cols, g.Lda), "cublasLtMatrixLayoutCreate");
            Cublas.Check(CublasLt.cublasLtMatrixLayoutCreate(out bL, CudaType, (ulong)g.StoredB.Rows, (ulong)g.StoredB.Cols, g.Ldb), "cublasLtMatrixLayoutCreate");
            Cublas.Check(CublasLt.cublasLtMatrixLayoutCreate(out cL, CudaType, (ulong)g.M, (ulong)g.N, g.Ldc), "cublasLtMatrixLayoutCreate");
            Cublas.Check(CublasLt.cublasLtMatmulPreferenceCreate(out pref), "cublasLtMatmulPreferenceCreate");
            ulong ws = (ulong)LtWorkspaceBytes;
            Cublas.Check(CublasLt.cublasLtMatmulPreferenceSetAttribute(pref, CublasLt.CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ulong)), "cublasLtMatmulPreferenceSetAttribute");
            CublasLtHeuristicResult result;
            if (CublasLt.cublasLtMatmulAlgoGetHeuristic(_cublasLt, desc, aL, bL, cL, cL, pref, 1, &result, out var count) != 0 || count < 1)
                return false;
            float alpha = 1f, beta = 0f;
            Device.MakeCurrent();
            Cublas.Check(CublasLt.cublasLtMatmul(_cublasLt, desc, &alpha, w, aL, x, bL, &beta, y, cL, y, cL, &result.Algo,
                _ltWorkspace, (nuint)LtWorkspaceBytes, Device.Stream), "cublasLtMatmul");
            return true;
        }
        finally
        {
            if (pref != 0) CublasLt.cublasLtMatmulPreferenceDestroy(pref);
            if (cL != 0) CublasLt.cublasLtMatrixLayoutDestroy(cL);
            if (bL != 0) CublasLt.cublasLtMatrixLayoutDestroy(bL);
            if (aL != 0) CublasLt.cublasLtMatrixLayoutDestroy(aL);
            if (desc != 0) CublasLt.cublasLtMatmulDescDestroy(desc);
        }
    }

    public Tensor MatMul(Tensor a, Tensor b, bool transposeB = false, float alpha = 1f)
    {
        var x = Dev(a);
        var z = Dev(b);
        if (x.Rank < 2 || z.Rank != x.Rank)
            throw new ArgumentException($"matmul: ranks differ or < 2: {ShapeUtil.Format(x.Shape)} @ {ShapeUtil.Format(z.Shape)}");
        for (int i = 0; i < x.Rank - 2; i++)
            if (x.Shape[i] != z.Shape[i])
                throw new ArgumentException($"matmul: leading dims differ: {ShapeUtil.Format(x.Shape)} @ {ShapeUtil.Format(z.Shape)}");
        int m = x.Shape[^2], k = x.Shape[^1];
        int kb = transposeB ? z.Shape[^1] : z.Shape[^2], n = transposeB ? z.Shape[^2] : z.Shape[^1];
        if (kb != k) throw new ArgumentException($"matmul: inner dims differ: {ShapeUtil.Format(x.Shape)} @ {ShapeUtil.Format(z.Shape)}{(transposeB ? "^T" : "")}");
        int batch = checked((int)(x.ElementCount / Math.Max(1L, (long)m * k)));
        if ((long)m * k == 0) batch = checked((int)ShapeUtil.ElementCount(x.Shape.AsSpan(0, x.Rank - 2)));
        var shape = (int[])x.Shape.Clone();
        shape[^1] = n;
        var y = New(shape);
        if (y.ElementCount == 0) return y;
        if (k == 0) { Driver.Check(Driver.cuMemsetD8Async(y.Ptr, 0, (nuint)Bytes(y), Device.Stream), "cuMemsetD8Async"); return y; }
        // Column-major: y^T[n, m] = op(b)^T-as-stored @ a^T.
        Gemm(GemmPlan.MatMul(batch, m, k, n, transposeB), alpha, z.Ptr, x.Ptr, y.Ptr);
        AfterOp("matmul");
        return y;
    }

    public Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, int stride = 1, int padding = 0)
    {
        var xs = Dev(x);
        var w = Dev(weight);
        if (xs.Rank != 4 || w.Rank != 4 || xs.Shape[1] != w.Shape[1])
            throw new ArgumentException($"conv2d: x {ShapeUtil.Format(xs.Shape)} and weight {ShapeUtil.Format(w.Shape)} do not match");
        if (stride < 1 || padding < 0) throw new ArgumentException("conv2d: stride must be >= 1 and padding >= 0");
        int n = xs.Shape[0], c = xs.Shape[1], h = xs.Shape[2], wd = xs.Shape[3];
        int o = w.Shape[0], kh = w.Shape[2], kw = w.Shape[3];
        int ho = (h + 2 * padding - kh) / stride + 1, wo = (wd + 2 * padding - kw) / stride + 1;
        if (ho <= 0 || wo <= 0) throw new ArgumentException($"conv2d: kernel {kh}x{kw} larger than padded input {h}x{wd}");
        var y = New([n, o, ho, wo]);
        long plane = (long)ho * wo, kc = (long)c * kh * kw;
        bool direct = kh == 1 && kw == 1 && stride == 1 && padding == 0;
        CudaTensor? col = null;
        try
        {
            ulong colPtr = xs.Ptr;
            if (!direct)
            {
                col = New([n, checked((int)kc), checked((int)plane)], poison: false);
                colPtr = col.Ptr;
                long total = n * kc * plane;
                Launch(Spec(KernelCatalog.Conv), "lf_im2col", Grid1D(total), Threads,
                    new KernelArgs().Ptr(xs.Ptr).Ptr(colPtr).I32(n).I32(c).I32(h).I32(wd).I32(kh).I32(kw).I32(stride)
                        .I32(padding).I32(ho).I32(wo));
            }
            // Per image, column-major y^T[plane, o] = col^T[plane, kc] @ W^T[kc, o].
            Gemm(GemmPlan.Conv(n, checked((int)plane), checked((int)kc), o), 1f, colPtr, w.Ptr, y.Ptr);
            if (bias is not null)
            {
                var b = Dev(bias);
                if (b.ElementCount != o) throw new ArgumentException($"conv2d bias has {b.ElementCount} values, expected {o}");
                using var b3 = (CudaTensor)b.Reshape(o, 1, 1);
                BinaryInto(y, y, b3, "lf_add");
            }
            AfterOp("conv2d");
        }
        finally
        {
            // outside a step the buffer is freed at the next allocation, by cuMemFree, which waits for the im2col GEMM
            col?.Dispose();
        }
        return y;
    }

    // ---- normalization ------------------------------------------------------------------------

    public Tensor GroupNorm(Tensor x, int groups, Tensor? gamma, Tensor? beta, float eps, bool fuseSilu = false)
    {
        var xs = Dev(x);
        if (xs.Rank < 2) throw new ArgumentException("groupnorm needs [N, C, ...]");
        int n = xs.Shape[0], c = xs.Shape[1];
        if (groups <= 0 || c % groups != 0) throw new ArgumentException($"groupnorm: {c} channels not divisible into {groups} groups");
        long spatial = c == 0 || n == 0 ? 0 : xs.ElementCount / ((long)n * c);
        var y = New(xs.Shape);
        if (y.ElementCount == 0) return y;
        CheckAffine(gamma, c, "groupnorm gamma");
        CheckAffine(beta, c, "groupnorm beta");
        Launch(Spec(KernelCatalog.Norm), "lf_group_norm", ((uint)groups, (uint)n, 1u), 512,
            new KernelArgs().Ptr(xs.Ptr).Ptr(PtrOrNull(gamma)).Ptr(PtrOrNull(beta)).Ptr(y.Ptr).I32(c).I64(spatial).I32(groups)
                .F32(eps).I32(fuseSilu ? 1 : 0));
        return y;
    }

    void CheckAffine(Tensor? t, long expected, string what)
    {
        if (t is not null && Dev(t).ElementCount != expected)
            throw new ArgumentException($"{what} has {t.ElementCount} values, expected {expected}");
    }

    ulong PtrOrNull(Tensor? t) => t is null ? 0 : Dev(t).Ptr;

    public Tensor LayerNorm(Tensor x, Tensor? gamma, Tensor? beta, float eps)
    {
        var xs = Dev(x);
        int d = xs.Shape[^1];
        var y = New(xs.Shape);
        if (y.ElementCount == 0) return y;
        CheckAffine(gamma, d, "layernorm gamma");
        CheckAffine(beta, d, "layernorm beta");
        long rows = xs.ElementCount / d;
        Launch(Spec(KernelCatalog.Norm), "lf_layer_norm", ((uint)rows, 1u, 1u), RowThreads(d),
            new KernelArgs().Ptr(xs.Ptr).Ptr(PtrOrNull(gamma)).Ptr(PtrOrNull(beta)).Ptr(y.Ptr).I32(d).F32(eps));
        return y;
    }

    static uint RowThreads(int d) => (uint)Math.Clamp((d + 31) / 32 * 32, 32, 512);

    // ---- activations ------------------------------------------------------------------------

    public Tensor Silu(Tensor x) => Unary(x, "lf_silu");
    public Tensor Gelu(Tensor x, bool tanhApproximation = false) => Unary(x, tanhApproximation ? "lf_gelu_tanh" : "lf_gelu_erf");
    public Tensor QuickGelu(Tensor x) => Unary(x, "lf_quick_gelu");
    public Tensor Affine(Tensor x, float alpha, float beta = 0f) => Unary(x, "lf_affine", a => a.F32(alpha).F32(beta));

    public Tensor Clamp(Tensor x, float min, float max)
    {
        if (!(min <= max)) throw new ArgumentException($"clamp: min {min} is not <= max {max}");
        return Unary(x, "lf_clamp", a => a.F32(min).F32(max));
    }

    public Tensor Geglu(Tensor x)
    {
        var xs = Dev(x);
        int two = xs.Shape[^1];
        if (two % 2 != 0) throw new ArgumentException($"geglu: last dim {two} is odd");
        var shape = (int[])xs.Shape.Clone();
        shape[^1] = two / 2;
        var y = New(shape);
        long rows = two == 0 ? 0 : xs.ElementCount / two;
        if (y.ElementCount > 0)
            Launch(Spec(KernelCatalog.Elementwise), "lf_geglu", Grid1D(y.ElementCount), Threads,
                new KernelArgs().Ptr(xs.Ptr).Ptr(y.Ptr).I64(rows).I64(two / 2));
        return y;
    }

    public Tensor Softmax(Tensor x)
    {
        var xs = Dev(x);
        int d = xs.Shape[^1];
        var y = New(xs.Shape);
        if (y.ElementCount == 0) return y;
        Launch(Spec(KernelCatalog.Softmax), "lf_softmax", ((uint)(xs.ElementCount / d), 1u, 1u), RowThreads(d),
            new KernelArgs().Ptr(xs.Ptr).Ptr(y.Ptr).I32(d));
        return y;
    }

    public Tensor Attention(Tensor q, Tensor k, Tensor v, int heads, Tensor? keyBias = null, bool causal = false)
    {
        var qs = Dev(q);
        var ks = Dev(k);
        var vs = Dev(v);
        if (qs.Rank != 3 || ks.Rank != 3 || vs.Rank != 3)
            throw new ArgumentException("attention expects q [B, M, H*D], k and v [B, N, H*D]");
        int b = qs.Shape[0], m = qs.Shape[1], c = qs.Shape[2], n = ks.Shape[1];
        if (heads <= 0 || c % heads != 0) throw new ArgumentException($"attention: width {c} not divisible by {heads} heads");
        if (ks.Shape[0] != b || vs.Shape[0] != b || ks.Shape[2] != c || vs.Shape[2] != c || vs.Shape[1] != n)
            throw new ArgumentException($"attention: shapes q {ShapeUtil.Format(qs.Shape)} k {ShapeUtil.Format(ks.Shape)} v {ShapeUtil.Format(vs.Shape)} disagree");
        if (keyBias is not null && Dev(keyBias).ElementCount != (long)b * n)
            throw new ArgumentException($"attention: key bias must be [B, N] = [{b}, {n}]");
        int d = c / heads;
        int r = KernelCatalog.RowsPerWarp(d);
        int shared = KernelCatalog.AttentionSharedBytes(d, r);
        if (shared > Device.MaxSharedMemoryPerBlockOptin)
            throw new NotSupportedException($"attention head dim {d} needs {shared} bytes of shared memory; the device offers {Device.MaxSharedMemoryPerBlockOptin}");
        var y = New(qs.Shape);
        if (y.ElementCount == 0) return y;
        int rowsPerBlock = KernelCatalog.AttentionWarps * r;
        Launch(KernelCatalog.AttentionSpec(Storage, d, r), "lf_attention",
            ((uint)((m + rowsPerBlock - 1) / rowsPerBlock), (uint)heads, (uint)b), (uint)(KernelCatalog.AttentionWarps * 32),
            new KernelArgs().Ptr(qs.Ptr).Ptr(ks.Ptr).Ptr(vs.Ptr).Ptr(PtrOrNull(keyBias)).Ptr(y.Ptr).I32(m).I32(n).I32(heads)
                .F32(1f / MathF.Sqrt(d)).I32(causal ? 1 : 0), (uint)shared);
        return y;
    }

    // ---- resampling & embeddings ------------------------------------------------------------

    public Tensor Upsample2xNearest(Tensor x)
    {
        var xs = Dev(x);
        if (xs.Rank != 4) throw new ArgumentException("upsample expects [N, C, H, W]");
        int h = xs.Shape[2], w = xs.Shape[3];
        var y = New([xs.Shape[0], xs.Shape[1], 2 * h, 2 * w]);
        if (y.ElementCount > 0)
            Launch(Spec(KernelCatalog.Resample), "lf_upsample2x_nearest", Grid1D(y.ElementCount), Threads,
                new KernelArgs().Ptr(xs.Ptr).Ptr(y.Ptr).I64((long)xs.Shape[0] * xs.Shape[1]).I32(h).I32(w));
        return y;
    }

    public Tensor TimestepEmbedding(ReadOnlySpan<float> timesteps, int dim, bool flipSinToCos, float downscaleFreqShift,
        float scale = 1f, int maxPeriod = 10000)
    {
        if (dim <= 0) throw new ArgumentException("timestep embedding dim must be positive");
        var y = New([timesteps.Length, dim]);
        if (timesteps.Length == 0) return y;
        Device.MakeCurrent();
        var t = UploadRaw(timesteps);
        try
        {
            Launch(Spec(KernelCatalog.Resample), "lf_timestep_embedding", Grid1D(y.ElementCount), Threads,
                new KernelArgs().Ptr(t).Ptr(0).I32(0).I32(1).I32(1).Ptr(y.Ptr).I32(timesteps.Length).I32(dim).I32(flipSinToCos ? 1 : 0)
                    .F32(downscaleFreqShift).F32(scale).F32(MathF.Log(maxPeriod)));
        }
        finally { FreeAfterStream(t); }
        return y;
    }

    public Tensor Gather(Tensor table, ReadOnlySpan<int> ids)
    {
        var tb = Dev(table);
        if (tb.Rank != 2) throw new ArgumentException("gather expects a [V, D] table");
        int v = tb.Shape[0], d = tb.Shape[1];
        foreach (var id in ids)
            if ((uint)id >= (uint)v) throw new ArgumentOutOfRangeException(nameof(ids), $"id {id} outside table of {v} rows");
        var y = New([ids.Length, d]);
        if (y.ElementCount == 0) return y;
        Device.MakeCurrent();
        if (_inStep)
        {
            // inside denoising steps the ids are shape-derived (Upsample2D's nearest indices) and the same every
            // step: uploaded once, then read from the device without a copy or a wait (and capturable)
            Launch(Spec(KernelCatalog.Resample), "lf_gather", Grid1D(y.ElementCount), Threads,
                new KernelArgs().Ptr(tb.Ptr).Ptr(StepIds(ids)).Ptr(y.Ptr).I32(ids.Length).I64(d));
            return y;
        }
        var p = UploadRaw(ids);
        try
        {
            Launch(Spec(KernelCatalog.Resample), "lf_gather", Grid1D(y.ElementCount), Threads,
                new KernelArgs().Ptr(tb.Ptr).Ptr(p).Ptr(y.Ptr).I32(ids.Length).I64(d));
        }
        finally { FreeAfterStream(p); }
        return y;
    }

    // ---- elementwise & shape ------------------------------------------------------------------

    public Tensor Add(Tensor a, Tensor b) => Binary(a, b, "lf_add");
    public Tensor Sub(Tensor a, Tensor b) => Binary(a, b, "lf_sub");
    public Tensor Mul(Tensor a, Tensor b) => Binary(a, b, "lf_mul");

    CudaTensor Binary(Tensor a, Tensor b, string kernel)
    {
        var x = Dev(a);
        var y = New(x.Shape);
        BinaryInto(y, x, Dev(b), kernel);
        return y;
    }

    /// <summary>numpy broadcasting of b (rank &lt;= a's) to a's shape, as an index map of b's strides.</summary>
    public static IndexMap BroadcastMap(int[] aShape, int[] bShape)
    {
        if (bShape.Length > aShape.Length)
            throw new ArgumentException($"cannot broadcast {ShapeUtil.Format(bShape)} to {ShapeUtil.Format(aShape)}");
        var dims = new long[aShape.Length];
        var strides = new long[aShape.Length];
        long stride = 1;
        for (int i = aShape.Length - 1, j = bShape.Length - 1; i >= 0; i--, j--)
        {
            dims[i] = aShape[i];
            if (j < 0) { strides[i] = 0; continue; }
            if (bShape[j] != aShape[i] && bShape[j] != 1)
                throw new ArgumentException($"cannot broadcast {ShapeUtil.Format(bShape)} to {ShapeUtil.Format(aShape)}");
            strides[i] = bShape[j] == 1 ? 0 : stride;
            stride *= bShape[j];
        }
        return IndexMap.Create(dims, strides);
    }

    void BinaryInto(CudaTensor y, CudaTensor a, CudaTensor b, string kernel)
    {
        var map = BroadcastMap(a.Shape, b.Shape);
        bool same = a.Shape.AsSpan().SequenceEqual(b.Shape);
        if (a.ElementCount == 0) return;
        Launch(Spec(KernelCatalog.Elementwise), kernel, Grid1D(a.ElementCount), Threads,
            new KernelArgs().Ptr(a.Ptr).Ptr(b.Ptr).Ptr(y.Ptr).I64(a.ElementCount).Add(map).I32(same ? 1 : 0));
    }

    public Tensor Concat(IReadOnlyList<Tensor> parts, int axis)
    {
        if (parts.Count == 0) throw new ArgumentException("concat of no tensors");
        var first = Dev(parts[0]);
        int rank = first.Rank;
        if (axis < 0) axis += rank;
        if (axis < 0 || axis >= rank) throw new ArgumentOutOfRangeException(nameof(axis));
        var shape = (int[])first.Shape.Clone();
        shape[axis] = 0;
        foreach (var p in parts)
        {
            var t = Dev(p);
            for (int i = 0; i < rank; i++)
                if (t.Rank != rank || (i != axis && t.Shape[i] != first.Shape[i]))
                    throw new ArgumentException($"concat: {ShapeUtil.Format(t.Shape)} does not match {ShapeUtil.Format(first.Shape)} off axis {axis}");
            shape[axis] = checked(shape[axis] + t.Shape[axis]);
        }
        var y = New(shape);
        long outer = ShapeUtil.ElementCount(shape.AsSpan(0, axis)), inner = ShapeUtil.ElementCount(shape.AsSpan(axis + 1));
        long offset = 0;
        foreach (var p in parts)
        {
            var t = Dev(p);
            long len = t.Shape[axis] * inner;
            if (outer * len > 0)
                Launch(Spec(KernelCatalog.Shape), "lf_copy_rows", Grid1D(outer * len), Threads,
                    new KernelArgs().Ptr(t.Ptr).I64(len).I64(0).Ptr(y.Ptr).I64(shape[axis] * inner).I64(offset).I64(outer).I64(len));
            offset += len;
        }
        return y;
    }

    public Tensor Slice(Tensor x, int axis, int start, int length)
    {
        var xs = Dev(x);
        if (axis < 0) axis += xs.Rank;
        if (axis < 0 || axis >= xs.Rank) throw new ArgumentOutOfRangeException(nameof(axis));
        if (start < 0 || length < 0 || start + length > xs.Shape[axis])
            throw new ArgumentOutOfRangeException(nameof(start), $"slice [{start}, {start + length}) outside axis of {xs.Shape[axis]}");
        var shape = (int[])xs.Shape.Clone();
        shape[axis] = length;
        var y = New(shape);
        long outer = ShapeUtil.ElementCount(shape.AsSpan(0, axis)), inner = ShapeUtil.ElementCount(shape.AsSpan(axis + 1));
        long len = length * inner;
        if (outer * len > 0)
            Launch(Spec(KernelCatalog.Shape), "lf_copy_rows", Grid1D(outer * len), Threads,
                new KernelArgs().Ptr(xs.Ptr).I64(xs.Shape[axis] * inner).I64(start * inner).Ptr(y.Ptr).I64(len).I64(0).I64(outer).I64(len));
        return y;
    }

    /// <summary>The source strides of a permute's output axes, as an index map.</summary>
    public static IndexMap PermuteMap(int[] shape, int[] axes)
    {
        if (axes.Length != shape.Length || axes.Distinct().Count() != axes.Length || axes.Any(a => a < 0 || a >= shape.Length))
            throw new ArgumentException($"permute axes [{string.Join(", ", axes)}] invalid for rank {shape.Length}");
        var strides = new long[shape.Length];
        long s = 1;
        for (int i = shape.Length - 1; i >= 0; i--) { strides[i] = s; s *= shape[i]; }
        return IndexMap.Create(axes.Select(a => (long)shape[a]).ToArray(), axes.Select(a => strides[a]).ToArray());
    }

    public Tensor Permute(Tensor x, params int[] axes)
    {
        var xs = Dev(x);
        var map = PermuteMap(xs.Shape, axes);
        var y = New(axes.Select(a => xs.Shape[a]).ToArray());
        if (y.ElementCount > 0)
            Launch(Spec(KernelCatalog.Shape), "lf_permute", Grid1D(y.ElementCount), Threads,
                new KernelArgs().Ptr(xs.Ptr).Ptr(y.Ptr).I64(y.ElementCount).Add(map));
        return y;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Device.MakeCurrent();
        Driver.cuStreamSynchronize(Device.Stream);
        DrainFrees();
        DisposePriorOps();
        FreeStepIds();
        _arena.Dispose();
        foreach (var m in _modules.Values) Driver.cuModuleUnload(m);
        Cublas.cublasDestroy(_cublas);
        CublasLt.cublasLtDestroy(_cublasLt);
        Driver.cuMemFree(_ltWorkspace);
        Device.Release();
    }
}
