namespace LayerFusion.WeightsLoader;

/// <summary>Element types of the safetensors format (names as they appear in the header).</summary>
public enum DType { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 }

public static class DTypes
{
    public static int SizeOf(DType t) => t switch
    {
        DType.BOOL or DType.U8 or DType.I8 or DType.F8_E5M2 or DType.F8_E4M3 => 1,
        DType.I16 or DType.U16 or DType.F16 or DType.BF16 => 2,
        DType.I32 or DType.U32 or DType.F32 => 4,
        DType.F64 or DType.I64 or DType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>Exact, case-sensitive parse of a header dtype name.</summary>
    public static bool TryParse(string name, out DType dtype)
    {
        foreach (var t in Enum.GetValues<DType>())
            if (t.ToString() == name) { dtype = t; return true; }
        dtype = default;
        return false;
    }

    public static bool IsFloat(DType t) => t is DType.F16 or DType.BF16 or DType.F32 or DType.F64;

    public static float BFloat16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Round-to-nearest-even fp32 -> bf16, NaN kept quiet (as torch does).</summary>
    public static ushort SingleToBFloat16(float value)
    {
        uint u = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((u >> 16) | 0x40);
        uint rounding = 0x7FFF + ((u >> 16) & 1);
        return (ushort)((u + rounding) >> 16);
    }
}
