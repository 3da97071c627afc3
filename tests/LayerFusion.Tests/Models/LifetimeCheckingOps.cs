using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Tests.Models;

/// <summary>
/// An <see cref="IOps"/> decorator that behaves like a backend freeing storage on Dispose (as a GPU
/// backend does): every op output owns a storage record; Reshape views share it; using a tensor whose
/// storage was disposed, disposing it twice, or disposing a view (the model code's rule is to dispose
/// only op outputs) throws. Live storages are counted so leaks can be bounded.
/// </summary>
internal sealed class LifetimeCheckingOps(IOps inner) : IOps
{
    sealed class Storage
    {
        public bool Disposed;
        public bool IsWeight;
    }

    sealed class Checked : Tensor
    {
        public Checked(LifetimeCheckingOps owner, Tensor inner, Storage storage, bool isView) : base(inner.Shape)
        {
            Owner = owner;
            Inner = inner;
            Storage = storage;
            IsView = isView;
        }

        public LifetimeCheckingOps Owner { get; }
        public Tensor Inner { get; }
        public Storage Storage { get; }
        public bool IsView { get; }
        public override IOps Ops => Owner;

        public override Tensor Reshape(params int[] shape)
        {
            Owner.Use(this);
            return new Checked(Owner, Inner.Reshape(shape), Storage, true);
        }

        public override void Dispose()
        {
            if (IsView) throw new InvalidOperationException($"a Reshape view {this} was disposed (dispose the op output instead)");
            if (Storage.IsWeight) throw new InvalidOperationException($"a weight {this} was disposed");
            if (Storage.Disposed) throw new InvalidOperationException($"{this} disposed twice");
            Storage.Disposed = true;
            lock (Owner._live) Owner._live.Remove(Storage);
            base.Dispose();
        }
    }

    readonly HashSet<Storage> _live = new(ReferenceEqualityComparer.Instance);

    readonly HashSet<string> _uploaded = new();

    public int LiveCount { get { lock (_live) return _live.Count; } }

    int _fromHost, _toHost, _uploads, _scalarUploads;
    /// <summary>Host-to-device copies (FromHost), device-to-host reads (ToHost), weight uploads, and the
    /// small host arrays TimestepEmbedding and Gather take (timesteps, time ids, token ids).</summary>
    public (int FromHost, int ToHost, int Uploads, int ScalarUploads) Transfers =>
        (Volatile.Read(ref _fromHost), Volatile.Read(ref _toHost), Volatile.Read(ref _uploads), Volatile.Read(ref _scalarUploads));

    /// <summary>Names of every checkpoint tensor uploaded so far.</summary>
    public IReadOnlySet<string> Uploaded { get { lock (_uploaded) return _uploaded.ToHashSet(); } }

    Tensor Use(Tensor t)
    {
        if (t is not Checked c || c.Owner != this) throw new InvalidOperationException($"{t} is not a tensor of this backend");
        if (c.Storage.Disposed) throw new InvalidOperationException($"use after dispose: {t}");
        return c.Inner;
    }

    Tensor? UseOpt(Tensor? t) => t is null ? null : Use(t);

    Tensor Wrap(Tensor t, bool weight = false)
    {
        var s = new Storage { IsWeight = weight };
        if (!weight) lock (_live) _live.Add(s);
        return new Checked(this, t, s, false);
    }

    public string Name => "checked-" + inner.Name;
    public Tensor FromHost(ReadOnlySpan<float> data, params int[] shape)
    {
        Interlocked.Increment(ref _fromHost);
        return Wrap(inner.FromHost(data, shape));
    }
    public float[] ToHost(Tensor x)
    {
        Interlocked.Increment(ref _toHost);
        return inner.ToHost(Use(x));
    }
    public Tensor Zeros(params int[] shape) => Wrap(inner.Zeros(shape));
    public Tensor Upload(WeightTensor weight)
    {
        Interlocked.Increment(ref _uploads);
        lock (_uploaded) _uploaded.Add(weight.Name);
        return Wrap(inner.Upload(weight), weight: true);
    }
    public Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null) => Wrap(inner.Linear(Use(x), Use(weight), UseOpt(bias)));
    public Tensor MatMul(Tensor a, Tensor b, bool transposeB = false, float alpha = 1) => Wrap(inner.MatMul(Use(a), Use(b), transposeB, alpha));
    public Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, int stride = 1, int padding = 0) =>
        Wrap(inner.Conv2d(Use(x), Use(weight), UseOpt(bias), stride, padding));
    public Tensor GroupNorm(Tensor x, int groups, Tensor? gamma, Tensor? beta, float eps, bool fuseSilu = false) =>
        Wrap(inner.GroupNorm(Use(x), groups, UseOpt(gamma), UseOpt(beta), eps, fuseSilu));
    public Tensor LayerNorm(Tensor x, Tensor? gamma, Tensor? beta, float eps) => Wrap(inner.LayerNorm(Use(x), UseOpt(gamma), UseOpt(beta), eps));
    public Tensor Silu(Tensor x) => Wrap(inner.Silu(Use(x)));
    public Tensor Gelu(Tensor x, bool tanhApproximation = false) => Wrap(inner.Gelu(Use(x), tanhApproximation));
    public Tensor QuickGelu(Tensor x) => Wrap(inner.QuickGelu(Use(x)));
    public Tensor Geglu(Tensor x) => Wrap(inner.Geglu(Use(x)));
    public Tensor Softmax(Tensor x) => Wrap(inner.Softmax(Use(x)));
    public Tensor Attention(Tensor q, Tensor k, Tensor v, int heads, Tensor? keyBias = null, bool causal = false) =>
        Wrap(inner.Attention(Use(q), Use(k), Use(v), heads, UseOpt(keyBias), causal));
    public Tensor Upsample2xNearest(Tensor x) => Wrap(inner.Upsample2xNearest(Use(x)));
    public Tensor TimestepEmbedding(ReadOnlySpan<float> timesteps, int dim, bool flipSinToCos, float downscaleFreqShift, float scale = 1,
        int maxPeriod = 10000)
    {
        Interlocked.Increment(ref _scalarUploads);
        return Wrap(inner.TimestepEmbedding(timesteps, dim, flipSinToCos, downscaleFreqShift, scale, maxPeriod));
    }
    public Tensor Gather(Tensor table, ReadOnlySpan<int> ids)
    {
        Interlocked.Increment(ref _scalarUploads);
        return Wrap(inner.Gather(Use(table), ids));
    }
    public Tensor Add(Tensor a, Tensor b) => Wrap(inner.Add(Use(a), Use(b)));
    public Tensor Sub(Tensor a, Tensor b) => Wrap(inner.Sub(Use(a), Use(b)));
    public Tensor Mul(Tensor a, Tensor b) => Wrap(inner.Mul(Use(a), Use(b)));
    public Tensor Affine(Tensor x, float alpha, float beta = 0) => Wrap(inner.Affine(Use(x), alpha, beta));
    public Tensor Clamp(Tensor x, float min, float max) => Wrap(inner.Clamp(Use(x), min, max));
    /// <summary>The step table's one upload counts as a FromHost copy; reading it (the ops below) moves nothing.</summary>
    public StepScalars CreateStepScalars(ReadOnlySpan<float> perStep, int steps, int columns, ReadOnlySpan<float> constants)
    {
        Interlocked.Increment(ref _fromHost);
        return inner.CreateStepScalars(perStep, steps, columns, constants);
    }
    public void AdvanceStep(StepScalars scalars) => inner.AdvanceStep(scalars);
    public Tensor TimestepEmbedding(StepScalar first, int count, int repeat, int dim, bool flipSinToCos, float downscaleFreqShift,
        float scale = 1f, int maxPeriod = 10000) => Wrap(inner.TimestepEmbedding(first, count, repeat, dim, flipSinToCos, downscaleFreqShift, scale, maxPeriod));
    public Tensor StepCombine(Tensor x, StepScalar a, Tensor y, StepScalar b) => Wrap(inner.StepCombine(Use(x), a, Use(y), b));
    public Tensor StepScale(Tensor x, StepScalar a) => Wrap(inner.StepScale(Use(x), a));
    public Tensor StepRow(Tensor rows, StepScalars scalars) => Wrap(inner.StepRow(Use(rows), scalars));
    public Tensor Concat(IReadOnlyList<Tensor> parts, int axis) => Wrap(inner.Concat(parts.Select(Use).ToArray(), axis));
    public Tensor Slice(Tensor x, int axis, int start, int length) => Wrap(inner.Slice(Use(x), axis, start, length));
    public Tensor Permute(Tensor x, params int[] axes) => Wrap(inner.Permute(Use(x), axes));
    public PriorAttentionOutputs PriorAttention(Tensor q, Tensor k, Tensor v, int heads, bool sparsity, int column)
    {
        var r = inner.PriorAttention(Use(q), Use(k), Use(v), heads, sparsity, column);
        return new PriorAttentionOutputs(Wrap(r.Output), r.Sparsity is null ? null : Wrap(r.Sparsity), r.Column is null ? null : Wrap(r.Column));
    }
    public Tensor DensityPrior(Tensor sparsity) => Wrap(inner.DensityPrior(Use(sparsity)));
    public Tensor ResizeBilinear(Tensor maps, int height, int width, int outHeight, int outWidth) =>
        Wrap(inner.ResizeBilinear(Use(maps), height, width, outHeight, outWidth));
    public (Tensor Soft, Tensor Hard) PriorMasks(Tensor density, Tensor content, float d)
    {
        var (s, h) = inner.PriorMasks(Use(density), Use(content), d);
        return (Wrap(s), Wrap(h));
    }
    public (Tensor Fg, Tensor Blend) PriorBlend(Tensor fg, Tensor blend, Tensor soft, Tensor hard)
    {
        var (f, b) = inner.PriorBlend(Use(fg), Use(blend), Use(soft), Use(hard));
        return (Wrap(f), Wrap(b));
    }
    public Tensor ExclusionKeyBias(Tensor hard, int rows, int openKeys) => Wrap(inner.ExclusionKeyBias(Use(hard), rows, openKeys));
}
