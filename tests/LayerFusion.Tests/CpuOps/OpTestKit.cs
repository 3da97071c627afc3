using LayerFusion.Core.Tensors;
using CpuBackend = LayerFusion.Cpu.CpuOps;

namespace LayerFusion.Tests.CpuOps;

/// <summary>
/// Shared helpers for the CPU op tests: seeded random inputs, float64 references, error metrics.
/// Error metric (stated once for all tests): rel = max_i |y_i - ref_i| / max_i |ref_i|, over the
/// whole output, must be &lt; 1e-5. Elementwise activations additionally check every element:
/// |y_i - ref_i| &lt;= 1e-5 * max(|ref_i|, 1e-6 * max|ref|).
/// </summary>
internal static class OpTestKit
{
    public const double Tol = 1e-5;

    /// <summary>Degrees of parallelism every op is run with: single-threaded, two, and all cores.</summary>
    public static TheoryData<int> Dops => new() { 1, 2, -1 };

    public static CpuBackend Ops(int dop) => new(dop);

    /// <summary>Uniform in [lo, hi), rejecting exact zeros so no input is trivially zero.</summary>
    public static float[] Rand(Random r, int n, float lo = -2f, float hi = 2f)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++)
        {
            float v;
            do v = lo + (hi - lo) * (float)r.NextDouble(); while (v == 0f);
            a[i] = v;
        }
        return a;
    }

    public static int Prod(params int[] s) { int n = 1; foreach (var d in s) n *= d; return n; }

    public static Tensor T(CpuBackend ops, float[] data, params int[] shape) => ops.FromHost(data, shape);

    public static double MaxAbs(double[] a) { double m = 0; foreach (var v in a) m = Math.Max(m, Math.Abs(v)); return m; }

    public static double RelErr(float[] y, double[] reference)
    {
        Assert.Equal(reference.Length, y.Length);
        double maxRef = MaxAbs(reference), maxDiff = 0;
        for (int i = 0; i < y.Length; i++)
        {
            Assert.False(double.IsNaN(y[i]) && !double.IsNaN(reference[i]), $"NaN at {i}");
            maxDiff = Math.Max(maxDiff, Math.Abs(y[i] - reference[i]));
        }
        Assert.True(maxRef > 0, "reference is all zeros: the test would be vacuous");
        return maxDiff / maxRef;
    }

    public static void AssertClose(float[] y, double[] reference, double tol = Tol)
    {
        double rel = RelErr(y, reference);
        Assert.True(rel < tol, $"relative error {rel:E3} >= {tol:E1}");
    }

    public static void AssertCloseElementwise(float[] y, double[] reference, double tol = Tol)
    {
        AssertClose(y, reference, tol);
        double floor = 1e-6 * MaxAbs(reference);
        for (int i = 0; i < y.Length; i++)
        {
            double bound = tol * Math.Max(Math.Abs(reference[i]), floor);
            Assert.True(Math.Abs(y[i] - reference[i]) <= bound,
                $"element {i}: got {y[i]:R}, reference {reference[i]:R}, error {Math.Abs(y[i] - reference[i]):E3} > {bound:E3}");
        }
    }

    /// <summary>Snapshots the inputs; <see cref="Unchanged"/> asserts each is bit-for-bit what it was.</summary>
    public sealed class InputGuard
    {
        readonly CpuBackend _ops;
        readonly List<(Tensor t, float[] copy, int[] shape)> _items = new();
        public InputGuard(CpuBackend ops, params Tensor?[] inputs)
        {
            _ops = ops;
            foreach (var t in inputs)
                if (t != null) _items.Add((t, ops.ToHost(t), (int[])t.Shape.Clone()));
        }
        public void Unchanged()
        {
            foreach (var (t, copy, shape) in _items)
            {
                Assert.Equal(shape, t.Shape);
                var now = _ops.ToHost(t);
                for (int i = 0; i < copy.Length; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(now[i]) == BitConverter.SingleToInt32Bits(copy[i]), $"input modified at {i}");
            }
        }
    }

    public static double[] D(float[] a) => Array.ConvertAll(a, v => (double)v);
}
