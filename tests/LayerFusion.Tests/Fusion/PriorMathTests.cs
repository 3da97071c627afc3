using LayerFusion.Core.Fusion;

namespace LayerFusion.Tests.Fusion;

/// <summary>PriorMath against direct float64 computations on random attention probabilities.</summary>
public class PriorMathTests
{
    static double[] RandomSoftmaxRows(Random rng, int heads, int m, int n)
    {
        var p = new double[heads * m * n];
        for (int row = 0; row < heads * m; row++)
        {
            double sum = 0;
            for (int j = 0; j < n; j++) sum += p[row * n + j] = Math.Exp(3 * (rng.NextDouble() * 2 - 1));
            for (int j = 0; j < n; j++) p[row * n + j] /= sum;
        }
        return p;
    }

    static double MaxRelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        double maxRef = 0, maxErr = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
            maxErr = Math.Max(maxErr, Math.Abs(actual[i] - expected[i]));
        }
        return maxErr / maxRef;
    }

    [Theory]
    [InlineData(1, 7, 5, 11)]
    [InlineData(4, 64, 64, 12)]
    [InlineData(10, 16, 77, 13)]
    public void SparsityOfHeadMeanMatchesFloat64(int heads, int m, int n, int seed)
    {
        var rng = new Random(seed);
        var p = RandomSoftmaxRows(rng, heads, m, n);
        var mean = new double[m * n];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < m * n; i++) mean[i] += p[h * m * n + i] / heads;
        var expected = new double[m];
        for (int i = 0; i < m; i++)
        {
            double sq = 0;
            for (int j = 0; j < n; j++) sq += mean[i * n + j] * mean[i * n + j];
            expected[i] = 1 / sq;
        }
        var s = PriorMath.SparsityScores(mean.Select(v => (float)v).ToArray(), m, n);
        Assert.True(MaxRelativeError(s, expected) < 1e-5);

        double min = expected.Min(), max = expected.Max();
        var density = PriorMath.DensityPrior(s);
        Assert.True(MaxRelativeError(density, expected.Select(v => 1 - (v - min) / (max - min)).ToArray()) < 1e-4);
    }

    [Fact]
    public void SparsityIsOneForOneHotAndNForUniformRows()
    {
        int n = 9;
        var rows = new float[2 * n];
        rows[3] = 1;
        for (int j = 0; j < n; j++) rows[n + j] = 1f / n;
        var s = PriorMath.SparsityScores(rows, 2, n);
        Assert.Equal(1f, s[0], 5);
        Assert.Equal(n, s[1], 4);
    }

    [Fact]
    public void MasksMatchFloat64AndHardMaskIsSigmoidOfSoft()
    {
        var rng = new Random(5);
        int tokens = 200;
        var sPrime = Enumerable.Range(0, tokens).Select(_ => (float)rng.NextDouble()).ToArray();
        var c = Enumerable.Range(0, tokens).Select(_ => (float)(rng.NextDouble() * 0.3)).ToArray();
        var product = sPrime.Zip(c, (a, b) => (double)a * b).ToArray();
        double min = product.Min(), max = product.Max();
        var softRef = product.Select(v => (v - min) / (max - min)).ToArray();
        var soft = PriorMath.SoftMask(sPrime, c);
        Assert.True(MaxRelativeError(soft, softRef) < 1e-5);
        Assert.Equal(0f, soft.Min());
        Assert.Equal(1f, soft.Max());

        foreach (var d in new[] { 1f, 10f, 50f })
        {
            var hard = PriorMath.HardMask(soft, d);
            var hardRef = softRef.Select(v => 1 / (1 + Math.Exp(-d * (v - 0.5)))).ToArray();
            Assert.True(MaxRelativeError(hard, hardRef) < 1e-5);
        }
    }

    [Fact]
    public void ConstantInputMinMaxIsZeros() => Assert.All(PriorMath.MinMax([2f, 2f, 2f]), v => Assert.Equal(0f, v));

    [Fact]
    public void BilinearResizeMatchesTorchSemantics()
    {
        // torch: F.interpolate(torch.tensor([[[[0.,1.],[2.,3.]]]]), size=(4,4), mode="bilinear") (align_corners=False)
        float[] expected =
        [
            0.00f, 0.25f, 0.75f, 1.00f,
            0.50f, 0.75f, 1.25f, 1.50f,
            1.50f, 1.75f, 2.25f, 2.50f,
            2.00f, 2.25f, 2.75f, 3.00f,
        ];
        var up = PriorMath.ResizeBilinear([0f, 1f, 2f, 3f], 2, 2, 4, 4);
        for (int i = 0; i < 16; i++) Assert.Equal(expected[i], up[i], 6);
        // downsampling by 2 without antialias averages the two central neighbours
        var down = PriorMath.ResizeBilinear(up, 4, 4, 2, 2);
        Assert.Equal(0.375f, down[0], 6);
    }

    [Fact]
    public void BlendIdentities()
    {
        var rng = new Random(9);
        int tokens = 13, ch = 6;
        float[] Rand() => Enumerable.Range(0, tokens * ch).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var fg0 = Rand();
        var blend0 = Rand();

        // soft = 0: blend unchanged; hard = 0: fg unchanged
        var fg = (float[])fg0.Clone();
        var blend = (float[])blend0.Clone();
        PriorMath.BlendInPlace(fg, blend, new float[tokens], new float[tokens], ch);
        Assert.Equal(blend0, blend);
        Assert.Equal(fg0, fg);

        // soft = 1: blend becomes fg; hard = 1: fg becomes the blended output (= fg)
        fg = (float[])fg0.Clone();
        blend = (float[])blend0.Clone();
        var ones = Enumerable.Repeat(1f, tokens).ToArray();
        PriorMath.BlendInPlace(fg, blend, ones, ones, ch);
        Assert.Equal(fg0, blend);
        Assert.Equal(fg0, fg);

        // general masks against float64 Eq. 1 / Eq. 2
        var soft = Enumerable.Range(0, tokens).Select(_ => (float)rng.NextDouble()).ToArray();
        var hard = Enumerable.Range(0, tokens).Select(_ => (float)rng.NextDouble()).ToArray();
        fg = (float[])fg0.Clone();
        blend = (float[])blend0.Clone();
        PriorMath.BlendInPlace(fg, blend, soft, hard, ch);
        for (int t = 0; t < tokens; t++)
            for (int c = 0; c < ch; c++)
            {
                int i = t * ch + c;
                double b = (double)fg0[i] * soft[t] + (double)blend0[i] * (1 - soft[t]);
                double f = b * hard[t] + (double)fg0[i] * (1 - hard[t]);
                Assert.Equal(b, blend[i], 5);
                Assert.Equal(f, fg[i], 5);
            }
    }
}
