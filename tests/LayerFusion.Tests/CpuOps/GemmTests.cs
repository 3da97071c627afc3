using LayerFusion.Cpu;
using static LayerFusion.Tests.CpuOps.OpTestKit;

namespace LayerFusion.Tests.CpuOps;

/// <summary>The blocked GEMM driven directly, so every edge of its tiling (partial MR/NR tiles, several
/// KC and NC blocks, several MC blocks, N split across threads) is hit regardless of the size cut-offs.</summary>
public class GemmTests
{
    public static TheoryData<int, int, int, bool, int, bool> Cases()
    {
        var d = new TheoryData<int, int, int, bool, int, bool>();
        foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 17, 5), (6, 16, 256), (12, 32, 300), (97, 33, 257), (25, 65, 513), (13, 3100, 20), (200, 50, 600), (5, 300, 70) })
            foreach (var t in new[] { false, true })
            {
                d.Add(m, n, k, t, 1, (m + n) % 2 == 0);
                d.Add(m, n, k, t, -1, (m + n) % 2 == 1);
            }
        // above the coarse-task threshold: slices along N (ragged last slice) and along M, 2 and 3 workers;
        // the last two are long enough for more slices than workers (dim / Gemm.MinSliceLength)
        foreach (var (m, n, k, dop) in new[] { (40, 1000, 300, 2), (37, 1290, 270, 3), (700, 70, 520, 2), (1010, 45, 300, 3), (30, 2100, 100, 2), (1600, 20, 30, 2) })
            foreach (var t in new[] { false, true })
                d.Add(m, n, k, t, dop, (m + k) % 2 == 0);
        return d;
    }

    [Theory, MemberData(nameof(Cases))]
    public void Blocked_and_simple_paths_match_float64(int m, int n, int k, bool transB, int dop, bool withBias)
    {
        var r = new Random(19000 + m * 7 + n * 3 + k + (transB ? 1 : 0));
        // leading dims larger than the logical widths, and non-zero offsets, to check the addressing
        int lda = k + 3, ldb = (transB ? k : n) + 2, ldc = n + 5;
        var a = Rand(r, 4 + m * lda); var b = Rand(r, 2 + (transB ? n : k) * ldb); var bias = Rand(r, 1 + n);
        float alpha = 0.75f;
        var reference = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += (double)a[4 + i * lda + p] * (transB ? b[2 + j * ldb + p] : b[2 + p * ldb + j]);
                reference[i * n + j] = alpha * s + (withBias ? bias[1 + j] : 0);
            }
        var po = new ParallelOptions { MaxDegreeOfParallelism = dop };
        foreach (var path in new[] { "wide", "narrow", "simple" })
        {
            var c = Rand(r, 3 + m * ldc); // garbage in C must be overwritten, padding left alone
            var padding = c.ToArray();
            var aCopy = a.ToArray(); var bCopy = b.ToArray();
            if (path != "simple")
                Gemm.Blocked(po, m, n, k, a, 4, lda, b, 2, ldb, transB, c, 3, ldc, alpha, withBias ? bias : null, 1, wide: path == "wide");
            else Gemm.Simple(po, m, n, k, a, 4, lda, b, 2, ldb, transB, c, 3, ldc, alpha, withBias ? bias : null, 1);
            Assert.Equal(aCopy, a); Assert.Equal(bCopy, b);
            var y = new float[m * n];
            for (int i = 0; i < m; i++)
            {
                Array.Copy(c, 3 + i * ldc, y, i * n, n);
                for (int j = n; j < ldc && 3 + i * ldc + j < c.Length; j++) Assert.Equal(padding[3 + i * ldc + j], c[3 + i * ldc + j]);
            }
            Assert.Equal(padding[..3], c[..3]);
            AssertClose(y, reference);
        }
    }

    /// <summary>A stored transposed (A^T[K, M], the attention's V^T): every path and tiling edge above.</summary>
    [Theory, MemberData(nameof(Cases))]
    public void Transposed_a_matches_float64(int m, int n, int k, bool transB, int dop, bool withBias)
    {
        var r = new Random(19500 + m * 7 + n * 3 + k + (transB ? 1 : 0));
        int lda = m + 3, ldb = (transB ? k : n) + 2, ldc = n + 5;
        var a = Rand(r, 4 + k * lda); var b = Rand(r, 2 + (transB ? n : k) * ldb); var bias = Rand(r, 1 + n);
        float alpha = 1.25f;
        var reference = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += (double)a[4 + p * lda + i] * (transB ? b[2 + j * ldb + p] : b[2 + p * ldb + j]);
                reference[i * n + j] = alpha * s + (withBias ? bias[1 + j] : 0);
            }
        var po = new ParallelOptions { MaxDegreeOfParallelism = dop };
        foreach (var path in new[] { "wide", "narrow", "simple" })
        {
            var c = Rand(r, 3 + m * ldc);
            var aCopy = a.ToArray();
            if (path != "simple")
                Gemm.Blocked(po, m, n, k, a, 4, lda, b, 2, ldb, transB, c, 3, ldc, alpha, withBias ? bias : null, 1, wide: path == "wide", transA: true);
            else Gemm.Simple(po, m, n, k, a, 4, lda, b, 2, ldb, transB, c, 3, ldc, alpha, withBias ? bias : null, 1, transA: true);
            Assert.Equal(aCopy, a);
            var y = new float[m * n];
            for (int i = 0; i < m; i++) Array.Copy(c, 3 + i * ldc, y, i * n, n);
            AssertClose(y, reference);
        }
    }
}
