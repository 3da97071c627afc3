using CpuBackend = LayerFusion.Cpu.CpuOps;
using static LayerFusion.Tests.CpuOps.OpTestKit;

namespace LayerFusion.Tests.CpuOps;

public class AttentionTests
{
    /// <summary>Plain float64 SDPA over [B, T, H*D] layouts; a row with every key masked gives NaN (torch).</summary>
    static double[] Reference(float[] q, float[] k, float[] v, int b, int m, int n, int heads, int hd, float[]? bias, bool causal)
    {
        int dh = hd / heads;
        double scale = 1 / Math.Sqrt(dh);
        var o = new double[b * m * hd];
        var s = new double[n];
        for (int bi = 0; bi < b; bi++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < m; i++)
                {
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < n; j++)
                    {
                        double d = 0;
                        for (int e = 0; e < dh; e++) d += (double)q[(bi * m + i) * hd + h * dh + e] * k[(bi * n + j) * hd + h * dh + e];
                        d *= scale;
                        if (bias != null) d += bias[bi * n + j];
                        if (causal && j > i) d = double.NegativeInfinity;
                        s[j] = d; max = Math.Max(max, d);
                    }
                    double sum = 0;
                    for (int j = 0; j < n; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
                    for (int e = 0; e < dh; e++)
                    {
                        double acc = 0;
                        for (int j = 0; j < n; j++) acc += s[j] / sum * v[(bi * n + j) * hd + h * dh + e];
                        o[(bi * m + i) * hd + h * dh + e] = acc;
                    }
                }
        return o;
    }

    public static TheoryData<int, int, int, int, int, bool, bool, int> Cases => new()
    {
        // b, m, n, heads, headDim, bias, causal, dop
        { 1, 1, 1, 1, 1, false, false, 1 },
        { 2, 5, 7, 2, 3, false, false, 1 },      // cross-attention shape (m != n)
        { 2, 9, 9, 3, 8, false, true, 2 },       // causal self-attention
        { 2, 13, 13, 4, 16, true, true, -1 },    // causal + key bias (CLIP text encoder style)
        { 3, 33, 77, 5, 64, true, false, -1 },   // cross-attention with a key mask bias
        { 2, 70, 65, 2, 40, false, false, 2 },
        { 1, 257, 100, 10, 12, true, false, -1 },
    };

    [Theory, MemberData(nameof(Cases))]
    public void Attention_matches_float64(int b, int m, int n, int heads, int dh, bool withBias, bool causal, int dop)
    {
        var ops = Ops(dop);
        var r = new Random(9000 + b * 7 + m * 11 + n * 13 + heads * 17 + dh + (withBias ? 3 : 0) + (causal ? 5 : 0));
        int hd = heads * dh;
        var q = Rand(r, b * m * hd); var k = Rand(r, b * n * hd); var v = Rand(r, b * n * hd);
        float[]? bias = null;
        if (withBias)
        {
            bias = Rand(r, b * n, -3f, 1f);
            // mask some keys with -inf, but never key 0 so no causal row is fully masked
            for (int i = 0; i < bias.Length; i++) if (i % n != 0 && r.NextDouble() < 0.3) bias[i] = float.NegativeInfinity;
        }
        var tq = T(ops, q, b, m, hd); var tk = T(ops, k, b, n, hd); var tv = T(ops, v, b, n, hd);
        var tb = bias == null ? null : T(ops, bias, b, n);
        var guard = new InputGuard(ops, tq, tk, tv, tb);
        var y = ops.Attention(tq, tk, tv, heads, tb, causal);
        guard.Unchanged();
        Assert.Equal(new[] { b, m, hd }, y.Shape);
        AssertClose(ops.ToHost(y), Reference(q, k, v, b, m, n, heads, hd, bias, causal));
    }

    /// <summary>The streamed (flash) path at every case above, with key blocks that leave ragged tails
    /// (block 7: 65 = 9 x 7 + 2 keys), one key per block, and blocks longer than the keys.</summary>
    [Theory, MemberData(nameof(Cases))]
    public void Flash_attention_matches_float64(int b, int m, int n, int heads, int dh, bool withBias, bool causal, int dop)
    {
        foreach (int block in new[] { 7, 1, 256 })
        {
            var ops = new CpuBackend(dop) { FlashMinKeys = 0, FlashKeyBlock = block };
            var r = new Random(9100 + b * 7 + m * 11 + n * 13 + heads * 17 + dh + block + (withBias ? 3 : 0) + (causal ? 5 : 0));
            int hd = heads * dh;
            var q = Rand(r, b * m * hd); var k = Rand(r, b * n * hd); var v = Rand(r, b * n * hd);
            float[]? bias = null;
            if (withBias)
            {
                bias = Rand(r, b * n, -3f, 1f);
                for (int i = 0; i < bias.Length; i++) if (i % n != 0 && r.NextDouble() < 0.3) bias[i] = float.NegativeInfinity;
            }
            var tq = T(ops, q, b, m, hd); var tk = T(ops, k, b, n, hd); var tv = T(ops, v, b, n, hd);
            var tb = bias == null ? null : T(ops, bias, b, n);
            var guard = new InputGuard(ops, tq, tk, tv, tb);
            var y = ops.Attention(tq, tk, tv, heads, tb, causal);
            guard.Unchanged();
            Assert.Equal(new[] { b, m, hd }, y.Shape);
            AssertClose(ops.ToHost(y), Reference(q, k, v, b, m, n, heads, hd, bias, causal));
        }
    }

    /// <summary>Scores far apart in size, with the largest keys late, so the running maximum grows block
    /// after block and earlier partial sums are rescaled; whole key blocks masked before any unmasked key.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Flash_attention_rescales_when_the_maximum_grows(bool maskLeadingBlocks)
    {
        var ops = new CpuBackend(2) { FlashMinKeys = 0, FlashKeyBlock = 16 };
        var r = new Random(9200 + (maskLeadingBlocks ? 1 : 0));
        int b = 2, m = 100, n = 150, heads = 2, dh = 24, hd = heads * dh;
        var q = Rand(r, b * m * hd); var k = Rand(r, b * n * hd); var v = Rand(r, b * n * hd);
        for (int j = 0; j < n; j++)   // key norms growing with the key index: scores up to ~+-60
            for (int bi = 0; bi < b; bi++)
                for (int e = 0; e < hd; e++) k[(bi * n + j) * hd + e] *= 0.2f + 3f * j / n;
        var bias = new float[b * n];
        for (int i = 0; i < bias.Length; i++) bias[i] = maskLeadingBlocks && i % n < 40 ? float.NegativeInfinity : -0.5f + (float)r.NextDouble();
        var tq = T(ops, q, b, m, hd); var tk = T(ops, k, b, n, hd); var tv = T(ops, v, b, n, hd); var tb = T(ops, bias, b, n);
        var y = ops.ToHost(ops.Attention(tq, tk, tv, heads, tb));
        AssertClose(y, Reference(q, k, v, b, m, n, heads, hd, bias, false));
        // and the same inputs on the whole-row path agree to fp32 rounding
        var full = new CpuBackend(2);
        var y0 = full.ToHost(full.Attention(T(full, q, b, m, hd), T(full, k, b, n, hd), T(full, v, b, n, hd), heads, T(full, bias, b, n)));
        AssertClose(y, Array.ConvertAll(y0, x => (double)x));
    }

    [Fact]
    public void Flash_attention_fully_masked_row_gives_nan_like_the_full_softmax()
    {
        var ops = new CpuBackend(1) { FlashMinKeys = 0, FlashKeyBlock = 2 };
        var r = new Random(9901);
        int b = 2, m = 3, n = 5, hd = 4;
        var bias = new float[b * n];
        for (int j = 0; j < n; j++) bias[j] = float.NegativeInfinity;   // batch row 0: every key masked
        var y = ops.ToHost(ops.Attention(T(ops, Rand(r, b * m * hd), b, m, hd), T(ops, Rand(r, b * n * hd), b, n, hd),
            T(ops, Rand(r, b * n * hd), b, n, hd), 2, T(ops, bias, b, n)));
        Assert.All(y.AsSpan(0, m * hd).ToArray(), val => Assert.True(float.IsNaN(val)));
        Assert.All(y.AsSpan(m * hd).ToArray(), val => Assert.True(float.IsFinite(val)));
    }

    [Fact]
    public void Fully_masked_row_gives_nan_like_torch_softmax()
    {
        var ops = Ops(1);
        var r = new Random(9900);
        int b = 1, m = 2, n = 3, hd = 4;
        var tq = T(ops, Rand(r, b * m * hd), b, m, hd); var tk = T(ops, Rand(r, b * n * hd), b, n, hd);
        var tv = T(ops, Rand(r, b * n * hd), b, n, hd);
        var y = ops.ToHost(ops.Attention(tq, tk, tv, 2, T(ops, new[] { float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity }, 1, 3)));
        Assert.All(y, val => Assert.True(float.IsNaN(val)));
        var s = ops.ToHost(ops.Softmax(T(ops, new[] { float.NegativeInfinity, float.NegativeInfinity }, 1, 2)));
        Assert.All(s, val => Assert.True(float.IsNaN(val)));
    }
}
