using LayerFusion.Core.Tensors;

namespace LayerFusion.Cpu;

// The denoising loops' step table (IOps.Steps.cs) on the host: the table is the values, the counter a field.
public sealed partial class CpuOps
{
    sealed class CpuStepScalars(float[] perStep, int steps, int columns, float[] constants) : StepScalars(steps, columns, constants.Length)
    {
        public readonly float[] PerStepValues = perStep, ConstantValues = constants;
        public int Step;

        public float Value(StepScalar s, int offset)
        {
            if (!s.PerStep) return ConstantValues[s.Index + offset];
            if (Step >= Steps) throw new InvalidOperationException($"step table read at step {Step}, past its {Steps} steps");
            return PerStepValues[Step * Columns + s.Index + offset];
        }
    }

    public StepScalars CreateStepScalars(ReadOnlySpan<float> perStep, int steps, int columns, ReadOnlySpan<float> constants)
    {
        StepScalars.CheckShape(perStep, steps, columns);
        return new CpuStepScalars(perStep.ToArray(), steps, columns, constants.ToArray());
    }

    static CpuStepScalars Table(StepScalar s, int count, string what)
    {
        if (s.Table is not CpuStepScalars t) throw new ArgumentException($"{what}: the step table does not belong to the CPU backend");
        t.CheckRun(s, count, what);
        return t;
    }

    public void AdvanceStep(StepScalars scalars)
    {
        if (scalars is not CpuStepScalars t) throw new ArgumentException("AdvanceStep: the step table does not belong to the CPU backend");
        if (t.Step >= t.Steps) throw new InvalidOperationException($"AdvanceStep: the table is already past its {t.Steps} steps");
        t.Step++;
    }

    public Tensor TimestepEmbedding(StepScalar first, int count, int repeat, int dim, bool flipSinToCos, float downscaleFreqShift,
        float scale = 1f, int maxPeriod = 10000)
    {
        var t = Table(first, count, "TimestepEmbedding");
        ArgumentOutOfRangeException.ThrowIfLessThan(repeat, 1);
        var values = new float[checked(count * repeat)];
        for (int r = 0; r < values.Length; r++) values[r] = t.Value(first, r / repeat);
        return TimestepEmbedding(values, dim, flipSinToCos, downscaleFreqShift, scale, maxPeriod);
    }

    public Tensor StepCombine(Tensor x, StepScalar a, Tensor y, StepScalar b)
    {
        var cx = C(x, "StepCombine x");
        var cy = C(y, "StepCombine y");
        if (!cx.Shape.AsSpan().SequenceEqual(cy.Shape)) throw new ArgumentException($"StepCombine: {Fmt(cx)} and {Fmt(cy)} differ");
        float av = Table(a, 1, "StepCombine a").Value(a, 0), bv = Table(b, 1, "StepCombine b").Value(b, 0);
        var z = New((int[])cx.Shape.Clone());
        var xs = cx.ReadOnlySpan;
        var ys = cy.ReadOnlySpan;
        var zs = z.Span;
        for (int i = 0; i < zs.Length; i++) zs[i] = av * xs[i] + bv * ys[i];
        return z;
    }

    public Tensor StepScale(Tensor x, StepScalar a) => Affine(x, Table(a, 1, "StepScale").Value(a, 0));

    public Tensor StepRow(Tensor rows, StepScalars scalars)
    {
        var cr = C(rows, "StepRow rows");
        if (scalars is not CpuStepScalars t) throw new ArgumentException("StepRow: the step table does not belong to the CPU backend");
        if (cr.Rank < 2 || cr.Shape[0] != t.Steps) throw new ArgumentException($"StepRow: rows {Fmt(cr)} must be [{t.Steps}, ...]");
        if (t.Step >= t.Steps) throw new InvalidOperationException($"step table read at step {t.Step}, past its {t.Steps} steps");
        var y = New(cr.Shape[1..]);
        cr.ReadOnlySpan.Slice(t.Step * y.Length, y.Length).CopyTo(y.Span);
        return y;
    }
}
