using LayerFusion.Core.Fusion;
using LayerFusion.Cpu.Fusion;
using static LayerFusion.Tests.FusedAttention.PriorReference64;

namespace LayerFusion.Tests.FusedAttention;

/// <summary>
/// The CPU twin of the fused prior attention kernel against the float64 reference on fresh random
/// inputs (fp32 arithmetic: relative error bound 1e-5 for O, s and c). Scores are scaled so the
/// softmax rows are neither uniform nor one-hot (s spreads over a wide range).
/// </summary>
public class PriorAttentionTwinTests
{
    const double Bound = 1e-5;

    public static TheoryData<int, int, int, int, int, int> Shapes => new()
    {
        // batch, queries, keys, heads, headDim, eos
        { 2, 37, 53, 3, 16, 7 },
        { 1, 64, 77, 10, 8, 76 },
        { 3, 5, 1, 2, 4, 0 },
        { 2, 70, 130, 4, 24, 64 },
    };

    [Theory, MemberData(nameof(Shapes))]
    public void Output_sparsity_and_eos_column_match_float64(int batch, int m, int n, int heads, int d, int eos)
    {
        var rng = new Random(Environment.TickCount);
        int inner = heads * d;
        var q = Random(rng, batch * m * inner, 1.5);
        var k = Random(rng, batch * n * inner, 1.5);
        var v = Random(rng, batch * n * inner, 1.0);
        var r = PriorAttentionTwin.Run(q, k, v, batch, m, n, heads, d, new PriorAttentionOptions(true, eos));
        var e = PriorReference64.Compute(q, k, v, batch, m, n, heads, d, eos);
        Assert.True(RelativeError(r.Output, e.Output, "O") < Bound, $"O: {RelativeError(r.Output, e.Output, "O"):E3}");
        Assert.True(RelativeError(r.Sparsity!, e.Sparsity, "s") < Bound, $"s: {RelativeError(r.Sparsity!, e.Sparsity, "s"):E3}");
        Assert.True(RelativeError(r.EosColumn!, e.EosColumn, "c") < Bound, $"c: {RelativeError(r.EosColumn!, e.EosColumn, "c"):E3}");
        // s lies in [1, N]: 1 when a query's head-mean row is one key, N when uniform
        foreach (var s in r.Sparsity!) Assert.InRange(s, 1f - 1e-4f, n * (1 + 1e-4f));
        if (n > 1) Assert.True(r.Sparsity!.Max() - r.Sparsity!.Min() > 1e-3 * n, "the inputs should give a spread of sparsity scores");
    }

    [Fact]
    public void Priors_are_left_out_when_not_asked_for()
    {
        var rng = new Random(Environment.TickCount);
        var q = Random(rng, 2 * 9 * 8, 1);
        var r = PriorAttentionTwin.Run(q, q, q, 2, 9, 9, 2, 4, PriorAttentionOptions.None);
        Assert.Null(r.Sparsity);
        Assert.Null(r.EosColumn);
        var e = PriorReference64.Compute(q, q, q, 2, 9, 9, 2, 4, -1);
        Assert.True(RelativeError(r.Output, e.Output, "O") < Bound);
    }

    [Fact]
    public void Key_bias_excludes_keys_from_the_output()
    {
        var rng = new Random(Environment.TickCount);
        const int batch = 2, m = 11, n = 19, heads = 2, d = 8;
        int inner = heads * d;
        var q = Random(rng, batch * m * inner, 1.5);
        var k = Random(rng, batch * n * inner, 1.5);
        var v = Random(rng, batch * n * inner, 1);
        var bias = Random(rng, batch * n, 2);
        for (int j = 0; j < n; j += 3) bias[j] = float.NegativeInfinity;  // batch row 0: every third key excluded
        var r = PriorAttentionTwin.Run(q, k, v, batch, m, n, heads, d, PriorAttentionOptions.None, bias);
        var e = PriorReference64.Compute(q, k, v, batch, m, n, heads, d, -1, bias);
        Assert.True(RelativeError(r.Output, e.Output, "O") < Bound);
        Assert.Throws<NotSupportedException>(() => PriorAttentionTwin.Run(q, k, v, batch, m, n, heads, d, new PriorAttentionOptions(true), bias));
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        var x = new float[2 * 4 * 8];
        Assert.Throws<ArgumentOutOfRangeException>(() => PriorAttentionTwin.Run(x, x, x, 2, 4, 4, 2, 4, new PriorAttentionOptions(false, 4)));
        Assert.Throws<ArgumentException>(() => PriorAttentionTwin.Run(x, x, x, 2, 4, 4, 2, 5, PriorAttentionOptions.None));
    }
}
