using System.Numerics;
using System.Runtime.InteropServices;

namespace LayerFusion.Core.Fusion;

/// <summary>Per-query statistics of the head-mean attention probabilities of one batch row.</summary>
/// <param name="SumOfSquares">sum_j m_ij^2 per query i (null when not asked for).</param>
/// <param name="Column">m_i,col per query i (null when no column was asked for).</param>
public sealed record HeadMeanStatistics(float[]? SumOfSquares, float[]? Column);

/// <summary>
/// The LayerFusion priors straight from queries and keys, without an M x N probability map:
/// for each query row, every head's softmax row is formed exactly (max, normalizer, then
/// probabilities), accumulated into the head-mean row, from which the sum of squares (structure
/// prior) and one key column (the content prior's &lt;EOS&gt;) are read. The head-mean must be formed
/// before squaring (sum_j (mean_h p_hij)^2 couples heads), so all heads of a row are processed
/// together; memory is O(N) per worker. This is the host form the fused device kernels reproduce.
/// </summary>
public static class AttentionStatistics
{
    /// <param name="q">[M, heads*headDim] query projections of one batch row.</param>
    /// <param name="k">[N, heads*headDim] key projections of the same row.</param>
    /// <param name="sumOfSquares">compute sum_j m_ij^2.</param>
    /// <param name="column">key index whose head-mean probability to return, or -1 for none.</param>
    public static HeadMeanStatistics Compute(ReadOnlySpan<float> q, ReadOnlySpan<float> k, int queries, int keys,
        int heads, int headDim, bool sumOfSquares, int column)
    {
        int inner = heads * headDim;
        if (queries < 0 || keys < 1 || heads < 1 || headDim < 1)
            throw new ArgumentException("attention statistics need at least one key, head and channel");
        if (q.Length != (long)queries * inner || k.Length != (long)keys * inner)
            throw new ArgumentException($"q has {q.Length} values, k {k.Length}; expected {queries}x{inner} and {keys}x{inner}");
        if (column >= keys) throw new ArgumentOutOfRangeException(nameof(column), $"column {column} is outside {keys} keys");

        var ss = sumOfSquares ? new float[queries] : null;
        var col = column >= 0 ? new float[queries] : null;
        // Parallel.For cannot capture spans; pin copies as arrays once (O(M + N) of the inputs).
        float[] qa = q.ToArray(), ka = k.ToArray();
        float scale = 1f / MathF.Sqrt(headDim);
        Parallel.For(0, queries, () => (new float[keys], new double[keys]), (i, _, buf) =>
        {
            var (scores, mean) = buf;
            Array.Clear(mean);
            var qi = qa.AsSpan(i * inner, inner);
            for (int h = 0; h < heads; h++)
            {
                var qh = qi.Slice(h * headDim, headDim);
                float max = float.NegativeInfinity;
                for (int j = 0; j < keys; j++)
                {
                    float sc = Dot(qh, ka.AsSpan(j * inner + h * headDim, headDim)) * scale;
                    scores[j] = sc;
                    if (sc > max) max = sc;
                }
                double z = 0;
                for (int j = 0; j < keys; j++)
                {
                    double e = Math.Exp(scores[j] - max);
                    scores[j] = (float)e;
                    z += e;
                }
                double w = 1.0 / (z * heads);
                for (int j = 0; j < keys; j++) mean[j] += scores[j] * w;
            }
            if (ss != null)
            {
                double acc = 0;
                for (int j = 0; j < keys; j++) acc += mean[j] * mean[j];
                ss[i] = (float)acc;
            }
            if (col != null) col[i] = (float)mean[column];
            return buf;
        }, _ => { });
        return new HeadMeanStatistics(ss, col);
    }

    /// <summary>The head-mean probability map [M, N] itself (for dumps and tests on small layers only).</summary>
    public static float[] HeadMeanProbabilities(ReadOnlySpan<float> q, ReadOnlySpan<float> k, int queries, int keys, int heads, int headDim)
    {
        int inner = heads * headDim;
        if (q.Length != (long)queries * inner || k.Length != (long)keys * inner)
            throw new ArgumentException($"q has {q.Length} values, k {k.Length}; expected {queries}x{inner} and {keys}x{inner}");
        long total = (long)queries * keys;
        if (total > int.MaxValue) throw new ArgumentException($"a {queries}x{keys} probability map is too large to materialize");
        var result = new float[total];
        float scale = 1f / MathF.Sqrt(headDim);
        var scores = new double[keys];
        for (int i = 0; i < queries; i++)
            for (int h = 0; h < heads; h++)
            {
                var qh = q.Slice(i * inner + h * headDim, headDim);
                double max = double.NegativeInfinity;
                for (int j = 0; j < keys; j++)
                {
                    scores[j] = Dot(qh, k.Slice(j * inner + h * headDim, headDim)) * scale;
                    max = Math.Max(max, scores[j]);
                }
                double z = 0;
                for (int j = 0; j < keys; j++) z += scores[j] = Math.Exp(scores[j] - max);
                for (int j = 0; j < keys; j++) result[(long)i * keys + j] += (float)(scores[j] / z / heads);
            }
        return result;
    }

    static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        int n = a.Length, i = 0;
        float sum = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            var va = MemoryMarshal.Cast<float, Vector<float>>(a);
            var vb = MemoryMarshal.Cast<float, Vector<float>>(b);
            var acc = Vector<float>.Zero;
            for (int v = 0; v < va.Length; v++) acc += va[v] * vb[v];
            sum = Vector.Sum(acc);
            i = va.Length * Vector<float>.Count;
        }
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }
}
