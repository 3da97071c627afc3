using System.Buffers.Binary;
using LayerFusion.Cuda;
using LayerFusion.Cuda.Runtime;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Tests.CudaModels;

/// <summary>
/// What CudaOps.Upload copies to the device (CudaOps.StorageBytes, host-side): F16, BF16, F32 and F64
/// checkpoint tensors into each storage type, against a float64 reference of the checkpoint's values.
/// </summary>
public class UploadBytesTests
{
    public static TheoryData<DType, StorageType> Pairs()
    {
        var d = new TheoryData<DType, StorageType>();
        foreach (var dtype in new[] { DType.F16, DType.BF16, DType.F32, DType.F64 })
            foreach (var s in new[] { StorageType.F32, StorageType.F16, StorageType.BF16 })
                d.Add(dtype, s);
        return d;
    }

    static WeightTensor Make(string name, DType dtype, double[] values, long[] shape)
    {
        if (dtype != DType.F64) return ArrayWeightTensor.FromFloat32(name, shape, values.Select(v => (float)v).ToArray(), dtype);
        var bytes = new byte[values.Length * 8];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(8 * i), values[i]);
        return new ArrayWeightTensor(name, DType.F64, shape, bytes);
    }

    /// <summary>Half an ulp at 1 of the coarser of the two formats (round to nearest), plus fp32's for F64 sources.</summary>
    static double Bound(DType dtype, StorageType s)
    {
        double Ulp(DType d) => d switch { DType.F16 => Math.Pow(2, -10), DType.BF16 => Math.Pow(2, -7), DType.F32 => Math.Pow(2, -23), _ => 0 };
        double su = s switch { StorageType.F16 => Math.Pow(2, -10), StorageType.BF16 => Math.Pow(2, -7), _ => Math.Pow(2, -23) };
        return Ulp(dtype) / 2 + su / 2 + Math.Pow(2, -24) + 1e-12;
    }

    [Theory, MemberData(nameof(Pairs))]
    public void Checkpoint_values_arrive_in_the_storage_type(DType dtype, StorageType storage)
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        long[] shape = [7, 5, 3];
        // magnitudes from 1e-4 to 1e3, both signs, never zero
        var values = Enumerable.Range(0, 105).Select(_ => (rng.Next(2) * 2 - 1) * Math.Pow(10, rng.NextDouble() * 7 - 4)).ToArray();
        var w = Make("unet.conv_in.weight", dtype, values, shape);
        var stored = HostConvert.Decode(CudaOps.StorageBytes(w, storage), storage);
        Assert.Equal(values.Length, stored.Length);
        double bound = Bound(dtype, storage), worst = 0;
        for (int i = 0; i < values.Length; i++)
        {
            double rel = Math.Abs(stored[i] - values[i]) / Math.Abs(values[i]);
            worst = Math.Max(worst, rel);
        }
        Assert.True(worst <= bound, $"{dtype} -> {storage}: relative error {worst:E3} > {bound:E3} (seed {seed})");
        if ((dtype, storage) is (DType.F16, StorageType.F16) or (DType.BF16, StorageType.BF16) or (DType.F32, StorageType.F32))
            Assert.True(CudaOps.StorageBytes(w, storage).SequenceEqual(w.Bytes), "same dtype: the checkpoint's bytes, unchanged");
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    public void A_value_beyond_fp16_range_is_refused_for_fp16_storage_only(DType dtype)
    {
        var w = ArrayWeightTensor.FromFloat32("vae.decoder.conv_out.weight", [3], [1f, -1e5f, 2f], dtype);
        var e = Assert.Throws<UserInputException>(() => CudaOps.StorageBytes(w, StorageType.F16).Length);
        Assert.Contains("vae.decoder.conv_out.weight", e.Message);
        Assert.Equal(-1e5f, HostConvert.Decode(CudaOps.StorageBytes(w, StorageType.F32), StorageType.F32)[1], 1e5f * 1e-2f);
        Assert.Equal(-1e5f, HostConvert.Decode(CudaOps.StorageBytes(w, StorageType.BF16), StorageType.BF16)[1], 1e5f * 1e-2f);
        // 65519 still rounds to fp16's largest finite value; only true overflow is refused
        var edge = ArrayWeightTensor.FromFloat32("edge", [1], [65519f], DType.F32);
        Assert.Equal(65504f, HostConvert.Decode(CudaOps.StorageBytes(edge, StorageType.F16), StorageType.F16)[0]);
    }

    sealed class ShortTensor() : WeightTensor("text_encoder.bad", DType.F16, [4, 4])
    {
        public override ReadOnlySpan<byte> Bytes => new byte[10];
    }

    [Fact]
    public void A_tensor_whose_bytes_do_not_fill_its_shape_is_refused()
    {
        var e = Assert.Throws<UserInputException>(() => CudaOps.StorageBytes(new ShortTensor(), StorageType.F16).Length);
        Assert.Contains("text_encoder.bad", e.Message);
    }

    [Fact]
    public void Integer_tensors_are_refused_with_their_name()
    {
        var w = new ArrayWeightTensor("position_ids", DType.I64, [2], new byte[16]);
        var e = Assert.Throws<UserInputException>(() => CudaOps.StorageBytes(w, StorageType.F16).Length);
        Assert.Contains("position_ids", e.Message);
    }
}
