using LayerFusion.Core.Tensors;
using static LayerFusion.Tests.CpuOps.OpTestKit;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.CpuOps;

/// <summary>Threads only split independent outputs, never a reduction, so results must be bit-identical for
/// every degree of parallelism and under concurrent use of one CpuOps (what "same seed, same bytes" rests on).</summary>
public class DeterminismTests
{
    static float[] Graph(CpuBackend ops, int seed)
    {
        var r = new Random(seed);
        Tensor T(params int[] s) => ops.FromHost(Rand(r, Prod(s), -1f, 1f), s);
        var x = T(2, 16, 24, 20);
        var h = ops.GroupNorm(x, 4, T(16), T(16), 1e-5f, fuseSilu: true);
        h = ops.Conv2d(h, T(24, 16, 3, 3), T(24), 1, 1);
        h = ops.Conv2d(h, T(32, 24, 3, 3), T(32), 2, 1);                // [2, 32, 12, 10]
        var tok = ops.Permute(h, 0, 2, 3, 1).Reshape(2, 120, 32);
        tok = ops.LayerNorm(tok, T(32), T(32), 1e-5f);
        var q = ops.Linear(tok, T(32, 32)); var k = ops.Linear(tok, T(32, 32), T(32)); var v = ops.Linear(tok, T(32, 32));
        var a = ops.Attention(q, k, v, 4, causal: true);
        var g = ops.Geglu(ops.Linear(a, T(128, 32), T(128)));
        var o = ops.Add(tok, ops.Linear(g, T(32, 64)));
        var m = ops.MatMul(o, o, transposeB: true, alpha: 0.25f);
        return ops.ToHost(ops.Softmax(m));
    }

    [Fact]
    public void Results_are_bit_identical_for_every_degree_of_parallelism()
    {
        var one = Graph(Ops(1), 42);
        Assert.Contains(one, v => v != 0f && !float.IsNaN(v));
        foreach (var dop in new[] { 2, 3, -1 })
            Assert.Equal(one, Graph(Ops(dop), 42));
    }

    [Fact]
    public void One_instance_is_safe_to_use_from_several_threads()
    {
        var ops = Ops(-1);
        var expected = Graph(Ops(1), 7);
        var results = new float[6][];
        Parallel.For(0, results.Length, i => results[i] = Graph(ops, 7));
        foreach (var res in results) Assert.Equal(expected, res);
    }
}
