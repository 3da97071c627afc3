using LayerFusion.Core.Fusion;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;
using LayerFusion.Tests.FusedAttention;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// CudaOps' IOps prior ops (CudaOps.Priors.cs: the fused tensor-core kernel where it applies, else
/// prior_ops.cu's statistics kernel; the mask/blend/bias kernels) against float64 and the CPU
/// backend, on fresh random inputs rounded to the storage type. On a machine without a GPU these run
/// on the emulated device (tests/cuda-standin) — emulated results, not GPU results.
/// </summary>
[Collection("cuda")]
public class CudaPriorOpsTests(CudaFixture fx) : IClassFixture<CudaFixture>
{
    static double Bound(StorageType t) => t switch { StorageType.F32 => 1e-4, StorageType.F16 => 3e-3, _ => 1.5e-2 };

    static float[] Round(float[] x, StorageType t) => HostConvert.Decode(HostConvert.Encode(x, t), t);

    [Theory]
    [InlineData(StorageType.F16, 2, 40, 77, 2, 64, 76, true)]    // fused kernel: s and c, cross shape
    [InlineData(StorageType.F16, 1, 48, 48, 3, 16, -1, true)]    // fused kernel: s only
    [InlineData(StorageType.F16, 2, 30, 45, 3, 8, 5, false)]     // head dim 8: the CUDA-core statistics kernel
    [InlineData(StorageType.F32, 1, 33, 50, 2, 32, 7, false)]    // fp32 storage: the CUDA-core statistics kernel
    [InlineData(StorageType.BF16, 1, 32, 40, 2, 32, 3, true)]
    public void PriorAttentionMatchesFloat64(StorageType storage, int b, int m, int n, int heads, int d, int column, bool fused)
    {
        var ops = fx.Ops(storage);
        Assert.Equal(fused, ops.UsesFusedPriorKernel(d, heads * d));
        var rng = new Random(m * 7 + n);
        int inner = heads * d;
        var q = Round(PriorReference64.Random(rng, b * m * inner, 1.5), storage);
        var k = Round(PriorReference64.Random(rng, b * n * inner, 1.5), storage);
        var v = Round(PriorReference64.Random(rng, b * n * inner, 1.0), storage);
        using var qt = ops.FromHost(q, b, m, inner);
        using var kt = ops.FromHost(k, b, n, inner);
        using var vt = ops.FromHost(v, b, n, inner);
        bool sparsity = column != 76;
        using var r = ops.PriorAttention(qt, kt, vt, heads, sparsity, column);
        var reference = PriorReference64.Compute(q, k, v, b, m, n, heads, d, column);
        double bound = Bound(storage);
        Assert.True(PriorReference64.RelativeError(ops.ToHost(r.Output), reference.Output, "O") < bound);
        if (sparsity) Assert.True(PriorReference64.RelativeError(ops.ToHost(r.Sparsity!), reference.Sparsity, "s") < bound);
        else Assert.Null(r.Sparsity);
        if (column >= 0) Assert.True(PriorReference64.RelativeError(ops.ToHost(r.Column!), reference.EosColumn, "c") < bound);
        else Assert.Null(r.Column);
    }

    [Theory]
    [InlineData(StorageType.F16)]
    [InlineData(StorageType.F32)]
    [InlineData(StorageType.BF16)]
    public void MasksResizeBlendAndBiasMatchTheCpuBackend(StorageType storage)
    {
        var ops = fx.Ops(storage);
        var cpu = new CpuBackend();
        var rng = new Random(5);
        int rows = 2, h = 9, w = 7, m = h * w, ch = 16;
        var s = Round(Enumerable.Range(0, rows * m).Select(_ => (float)(1 + 60 * rng.NextDouble())).ToArray(), storage);
        var c = Round(Enumerable.Range(0, m).Select(_ => (float)rng.NextDouble()).ToArray(), storage);
        var fg = Round(PriorReference64.Random(rng, 2 * m * ch, 2), storage);
        var bl = Round(PriorReference64.Random(rng, 2 * m * ch, 2), storage);
        double bound = Bound(storage);

        static double Rel(float[] a, float[] e) =>
            PriorReference64.RelativeError(a, e.Select(x => (double)x).ToArray(), "prior op");

        using var sg = ops.FromHost(s, rows, m);
        using var sc = cpu.FromHost(s, rows, m);
        using var dg = ops.DensityPrior(sg);
        using var dc = cpu.DensityPrior(sc);
        Assert.True(Rel(ops.ToHost(dg), cpu.ToHost(dc)) < bound, "s'");
        foreach (var (oh, ow) in new[] { (4, 3), (18, 14) })
        {
            using var rg = ops.ResizeBilinear(dg, h, w, oh, ow);
            // the CPU resize of the device's (rounded) s', so only the resize is measured
            using var dgc = cpu.FromHost(ops.ToHost(dg), rows, m);
            using var rc = cpu.ResizeBilinear(dgc, h, w, oh, ow);
            Assert.True(Rel(ops.ToHost(rg), cpu.ToHost(rc)) < bound, $"resize to {oh}x{ow}");
        }

        var d1 = ops.ToHost(dg)[..m];
        using var d1g = ops.FromHost(d1, 1, m);
        using var d1c = cpu.FromHost(d1, 1, m);
        using var cg = ops.FromHost(c, 1, m);
        using var cc = cpu.FromHost(c, 1, m);
        var (softG, hardG) = ops.PriorMasks(d1g, cg, 10f);
        var (softC, hardC) = cpu.PriorMasks(d1c, cc, 10f);
        using (softG) using (hardG) using (softC) using (hardC)
        {
            // both rows of s' at once: one block per row of 63, each block's pass over its row partial
            using (var c2g = ops.FromHost([.. c, .. c], rows, m))
            using (var c2c = cpu.FromHost([.. c, .. c], rows, m))
            using (var d2c = cpu.FromHost(ops.ToHost(dg), rows, m))
            {
                var (soft2G, hard2G) = ops.PriorMasks(dg, c2g, 10f);
                var (soft2C, hard2C) = cpu.PriorMasks(d2c, c2c, 10f);
                using (soft2G) using (hard2G) using (soft2C) using (hard2C)
                {
                    Assert.True(Rel(ops.ToHost(soft2G), cpu.ToHost(soft2C)) < bound, "mask_soft, 2 rows");
                    Assert.True(Rel(ops.ToHost(hard2G), cpu.ToHost(hard2C)) < bound, "mask_hard, 2 rows");
                }
            }

            Assert.True(Rel(ops.ToHost(softG), cpu.ToHost(softC)) < bound, "mask_soft");
            Assert.True(Rel(ops.ToHost(hardG), cpu.ToHost(hardC)) < bound, "mask_hard");

            // blend and bias from the device's masks on both backends
            var softH = ops.ToHost(softG);
            var hardH = ops.ToHost(hardG);
            using var sC = cpu.FromHost(softH, 1, m);
            using var hC = cpu.FromHost(hardH, 1, m);
            using var fgG = ops.FromHost(fg, 2, m, ch);
            using var blG = ops.FromHost(bl, 2, m, ch);
            using var fgC = cpu.FromHost(fg, 2, m, ch);
            using var blC = cpu.FromHost(bl, 2, m, ch);
            var (f2g, b2g) = ops.PriorBlend(fgG, blG, softG, hardG);
            var (f2c, b2c) = cpu.PriorBlend(fgC, blC, sC, hC);
            using (f2g) using (b2g) using (f2c) using (b2c)
            {
                Assert.True(Rel(ops.ToHost(f2g), cpu.ToHost(f2c)) < bound, "a'_fg");
                Assert.True(Rel(ops.ToHost(b2g), cpu.ToHost(b2c)) < bound, "a'_blend");
            }
            using var biasG = ops.ExclusionKeyBias(hardG, 2, m);
            using var biasC = cpu.ExclusionKeyBias(hC, 2, m);
            Assert.Equal(cpu.ToHost(biasC), ops.ToHost(biasG));
            Assert.Contains(float.NegativeInfinity, cpu.ToHost(biasC));
        }
    }
}
