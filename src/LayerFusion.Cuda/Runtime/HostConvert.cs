using System.Runtime.InteropServices;

namespace LayerFusion.Cuda.Runtime;

/// <summary>Storage precision of a CUDA backend's tensors; arithmetic is fp32 whatever this is.</summary>
public enum StorageType { F32 = 0, F16 = 1, BF16 = 2 }

/// <summary>Host-side conversions between fp32 and the storage types (round to nearest even).</summary>
public static class HostConvert
{
    public static int SizeOf(StorageType t) => t == StorageType.F32 ? 4 : 2;

    /// <summary>The quiet-NaN pattern used to poison output buffers before kernels run.</summary>
    public static uint NanBits(StorageType t) => t switch
    {
        StorageType.F32 => 0x7FC00000u,
        StorageType.F16 => 0x7E00u,
        _ => 0x7FC0u,
    };

    public static ushort ToBf16(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + rounding) >> 16);
    }

    public static float FromBf16(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    public static byte[] Encode(ReadOnlySpan<float> src, StorageType t)
    {
        var dst = new byte[checked(src.Length * SizeOf(t))];
        switch (t)
        {
            case StorageType.F32:
                MemoryMarshal.AsBytes(src).CopyTo(dst);
                break;
            case StorageType.F16:
            {
                var h = MemoryMarshal.Cast<byte, Half>(dst.AsSpan());
                for (int i = 0; i < src.Length; i++) h[i] = (Half)src[i];
                break;
            }
            default:
            {
                var u = MemoryMarshal.Cast<byte, ushort>(dst.AsSpan());
                for (int i = 0; i < src.Length; i++) u[i] = ToBf16(src[i]);
                break;
            }
        }
        return dst;
    }

    public static float[] Decode(ReadOnlySpan<byte> src, StorageType t)
    {
        int n = src.Length / SizeOf(t);
        var dst = new float[n];
        switch (t)
        {
            case StorageType.F32:
                MemoryMarshal.Cast<byte, float>(src).CopyTo(dst);
                break;
            case StorageType.F16:
            {
                var h = MemoryMarshal.Cast<byte, Half>(src);
                for (int i = 0; i < n; i++) dst[i] = (float)h[i];
                break;
            }
            default:
            {
                var u = MemoryMarshal.Cast<byte, ushort>(src);
                for (int i = 0; i < n; i++) dst[i] = FromBf16(u[i]);
                break;
            }
        }
        return dst;
    }
}
