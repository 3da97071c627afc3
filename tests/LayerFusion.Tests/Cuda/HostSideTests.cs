using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;

namespace LayerFusion.Tests.Cuda;

/// <summary>The backend's host-side logic: storage conversions, arena bookkeeping, index maps.</summary>
public class HostSideTests
{
    [Fact]
    public void Fp16_encoding_is_System_Half_round_to_nearest_even()
    {
        var rng = new Random(11);
        var values = Enumerable.Range(0, 4096).Select(_ => (float)((rng.NextDouble() - 0.5) * Math.Pow(2, rng.Next(-20, 16)))).ToArray();
        var back = HostConvert.Decode(HostConvert.Encode(values, StorageType.F16), StorageType.F16);
        for (int i = 0; i < values.Length; i++) Assert.Equal((float)(Half)values[i], back[i]);
    }

    [Fact]
    public void Bf16_encoding_rounds_to_nearest_even_and_keeps_nan()
    {
        Assert.Equal(0x3F80, HostConvert.ToBf16(1f));
        // 1 + 2^-8 is exactly half way between 1 and 1 + 2^-7: ties to even (1.0)
        Assert.Equal(0x3F80, HostConvert.ToBf16(1f + MathF.Pow(2, -8)));
        // 1 + 3*2^-8 is half way between 1 + 2^-7 (odd) and 1 + 2^-6: ties to even (up)
        Assert.Equal(0x3F82, HostConvert.ToBf16(1f + 3 * MathF.Pow(2, -8)));
        Assert.Equal(0x3F81, HostConvert.ToBf16(1f + MathF.Pow(2, -8) + MathF.Pow(2, -12)));
        Assert.True(float.IsNaN(HostConvert.FromBf16(HostConvert.ToBf16(float.NaN))));
        Assert.Equal(float.PositiveInfinity, HostConvert.FromBf16(HostConvert.ToBf16(float.PositiveInfinity)));
        var rng = new Random(5);
        for (int i = 0; i < 4096; i++)
        {
            float v = (float)((rng.NextDouble() - 0.5) * 1000);
            float r = HostConvert.FromBf16(HostConvert.ToBf16(v));
            Assert.True(Math.Abs(r - v) <= Math.Abs(v) * Math.Pow(2, -8) * 1.0001, $"{v} -> {r}");
        }
    }

    [Fact]
    public void Poison_patterns_decode_to_nan()
    {
        Assert.True(float.IsNaN(BitConverter.UInt32BitsToSingle(HostConvert.NanBits(StorageType.F32))));
        Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf((ushort)HostConvert.NanBits(StorageType.F16))));
        Assert.True(float.IsNaN(HostConvert.FromBf16((ushort)HostConvert.NanBits(StorageType.BF16))));
    }

    sealed class FakeDevice
    {
        ulong _next = 1 << 20;
        public readonly Dictionary<ulong, long> Live = new();
        public ulong Alloc(long bytes)
        {
            var p = _next;
            _next += ((ulong)bytes + 4096 + 511) / 512 * 512;  // cuMemAlloc returns 512-byte aligned memory
            Live[p] = bytes;
            return p;
        }
        public void Free(ulong p) => Assert.True(Live.Remove(p));
    }

    [Fact]
    public void Arena_allocations_are_aligned_disjoint_and_inside_chunks()
    {
        var dev = new FakeDevice();
        using var arena = new BumpAllocator(dev.Alloc, dev.Free, initialChunkBytes: 10_000);
        var rng = new Random(3);
        var blocks = new List<(ulong P, long N)>();
        for (int i = 0; i < 200; i++)
        {
            long n = rng.Next(0, 5000);
            var p = arena.Allocate(n);
            Assert.Equal(0ul, p % BumpAllocator.Alignment);
            Assert.Contains(dev.Live, c => p >= c.Key && p + (ulong)n <= c.Key + (ulong)c.Value);
            blocks.Add((p, n));
        }
        var sorted = blocks.OrderBy(b => b.P).ToArray();
        for (int i = 1; i < sorted.Length; i++) Assert.True(sorted[i - 1].P + (ulong)sorted[i - 1].N <= sorted[i].P);
    }

    [Fact]
    public void Arena_reset_coalesces_so_the_next_identical_step_allocates_nothing()
    {
        var dev = new FakeDevice();
        using var arena = new BumpAllocator(dev.Alloc, dev.Free, initialChunkBytes: 4096);
        var sizes = new Random(9).Let(r => Enumerable.Range(0, 300).Select(_ => (long)r.Next(1, 20_000)).ToArray());
        foreach (var s in sizes) arena.Allocate(s);
        Assert.True(arena.ChunkCount > 1);
        arena.Reset();
        Assert.Equal(1, arena.ChunkCount);
        Assert.Single(dev.Live);
        int before = arena.DriverAllocations;
        for (int step = 0; step < 3; step++)
        {
            foreach (var s in sizes) arena.Allocate(s);
            arena.Reset();
        }
        Assert.Equal(before, arena.DriverAllocations);
        // bounded by the step's high water (aligned sizes), not by the sum of the doubling chunks
        long aligned = sizes.Sum(s => Math.Max(BumpAllocator.Alignment, (s + BumpAllocator.Alignment - 1) / BumpAllocator.Alignment * BumpAllocator.Alignment));
        Assert.Equal(aligned, arena.HighWater);
        Assert.Equal(arena.HighWater, arena.Capacity);
        arena.Dispose();
        Assert.Empty(dev.Live);
    }

    static long[] Strides(int[] shape)
    {
        var s = new long[shape.Length];
        long acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
        return s;
    }

    [Fact]
    public void Broadcast_map_matches_numpy_broadcasting()
    {
        var cases = new (int[] A, int[] B)[]
        {
            ([2, 3, 4, 5], [2, 3, 4, 5]), ([2, 3, 4, 5], [3, 1, 1]), ([2, 3, 4, 5], [5]), ([2, 3, 4, 5], [2, 1, 4, 1]),
            ([7, 1, 3], [1, 1, 3]), ([4, 6], [1]),
        };
        foreach (var (a, b) in cases)
        {
            var map = CudaOps.BroadcastMap(a, b);
            var bs = Strides(b);
            var idx = new int[a.Length];
            long n = a.Aggregate(1L, (x, y) => x * y);
            for (long i = 0; i < n; i++)
            {
                long r = i;
                for (int d = a.Length - 1; d >= 0; d--) { idx[d] = (int)(r % a[d]); r /= a[d]; }
                long expected = 0;
                for (int d = 0; d < b.Length; d++)
                {
                    int ad = d + a.Length - b.Length;
                    expected += (b[d] == 1 ? 0 : idx[ad]) * bs[d];
                }
                Assert.Equal(expected, map.Map(i));
            }
        }
        Assert.Throws<ArgumentException>(() => CudaOps.BroadcastMap([2, 3], [4]));
        Assert.Throws<ArgumentException>(() => CudaOps.BroadcastMap([3], [2, 3]));
    }

    [Fact]
    public void Permute_map_matches_a_direct_transpose()
    {
        int[] shape = [2, 3, 4, 5];
        int[] axes = [2, 0, 3, 1];
        var map = CudaOps.PermuteMap(shape, axes);
        var xs = Strides(shape);
        int[] outShape = axes.Select(a => shape[a]).ToArray();
        var idx = new int[4];
        for (long i = 0; i < 120; i++)
        {
            long r = i;
            for (int d = 3; d >= 0; d--) { idx[d] = (int)(r % outShape[d]); r /= outShape[d]; }
            long expected = 0;
            for (int d = 0; d < 4; d++) expected += idx[d] * xs[axes[d]];
            Assert.Equal(expected, map.Map(i));
        }
        Assert.Throws<ArgumentException>(() => CudaOps.PermuteMap(shape, [0, 0, 1, 2]));
    }

    [Fact]
    public void Attention_shared_memory_fits_an_A100_for_every_checked_head_dim()
    {
        foreach (var d in KernelCatalog.CheckedHeadDims)
            Assert.True(KernelCatalog.AttentionSharedBytes(d, KernelCatalog.RowsPerWarp(d)) <= 163 * 1024, $"head dim {d}");
    }
}

static class Let_
{
    public static TR Let<T, TR>(this T x, Func<T, TR> f) => f(x);
}

public class Reference64Tests
{
    [Theory]
    [InlineData(0.0, 0.0)]
    [InlineData(0.5, 0.5204998778130465)]
    [InlineData(1.0, 0.8427007929497149)]
    [InlineData(-2.0, -0.9953222650189527)]
    [InlineData(2.9, 0.9999589021219005)]
    [InlineData(3.5, 0.9999992569016276)]
    [InlineData(-5.0, -0.9999999999984626)]
    public void Erf_matches_tabulated_values(double x, double expected) =>
        Assert.Equal(expected, Reference64.Erf(x), 1e-13);
}
