namespace LayerFusion.Core.Tensors;

/// <summary>
/// A denoising loop's scalars resident on a backend: a [steps, columns] fp32 table (timesteps,
/// sampler coefficients) and a run of constants (SDXL's time ids), written once per generation, plus
/// a step counter in backend memory that <see cref="IOps.AdvanceStep"/> moves on (on CUDA a
/// one-thread kernel). Ops that take a <see cref="StepScalar"/> read its value at the counter's step
/// on the backend, so a step uploads nothing and a captured step graph replays unchanged.
/// fp32 whatever the backend's storage type: timesteps and time ids are not exact in fp16.
/// </summary>
public abstract class StepScalars(int steps, int columns, int constants) : IDisposable
{
    public int Steps { get; } = steps;
    public int Columns { get; } = columns;
    public int ConstantCount { get; } = constants;

    /// <summary>Column <paramref name="column"/> of the current step's row.</summary>
    public StepScalar Column(int column)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(column);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(column, Columns);
        return new StepScalar(this, column, true);
    }

    /// <summary>Constant <paramref name="index"/> (the same at every step).</summary>
    public StepScalar Constant(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, ConstantCount);
        return new StepScalar(this, index, false);
    }

    /// <summary>Throws unless <paramref name="count"/> values from <paramref name="first"/> lie in one row (or in the constants) of this table.</summary>
    public void CheckRun(StepScalar first, int count, string what)
    {
        if (!ReferenceEquals(first.Table, this)) throw new ArgumentException($"{what}: the scalar belongs to another step table");
        int limit = first.PerStep ? Columns : ConstantCount;
        if (count < 1 || first.Index < 0 || first.Index + count > limit)
            throw new ArgumentOutOfRangeException(nameof(count), $"{what}: {count} values from {first.Index} outside {(first.PerStep ? "a row" : "the constants")} of {limit}");
    }

    /// <summary>Checks the shape of a new table's data (for backends' CreateStepScalars).</summary>
    public static void CheckShape(ReadOnlySpan<float> perStep, int steps, int columns)
    {
        if (steps < 1 || columns < 0 || (long)steps * columns != perStep.Length)
            throw new ArgumentException($"step table: {perStep.Length} values do not fill {steps} steps x {columns} columns");
    }

    public virtual void Dispose() => GC.SuppressFinalize(this);
}

/// <summary>One value of a <see cref="StepScalars"/> table: a column of the current step's row, or a constant.</summary>
public readonly record struct StepScalar(StepScalars Table, int Index, bool PerStep);

// The denoising loops' per-step scalars on the backend (see StepScalars).
public partial interface IOps
{
    /// <summary>
    /// A step table holding <paramref name="perStep"/> (row-major [steps, columns]) and
    /// <paramref name="constants"/>, its counter at step 0. The one host-to-device copy of a generation's scalars.
    /// </summary>
    StepScalars CreateStepScalars(ReadOnlySpan<float> perStep, int steps, int columns, ReadOnlySpan<float> constants);

    /// <summary>Moves the table's counter to the next step, in stream order on the backend (no host value involved).
    /// The counter may reach <c>Steps</c> (after the last step); reading there is an error on the CPU, and reads the
    /// last row on CUDA (the device cannot throw).</summary>
    void AdvanceStep(StepScalars scalars);

    /// <summary>
    /// <see cref="TimestepEmbedding(ReadOnlySpan{float}, int, bool, float, float, int)"/> of <paramref name="count"/>
    /// table values from <paramref name="first"/>, each repeated for <paramref name="repeat"/> rows: [count * repeat, dim].
    /// </summary>
    Tensor TimestepEmbedding(StepScalar first, int count, int repeat, int dim, bool flipSinToCos, float downscaleFreqShift,
        float scale = 1f, int maxPeriod = 10000);

    /// <summary>a * x + b * y with a and b read from the step table (fp32 arithmetic); x and y of one shape.</summary>
    Tensor StepCombine(Tensor x, StepScalar a, Tensor y, StepScalar b);

    /// <summary>a * x with a read from the step table.</summary>
    Tensor StepScale(Tensor x, StepScalar a);

    /// <summary>Row [counter's step] of <paramref name="rows"/> [scalars.Steps, ...] (a stochastic sampler's noise table): [...].</summary>
    Tensor StepRow(Tensor rows, StepScalars scalars);
}
