namespace LayerFusion.WeightsLoader.Checkpoints;

/// <summary>A contiguous byte range of another tensor under a new name and shape (no copy until read).</summary>
internal sealed class ViewWeightTensor : WeightTensor
{
    readonly WeightTensor _source;
    readonly int _offset;

    public ViewWeightTensor(string name, WeightTensor source, long byteOffset, long[] shape) : base(name, source.DType, shape)
    {
        if (byteOffset < 0 || byteOffset + ByteLength > source.ByteLength)
            throw new ArgumentOutOfRangeException(nameof(byteOffset), $"view of '{source.Name}' at {byteOffset} (+{ByteLength}) exceeds its {source.ByteLength} bytes");
        _source = source;
        _offset = checked((int)byteOffset);
    }

    public override ReadOnlySpan<byte> Bytes
    {
        get
        {
            // Only this range of the source (a file-backed source reads just these bytes).
            var bytes = new byte[ByteLength];
            _source.ReadBytes(_offset, bytes);
            return bytes;
        }
    }

    public override void ReadBytes(long byteOffset, Span<byte> destination)
    {
        if (byteOffset < 0 || byteOffset + destination.Length > ByteLength)
            throw new ArgumentOutOfRangeException(nameof(byteOffset), $"[{byteOffset}, +{destination.Length}) is outside tensor '{Name}' ({ByteLength} bytes)");
        _source.ReadBytes(_offset + byteOffset, destination);
    }
}

internal static class TensorOps
{
    /// <summary>Rows [row0, row0+rows) of a tensor, no copy until read.</summary>
    public static WeightTensor Rows(string name, WeightTensor t, long row0, long rows)
    {
        long rowBytes = t.Shape.Length == 0 ? 0 : t.ByteLength / Math.Max(1, t.Shape[0]);
        var shape = (long[])t.Shape.Clone();
        shape[0] = rows;
        return new ViewWeightTensor(name, t, row0 * rowBytes, shape);
    }

    public static WeightTensor Reshape(string name, WeightTensor t, long[] shape) => new ViewWeightTensor(name, t, 0, shape);

    /// <summary>2-D transpose (copies; element size from the dtype).</summary>
    public static WeightTensor Transpose2D(string name, WeightTensor t)
    {
        if (t.Shape.Length != 2) throw new UserInputException($"tensor '{t.Name}' must be 2-D to transpose, has shape [{string.Join(", ", t.Shape)}]");
        int r = checked((int)t.Shape[0]), c = checked((int)t.Shape[1]), es = DTypes.SizeOf(t.DType);
        var src = t.Bytes;
        var dst = new byte[src.Length];
        for (int i = 0; i < r; i++)
            for (int j = 0; j < c; j++)
                src.Slice((i * c + j) * es, es).CopyTo(dst.AsSpan((j * r + i) * es, es));
        return new ArrayWeightTensor(name, t.DType, [c, r], dst);
    }

    /// <summary>Concatenation along dim 0 (copies); all parts share dtype and trailing dims.</summary>
    public static WeightTensor ConcatRows(string name, IReadOnlyList<WeightTensor> parts)
    {
        var shape = (long[])parts[0].Shape.Clone();
        shape[0] = parts.Sum(p => p.Shape[0]);
        var dst = new byte[parts.Sum(p => p.ByteLength)];
        int at = 0;
        foreach (var p in parts)
        {
            if (p.DType != parts[0].DType || !p.Shape.Skip(1).SequenceEqual(shape.Skip(1)))
                throw new UserInputException($"cannot fuse '{p.Name}' with '{parts[0].Name}': dtype or shape differs");
            p.ReadBytes(0, dst.AsSpan(at, checked((int)p.ByteLength)));
            at += (int)p.ByteLength;
        }
        return new ArrayWeightTensor(name, parts[0].DType, shape, dst);
    }
}
