namespace LayerFusion.Cuda.Runtime;

/// <summary>
/// The bookkeeping of the per-step device arena, kept free of CUDA so it can be tested anywhere.
/// Allocations bump an offset through chunks; <see cref="Reset"/> (end of a denoising step) frees
/// everything at once and, if the step needed more than one chunk, replaces them by one chunk of
/// the high-water size (bounded by it, not by the sum of the chunks), so from the second step on a
/// step allocates nothing from the driver.
/// </summary>
public sealed class BumpAllocator(Func<long, ulong> allocateChunk, Action<ulong> freeChunk, long initialChunkBytes = 64L << 20)
    : IDisposable
{
    public const int Alignment = 256;

    readonly List<(ulong Ptr, long Size)> _chunks = [];
    int _current;
    long _offset;
    long _used;

    public long HighWater { get; private set; }
    public long Capacity => _chunks.Sum(c => c.Size);
    public int ChunkCount => _chunks.Count;
    public int DriverAllocations { get; private set; }
    /// <summary>Whether the next <see cref="Reset"/> frees and re-allocates chunks (the arena's addresses change).</summary>
    public bool ResetReallocates => _chunks.Count > 1;
    /// <summary>Counts the times the chunks were replaced: a graph captured over the arena is valid while this stays the same.</summary>
    public int Generation { get; private set; }

    public ulong Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        long size = Math.Max(Alignment, (bytes + Alignment - 1) / Alignment * Alignment);
        while (_current < _chunks.Count && _offset + size > _chunks[_current].Size)
        {
            _current++;
            _offset = 0;
        }
        if (_current == _chunks.Count)
        {
            long last = _chunks.Count == 0 ? initialChunkBytes : _chunks[^1].Size;
            long chunk = Math.Max(size, _chunks.Count == 0 ? initialChunkBytes : last * 2);
            _chunks.Add((allocateChunk(chunk), chunk));
            DriverAllocations++;
            _offset = 0;
        }
        var ptr = _chunks[_current].Ptr + (ulong)_offset;
        _offset += size;
        _used += size;
        HighWater = Math.Max(HighWater, _used);
        return ptr;
    }

    /// <summary>Like <see cref="Allocate"/>, but only from chunks already held (never calls allocateChunk).</summary>
    public bool TryAllocateInPlace(long bytes, out ulong ptr)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        long size = Math.Max(Alignment, (bytes + Alignment - 1) / Alignment * Alignment);
        int current = _current;
        long offset = _offset;
        while (current < _chunks.Count && offset + size > _chunks[current].Size)
        {
            current++;
            offset = 0;
        }
        if (current == _chunks.Count)
        {
            ptr = 0;
            return false;
        }
        _current = current;
        ptr = _chunks[current].Ptr + (ulong)offset;
        _offset = offset + size;
        _used += size;
        HighWater = Math.Max(HighWater, _used);
        return true;
    }

    public void Reset()
    {
        if (_chunks.Count > 1)
        {
            // the step's high water, not the sum of the doubling chunks (up to 2x it: 15-25 GB
            // guided 1024^2 steps would hold 30-50); one chunk has no tail gaps, so the same step fits
            long total = Math.Max(HighWater, initialChunkBytes);
            foreach (var c in _chunks) freeChunk(c.Ptr);
            _chunks.Clear();
            _chunks.Add((allocateChunk(total), total));
            DriverAllocations++;
            Generation++;
        }
        _current = 0;
        _offset = 0;
        _used = 0;
    }

    public void Dispose()
    {
        foreach (var c in _chunks) freeChunk(c.Ptr);
        _chunks.Clear();
    }
}
