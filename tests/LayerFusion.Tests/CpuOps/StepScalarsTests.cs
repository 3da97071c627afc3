using static LayerFusion.Tests.CpuOps.OpTestKit;

namespace LayerFusion.Tests.CpuOps;

/// <summary>The step table ops (IOps.Steps.cs) on the CPU backend against float64 and against the host-array forms.</summary>
public class StepScalarsTests
{
    [Fact]
    public void StepCombine_and_StepScale_read_the_counters_row()
    {
        var ops = Ops(1);
        var rng = new Random(Random.Shared.Next());
        var x = Rand(rng, 3 * 5 * 7);
        var y = Rand(rng, 3 * 5 * 7);
        var rows = Rand(rng, 4 * 3);
        using var table = ops.CreateStepScalars(rows, 4, 3, []);
        using var xt = T(ops, x, 3, 5, 7);
        using var yt = T(ops, y, 3, 5, 7);
        for (int step = 0; step < 4; step++)
        {
            float a = rows[step * 3 + 1], b = rows[step * 3 + 2], c = rows[step * 3];
            using var z = ops.StepCombine(xt, table.Column(1), yt, table.Column(2));
            // fp32 products and one fp32 sum: within a few ulp of the largest term (terms may cancel)
            AssertClose(ops.ToHost(z), [.. x.Select((v, i) => (double)a * v + (double)b * y[i])], 1e-6);
            using var s = ops.StepScale(xt, table.Column(0));
            AssertCloseElementwise(ops.ToHost(s), [.. x.Select(v => (double)c * v)]);
            ops.AdvanceStep(table);
        }
        // past the last step: reading is an error, and so is advancing further
        Assert.Throws<InvalidOperationException>(() => ops.StepScale(xt, table.Column(0)));
        Assert.Throws<InvalidOperationException>(() => ops.AdvanceStep(table));
    }

    [Fact]
    public void StepRow_selects_the_counters_row()
    {
        var ops = Ops(1);
        var rows = Rand(new Random(Random.Shared.Next()), 3 * 2 * 5);
        using var table = ops.CreateStepScalars(new float[3], 3, 1, []);
        using var rt = T(ops, rows, 3, 2, 5);
        for (int step = 0; step < 3; step++)
        {
            using var r = ops.StepRow(rt, table);
            Assert.Equal([2, 5], r.Shape);
            Assert.Equal(rows.AsSpan(step * 10, 10).ToArray(), ops.ToHost(r));
            ops.AdvanceStep(table);
        }
        Assert.Throws<InvalidOperationException>(() => ops.StepRow(rt, table));
        using var wrong = T(ops, rows, 5, 6);
        Assert.Throws<ArgumentException>(() => ops.StepRow(wrong, table));
    }

    [Fact]
    public void TimestepEmbedding_from_the_table_equals_the_host_array_form()
    {
        var ops = Ops(1);
        float[] rows = [999f, 3f, 417.25f, 4f];
        float[] constants = [1024f, 768f, 0f, 0f, 1152f, 896f];
        using var table = ops.CreateStepScalars(rows, 2, 2, constants);
        ops.AdvanceStep(table);
        using var a = ops.TimestepEmbedding(table.Column(0), 1, 3, 320, true, 0f);
        using var b = ops.TimestepEmbedding([417.25f, 417.25f, 417.25f], 320, true, 0f);
        Assert.Equal(ops.ToHost(b), ops.ToHost(a));
        using var c = ops.TimestepEmbedding(table.Constant(2), 4, 2, 256, false, 1f);
        using var d = ops.TimestepEmbedding([0f, 0f, 0f, 0f, 1152f, 1152f, 896f, 896f], 256, false, 1f);
        Assert.Equal(ops.ToHost(d), ops.ToHost(c));
    }

    [Fact]
    public void Bad_tables_and_runs_are_refused()
    {
        var ops = Ops(1);
        Assert.Throws<ArgumentException>(() => ops.CreateStepScalars(new float[5], 2, 3, []));
        using var table = ops.CreateStepScalars(new float[6], 2, 3, [1f, 2f]);
        Assert.Throws<ArgumentOutOfRangeException>(() => table.Column(3));
        Assert.Throws<ArgumentOutOfRangeException>(() => table.Constant(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => ops.TimestepEmbedding(table.Constant(1), 2, 1, 8, true, 0f));
        using var other = ops.CreateStepScalars(new float[6], 2, 3, []);
        Assert.Throws<ArgumentException>(() => table.CheckRun(other.Column(0), 1, "test"));
    }
}
