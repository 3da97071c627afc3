using System.Collections.Concurrent;
using LayerFusion.Core.Tensors;

namespace LayerFusion.Cpu;

/// <summary>
/// A CPU tensor: contiguous row-major fp32 values at <see cref="Offset"/> in <see cref="Data"/>.
/// Reshape returns a view sharing the array; ops never write into their inputs, so views are safe.
/// Op outputs own pooled storage: when the output is disposed the array goes back to
/// <see cref="CpuArrayPool"/> for the next op output of that length (dead activations are reused
/// instead of piling up until a full GC); tensors never disposed are simply collected.
/// Views follow the model code's rule (dispose the op output, never its views): a view holds no
/// reference of its own, disposing it releases nothing, and reading it after its output was
/// disposed throws. (Views used to hold a reference, so the views the model never disposes kept
/// their outputs out of the pool: 3 leaked activations per Transformer2DModel call, issue 14.)
/// </summary>
public sealed class CpuTensor : Tensor
{
    readonly float[] _data;
    readonly CpuStorage? _storage;
    readonly bool _isView;
    bool _disposed;

    internal CpuTensor(CpuOps ops, float[] data, int offset, int[] shape) : this(ops, data, offset, shape, null, false) { }

    CpuTensor(CpuOps ops, float[] data, int offset, int[] shape, CpuStorage? storage, bool isView) : base(shape)
    {
        if (offset < 0 || offset + ElementCount > data.Length)
            throw new ArgumentException($"tensor {ShapeUtil.Format(shape)} at offset {offset} does not fit storage of {data.Length}");
        CpuOps = ops;
        _data = data;
        Offset = offset;
        _storage = storage;
        _isView = isView;
    }

    /// <summary>A tensor over a zeroed array from the pool, returned to it when the last view is disposed.</summary>
    internal static CpuTensor Pooled(CpuOps ops, int[] shape)
    {
        long n = ShapeUtil.ElementCount(shape);
        var data = CpuArrayPool.Rent(checked((int)n));
        return new CpuTensor(ops, data, 0, shape, CpuArrayPool.Pools(data.Length) ? new CpuStorage(data) : null, false);
    }

    internal CpuOps CpuOps { get; }

    /// <summary>The storage; a disposed tensor's array (or a view's, once its output is disposed) may already
    /// hold another tensor's values, so it throws.</summary>
    public float[] Data => _storage != null && (_disposed || _storage.Released) ? throw new ObjectDisposedException(ToString()) : _data;
    public int Offset { get; }
    public int Length => (int)ElementCount;
    public override IOps Ops => CpuOps;

    public Span<float> Span => Data.AsSpan(Offset, Length);
    public ReadOnlySpan<float> ReadOnlySpan => Data.AsSpan(Offset, Length);

    public override Tensor Reshape(params int[] shape)
    {
        var resolved = ShapeUtil.Resolve(shape, ElementCount);
        return new CpuTensor(CpuOps, Data, Offset, resolved, _storage, true);
    }

    public override void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            if (!_isView) _storage?.Release();
        }
        base.Dispose();
    }
}

/// <summary>An op output's array, shared by its views; back to the pool when the output is disposed.</summary>
internal sealed class CpuStorage(float[] data)
{
    int _released;

    public bool Released => Volatile.Read(ref _released) != 0;

    public void Release()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) CpuArrayPool.Return(data);
    }
}

/// <summary>
/// Exact-length free lists of large fp32 arrays (a UNet allocates the same activation sizes over and
/// over), bounded in total so the pool itself cannot grow without limit. Rented arrays are zeroed,
/// as a fresh allocation is.
/// </summary>
internal static class CpuArrayPool
{
    /// <summary>Below this the GC's gen0 handles arrays better than a pool.</summary>
    internal const int MinLength = 1 << 16;
    internal static long MaxPooledBytes { get; set; } = 1L << 30;

    static readonly ConcurrentDictionary<int, ConcurrentBag<float[]>> Free = new();
    static long _pooledBytes;

    internal static bool Pools(int length) => length >= MinLength;

    internal static float[] Rent(int length)
    {
        if (!Pools(length)) return new float[length];
        if (Free.TryGetValue(length, out var bag) && bag.TryTake(out var a))
        {
            Interlocked.Add(ref _pooledBytes, -4L * length);
            Array.Clear(a);
            return a;
        }
        Interlocked.Increment(ref _misses);
        OnMiss?.Invoke(length);
        return new float[length];
    }

    internal static void Return(float[] a)
    {
        long bytes = 4L * a.Length;
        if (Interlocked.Add(ref _pooledBytes, bytes) > MaxPooledBytes)
        {
            Interlocked.Add(ref _pooledBytes, -bytes);
            return; // over the bound: left to the GC
        }
        Free.GetOrAdd(a.Length, _ => new ConcurrentBag<float[]>()).Add(a);
    }

    internal static long PooledBytes => Interlocked.Read(ref _pooledBytes);

    /// <summary>Free arrays by length (the memory probe's breakdown).</summary>
    internal static (int Length, int Count)[] Contents() =>
        Free.Select(kv => (kv.Key, kv.Value.Count)).Where(e => e.Item2 > 0).OrderByDescending(e => (long)e.Item1 * e.Item2).ToArray();

    /// <summary>Rents of a poolable length that found no free array (fresh allocations).</summary>
    internal static long Misses => Interlocked.Read(ref _misses);
    static long _misses;

    /// <summary>Called with the length on every miss (the memory probe finds the call sites of leaked outputs).</summary>
    internal static Action<int>? OnMiss { get; set; }
}
