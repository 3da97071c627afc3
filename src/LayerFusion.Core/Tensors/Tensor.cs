namespace LayerFusion.Core.Tensors;

/// <summary>
/// A dense, contiguous, row-major tensor owned by one backend. Model code only sees this handle and
/// the <see cref="IOps"/> of the backend that made it; the storage (managed array, device pointer)
/// is the backend's business.
/// </summary>
public abstract class Tensor : IDisposable
{
    protected Tensor(int[] shape)
    {
        foreach (var d in shape)
            if (d < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(", ", shape)}]");
        Shape = shape;
    }

    public int[] Shape { get; }
    public int Rank => Shape.Length;
    public long ElementCount => ShapeUtil.ElementCount(Shape);
    public int Dim(int axis) => Shape[axis < 0 ? axis + Shape.Length : axis];

    /// <summary>The backend that owns the storage; ops on this tensor go through it.</summary>
    public abstract IOps Ops { get; }

    /// <summary>A view with another shape over the same storage (no copy); -1 infers one dimension.</summary>
    public abstract Tensor Reshape(params int[] shape);

    public virtual void Dispose() => GC.SuppressFinalize(this);

    public override string ToString() => $"Tensor[{string.Join(", ", Shape)}]@{Ops.Name}";
}

public static class ShapeUtil
{
    public static long ElementCount(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (var d in shape) n = checked(n * d);
        return n;
    }

    /// <summary>Resolves a single -1 entry so that the element count stays <paramref name="count"/>.</summary>
    public static int[] Resolve(int[] shape, long count)
    {
        var result = (int[])shape.Clone();
        int infer = -1;
        long known = 1;
        for (int i = 0; i < result.Length; i++)
        {
            if (result[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException("only one dimension can be inferred (-1)");
                infer = i;
            }
            else if (result[i] < 0) throw new ArgumentException($"invalid dimension {result[i]}");
            else known = checked(known * result[i]);
        }
        if (infer >= 0)
        {
            if (known == 0 || count % known != 0)
                throw new ArgumentException($"cannot reshape {count} elements to [{string.Join(", ", shape)}]");
            result[infer] = checked((int)(count / known));
        }
        if (ElementCount(result) != count)
            throw new ArgumentException($"cannot reshape {count} elements to [{string.Join(", ", shape)}]");
        return result;
    }

    public static string Format(ReadOnlySpan<int> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";
}
