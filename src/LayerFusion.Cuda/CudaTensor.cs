using LayerFusion.Core.Tensors;

namespace LayerFusion.Cuda;

/// <summary>Device memory behind one or more tensor views; freed when the last view is disposed or collected.</summary>
internal sealed class DeviceStorage
{
    readonly CudaOps _owner;
    int _refs = 1;

    public DeviceStorage(CudaOps owner, ulong ptr, long bytes, bool fromArena)
    {
        _owner = owner;
        Ptr = ptr;
        Bytes = bytes;
        FromArena = fromArena;
    }

    public ulong Ptr { get; }
    public long Bytes { get; }
    public bool FromArena { get; }

    public void AddRef() => Interlocked.Increment(ref _refs);

    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0)
        {
            if (!FromArena) _owner.FreeLater(Ptr);
            GC.SuppressFinalize(this);
        }
    }

    // Tensors that model code never disposes still give their memory back: the finalizer only
    // queues the pointer; the owning thread frees it at its next allocation.
    ~DeviceStorage()
    {
        if (!FromArena && Volatile.Read(ref _refs) > 0) _owner.FreeLater(Ptr);
    }
}

/// <summary>A tensor in device memory, in its backend's storage type.</summary>
public sealed class CudaTensor : Tensor
{
    readonly CudaOps _ops;
    readonly DeviceStorage _storage;
    bool _disposed;

    internal CudaTensor(CudaOps ops, DeviceStorage storage, int[] shape) : base(shape)
    {
        _ops = ops;
        _storage = storage;
    }

    public override IOps Ops => _ops;
    public ulong Ptr => _disposed ? throw new ObjectDisposedException(ToString()) : _storage.Ptr;
    internal DeviceStorage Storage => _storage;

    public override Tensor Reshape(params int[] shape)
    {
        var resolved = ShapeUtil.Resolve(shape, ElementCount);
        _storage.AddRef();
        return new CudaTensor(_ops, _storage, resolved);
    }

    public override void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _storage.Release();
        }
        base.Dispose();
    }
}
