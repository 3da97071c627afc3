using LayerFusion.Core.Fusion;
using LayerFusion.Core.Tensors;
using LayerFusion.Tests.FusedAttention;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.Fusion;

/// <summary>IOps' prior ops on the CPU backend against float64 references (fresh random inputs).</summary>
public sealed class PriorOpsTests
{
    static readonly CpuBackend Ops = new();

    [Theory]
    [InlineData(2, 37, 45, 3, 8, 5, 1)]
    [InlineData(1, 130, 130, 2, 16, -1, -1)]   // more than one 64-row query tile, s only
    [InlineData(2, 70, 77, 5, 4, 76, 4)]       // cross-attention shape, last column, several threads
    public void PriorAttentionMatchesFloat64AndPlainAttention(int b, int m, int n, int heads, int d, int column, int threads)
    {
        var rng = new Random(m * 31 + n);
        int inner = heads * d;
        var q = PriorReference64.Random(rng, b * m * inner, 1.5);
        var k = PriorReference64.Random(rng, b * n * inner, 1.5);
        var v = PriorReference64.Random(rng, b * n * inner, 1.0);
        var ops = new CpuBackend(threads);
        using var qt = ops.FromHost(q, b, m, inner);
        using var kt = ops.FromHost(k, b, n, inner);
        using var vt = ops.FromHost(v, b, n, inner);
        bool sparsity = column != 76;
        using var r = ops.PriorAttention(qt, kt, vt, heads, sparsity, column);
        var reference = PriorReference64.Compute(q, k, v, b, m, n, heads, d, column);
        Assert.True(PriorReference64.RelativeError(ops.ToHost(r.Output), reference.Output, "output") < 1e-5);
        if (sparsity) Assert.True(PriorReference64.RelativeError(ops.ToHost(r.Sparsity!), reference.Sparsity, "s") < 1e-5);
        else Assert.Null(r.Sparsity);
        if (column >= 0) Assert.True(PriorReference64.RelativeError(ops.ToHost(r.Column!), reference.EosColumn, "c") < 1e-5);
        else Assert.Null(r.Column);
        using var plain = ops.Attention(qt, kt, vt, heads);
        Assert.Equal(ops.ToHost(plain), ops.ToHost(r.Output));   // same GEMMs, same order
    }

    [Fact]
    public void PriorAttentionRejectsAColumnOutsideTheKeys()
    {
        using var q = Ops.Zeros(1, 4, 8);
        using var k = Ops.Zeros(1, 3, 8);
        Assert.Throws<ArgumentOutOfRangeException>(() => Ops.PriorAttention(q, k, k, 2, false, 3));
        Assert.Throws<ArgumentException>(() => Ops.PriorAttention(q, k, k, 3, true, -1));
    }

    static double[] MinMax64(double[] x)
    {
        double lo = x.Min(), hi = x.Max();
        return x.Select(v => hi > lo ? (v - lo) / (hi - lo) : 0).ToArray();
    }

    static void Close(float[] actual, double[] expected, double tol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < actual.Length; i++)
            Assert.True(Math.Abs(actual[i] - expected[i]) <= tol * Math.Max(1, Math.Abs(expected[i])), $"{what}[{i}]: {actual[i]} vs {expected[i]}");
    }

    [Fact]
    public void DensityMasksResizeBlendAndBiasMatchFloat64()
    {
        var rng = new Random(7);
        int rows = 2, h = 6, w = 5, m = h * w;
        var s = Enumerable.Range(0, rows * m).Select(_ => (float)(1 + 40 * rng.NextDouble())).ToArray();
        using var st = Ops.FromHost(s, rows, m);
        using var dens = Ops.DensityPrior(st);
        var dHost = Ops.ToHost(dens);
        for (int r = 0; r < rows; r++)
            Close(dHost[(r * m)..((r + 1) * m)], MinMax64(s[(r * m)..((r + 1) * m)].Select(v => (double)v).ToArray()).Select(v => 1 - v).ToArray(), 1e-6, "s'");

        // bilinear resize: down and up, against PriorMath's float64 form (itself checked against torch)
        foreach (var (oh, ow) in new[] { (3, 2), (12, 10), (6, 5), (7, 3) })
        {
            using var rz = Ops.ResizeBilinear(dens, h, w, oh, ow);
            Assert.Equal(new[] { rows, oh * ow }, rz.Shape);
            var got = Ops.ToHost(rz);
            for (int r = 0; r < rows; r++)
                Assert.Equal(PriorMath.ResizeBilinear(dHost.AsSpan(r * m, m), h, w, oh, ow), got[(r * oh * ow)..((r + 1) * oh * ow)]);
        }

        var c = Enumerable.Range(0, m).Select(_ => (float)rng.NextDouble()).ToArray();
        using var d1 = Ops.Slice(dens, 0, 1, 1);
        using var ct = Ops.FromHost(c, 1, m);
        var (soft, hard) = Ops.PriorMasks(d1, ct, 10f);
        using (soft)
        using (hard)
        {
            var d1h = Ops.ToHost(d1);
            var soft64 = MinMax64(d1h.Select((v, i) => (double)v * c[i]).ToArray());
            Close(Ops.ToHost(soft), soft64, 1e-6, "mask_soft");
            Close(Ops.ToHost(hard), soft64.Select(x => 1 / (1 + Math.Exp(-10 * (x - 0.5)))).ToArray(), 1e-6, "mask_hard");
            // the host path's forms, bit for bit
            Assert.Equal(PriorMath.SoftMask(d1h, c), Ops.ToHost(soft));
            Assert.Equal(PriorMath.HardMask(PriorMath.SoftMask(d1h, c), 10f), Ops.ToHost(hard));

            int ch = 7;
            var fg = PriorReference64.Random(rng, 2 * m * ch, 2);
            var bl = PriorReference64.Random(rng, 2 * m * ch, 2);
            using var fgt = Ops.FromHost(fg, 2, m, ch);
            using var blt = Ops.FromHost(bl, 2, m, ch);
            var (f2, b2) = Ops.PriorBlend(fgt, blt, soft, hard);
            using (f2)
            using (b2)
            {
                var sh = Ops.ToHost(soft);
                var hh = Ops.ToHost(hard);
                var fe = new double[fg.Length];
                var be = new double[fg.Length];
                for (int i = 0; i < fg.Length; i++)
                {
                    int t = i / ch % m;
                    be[i] = fg[i] * (double)sh[t] + bl[i] * (1 - (double)sh[t]);
                    fe[i] = be[i] * hh[t] + fg[i] * (1 - (double)hh[t]);
                }
                Close(Ops.ToHost(f2), fe, 1e-5, "a'_fg");
                Close(Ops.ToHost(b2), be, 1e-5, "a'_blend");
            }

            using var bias = Ops.ExclusionKeyBias(hard, 2, m);
            Assert.Equal(new[] { 2, 2 * m }, bias.Shape);
            var bh = Ops.ToHost(bias);
            var hh2 = Ops.ToHost(hard);
            Assert.Contains(hh2, x => x > 0.5f);
            Assert.Contains(hh2, x => x <= 0.5f);
            for (int r = 0; r < 2; r++)
                for (int j = 0; j < 2 * m; j++)
                    Assert.Equal(j >= m && hh2[j - m] > 0.5f ? float.NegativeInfinity : 0f, bh[r * 2 * m + j]);
        }
    }

    [Fact]
    public void AConstantRowNormalizesToZero()
    {
        using var s = Ops.FromHost([3f, 3f, 3f, 1f, 2f, 3f], 2, 3);
        using var d = Ops.DensityPrior(s);
        Assert.Equal(new[] { 1f, 1f, 1f, 1f, 0.5f, 0f }, Ops.ToHost(d));
    }
}
