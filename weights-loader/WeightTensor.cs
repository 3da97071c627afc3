using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace LayerFusion.WeightsLoader;

/// <summary>
/// One named tensor of a checkpoint, wherever its bytes live (a memory-mapped file, or memory for
/// tensors we derive: split fused projections, merged LoRA weights). Bytes are little-endian,
/// row-major, exactly as in a safetensors data section.
/// </summary>
public abstract class WeightTensor
{
    protected WeightTensor(string name, DType dtype, long[] shape)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        long n = 1;
        foreach (var d in shape) n = checked(n * d);
        ElementCount = n;
    }

    public string Name { get; }
    public DType DType { get; }
    public long[] Shape { get; }
    public long ElementCount { get; }
    public long ByteLength => checked(ElementCount * DTypes.SizeOf(DType));
    public abstract ReadOnlySpan<byte> Bytes { get; }

    public int[] ShapeInt32 => Shape.Select(d => checked((int)d)).ToArray();

    /// <summary>
    /// Copies bytes [<paramref name="byteOffset"/>, +destination.Length) of this tensor. For file-backed
    /// tensors this reads only that range (where <see cref="Bytes"/> reads the whole tensor).
    /// </summary>
    public virtual void ReadBytes(long byteOffset, Span<byte> destination)
    {
        if (byteOffset < 0 || byteOffset + destination.Length > ByteLength)
            throw new ArgumentOutOfRangeException(nameof(byteOffset), $"[{byteOffset}, +{destination.Length}) is outside tensor '{Name}' ({ByteLength} bytes)");
        var all = Bytes;
        if (all.Length != ByteLength)
            throw new UserInputException($"tensor '{Name}': {all.Length} bytes, its shape and dtype need {ByteLength}");
        all.Slice(checked((int)byteOffset), destination.Length).CopyTo(destination);
    }

    /// <summary>Values widened/narrowed to fp32 (F16, BF16, F32, F64 only).</summary>
    public float[] ToFloat32()
    {
        int size = DType switch
        {
            DType.F32 => 4,
            DType.F16 or DType.BF16 => 2,
            DType.F64 => 8,
            _ => throw new UserInputException($"tensor '{Name}' has dtype {DType}, not a floating-point type"),
        };
        var result = new float[checked((int)ElementCount)];
        // In chunks through one small buffer: a file-backed tensor is then never held twice.
        const int ChunkElements = 1 << 18;
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Min(result.Length, ChunkElements) * size);
        try
        {
            for (int start = 0; start < result.Length; start += ChunkElements)
            {
                int count = Math.Min(ChunkElements, result.Length - start);
                var bytes = buffer.AsSpan(0, count * size);
                ReadBytes((long)start * size, bytes);
                var dst = result.AsSpan(start, count);
                switch (DType)
                {
                    case DType.F32:
                        MemoryMarshal.Cast<byte, float>(bytes).CopyTo(dst);
                        break;
                    case DType.F16:
                        for (int i = 0; i < count; i++)
                            dst[i] = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(bytes.Slice(2 * i)));
                        break;
                    case DType.BF16:
                        for (int i = 0; i < count; i++)
                            dst[i] = DTypes.BFloat16ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes.Slice(2 * i)));
                        break;
                    default:
                        for (int i = 0; i < count; i++)
                            dst[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(bytes.Slice(8 * i));
                        break;
                }
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
        return result;
    }

    public override string ToString() => $"{Name} {DType}[{string.Join(", ", Shape)}]";
}

/// <summary>A tensor whose bytes are held in memory.</summary>
public sealed class ArrayWeightTensor : WeightTensor
{
    readonly byte[] _bytes;

    public ArrayWeightTensor(string name, DType dtype, long[] shape, byte[] bytes) : base(name, dtype, shape)
    {
        if (bytes.LongLength != ByteLength)
            throw new ArgumentException($"tensor '{name}': {bytes.Length} bytes given, shape and dtype need {ByteLength}");
        _bytes = bytes;
    }

    public override ReadOnlySpan<byte> Bytes => _bytes;

    /// <summary>fp32 values stored as <paramref name="dtype"/> (F32, F16 or BF16), rounding to nearest even.</summary>
    public static ArrayWeightTensor FromFloat32(string name, long[] shape, ReadOnlySpan<float> values, DType dtype = DType.F32)
    {
        byte[] bytes;
        switch (dtype)
        {
            case DType.F32:
                bytes = MemoryMarshal.AsBytes(values).ToArray();
                break;
            case DType.F16:
                bytes = new byte[values.Length * 2];
                for (int i = 0; i < values.Length; i++)
                    BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), BitConverter.HalfToUInt16Bits((Half)values[i]));
                break;
            case DType.BF16:
                bytes = new byte[values.Length * 2];
                for (int i = 0; i < values.Length; i++)
                    BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), DTypes.SingleToBFloat16(values[i]));
                break;
            default:
                throw new ArgumentException($"FromFloat32 stores F32, F16 or BF16, not {dtype}");
        }
        return new ArrayWeightTensor(name, dtype, shape, bytes);
    }

    /// <summary>The same bytes under another name (key maps).</summary>
    public static WeightTensor Rename(WeightTensor t, string name) => new RenamedWeightTensor(t, name);

    sealed class RenamedWeightTensor(WeightTensor inner, string name) : WeightTensor(name, inner.DType, inner.Shape)
    {
        public override ReadOnlySpan<byte> Bytes => inner.Bytes;
        public override void ReadBytes(long byteOffset, Span<byte> destination) => inner.ReadBytes(byteOffset, destination);
    }
}
