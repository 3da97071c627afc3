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
    /// Says the bytes will not be read again soon (a backend has its own copy now): a memory-mapped
    /// tensor drops its pages from the process's resident set, so the checkpoint does not stay
    /// resident beside the uploaded weights; reading <see cref="Bytes"/> later still works (the pages
    /// come back from the file). No-op for tensors held in memory.
    /// </summary>
    public virtual void ReleaseResidentPages() { }

    /// <summary>Values widened/narrowed to fp32 (F16, BF16, F32, F64 only).</summary>
    public float[] ToFloat32()
    {
        var result = new float[checked((int)ElementCount)];
        var bytes = Bytes;
        switch (DType)
        {
            case DType.F32:
                MemoryMarshal.Cast<byte, float>(bytes).CopyTo(result);
                break;
            case DType.F16:
                for (int i = 0; i < result.Length; i++)
                    result[i] = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(bytes.Slice(2 * i)));
                break;
            case DType.BF16:
                for (int i = 0; i < result.Length; i++)
                    result[i] = DTypes.BFloat16ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes.Slice(2 * i)));
                break;
            case DType.F64:
                for (int i = 0; i < result.Length; i++)
                    result[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(bytes.Slice(8 * i));
                break;
            default:
                throw new UserInputException($"tensor '{Name}' has dtype {DType}, not a floating-point type");
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
    }
}
