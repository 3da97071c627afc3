using LayerFusion.Core.Fusion;

namespace LayerFusion.Tests.Fusion;

/// <summary>The streaming prior statistics against float64 sums over materialized probabilities.</summary>
public class AttentionStatisticsTests
{
    static float[] Random(Random rng, int count, double scale)
    {
        var x = new float[count];
        for (int i = 0; i < count; i++) x[i] = (float)(scale * (rng.NextDouble() * 2 - 1));
        return x;
    }

    /// <summary>p[h, i, j] = softmax_j(q_i^h . k_j^h / sqrt(d)) in float64.</summary>
    static double[] Probabilities(float[] q, float[] k, int m, int n, int heads, int d)
    {
        int inner = heads * d;
        var p = new double[heads * m * n];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < m; i++)
            {
                var row = new double[n];
                double max = double.NegativeInfinity;
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int c = 0; c < d; c++) s += (double)q[i * inner + h * d + c] * k[j * inner + h * d + c];
                    row[j] = s / Math.Sqrt(d);
                    max = Math.Max(max, row[j]);
                }
                double z = 0;
                for (int j = 0; j < n; j++) z += row[j] = Math.Exp(row[j] - max);
                for (int j = 0; j < n; j++) p[(h * m + i) * n + j] = row[j] / z;
            }
        return p;
    }

    static double MaxRel(float[] actual, double[] expected)
    {
        double max = 0;
        for (int i = 0; i < expected.Length; i++) max = Math.Max(max, Math.Abs(actual[i] - expected[i]) / Math.Abs(expected[i]));
        return max;
    }

    [Theory]
    [InlineData(37, 37, 3, 8, 1, 1.5)]   // self-attention, several heads
    [InlineData(20, 7, 2, 5, 6, 2.0)]    // cross-attention-like: few keys, column near the end
    [InlineData(64, 64, 1, 16, 0, 0.8)]  // one head, vector-width channels
    [InlineData(9, 33, 5, 3, 32, 3.0)]   // head dim below the vector width
    public void SumOfSquaresAndColumnMatchMaterializedFloat64(int m, int n, int heads, int d, int column, double scale)
    {
        var rng = new Random(m * 1000 + n * 10 + heads);
        var q = Random(rng, m * heads * d, scale);
        var k = Random(rng, n * heads * d, scale);
        var p = Probabilities(q, k, m, n, heads, d);
        var sumSq = new double[m];
        var col = new double[m];
        var mean = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double a = 0;
                for (int h = 0; h < heads; h++) a += p[(h * m + i) * n + j];
                a /= heads;
                mean[i * n + j] = a;
                sumSq[i] += a * a;
                if (j == column) col[i] = a;
            }

        var stats = AttentionStatistics.Compute(q, k, m, n, heads, d, sumOfSquares: true, column: column);
        Assert.True(MaxRel(stats.SumOfSquares!, sumSq) < 1e-5, $"sum of squares: {MaxRel(stats.SumOfSquares!, sumSq):E2}");
        Assert.True(MaxRel(stats.Column!, col) < 1e-5, $"column: {MaxRel(stats.Column!, col):E2}");
        // the rows are not degenerate: the sparsity scores spread between 1 and n
        Assert.True(sumSq.Max() / sumSq.Min() > 1.05);

        var map = AttentionStatistics.HeadMeanProbabilities(q, k, m, n, heads, d);
        Assert.True(MaxRel(map, mean) < 1e-5);
        // PriorMath's sparsity from the materialized map agrees with the streamed statistics
        var s = PriorMath.SparsityScores(map, m, n);
        for (int i = 0; i < m; i++) Assert.Equal(1 / sumSq[i], s[i], 1e-5 * s[i]);
    }

    [Fact]
    public void OnlyWhatIsAskedForIsComputedAndBadShapesAreRejected()
    {
        var rng = new Random(3);
        var q = Random(rng, 4 * 6, 1);
        var k = Random(rng, 5 * 6, 1);
        var a = AttentionStatistics.Compute(q, k, 4, 5, 2, 3, sumOfSquares: false, column: 4);
        Assert.Null(a.SumOfSquares);
        Assert.Equal(4, a.Column!.Length);
        var b = AttentionStatistics.Compute(q, k, 4, 5, 2, 3, sumOfSquares: true, column: -1);
        Assert.Null(b.Column);
        Assert.Throws<ArgumentOutOfRangeException>(() => AttentionStatistics.Compute(q, k, 4, 5, 2, 3, true, 5));
        Assert.Throws<ArgumentException>(() => AttentionStatistics.Compute(q, k, 4, 6, 2, 3, true, 0));
    }
}
