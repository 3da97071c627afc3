using System.Numerics.Tensors;

namespace LayerFusion.Cpu;

/// <summary>
/// Single-precision GEMM: C[M, N] = alpha * A[M, K] @ op(B) (+ bias[N] broadcast over rows),
/// with op(B) = B[K, N] or B[N, K]^T. All operands are row-major with explicit leading dims.
/// </summary>
internal static class Gemm
{
    public static void Run(ParallelOptions po, int m, int n, int k,
        float[] a, int aOff, int lda,
        float[] b, int bOff, int ldb, bool transB,
        float[] c, int cOff, int ldc,
        float alpha = 1f, float[]? bias = null, int biasOff = 0)
    {
        if (m == 0 || n == 0) return;
        if (transB)
        {
            Parallel.For(0, m, po, i =>
            {
                var arow = new ReadOnlySpan<float>(a, aOff + i * lda, k);
                var crow = new Span<float>(c, cOff + i * ldc, n);
                for (int j = 0; j < n; j++)
                {
                    float s = k == 0 ? 0f : TensorPrimitives.Dot(arow, new ReadOnlySpan<float>(b, bOff + j * ldb, k));
                    crow[j] = alpha * s + (bias != null ? bias[biasOff + j] : 0f);
                }
            });
        }
        else
        {
            Parallel.For(0, m, po, i =>
            {
                var crow = new Span<float>(c, cOff + i * ldc, n);
                crow.Clear();
                for (int p = 0; p < k; p++)
                {
                    float av = a[aOff + i * lda + p];
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(b, bOff + p * ldb, n), av, crow, crow);
                }
                if (alpha != 1f) TensorPrimitives.Multiply(crow, alpha, crow);
                if (bias != null) TensorPrimitives.Add(crow, new ReadOnlySpan<float>(bias, biasOff, n), crow);
            });
        }
    }
}
