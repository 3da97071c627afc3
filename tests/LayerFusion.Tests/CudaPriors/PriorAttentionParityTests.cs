using LayerFusion.Core.Fusion;
using LayerFusion.Cpu.Fusion;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Fusion;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.Cuda;
using LayerFusion.Tests.FusedAttention;
using static LayerFusion.Tests.FusedAttention.PriorReference64;

namespace LayerFusion.Tests.CudaPriors;

/// <summary>
/// The tensor-core prior attention kernel on the GPU against its CPU twin and the float64 reference,
/// on fresh random inputs rounded to the storage type first (so the bound measures the kernel):
/// ‖gpu − ref‖₂ / ‖ref‖₂ &lt; 2e-3 in fp16, 1e-2 in bf16, for O, s, c and both blend outputs.
/// Outputs are NaN-poisoned before each launch and any non-finite value fails. Without a GPU they
/// run on the emulated device (EmulatedCuda: the emulator's reading of mma/ldmatrix, not tensor
/// cores); without either every test reports as SKIPPED with the reason, never as passed.
/// </summary>
[Collection("cuda")]
[Trait("device", "CUDA: emulated sm_90 on the CPU where no GPU is installed (tests/cuda-standin)")]
public class PriorAttentionParityTests(CudaFixture fx) : IClassFixture<CudaFixture>
{
    static double Bound(StorageType t) => t == StorageType.F16 ? 2e-3 : 1e-2;

    public static TheoryData<StorageType> Storages => new(StorageType.F16, StorageType.BF16);

    static float[] Q(float[] x, StorageType t) => HostConvert.Decode(HostConvert.Encode(x, t), t);

    static void Within(string what, StorageType t, float[] gpu, double[] reference, int seed)
    {
        double rel = RelativeError(gpu, reference, what);
        var dir = Environment.GetEnvironmentVariable("LAYERFUSION_REPORT_DIR");
        if (!string.IsNullOrEmpty(dir))
            lock (typeof(PriorAttentionParityTests)) File.AppendAllText(Path.Combine(dir, "parity.tsv"), $"prior attention: {what}\t{t}\t{rel:E3}\t{Bound(t):E0}\t{seed}\n");
        Assert.True(rel < Bound(t), $"{what} [{t}]: relative error {rel:E3} >= {Bound(t):E0} (seed {seed})");
    }

    static double[] ToDouble(float[] x) => Array.ConvertAll(x, v => (double)v);

    (Random, int) NewRng()
    {
        int seed = System.Random.Shared.Next();
        return (new Random(seed), seed);
    }

    public static TheoryData<StorageType, int, int, int, int, int, int, int> Cases()
    {
        var data = new TheoryData<StorageType, int, int, int, int, int, int, int>();
        foreach (var t in new[] { StorageType.F16, StorageType.BF16 })
        {
            // storage, batch, queries, keys, heads, headDim, eos, warps (0: host's choice)
            data.Add(t, 2, 200, 77, 10, 64, 76, 0);    // SDXL cross-attention tail: N not a multiple of the tile
            data.Add(t, 1, 130, 300, 3, 128, 5, 2);     // widest head, 5 key tiles, ragged query tile
            data.Add(t, 2, 64, 64, 2, 80, 63, 4);       // exactly one tile each way
            data.Add(t, 1, 257, 1024, 20, 64, 1000, 1); // many key tiles, 20 heads, one-warp blocks
            data.Add(t, 3, 17, 1, 4, 16, 0, 0);         // a single key: p = 1, s = 1
        }
        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void Output_sparsity_and_eos_column_match_the_twin_and_float64(StorageType t, int batch, int m, int n, int heads, int d, int eos, int warps)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        int inner = heads * d;
        var q = Q(Random(rng, batch * m * inner, 1.5), t);
        var k = Q(Random(rng, batch * n * inner, 1.5), t);
        var v = Q(Random(rng, batch * n * inner, 1), t);
        var options = new PriorAttentionOptions(true, eos);
        using var prior = new CudaPriorAttention(ops);
        using var qt = ops.FromHost(q, batch, m, inner);
        using var kt = ops.FromHost(k, batch, n, inner);
        using var vt = ops.FromHost(v, batch, n, inner);
        var r = prior.Run(qt, kt, vt, heads, options, warps: warps);
        using var output = r.Output;
        using var s = r.Sparsity!;
        using var c = r.EosColumn!;
        var twin = PriorAttentionTwin.Run(q, k, v, batch, m, n, heads, d, options);
        var e = PriorReference64.Compute(q, k, v, batch, m, n, heads, d, eos);
        var gpuO = ops.ToHost(output);
        Within($"O b{batch} m{m} n{n} h{heads} d{d} w{warps}", t, gpuO, e.Output, seed);
        Within($"s b{batch} m{m} n{n} h{heads} d{d} w{warps}", t, s.Download(), e.Sparsity, seed);
        Within($"c b{batch} m{m} n{n} h{heads} d{d} w{warps}", t, c.Download(), e.EosColumn, seed);
        Within($"O vs twin b{batch} m{m} n{n} h{heads} d{d}", t, gpuO, ToDouble(twin.Output), seed);
        Within($"s vs twin b{batch} m{m} n{n} h{heads} d{d}", t, s.Download(), ToDouble(twin.Sparsity!), seed);
        Within($"c vs twin b{batch} m{m} n{n} h{heads} d{d}", t, c.Download(), ToDouble(twin.EosColumn!), seed);
    }

    [Theory, MemberData(nameof(Storages))]
    public void Plain_mode_matches_float64_and_the_priors_mode_output(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        foreach (var (batch, m, n, heads, d) in new[] { (2, 333, 333, 10, 64), (2, 100, 77, 20, 64), (1, 65, 129, 2, 128) })
        {
            int inner = heads * d;
            var q = Q(Random(rng, batch * m * inner, 1.5), t);
            var k = Q(Random(rng, batch * n * inner, 1.5), t);
            var v = Q(Random(rng, batch * n * inner, 1), t);
            using var prior = new CudaPriorAttention(ops);
            using var qt = ops.FromHost(q, batch, m, inner);
            using var kt = ops.FromHost(k, batch, n, inner);
            using var vt = ops.FromHost(v, batch, n, inner);
            using var plain = prior.Run(qt, kt, vt, heads, PriorAttentionOptions.None).Output;
            var e = PriorReference64.Compute(q, k, v, batch, m, n, heads, d, -1);
            Within($"plain O b{batch} m{m} n{n} h{heads} d{d}", t, ops.ToHost(plain), e.Output, seed);
            // the existing SIMT kernel (CudaOps.Attention) computes the same function
            using var simt = ops.Attention(qt, kt, vt, heads);
            Within($"plain O vs lf_attention m{m} n{n}", t, ops.ToHost(plain), ToDouble(ops.ToHost(simt)), seed);
        }
    }

    [Theory, MemberData(nameof(Storages))]
    public void Key_bias_with_excluded_keys_and_priors_matches_float64(StorageType t)
    {
        var ops = fx.Ops(t);
        var (rng, seed) = NewRng();
        const int batch = 2, m = 150, n = 200, heads = 4, d = 64;
        int inner = heads * d;
        var q = Q(Random(rng, batch * m * inner, 1.5), t);
        var k = Q(Random(rng, batch * n * inner, 1.5), t);
        var v = Q(Random(rng, batch * n * inner, 1), t);
        var bias = Q(Random(rng, batch * n, 2), t);
        for (int j = 100; j < n; j++) bias[j] = float.NegativeInfinity;          // row 0: the shared half excluded
        for (int j = 0; j < n; j += 7) bias[n + j] = float.NegativeInfinity;     // row 1: scattered exclusions
        using var prior = new CudaPriorAttention(ops);
        using var qt = ops.FromHost(q, batch, m, inner);
        using var kt = ops.FromHost(k, batch, n, inner);
        using var vt = ops.FromHost(v, batch, n, inner);
        using var bt = ops.FromHost(bias, batch, n);
        var r = prior.Run(qt, kt, vt, heads, new PriorAttentionOptions(true, 42), bt);
        using var o = r.Output;
        using var s = r.Sparsity!;
        using var c = r.EosColumn!;
        var e = PriorReference64.Compute(q, k, v, batch, m, n, heads, d, 42, bias);
        Within("O with key bias", t, ops.ToHost(o), e.Output, seed);
        Within("s with key bias", t, s.Download(), e.Sparsity, seed);
        Within("c with key bias", t, c.Download(), e.EosColumn, seed);
    }

    [Fact]
    public void Mask_kernels_match_prior_math()
    {
        var ops = fx.Ops(StorageType.F16);
        var (rng, seed) = NewRng();
        const int batch = 2, m = 4093, c = 64;  // rows of m not a multiple of the 256-thread block: the tail
        var s = Uniform01(rng, batch * m);
        for (int i = 0; i < s.Length; i++) s[i] = 1 + 76 * s[i];
        var content = Uniform01(rng, batch * m);
        using var prior = new CudaPriorAttention(ops);
        using var sd = DeviceFloats.From(ops.Device, s);
        using var cd = DeviceFloats.From(ops.Device, content);
        using var dens = new DeviceFloats(ops.Device, batch * m);
        using var soft = new DeviceFloats(ops.Device, batch * m);
        using var hard = new DeviceFloats(ops.Device, batch * m);
        dens.Poison();
        soft.Poison();
        hard.Poison();
        prior.DensityPrior(sd, dens, batch, m);
        prior.Masks(dens, cd, soft, hard, batch, m, 10);
        var dGpu = dens.Download();
        var softGpu = soft.Download();
        var hardGpu = hard.Download();
        for (int b = 0; b < batch; b++)
        {
            var dRef = PriorMath.DensityPrior(s.AsSpan(b * m, m));
            var softRef = PriorMath.SoftMask(dRef, content.AsSpan(b * m, m));
            var hardRef = PriorMath.HardMask(softRef, 10);
            Assert.True(RelativeError(dGpu[(b * m)..((b + 1) * m)], ToDouble(dRef), "s'") < 1e-5, $"s' row {b} (seed {seed})");
            Assert.True(RelativeError(softGpu[(b * m)..((b + 1) * m)], ToDouble(softRef), "mask_soft") < 1e-5, $"mask_soft row {b} (seed {seed})");
            Assert.True(RelativeError(hardGpu[(b * m)..((b + 1) * m)], ToDouble(hardRef), "mask_hard") < 1e-5, $"mask_hard row {b} (seed {seed})");
        }

        // Eq. 1/2 after to_out, fp16 outputs
        var fg = Q(Random(rng, batch * m * c, 1), StorageType.F16);
        var bl = Q(Random(rng, batch * m * c, 1), StorageType.F16);
        using var ft = ops.FromHost(fg, batch, m, c);
        using var bt = ops.FromHost(bl, batch, m, c);
        prior.BlendAfterOut(ft, bt, soft, hard, m);
        var fgRef = (float[])fg.Clone();
        var blRef = (float[])bl.Clone();
        for (int b = 0; b < batch; b++)
            PriorMath.BlendInPlace(fgRef.AsSpan(b * m * c, m * c), blRef.AsSpan(b * m * c, m * c), softGpu.AsSpan(b * m, m), hardGpu.AsSpan(b * m, m), c);
        Within("blend after to_out: a'_blend", StorageType.F16, ops.ToHost(bt), ToDouble(blRef), seed);
        Within("blend after to_out: a'_fg", StorageType.F16, ops.ToHost(ft), ToDouble(fgRef), seed);
    }

    [Fact]
    public void Bad_calls_are_refused_before_launch()
    {
        var ops = fx.Ops(StorageType.F16);
        using var prior = new CudaPriorAttention(ops);
        using var q = ops.FromHost(new float[2 * 8 * 40], 2, 8, 40);  // head dim 40 with one head: not a multiple of 16
        Assert.Throws<NotSupportedException>(() => prior.Run(q, q, q, 1, PriorAttentionOptions.None));
        using var q2 = ops.FromHost(new float[2 * 8 * 64], 2, 8, 64);
        Assert.Throws<ArgumentOutOfRangeException>(() => prior.Run(q2, q2, q2, 1, new PriorAttentionOptions(false, 8)));
        Assert.Throws<ArgumentException>(() => prior.Run(q2, q2, q2, 3, PriorAttentionOptions.None));
    }
}
