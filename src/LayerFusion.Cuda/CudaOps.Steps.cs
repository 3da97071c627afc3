using LayerFusion.Core.Tensors;
using LayerFusion.Cuda.Interop;
using LayerFusion.Cuda.Runtime;

namespace LayerFusion.Cuda;

// The denoising loops' device-resident step (IOps.Steps.cs, IStepArena): a generation's step table
// in fp32 device memory with an int32 step counter beside it, ops that read their scalars there,
// in-place copies for the tensors that outlive a step, and step graphs. Inside a step nothing here
// copies to or from the host, allocates from the driver or waits for the device.
public sealed unsafe partial class CudaOps
{
    const int MaxStepIds = 64;
    readonly List<(int[] Ids, ulong Ptr)> _stepIds = [];

    sealed class CudaStepScalars(CudaOps owner, ulong values, int steps, int columns, int constants) : StepScalars(steps, columns, constants)
    {
        public CudaOps Owner { get; } = owner;
        /// <summary>fp32 [steps * columns] then [constants], then the int32 counter.</summary>
        public ulong Values { get; } = values;
        public ulong Counter => Values + (ulong)((long)(Steps * Columns + ConstantCount) * sizeof(float));
        bool _disposed;

        public ulong Address(StepScalar s) =>
            Values + (ulong)((long)(s.PerStep ? s.Index : Steps * Columns + s.Index) * sizeof(float));

        public override void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            Owner.FreeLater(Values);
            base.Dispose();
        }

        ~CudaStepScalars()
        {
            if (!_disposed) Owner.FreeLater(Values);
        }
    }

    public StepScalars CreateStepScalars(ReadOnlySpan<float> perStep, int steps, int columns, ReadOnlySpan<float> constants)
    {
        StepScalars.CheckShape(perStep, steps, columns);
        if (Device.IsCapturing) throw new InvalidOperationException("a step table cannot be created during a CUDA graph capture");
        Device.MakeCurrent();
        DrainFrees();
        var data = new float[perStep.Length + constants.Length + 1];
        perStep.CopyTo(data);
        constants.CopyTo(data.AsSpan(perStep.Length));
        data[^1] = BitConverter.Int32BitsToSingle(0);  // the counter, at step 0
        Driver.Check(Driver.cuMemAlloc(out var p, (nuint)(data.Length * sizeof(float))), "cuMemAlloc(step table)");
        fixed (float* src = data)
        {
            Driver.Check(Driver.cuMemcpyHtoDAsync(p, src, (nuint)(data.Length * sizeof(float)), Device.Stream), "cuMemcpyHtoDAsync");
            Driver.Check(Driver.cuStreamSynchronize(Device.Stream), "cuStreamSynchronize");
        }
        return new CudaStepScalars(this, p, steps, columns, constants.Length);
    }

    CudaStepScalars Table(StepScalar s, int count, string what)
    {
        if (s.Table is not CudaStepScalars t || !ReferenceEquals(t.Owner, this))
            throw new ArgumentException($"{what}: the step table does not belong to backend {Name}");
        t.CheckRun(s, count, what);
        return t;
    }

    public void AdvanceStep(StepScalars scalars)
    {
        if (scalars is not CudaStepScalars t || !ReferenceEquals(t.Owner, this))
            throw new ArgumentException($"AdvanceStep: the step table does not belong to backend {Name}");
        Launch(Spec(KernelCatalog.Elementwise), "lf_step_advance", (1u, 1u, 1u), 32, new KernelArgs().Ptr(t.Counter));
    }

    public Tensor TimestepEmbedding(StepScalar first, int count, int repeat, int dim, bool flipSinToCos, float downscaleFreqShift,
        float scale = 1f, int maxPeriod = 10000)
    {
        var t = Table(first, count, "TimestepEmbedding");
        if (dim <= 0) throw new ArgumentException("timestep embedding dim must be positive");
        ArgumentOutOfRangeException.ThrowIfLessThan(repeat, 1);
        int rows = checked(count * repeat);
        var y = New([rows, dim]);
        Launch(Spec(KernelCatalog.Resample), "lf_timestep_embedding", Grid1D(y.ElementCount), Threads,
            new KernelArgs().Ptr(t.Address(first)).Ptr(t.Counter).I32(first.PerStep ? t.Columns : 0).I32(t.Steps).I32(repeat)
                .Ptr(y.Ptr).I32(rows).I32(dim).I32(flipSinToCos ? 1 : 0).F32(downscaleFreqShift).F32(scale).F32(MathF.Log(maxPeriod)));
        return y;
    }

    public Tensor StepCombine(Tensor x, StepScalar a, Tensor y, StepScalar b)
    {
        var xs = Dev(x);
        var ys = Dev(y);
        if (!xs.Shape.AsSpan().SequenceEqual(ys.Shape))
            throw new ArgumentException($"step combine: {ShapeUtil.Format(xs.Shape)} and {ShapeUtil.Format(ys.Shape)} differ");
        var ta = Table(a, 1, "StepCombine a");
        var tb = Table(b, 1, "StepCombine b");
        if (!ReferenceEquals(ta, tb)) throw new ArgumentException("StepCombine: a and b come from different step tables");
        return Combine(xs, ys.Ptr, ta, a, b);
    }

    public Tensor StepScale(Tensor x, StepScalar a)
    {
        var t = Table(a, 1, "StepScale");
        return Combine(Dev(x), 0, t, a, a);
    }

    CudaTensor Combine(CudaTensor x, ulong y, CudaStepScalars t, StepScalar a, StepScalar b)
    {
        if (a.PerStep != b.PerStep) throw new ArgumentException("StepCombine: a and b must both be per-step columns or both constants");
        var z = New(x.Shape);
        if (z.ElementCount > 0)
            Launch(Spec(KernelCatalog.Elementwise), "lf_step_combine", Grid1D(z.ElementCount), Threads,
                new KernelArgs().Ptr(x.Ptr).Ptr(y).Ptr(z.Ptr).I64(z.ElementCount).Ptr(t.Address(a)).Ptr(t.Address(b)).Ptr(t.Counter)
                    .I32(a.PerStep ? t.Columns : 0).I32(t.Steps));
        return z;
    }

    public Tensor StepRow(Tensor rows, StepScalars scalars)
    {
        var r = Dev(rows);
        if (scalars is not CudaStepScalars t || !ReferenceEquals(t.Owner, this))
            throw new ArgumentException($"StepRow: the step table does not belong to backend {Name}");
        if (r.Rank < 2 || r.Shape[0] != t.Steps) throw new ArgumentException($"StepRow: rows {ShapeUtil.Format(r.Shape)} must be [{t.Steps}, ...]");
        var y = New(r.Shape[1..]);
        if (y.ElementCount > 0)
            Launch(Spec(KernelCatalog.Elementwise), "lf_step_select_row", Grid1D(y.ElementCount), Threads,
                new KernelArgs().Ptr(r.Ptr).Ptr(y.Ptr).I64(y.ElementCount).Ptr(t.Counter).I32(t.Steps));
        return y;
    }

    /// <summary>Overwrites <paramref name="destination"/> with <paramref name="source"/> (device to device, stream-ordered).</summary>
    public void CopyInto(Tensor destination, Tensor source)
    {
        var d = Dev(destination);
        var s = Dev(source);
        if (!d.Shape.AsSpan().SequenceEqual(s.Shape))
            throw new ArgumentException($"copy: {ShapeUtil.Format(s.Shape)} into {ShapeUtil.Format(d.Shape)}");
        if (d.ElementCount == 0 || d.Ptr == s.Ptr) return;
        Device.MakeCurrent();
        Driver.Check(Driver.cuMemcpyDtoDAsync(d.Ptr, s.Ptr, (nuint)Bytes(d), Device.Stream), "cuMemcpyDtoDAsync");
    }

    /// <summary>Gather ids used inside steps, on the device: uploaded at their first use, found by content after.</summary>
    ulong StepIds(ReadOnlySpan<int> ids)
    {
        foreach (var (known, ptr) in _stepIds)
            if (ids.SequenceEqual(known)) return ptr;
        if (Device.IsCapturing)
            throw new InvalidOperationException("gather ids not seen in an uncaptured step: run the same work once uncaptured in a step first");
        if (_stepIds.Count >= MaxStepIds)
            throw new InvalidOperationException($"more than {MaxStepIds} distinct gather id lists inside steps");
        var p = UploadRaw(ids);
        _stepIds.Add((ids.ToArray(), p));
        return p;
    }

    void FreeStepIds()
    {
        foreach (var (_, p) in _stepIds) Driver.cuMemFree(p);
        _stepIds.Clear();
    }

    /// <summary>Whether <see cref="TryCapture"/> captures: not while every op synchronizes (LAYERFUSION_CUDA_SYNC=1).</summary>
    public bool CanCaptureSteps => !SynchronizeEachOp;

    public IStepGraph? TryCapture(Action issue)
    {
        ArgumentNullException.ThrowIfNull(issue);
        if (!_inStep) throw new InvalidOperationException("capture a denoising step inside BeginStep, after one uncaptured step of the same work");
        if (!CanCaptureSteps) return null;
        int generation = _arena.Generation;
        var graph = CudaGraph.Capture(Device, issue);
        return new StepGraph(this, graph, generation);
    }

    sealed class StepGraph(CudaOps ops, CudaGraph graph, int generation) : IStepGraph
    {
        public void Launch()
        {
            // the graph names arena addresses: replaying it over re-allocated chunks would write freed memory
            if (ops._arena.Generation != generation)
                throw new InvalidOperationException("the step arena was re-allocated since this step graph was captured; capture it again");
            graph.Launch();
            if (ops.SynchronizeEachOp) ops.Device.Synchronize();
        }

        public void Dispose() => graph.Dispose();
    }
}
