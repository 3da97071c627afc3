using static LayerFusion.Tests.CpuOps.OpTestKit;

namespace LayerFusion.Tests.CpuOps;

public class LinearAlgebraTests
{
    public static TheoryData<int, int, int, int, bool> LinearCases => new()
    {
        // rows, in, out, dop, bias
        { 1, 1, 1, 1, true },
        { 3, 5, 7, 1, false },
        { 13, 37, 19, 2, true },
        { 77, 129, 65, -1, true },
        { 70, 320, 33, 2, false },
        { 257, 300, 131, -1, true },
        { 9, 1024, 17, 2, true },
    };

    [Theory, MemberData(nameof(LinearCases))]
    public void Linear_matches_float64(int rows, int inF, int outF, int dop, bool withBias)
    {
        var ops = Ops(dop);
        var r = new Random(1000 + rows * 31 + inF * 7 + outF);
        var x = Rand(r, rows * inF); var w = Rand(r, outF * inF); var b = Rand(r, outF);
        // a 3-D input so leading dims are flattened
        var tx = T(ops, x, 1, rows, inF); var tw = T(ops, w, outF, inF); var tb = withBias ? T(ops, b, outF) : null;
        var guard = new InputGuard(ops, tx, tw, tb);
        var y = ops.Linear(tx, tw, tb);
        guard.Unchanged();
        Assert.Equal(new[] { 1, rows, outF }, y.Shape);
        var reference = new double[rows * outF];
        for (int i = 0; i < rows; i++)
            for (int o = 0; o < outF; o++)
            {
                double s = withBias ? b[o] : 0;
                for (int k = 0; k < inF; k++) s += (double)x[i * inF + k] * w[o * inF + k];
                reference[i * outF + o] = s;
            }
        AssertClose(ops.ToHost(y), reference);
    }

    public static TheoryData<int, int, int, int, bool, float, int> MatMulCases => new()
    {
        // batch, m, k, n, transposeB, alpha, dop
        { 1, 1, 1, 1, false, 1f, 1 },
        { 2, 5, 3, 7, false, 1f, 1 },
        { 3, 17, 33, 9, true, 0.125f, 2 },
        { 2, 64, 40, 77, true, 0.3f, -1 },
        { 2, 100, 70, 130, false, -1.5f, -1 },
        { 1, 129, 257, 65, false, 1f, 2 },
        { 4, 31, 64, 31, true, 1f, 2 },
        { 2, 160, 170, 161, false, 0.5f, -1 },   // large per batch: batches in sequence, GEMM parallel inside
        { 2, 161, 170, 160, true, 1f, 2 },
    };

    [Theory, MemberData(nameof(MatMulCases))]
    public void MatMul_matches_float64(int batch, int m, int k, int n, bool transB, float alpha, int dop)
    {
        var ops = Ops(dop);
        var r = new Random(2000 + batch * 101 + m * 13 + k * 7 + n + (transB ? 1 : 0));
        var a = Rand(r, batch * m * k); var b = Rand(r, batch * k * n);
        // two leading dims to check batching over [..., M, K]
        var ta = T(ops, a, 1, batch, m, k);
        var tb = transB ? T(ops, b, 1, batch, n, k) : T(ops, b, 1, batch, k, n);
        var guard = new InputGuard(ops, ta, tb);
        var y = ops.MatMul(ta, tb, transB, alpha);
        guard.Unchanged();
        Assert.Equal(new[] { 1, batch, m, n }, y.Shape);
        var reference = new double[batch * m * n];
        for (int bi = 0; bi < batch; bi++)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int p = 0; p < k; p++)
                    {
                        double bv = transB ? b[bi * n * k + j * k + p] : b[bi * k * n + p * n + j];
                        s += a[bi * m * k + i * k + p] * bv;
                    }
                    reference[(bi * m + i) * n + j] = alpha * s;
                }
        AssertClose(ops.ToHost(y), reference);
    }

    public static TheoryData<int, int, int, int, int, int, int, int, bool, int> ConvCases => new()
    {
        // n, c, h, w, o, k, stride, padding, bias, dop
        { 1, 1, 1, 1, 1, 1, 1, 0, false, 1 },
        { 2, 3, 5, 7, 4, 1, 1, 0, true, 1 },
        { 1, 5, 9, 11, 7, 3, 1, 1, true, 2 },
        { 2, 4, 8, 8, 6, 3, 2, 1, true, -1 },
        { 1, 3, 9, 7, 5, 3, 2, 1, false, 2 },   // odd size, stride 2, padding
        { 1, 3, 10, 9, 5, 3, 2, 0, true, 1 },   // stride 2 without padding (diffusers Downsample2D pad 0 variant)
        { 2, 6, 13, 17, 9, 3, 1, 1, true, -1 },
        { 1, 32, 16, 16, 40, 3, 1, 1, true, -1 }, // K = 288: exercises GEMM tiling
        { 1, 33, 12, 20, 17, 1, 1, 0, true, 2 },
        { 1, 2, 6, 6, 3, 1, 2, 0, true, 1 },    // 1x1 with stride 2
        { 1, 3, 7, 7, 2, 5, 1, 2, true, 1 },
        { 1, 4, 9, 9, 3, 3, 1, 1, true, 3 },    // dop 3 = odd band budget below (banded im2col)
        { 2, 3, 11, 8, 5, 3, 2, 1, true, 4 },
        // implicit GEMM (blocked): K = 360 (two K blocks), N = 117 (ragged panel, runs across output rows)
        { 1, 40, 9, 13, 20, 3, 1, 1, true, 2 },
        { 2, 30, 20, 19, 13, 3, 2, 1, true, -1 },  // stride 2, padding, odd sizes
        { 1, 8, 60, 61, 16, 3, 1, 1, false, 2 },   // N = 3660 > one N block of 3072
        { 1, 6, 12, 10, 9, 5, 1, 2, true, 1 },     // 5x5, padding 2
        { 1, 7, 11, 11, 12, 3, 2, 0, true, 2 },    // stride 2 without padding
    };

    [Theory, MemberData(nameof(ConvCases))]
    public void Conv2d_matches_float64(int nB, int c, int h, int w, int o, int k, int stride, int pad, bool withBias, int dop)
    {
        // dop 3 and 4 also shrink the im2col band to a few output rows (band edges mid-image)
        var ops = dop >= 3 ? new LayerFusion.Cpu.CpuOps(dop) { Im2ColBudget = dop == 3 ? 700 : 100 } : Ops(dop);
        var r = new Random(3000 + nB + c * 3 + h * 5 + w * 7 + o * 11 + k * 13 + stride * 17 + pad * 19);
        var x = Rand(r, nB * c * h * w); var wt = Rand(r, o * c * k * k); var b = Rand(r, o);
        var tx = T(ops, x, nB, c, h, w); var tw = T(ops, wt, o, c, k, k); var tb = withBias ? T(ops, b, o) : null;
        var guard = new InputGuard(ops, tx, tw, tb);
        var y = ops.Conv2d(tx, tw, tb, stride, pad);
        guard.Unchanged();
        int oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
        Assert.Equal(new[] { nB, o, oh, ow }, y.Shape);
        var reference = new double[nB * o * oh * ow];
        for (int n = 0; n < nB; n++)
            for (int oc = 0; oc < o; oc++)
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++)
                    {
                        double s = withBias ? b[oc] : 0;
                        for (int ic = 0; ic < c; ic++)
                            for (int ky = 0; ky < k; ky++)
                                for (int kx = 0; kx < k; kx++)
                                {
                                    int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                    s += (double)x[((n * c + ic) * h + iy) * w + ix] * wt[((oc * c + ic) * k + ky) * k + kx];
                                }
                        reference[((n * o + oc) * oh + oy) * ow + ox] = s;
                    }
        AssertClose(ops.ToHost(y), reference);
    }

    [Fact]
    public void Linear_rejects_mismatched_shapes()
    {
        var ops = Ops(1);
        var r = new Random(5);
        Assert.Throws<ArgumentException>(() => ops.Linear(T(ops, Rand(r, 6), 2, 3), T(ops, Rand(r, 8), 2, 4)));
        Assert.Throws<ArgumentException>(() => ops.MatMul(T(ops, Rand(r, 6), 2, 3), T(ops, Rand(r, 8), 2, 4)));
        Assert.Throws<ArgumentException>(() => ops.Conv2d(T(ops, Rand(r, 18), 1, 2, 3, 3), T(ops, Rand(r, 27), 1, 3, 3, 3), null));
    }
}
