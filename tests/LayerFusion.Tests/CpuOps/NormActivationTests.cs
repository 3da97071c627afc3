using static LayerFusion.Tests.CpuOps.OpTestKit;

namespace LayerFusion.Tests.CpuOps;

public class NormActivationTests
{
    static double Silu(double x) => x / (1 + Math.Exp(-x));

    public static TheoryData<int[], int, bool, bool, int> GroupNormCases => new()
    {
        // shape, groups, affine, fuseSilu, dop
        { new[] { 1, 4, 3, 5 }, 2, true, false, 1 },
        { new[] { 2, 6, 7, 9 }, 3, true, true, 2 },
        { new[] { 2, 32, 5, 5 }, 32, false, false, -1 },
        { new[] { 1, 64, 17, 13 }, 32, true, true, -1 },
        { new[] { 3, 8, 11 }, 4, true, false, 2 },      // [N, C, L]
        { new[] { 2, 6 }, 1, true, true, 1 },           // no spatial dims
        { new[] { 1, 16, 64, 65 }, 4, true, false, 2 }, // large groups (16640 elements)
    };

    [Theory, MemberData(nameof(GroupNormCases))]
    public void GroupNorm_matches_float64(int[] shape, int groups, bool affine, bool fuseSilu, int dop)
    {
        var ops = Ops(dop);
        var r = new Random(4000 + shape.Sum() * 7 + groups + (fuseSilu ? 1 : 0));
        int n = shape[0], c = shape[1], sp = Prod(shape) / (n * c);
        // an offset mean makes the variance computation non-trivial
        var x = Rand(r, Prod(shape), 1.5f, 4.5f);
        var g = Rand(r, c, 0.5f, 1.5f); var b = Rand(r, c);
        var tx = T(ops, x, shape); var tg = affine ? T(ops, g, c) : null; var tb = affine ? T(ops, b, c) : null;
        var guard = new InputGuard(ops, tx, tg, tb);
        const float eps = 1e-5f;
        var y = ops.GroupNorm(tx, groups, tg, tb, eps, fuseSilu);
        guard.Unchanged();
        Assert.Equal(shape, y.Shape);
        var reference = new double[x.Length];
        int cpg = c / groups;
        for (int ni = 0; ni < n; ni++)
            for (int gi = 0; gi < groups; gi++)
            {
                int off = (ni * c + gi * cpg) * sp, len = cpg * sp;
                double mean = 0; for (int i = 0; i < len; i++) mean += x[off + i]; mean /= len;
                double v = 0; for (int i = 0; i < len; i++) v += (x[off + i] - mean) * (x[off + i] - mean); v /= len;
                for (int i = 0; i < len; i++)
                {
                    int ch = gi * cpg + i / sp;
                    double val = (x[off + i] - mean) / Math.Sqrt(v + eps);
                    if (affine) val = val * g[ch] + b[ch];
                    reference[off + i] = fuseSilu ? Silu(val) : val;
                }
            }
        AssertClose(ops.ToHost(y), reference);
    }

    [Theory]
    [InlineData(1, 1, true, 1)]
    [InlineData(5, 7, true, 1)]
    [InlineData(77, 768, true, 2)]
    [InlineData(33, 1280, false, -1)]
    [InlineData(300, 67, true, -1)]
    public void LayerNorm_matches_float64(int rows, int d, bool affine, int dop)
    {
        var ops = Ops(dop);
        var r = new Random(5000 + rows * 3 + d);
        var x = Rand(r, rows * d, -3f, 5f); var g = Rand(r, d, 0.5f, 1.5f); var b = Rand(r, d);
        var tx = T(ops, x, 1, rows, d); var tg = affine ? T(ops, g, d) : null; var tb = affine ? T(ops, b, d) : null;
        var guard = new InputGuard(ops, tx, tg, tb);
        var y = ops.LayerNorm(tx, tg, tb, 1e-5f);
        guard.Unchanged();
        var reference = new double[x.Length];
        for (int i = 0; i < rows; i++)
        {
            double mean = 0; for (int j = 0; j < d; j++) mean += x[i * d + j]; mean /= d;
            double v = 0; for (int j = 0; j < d; j++) v += (x[i * d + j] - mean) * (x[i * d + j] - mean); v /= d;
            for (int j = 0; j < d; j++)
            {
                double val = (x[i * d + j] - mean) / Math.Sqrt(v + 1e-5);
                reference[i * d + j] = affine ? val * g[j] + b[j] : val;
            }
        }
        if (d == 1) // a single element normalizes to exactly 0 (+ beta): check it directly
        {
            Assert.Equal(affine ? b[0] : 0f, ops.ToHost(y)[0], 6);
            return;
        }
        AssertClose(ops.ToHost(y), reference);
    }

    /// <summary>erf in double to full precision (series for small |x|, continued fraction for erfc),
    /// independent of the implementation under test.</summary>
    internal static double ErfRef(double x)
    {
        double ax = Math.Abs(x);
        if (ax < 2.5)
        {
            // Maclaurin series: erf x = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
            double sum = 0, term = ax;
            for (int n = 0; n < 200; n++)
            {
                double t = term / (2 * n + 1);
                sum += t;
                if (Math.Abs(t) < 1e-18 * Math.Abs(sum)) break;
                term *= -ax * ax / (n + 1);
            }
            double e = 2 / Math.Sqrt(Math.PI) * sum;
            return x < 0 ? -e : e;
        }
        double erfc = ErfcCf(ax);
        return x < 0 ? erfc - 1 : 1 - erfc;
    }

    /// <summary>erfc for x >= 2.5 by Lentz's continued fraction: erfc x = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))).</summary>
    internal static double ErfcCf(double x)
    {
        // evaluate backwards with enough terms for double precision at x >= 2.5
        double f = x;
        for (int n = 200; n >= 1; n--) f = x + n / 2.0 / f;
        return Math.Exp(-x * x) / Math.Sqrt(Math.PI) / f;
    }

    internal static double GeluRef(double x) => x < -2.5 * Math.Sqrt(2)
        ? 0.5 * x * ErfcCf(-x / Math.Sqrt(2))
        : 0.5 * x * (1 + ErfRef(x / Math.Sqrt(2)));

    static double GeluTanhRef(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    public static TheoryData<string, int, int> ActivationCases()
    {
        var d = new TheoryData<string, int, int>();
        foreach (var name in new[] { "silu", "gelu", "gelu_tanh", "quick_gelu" })
        {
            d.Add(name, 7, 1);
            d.Add(name, 4099, 2);
            d.Add(name, 50001, -1);
        }
        return d;
    }

    [Theory, MemberData(nameof(ActivationCases))]
    public void Activation_matches_float64_elementwise(string name, int n, int dop)
    {
        var ops = Ops(dop);
        var r = new Random(6000 + n + name.Length);
        var x = Rand(r, n, -12f, 12f);
        var tx = T(ops, x, n);
        var guard = new InputGuard(ops, tx);
        var y = name switch
        {
            "silu" => ops.Silu(tx),
            "gelu" => ops.Gelu(tx),
            "gelu_tanh" => ops.Gelu(tx, tanhApproximation: true),
            _ => ops.QuickGelu(tx),
        };
        guard.Unchanged();
        Func<double, double> f = name switch
        {
            "silu" => Silu,
            "gelu" => GeluRef,
            "gelu_tanh" => GeluTanhRef,
            _ => v => v / (1 + Math.Exp(-1.702 * v)),
        };
        AssertCloseElementwise(ops.ToHost(y), x.Select(v => f(v)).ToArray());
    }

    [Fact]
    public void Erf_reference_agrees_with_known_values()
    {
        // guards the test's own reference: erf(0.5), erf(1), erf(2), erfc(3) to 15 digits
        Assert.Equal(0.520499877813046538, ErfRef(0.5), 14);
        Assert.Equal(0.842700792949714869, ErfRef(1.0), 14);
        Assert.Equal(0.995322265018952734, ErfRef(2.0), 14);
        Assert.True(Math.Abs(ErfcCf(3.0) / 2.20904969985854413e-05 - 1) < 1e-13);
    }

    [Theory]
    [InlineData(3, 8, 1)]
    [InlineData(77, 2 * 640, 2)]
    [InlineData(129, 2 * 33, -1)]
    public void Geglu_is_hidden_times_gelu_of_gate(int rows, int twoD, int dop)
    {
        var ops = Ops(dop);
        var r = new Random(7000 + rows + twoD);
        var x = Rand(r, rows * twoD, -4f, 4f);
        var tx = T(ops, x, 1, rows, twoD);
        var guard = new InputGuard(ops, tx);
        var y = ops.Geglu(tx);
        guard.Unchanged();
        int d = twoD / 2;
        Assert.Equal(new[] { 1, rows, d }, y.Shape);
        var reference = new double[rows * d];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < d; j++)
                reference[i * d + j] = x[i * twoD + j] * GeluRef(x[i * twoD + d + j]);
        AssertCloseElementwise(ops.ToHost(y), reference);
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(4, 9, 1)]
    [InlineData(77, 77, 2)]
    [InlineData(200, 1025, -1)]
    public void Softmax_matches_float64(int rows, int d, int dop)
    {
        var ops = Ops(dop);
        var r = new Random(8000 + rows + d);
        // large logits: without max subtraction exp would overflow
        var x = Rand(r, rows * d, -60f, 90f);
        var tx = T(ops, x, rows, d);
        var guard = new InputGuard(ops, tx);
        var y = ops.Softmax(tx);
        guard.Unchanged();
        var reference = new double[x.Length];
        for (int i = 0; i < rows; i++)
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < d; j++) max = Math.Max(max, x[i * d + j]);
            double s = 0;
            for (int j = 0; j < d; j++) s += Math.Exp(x[i * d + j] - max);
            for (int j = 0; j < d; j++) reference[i * d + j] = Math.Exp(x[i * d + j] - max) / s;
        }
        AssertClose(ops.ToHost(y), reference);
        // a row's largest entries must also be accurate relative to the row, not only the tensor
        var yy = ops.ToHost(y);
        for (int i = 0; i < rows; i++)
        {
            double rowMax = 0, rowErr = 0;
            for (int j = 0; j < d; j++) { rowMax = Math.Max(rowMax, reference[i * d + j]); rowErr = Math.Max(rowErr, Math.Abs(yy[i * d + j] - reference[i * d + j])); }
            Assert.True(rowErr / rowMax < Tol, $"row {i}: relative error {rowErr / rowMax:E3}");
        }
    }
}
