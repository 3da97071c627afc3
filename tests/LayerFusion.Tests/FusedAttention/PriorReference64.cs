namespace LayerFusion.Tests.FusedAttention;

/// <summary>Float64 results of prior-emitting attention, all [B, M] vectors and [B, M, H*D] outputs.</summary>
internal sealed record PriorReference(double[] Output, double[] Sparsity, double[] EosColumn);

/// <summary>
/// The plain float64 reference for the fused prior attention: every head's probability row is
/// materialized (fine at test sizes), then O = P V, m = mean_h P, s = 1 / sum_j m_ij^2,
/// c = m_{i,eos}. Nothing here is shared with the code under test.
/// </summary>
internal static class PriorReference64
{
    public static PriorReference Compute(float[] q, float[] k, float[] v, int batch, int queries, int keys, int heads, int headDim,
        int eosIndex, float[]? keyBias = null)
    {
        int inner = heads * headDim;
        var output = new double[(long)batch * queries * inner];
        var sparsity = new double[batch * queries];
        var eos = new double[batch * queries];
        double scale = 1 / Math.Sqrt(headDim);
        var p = new double[keys];
        var mean = new double[keys];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < queries; i++)
            {
                Array.Clear(mean);
                for (int h = 0; h < heads; h++)
                {
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < keys; j++)
                    {
                        double s = 0;
                        for (int c = 0; c < headDim; c++)
                            s += (double)q[((long)b * queries + i) * inner + h * headDim + c] * k[((long)b * keys + j) * inner + h * headDim + c];
                        s = s * scale + (keyBias is null ? 0 : keyBias[b * keys + j]);
                        p[j] = s;
                        max = Math.Max(max, s);
                    }
                    double z = 0;
                    for (int j = 0; j < keys; j++) z += p[j] = double.IsNegativeInfinity(max) ? 0 : Math.Exp(p[j] - max);
                    for (int j = 0; j < keys; j++)
                    {
                        p[j] = z > 0 ? p[j] / z : 0;
                        mean[j] += p[j] / heads;
                    }
                    for (int c = 0; c < headDim; c++)
                    {
                        double acc = 0;
                        for (int j = 0; j < keys; j++) acc += p[j] * v[((long)b * keys + j) * inner + h * headDim + c];
                        output[((long)b * queries + i) * inner + h * headDim + c] = acc;
                    }
                }
                double ss = 0;
                for (int j = 0; j < keys; j++) ss += mean[j] * mean[j];
                sparsity[b * queries + i] = 1 / ss;
                eos[b * queries + i] = eosIndex >= 0 ? mean[eosIndex] : 0;
            }

        return new PriorReference(output, sparsity, eos);
    }

    /// <summary>‖actual − expected‖₂ / ‖expected‖₂; a non-finite actual value fails the check outright.</summary>
    public static double RelativeError(float[] actual, double[] expected, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double num = 0, den = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            Assert.True(float.IsFinite(actual[i]), $"{what}: element {i} is {actual[i]} (unwritten or overflow)");
            num += (actual[i] - expected[i]) * (actual[i] - expected[i]);
            den += expected[i] * expected[i];
        }
        return Math.Sqrt(num / Math.Max(den, 1e-300));
    }

    public static float[] Random(Random rng, int count, double scale)
    {
        var x = new float[count];
        for (int i = 0; i < count; i++) x[i] = (float)(scale * (rng.NextDouble() * 2 - 1));
        return x;
    }

    public static float[] Uniform01(Random rng, int count)
    {
        var x = new float[count];
        for (int i = 0; i < count; i++) x[i] = (float)rng.NextDouble();
        return x;
    }
}
