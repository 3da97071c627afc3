using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using LayerFusion.Cuda.Interop;

namespace LayerFusion.Cuda.Runtime;

/// <summary>
/// Mirrors lf_index_map in kernels/lf_common.cuh: maps an output element's linear index to a source
/// offset (dims of the output; per-axis source strides, 0 where broadcast).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct IndexMap
{
    public const int MaxRank = 8;
    public int Rank;
    public int Pad;
    public fixed long Dims[MaxRank];
    public fixed long Strides[MaxRank];

    public static IndexMap Create(ReadOnlySpan<long> dims, ReadOnlySpan<long> strides)
    {
        if (dims.Length > MaxRank) throw new NotSupportedException($"CUDA backend supports rank <= {MaxRank}, got {dims.Length}");
        var m = new IndexMap { Rank = dims.Length };
        for (int i = 0; i < dims.Length; i++)
        {
            m.Dims[i] = dims[i];
            m.Strides[i] = strides[i];
        }
        return m;
    }

    /// <summary>The same mapping on the host, for tests.</summary>
    public long Map(long i)
    {
        long off = 0;
        for (int a = Rank - 1; a >= 0; a--)
        {
            off += i % Dims[a] * Strides[a];
            i /= Dims[a];
        }
        return off;
    }
}

/// <summary>Packs kernel arguments with their natural alignment and launches through cuLaunchKernel.</summary>
public sealed unsafe class KernelArgs
{
    readonly byte[] _buffer = new byte[1024];
    readonly int[] _offsets = new int[32];
    int _count, _pos;

    public KernelArgs Ptr(ulong p) => Add(p);
    public KernelArgs I32(int v) => Add(v);
    public KernelArgs I64(long v) => Add(v);
    public KernelArgs F32(float v) => Add(v);

    public KernelArgs Add<T>(T value) where T : unmanaged
    {
        int size = sizeof(T), align = Math.Min(8, size);
        _pos = (_pos + align - 1) / align * align;
        if (_pos + size > _buffer.Length || _count == _offsets.Length) throw new InvalidOperationException("too many kernel arguments");
        Unsafe.WriteUnaligned(ref _buffer[_pos], value);
        _offsets[_count++] = _pos;
        _pos += size;
        return this;
    }

    public void Launch(IntPtr function, (uint X, uint Y, uint Z) grid, uint block, uint sharedBytes, IntPtr stream, string name)
    {
        fixed (byte* basePtr = _buffer)
        {
            var ptrs = stackalloc void*[Math.Max(1, _count)];
            for (int i = 0; i < _count; i++) ptrs[i] = basePtr + _offsets[i];
            Driver.Check(Driver.cuLaunchKernel(function, grid.X, grid.Y, grid.Z, block, 1, 1, sharedBytes, stream, ptrs, null),
                $"cuLaunchKernel({name})");
        }
    }
}
