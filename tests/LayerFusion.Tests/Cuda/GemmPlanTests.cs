using LayerFusion.Cuda;

namespace LayerFusion.Tests.Cuda;

/// <summary>
/// The row-major -> column-major cuBLAS mappings CudaOps uses, executed on the CPU by the BLAS
/// definition (GemmPlan.Reference) on the same row-major buffers, against the float64 op references.
/// </summary>
public class GemmPlanTests
{
    static float[] Rand(Random r, int n) => Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();

    static void Close(double[] expected, double[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-12 * (1 + Math.Abs(expected[i])), $"element {i}: {expected[i]} vs {actual[i]}");
    }

    [Theory]
    [InlineData(7, 5, 3)]
    [InlineData(1, 16, 9)]
    [InlineData(13, 1, 4)]
    public void Linear_plan_computes_x_times_w_transposed(int rows, int inF, int outF)
    {
        var r = new Random(rows * 100 + inF);
        var x = Rand(r, rows * inF);
        var w = Rand(r, outF * inF);
        var g = GemmPlan.Linear(rows, inF, outF);
        Close(Reference64.Linear(x, rows, inF, w, outF, null), g.Reference(w, x, 1, rows * outF));
        // cuBLASLt's layouts are the same matrices
        Assert.Equal((inF, outF), g.StoredA);
        Assert.Equal((inF, rows), g.StoredB);
    }

    [Theory]
    [InlineData(3, 4, 5, 6, false)]
    [InlineData(2, 7, 3, 2, true)]
    [InlineData(1, 1, 8, 5, true)]
    public void MatMul_plan_computes_batched_products(int batch, int m, int k, int n, bool transposeB)
    {
        var r = new Random(batch + m * 7 + n * 31);
        var a = Rand(r, batch * m * k);
        var b = Rand(r, batch * k * n);
        var g = GemmPlan.MatMul(batch, m, k, n, transposeB);
        Close(Reference64.MatMul(a, b, batch, m, k, n, transposeB, 0.5), g.Reference(b, a, 0.5, batch * m * n));
    }

    [Theory]
    [InlineData(2, 3, 6, 5, 4, 3, 1, 1)]
    [InlineData(1, 2, 7, 7, 3, 3, 2, 1)]
    [InlineData(2, 4, 5, 3, 2, 1, 1, 0)]
    public void Conv_plan_on_im2col_columns_computes_the_convolution(int n, int c, int h, int w, int o, int k, int stride, int pad)
    {
        var r = new Random(n + c * 3 + h * 5 + k);
        var x = Rand(r, n * c * h * w);
        var wt = Rand(r, o * c * k * k);
        var expected = Reference64.Conv2d(x, n, c, h, w, wt, o, k, k, null, stride, pad, out var ho, out var wo);
        int plane = ho * wo, kc = c * k * k;
        // im2col exactly as kernels/conv.cu lays it out: col[img][ci*kh*kw + ky*kw + kx][oy*wo + ox]
        var col = new float[n * kc * plane];
        for (int img = 0; img < n; img++)
            for (int ci = 0; ci < c; ci++)
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                        for (int oy = 0; oy < ho; oy++)
                            for (int ox = 0; ox < wo; ox++)
                            {
                                int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                int row = (ci * k + ky) * k + kx;
                                col[(img * kc + row) * plane + oy * wo + ox] =
                                    iy < 0 || iy >= h || ix < 0 || ix >= w ? 0 : x[((img * c + ci) * h + iy) * w + ix];
                            }
        var g = GemmPlan.Conv(n, plane, kc, o);
        Close(expected, g.Reference(col, wt, 1, n * o * plane));
    }
}
