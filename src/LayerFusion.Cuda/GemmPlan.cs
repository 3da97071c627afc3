using LayerFusion.Cuda.Interop;

namespace LayerFusion.Cuda;

/// <summary>
/// One column-major cuBLAS GEMM, C = alpha op(A) op(B), batched by strides: how our row-major ops
/// map onto cuBLAS. Kept as data so the mapping is tested on the CPU against the BLAS definition.
/// Operand roles per op are documented on each factory.
/// </summary>
public readonly record struct GemmPlan(int OpA, int OpB, int M, int N, int K, int Lda, long StrideA, int Ldb, long StrideB,
    int Ldc, long StrideC, int Batch)
{
    /// <summary>Linear y[rows, out] = x[rows, in] W[out, in]^T. A = W, B = x, C = y (column-major y^T = W x^T).</summary>
    public static GemmPlan Linear(int rows, int inF, int outF) =>
        new(Cublas.CUBLAS_OP_T, Cublas.CUBLAS_OP_N, outF, rows, inF, inF, 0, inF, 0, outF, 0, 1);

    /// <summary>MatMul y[b, m, n] = a[b, m, k] b[b, k, n] (or b[b, n, k]^T). A = b, B = a, C = y.</summary>
    public static GemmPlan MatMul(int batch, int m, int k, int n, bool transposeB) =>
        new(transposeB ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N, Cublas.CUBLAS_OP_N, n, m, k, transposeB ? k : n, (long)k * n,
            k, (long)m * k, n, (long)m * n, batch);

    /// <summary>Conv per image: y[o, plane] = W[o, kc] col[kc, plane]. A = col (or x for direct 1x1), B = W (shared), C = y.</summary>
    public static GemmPlan Conv(int images, int plane, int kc, int outChannels) =>
        new(Cublas.CUBLAS_OP_N, Cublas.CUBLAS_OP_N, plane, outChannels, kc, plane, (long)kc * plane, kc, 0, plane,
            (long)outChannels * plane, images);

    /// <summary>Rows and columns of A as stored (column-major, leading dimension Lda): cuBLASLt's layout of A.</summary>
    public (int Rows, int Cols) StoredA => OpA == Cublas.CUBLAS_OP_N ? (M, K) : (K, M);
    /// <summary>Rows and columns of B as stored (leading dimension Ldb).</summary>
    public (int Rows, int Cols) StoredB => OpB == Cublas.CUBLAS_OP_N ? (K, N) : (N, K);

    /// <summary>The BLAS definition on the host (float64), for tests: C[i + j ldc] = alpha sum_p op(A)[i,p] op(B)[p,j].</summary>
    public double[] Reference(ReadOnlySpan<float> a, ReadOnlySpan<float> b, double alpha, long cLength)
    {
        var c = new double[cLength];
        for (int t = 0; t < Batch; t++)
            for (int j = 0; j < N; j++)
                for (int i = 0; i < M; i++)
                {
                    double s = 0;
                    for (int p = 0; p < K; p++)
                    {
                        double av = OpA == Cublas.CUBLAS_OP_N ? a[(int)(t * StrideA + i + (long)p * Lda)] : a[(int)(t * StrideA + p + (long)i * Lda)];
                        double bv = OpB == Cublas.CUBLAS_OP_N ? b[(int)(t * StrideB + p + (long)j * Ldb)] : b[(int)(t * StrideB + j + (long)p * Ldb)];
                        s += av * bv;
                    }
                    c[t * StrideC + i + (long)j * Ldc] = alpha * s;
                }
        return c;
    }
}
