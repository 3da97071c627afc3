using LayerFusion.Core.Tensors;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.TestSupport;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// Opens the GPU once for a test class; remembers why not when it cannot. A fault in device code
/// (an out-of-bounds kernel) poisons the context for every later call, on the hardware and on the
/// emulated device alike: the test that caused it fails with the fault's message, and the next test
/// that asks for the backend finds the context poisoned, drops everything built on it (its last
/// release destroys the context) and opens a fresh one, so the fault fails that one test only.
/// </summary>
public sealed class CudaFixture : IDisposable
{
    readonly Dictionary<StorageType, CudaOps> _ops = new();
    string _reason;

    public CudaFixture() => Device = CudaDevice.TryOpen(out _reason);

    public CudaDevice? Device { get; private set; }
    public string Reason => _reason;
    /// <summary>How many times a poisoned context was replaced by a fresh one.</summary>
    public int Recoveries { get; private set; }

    /// <summary>The backend in <paramref name="storage"/>, or the test is reported as skipped, with the reason.</summary>
    public CudaOps Ops(StorageType storage)
    {
        Requires.Device(Device is not null, Reason);
        EmulatedCuda.NoteTestRuns();
        lock (_ops)
        {
            if (DeviceFaults.Poisoned(Device) is { } fault)
            {
                foreach (var o in _ops.Values) o.Dispose();
                _ops.Clear();
                Device.Dispose();
                Device = CudaDevice.TryOpen(out _reason);
                Requires.Device(Device is not null, $"reopening after an earlier test's fault ({fault}): {_reason}");
                Assert.True(DeviceFaults.Poisoned(Device) is null,
                    $"the CUDA context is still poisoned by an earlier test's fault ({fault}): something else still holds it");
                Recoveries++;
            }
            if (!_ops.TryGetValue(storage, out var ops))
            {
                try { ops = new CudaOps(Device, storage) { PoisonOutputs = true, SynchronizeEachOp = true }; }
                catch (LayerFusion.Cuda.Interop.CudaUnavailableException e) { Requires.Device(false, e.Message); throw; }
                _ops[storage] = ops;
            }
            return ops;
        }
    }

    public void Dispose()
    {
        foreach (var o in _ops.Values) o.Dispose();
        Device?.Dispose();
    }
}

/// <summary>Whether an earlier fault in device code poisoned a device's context.</summary>
public static class DeviceFaults
{
    /// <summary>
    /// Null when the context is usable; else the sticky error a synchronize reports (a kernel's
    /// illegal address or launch failure), as the driver words it.
    /// </summary>
    public static string? Poisoned(CudaDevice device)
    {
        device.MakeCurrent();
        int rc = LayerFusion.Cuda.Interop.Driver.cuCtxSynchronize();
        if (rc == 0) return null;
        try { LayerFusion.Cuda.Interop.Driver.Check(rc, "cuCtxSynchronize"); }
        catch (LayerFusion.Cuda.Interop.CudaException e) { return e.Message; }
        return $"CUresult {rc}";
    }
}

/// <summary>
/// Every CUDA op against the float64 reference on fresh random inputs, in each storage type.
/// Inputs are rounded to the storage type first, so the bound measures the kernel, not the input
/// quantization: fp32 1e-5 (elementwise) / 1e-4 (reductions, GEMMs), fp16 2e-3, bf16 1e-2
/// (‖gpu − ref‖₂ / ‖ref‖₂). Outputs are NaN-poisoned before each kernel, and any non-finite value
/// fails. Without a GPU the tests run on the emulated device (EmulatedCuda); without either they
/// report as skipped with the reason.
/// When LAYERFUSION_REPORT_DIR is set the measured errors are appended to parity.tsv there.
/// </summary>
[Collection("cuda")]
[Trait("device", "CUDA: emulated sm_90 on the CPU where no GPU is installed (tests/cuda-standin)")]
public class CudaParityTests(CudaFixture fx) : IClassFixture<CudaFixture>
{
    static readonly Random Seeds = new();

    static double Bound(StorageType t, bool reduction) => t switch
    {
        StorageType.F32 => reduction ? 1e-4 : 1e-5,
        StorageType.F16 => 2e-3,
        _ => 1e-2,
    };

    static float[] Rand(Random rng, int n, double scale = 1)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return a;
    }

    static float[] Q(float[] x, StorageType t) => HostConvert.Decode(HostConvert.Encode(x, t), t);

    (Random Rng, int Seed) NewRng()
    {
        int seed;
        lock (Seeds) seed = Seeds.Next();
        return (new Random(seed), seed);
    }

    static void Check(string op, StorageType t, float[] gpu, double[] reference, bool reduction, int seed)
    {
        Assert.Equal(reference.Length, gpu.Length);
        double num = 0, den = 0;
        for (int i = 0; i < gpu.Length; i++)
        {
            Assert.True(float.IsFinite(gpu[i]), $"{op} [{t}] element {i} is {gpu[i]} (unwritten or overflow), seed {seed}");
            num += (gpu[i] - reference[i]) * (gpu[i] - reference[i]);
            den += reference[i] * reference[i];
        }
        double rel = Math.Sqrt(num / Math.Max(den, 1e-300));
        double bound = Bound(t, reduction);
        var dir = Environment.GetEnvironmentVariable("LAYERFUSION_REPORT_DIR");
        if (!string.IsNullOrEmpty(dir))
            lock (Seeds) File.AppendAllText(Path.Combine(dir, "parity.tsv"), $"{op}\t{t}\t{rel:E3}\t{bound:E0}\t{seed}\n");
        Assert.True(rel < bound, $"{op} [{t}]: relative error {rel:E3} >= {bound:E0} (seed {seed})");
    }

    Tensor Up(CudaOps ops, float[] q, params int[] shape) => ops.FromHost(q, shape);

    public static TheoryData<StorageType> Storages => new(StorageType.F32, StorageType.F16, StorageType.BF16);

    [Theory, MemberData(nameof(Storages))]
    public void Linear_with_and_without_bias(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        foreach (var (rows, inF, outF, bias) in new[] { (77, 96, 130, true), (64, 320, 640, false), (5, 33, 7, true), (37, 45, 51, true) })
        {
            var x = Q(Rand(rng, rows * inF), t);
            var w = Q(Rand(rng, outF * inF, 1 / Math.Sqrt(inF)), t);
            var b = bias ? Q(Rand(rng, outF), t) : null;
            using var y = ops.Linear(Up(ops, x, 1, rows, inF), Up(ops, w, outF, inF), b is null ? null : Up(ops, b, outF));
            Assert.Equal([1, rows, outF], y.Shape);
            Check($"linear {rows}x{inF}->{outF}{(bias ? "+b" : "")}", t, ops.ToHost(y), Reference64.Linear(x, rows, inF, w, outF, b), true, seed);
        }
    }

    [Theory, MemberData(nameof(Storages))]
    public void Batched_matmul_plain_and_transposed(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        foreach (var (lead, m, k, n, tb) in new (int[], int, int, int, bool)[] { ([2, 3], 50, 40, 77, false), ([4], 64, 64, 96, true), ([1], 9, 17, 3, true) })
        {
            int batch = lead.Aggregate(1, (p, q) => p * q);
            var a = Q(Rand(rng, batch * m * k), t);
            var b = Q(Rand(rng, batch * k * n), t);
            using var y = ops.MatMul(Up(ops, a, [.. lead, m, k]), Up(ops, b, [.. lead, tb ? n : k, tb ? k : n]), tb, 0.125f);
            Assert.Equal([.. lead, m, n], y.Shape);
            Check($"matmul b{batch} {m}x{k}x{n}{(tb ? " T" : "")}", t, ops.ToHost(y), Reference64.MatMul(a, b, batch, m, k, n, tb, 0.125), true, seed);
        }
    }

    [Theory, MemberData(nameof(Storages))]
    public void Conv2d_kernels_strides_and_padding(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        foreach (var (n, c, h, w, o, k, s, p) in new[] { (2, 8, 13, 11, 12, 3, 1, 1), (2, 16, 16, 16, 8, 3, 2, 1), (1, 24, 9, 7, 10, 1, 1, 0), (1, 4, 8, 8, 6, 3, 1, 0) })
        {
            var x = Q(Rand(rng, n * c * h * w), t);
            var wt = Q(Rand(rng, o * c * k * k, 1 / Math.Sqrt(c * k * k)), t);
            var b = Q(Rand(rng, o), t);
            using var y = ops.Conv2d(Up(ops, x, n, c, h, w), Up(ops, wt, o, c, k, k), Up(ops, b, o), s, p);
            var r = Reference64.Conv2d(x, n, c, h, w, wt, o, k, k, b, s, p, out var ho, out var wo);
            Assert.Equal([n, o, ho, wo], y.Shape);
            Check($"conv2d {c}->{o} k{k} s{s} p{p}", t, ops.ToHost(y), r, true, seed);
        }
    }

    [Theory, MemberData(nameof(Storages))]
    public void GroupNorm_with_optional_affine_and_silu(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        foreach (var (n, c, hw, g, affine, silu) in new[] { (2, 64, 100, 32, true, true), (1, 12, 49, 4, true, false), (2, 8, 9, 2, false, true) })
        {
            var x = Q(Rand(rng, n * c * hw, 3).Select(v => v + 1.5f).ToArray(), t);
            var gamma = affine ? Q(Rand(rng, c), t) : null;
            var beta = affine ? Q(Rand(rng, c), t) : null;
            using var y = ops.GroupNorm(Up(ops, x, n, c, hw), g, gamma is null ? null : Up(ops, gamma, c),
                beta is null ? null : Up(ops, beta, c), 1e-5f, silu);
            Check($"groupnorm c{c} g{g}{(silu ? "+silu" : "")}", t, ops.ToHost(y),
                Reference64.GroupNorm(x, n, c, hw, g, gamma, beta, 1e-5, silu), true, seed);
        }
    }

    [Theory, MemberData(nameof(Storages))]
    public void LayerNorm_rows(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        foreach (var (rows, d, affine) in new[] { (77, 768, true), (10, 33, false), (3, 1280, true) })
        {
            var x = Q(Rand(rng, rows * d, 2).Select(v => v - 0.7f).ToArray(), t);
            var gamma = affine ? Q(Rand(rng, d), t) : null;
            var beta = affine ? Q(Rand(rng, d), t) : null;
            using var y = ops.LayerNorm(Up(ops, x, rows, d), gamma is null ? null : Up(ops, gamma, d), beta is null ? null : Up(ops, beta, d), 1e-5f);
            Check($"layernorm {d}", t, ops.ToHost(y), Reference64.LayerNorm(x, d, gamma, beta, 1e-5), true, seed);
        }
    }

    [Theory, MemberData(nameof(Storages))]
    public void Activations_and_affine(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        var x = Q(Rand(rng, 3 * 1000 + 7, 6), t);
        using var xt = Up(ops, x, 3007);
        void One(string name, Func<Tensor, Tensor> f, Func<double, double> r)
        {
            using var y = f(xt);
            Check(name, t, ops.ToHost(y), x.Select(v => r(v)).ToArray(), false, seed);
        }
        One("silu", ops.Silu, Reference64.Silu);
        One("gelu-erf", v => ops.Gelu(v), Reference64.GeluErf);
        One("gelu-tanh", v => ops.Gelu(v, true), Reference64.GeluTanh);
        One("quick-gelu", ops.QuickGelu, Reference64.QuickGelu);
        One("affine", v => ops.Affine(v, 0.18215f, -0.5f), v => 0.18215f * v - 0.5f);
        One("clamp", v => ops.Clamp(v, -1.5f, 2f), v => Math.Clamp(v, -1.5, 2.0));
    }

    [Theory, MemberData(nameof(Storages))]
    public void Geglu_and_softmax(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        var x = Q(Rand(rng, 2 * 7 * 2 * 40, 3), t);
        using (var y = ops.Geglu(Up(ops, x, 2, 7, 80)))
        {
            Assert.Equal([2, 7, 40], y.Shape);
            Check("geglu", t, ops.ToHost(y), Reference64.Geglu(x, 40), false, seed);
        }
        foreach (var d in new[] { 77, 1000, 4096 })
        {
            var s = Q(Rand(rng, 5 * d, 8), t);
            using var y = ops.Softmax(Up(ops, s, 5, d));
            Check($"softmax {d}", t, ops.ToHost(y), Reference64.Softmax(s, d), true, seed);
        }
    }

    [Theory, MemberData(nameof(Storages))]
    public void Attention_self_cross_causal_and_key_bias(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        var cases = new (int B, int M, int N, int H, int D, bool Bias, bool Causal)[]
        {
            (2, 100, 100, 4, 64, false, false),  // self, SDXL head dim, ragged tile
            (2, 130, 77, 2, 64, false, false),   // cross to 77 text tokens
            (2, 77, 77, 3, 64, true, true),      // CLIP: causal + padding bias
            (1, 40, 33, 2, 8, false, false),     // transparent decoder head dim
            (1, 50, 45, 2, 40, true, false),     // head dim not a multiple of 32
            (1, 70, 70, 1, 160, false, true),
            (1, 64, 64, 1, 512, false, false),   // VAE mid-block attention (one head of 512)
        };
        foreach (var c in cases)
        {
            int w = c.H * c.D;
            var q = Q(Rand(rng, c.B * c.M * w, 1.5), t);
            var k = Q(Rand(rng, c.B * c.N * w, 1.5), t);
            var v = Q(Rand(rng, c.B * c.N * w), t);
            float[]? bias = null;
            if (c.Bias)
            {
                bias = Q(Rand(rng, c.B * c.N), t);
                for (int j = c.N - 5; j < c.N; j++) bias[j] = float.NegativeInfinity;  // masked padding keys in batch 0
            }
            using var y = ops.Attention(Up(ops, q, c.B, c.M, w), Up(ops, k, c.B, c.N, w), Up(ops, v, c.B, c.N, w), c.H,
                bias is null ? null : Up(ops, bias, c.B, c.N), c.Causal);
            Check($"attention b{c.B} m{c.M} n{c.N} h{c.H} d{c.D}{(c.Bias ? " bias" : "")}{(c.Causal ? " causal" : "")}", t,
                ops.ToHost(y), Reference64.Attention(q, k, v, c.B, c.M, c.N, c.H, c.D, bias, c.Causal), true, seed);
        }
    }

    [Theory, MemberData(nameof(Storages))]
    public void Upsample_timestep_embedding_and_gather(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        var x = Q(Rand(rng, 2 * 3 * 5 * 7), t);
        using (var y = ops.Upsample2xNearest(Up(ops, x, 2, 3, 5, 7)))
        {
            Assert.Equal([2, 3, 10, 14], y.Shape);
            Check("upsample2x", t, ops.ToHost(y), Reference64.Upsample2x(x, 6, 5, 7), false, seed);
        }
        var ts = new[] { 999f, 1f, (float)rng.Next(0, 1000), 0f };
        foreach (var (dim, flip, shift) in new[] { (320, true, 0f), (256, false, 1f), (33, true, 1f) })
        {
            using var y = ops.TimestepEmbedding(ts, dim, flip, shift);
            // fp32 sin/cos of arguments up to ~1000 rad: absolute error ~1e-4 of the argument's ulp, hence the reduction bound
            Check($"timestep-embedding {dim}", t, ops.ToHost(y), Reference64.TimestepEmbedding(ts, dim, flip, shift, 1, 10000), true, seed);
        }
        var table = Q(Rand(rng, 50 * 24), t);
        var ids = Enumerable.Range(0, 77).Select(_ => rng.Next(0, 50)).ToArray();
        using (var y = ops.Gather(Up(ops, table, 50, 24), ids))
            Check("gather", t, ops.ToHost(y), ids.SelectMany(i => table.Skip(i * 24).Take(24).Select(v => (double)v)).ToArray(), false, seed);
        Assert.Throws<ArgumentOutOfRangeException>(() => ops.Gather(Up(ops, table, 50, 24), [50]));
    }

    [Theory, MemberData(nameof(Storages))]
    public void Broadcast_binary_ops(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        foreach (var (a, b) in new (int[], int[])[]
        {
            ([2, 6, 5, 4], [2, 6, 5, 4]), ([2, 6, 5, 4], [6, 1, 1]), ([2, 6, 5, 4], [4]), ([2, 6, 5, 4], [2, 1, 5, 1]),
            ([3, 7, 29], [3, 7, 29]), ([3, 7, 29], [7, 1]),  // 609 elements: three blocks of 256, the last partial
        })
        {
            var x = Q(Rand(rng, a.Aggregate(1, (p, q) => p * q)), t);
            var z = Q(Rand(rng, b.Aggregate(1, (p, q) => p * q)), t);
            using var xt = Up(ops, x, a);
            using var zt = Up(ops, z, b);
            string s = $"{ShapeUtil.Format(a)} {ShapeUtil.Format(b)}";
            using (var y = ops.Add(xt, zt)) Check("add " + s, t, ops.ToHost(y), Reference64.Broadcast(x, a, z, b, (p, q) => p + q), false, seed);
            using (var y = ops.Sub(xt, zt)) Check("sub " + s, t, ops.ToHost(y), Reference64.Broadcast(x, a, z, b, (p, q) => p - q), false, seed);
            using (var y = ops.Mul(xt, zt)) Check("mul " + s, t, ops.ToHost(y), Reference64.Broadcast(x, a, z, b, (p, q) => p * q), false, seed);
        }
    }

    [Theory, MemberData(nameof(Storages))]
    public void Concat_slice_permute_are_exact(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        var a = Q(Rand(rng, 2 * 3 * 4), t);
        var b = Q(Rand(rng, 2 * 5 * 4), t);
        using var at = Up(ops, a, 2, 3, 4);
        using var bt = Up(ops, b, 2, 5, 4);
        using (var y = ops.Concat([at, bt], 1))
        {
            var expected = new double[2 * 8 * 4];
            for (int n = 0; n < 2; n++)
                for (int r = 0; r < 8; r++)
                    for (int c = 0; c < 4; c++)
                        expected[(n * 8 + r) * 4 + c] = r < 3 ? a[(n * 3 + r) * 4 + c] : b[(n * 5 + r - 3) * 4 + c];
            Assert.Equal(expected, ops.ToHost(y).Select(v => (double)v).ToArray());
            using var s = ops.Slice(y, 1, 2, 4);
            var sliced = new double[2 * 4 * 4];
            for (int n = 0; n < 2; n++)
                for (int r = 0; r < 4; r++)
                    for (int c = 0; c < 4; c++)
                        sliced[(n * 4 + r) * 4 + c] = expected[(n * 8 + r + 2) * 4 + c];
            Assert.Equal(sliced, ops.ToHost(s).Select(v => (double)v).ToArray());
        }
        int[] shape = [2, 3, 4, 5];
        var x = Q(Rand(rng, 120), t);
        using (var y = ops.Permute(Up(ops, x, shape), 0, 2, 3, 1))
        {
            Assert.Equal([2, 4, 5, 3], y.Shape);
            Assert.Equal(Reference64.Permute(x, shape, [0, 2, 3, 1]), ops.ToHost(y).Select(v => (double)v).ToArray());
        }
        _ = seed;
    }

    [Fact]
    public void A_step_in_the_arena_allocates_nothing_after_the_first()
    {
        var ops = fx.Ops(StorageType.F16);
        var (rng, _) = NewRng();
        var x = Rand(rng, 2 * 32 * 16 * 16);
        using var xt = ops.FromHost(x, 2, 32, 16, 16);
        float[] Step()
        {
            using var scope = ops.BeginStep();
            var h = ops.GroupNorm(xt, 8, null, null, 1e-5f, true);
            h = ops.Add(h, xt);
            h = ops.Upsample2xNearest(h);
            return ops.ToHost(h);
        }
        var first = Step();
        int allocations = ops.ArenaStats.DriverAllocations;
        var second = Step();
        Assert.Equal(allocations, ops.ArenaStats.DriverAllocations);
        Assert.Equal(first, second);
    }

    [Fact]
    public void A_captured_cuda_graph_replays_the_ops()
    {
        var ops = fx.Ops(StorageType.F16);
        var (rng, seed) = NewRng();
        var x = Q(Rand(rng, 4096), StorageType.F16);
        var b = Q(Rand(rng, 64), StorageType.F16);
        using var xt = ops.FromHost(x, 64, 64);
        using var bt = ops.FromHost(b, 64);
        var expected = Reference64.Broadcast(x, [64, 64], b, [64], (p, q) => Reference64.Silu(p + q));
        bool sync = ops.SynchronizeEachOp;
        ops.SynchronizeEachOp = false;  // no synchronization may happen inside a capture
        try
        {
            using (ops.BeginStep()) ops.ToHost(ops.Silu(ops.Add(xt, bt)));  // load modules, grow the arena
            using (ops.BeginStep())
            {
                Tensor? y = null;
                using var graph = CudaGraph.Capture(ops.Device, () => y = ops.Silu(ops.Add(xt, bt)));
                ops.Fill(y!, float.NaN);
                ops.Device.Synchronize();
                graph.Launch();
                Check("graph silu(add)", StorageType.F16, ops.ToHost(y!), expected, false, seed);
            }
        }
        finally { ops.SynchronizeEachOp = sync; }
    }

    [Fact]
    public void A_capture_never_frees_or_allocates_from_the_driver()
    {
        // A tensor freed just before the capture leaves its pointer queued for cuMemFree (as a GC
        // finalizer does at any moment): the capture must not drain it. An op whose output does not
        // fit the step's arena must not grow it from the driver inside the capture either: it fails
        // with a clear error, and the backend stays usable.
        var ops = fx.Ops(StorageType.F16);
        var (rng, seed) = NewRng();
        var x = Q(Rand(rng, 4096), StorageType.F16);
        using var xt = ops.FromHost(x, 64, 64);
        var expected = x.Select(v => Reference64.Silu(v)).ToArray();
        bool sync = ops.SynchronizeEachOp;
        ops.SynchronizeEachOp = false;
        try
        {
            using (ops.BeginStep()) ops.ToHost(ops.Silu(xt));
            var dropped = ops.FromHost(x, 64, 64);  // driver memory, not arena
            using (ops.BeginStep())
            {
                dropped.Dispose();  // its pointer is now queued for cuMemFree
                Tensor? y = null;
                using var graph = CudaGraph.Capture(ops.Device, () => y = ops.Silu(xt));
                graph.Launch();
                Check("graph silu after a queued free", StorageType.F16, ops.ToHost(y!), expected, false, seed);
            }
            using (ops.BeginStep())
            {
                var e = Assert.Throws<InvalidOperationException>(() =>
                    CudaGraph.Capture(ops.Device, () => ops.Zeros(64 << 20)));
                Assert.Contains("capture", e.Message);
            }
            using var z = ops.Silu(xt);
            Check("silu after a refused capture", StorageType.F16, ops.ToHost(z), expected, false, seed);
        }
        finally { ops.SynchronizeEachOp = sync; }
    }
}
