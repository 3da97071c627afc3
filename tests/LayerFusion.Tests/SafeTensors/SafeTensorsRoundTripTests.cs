using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using CsCheck;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.SafeTensors;
using static LayerFusion.Tests.SafeTensors.Craft;

namespace LayerFusion.Tests.SafeTensors;

public sealed class SafeTensorsRoundTripTests : IDisposable
{
    readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    static ArrayWeightTensor RandomTensor(Random rng, string name, DType dtype, long[] shape)
    {
        long n = shape.Aggregate(1L, (a, d) => a * d);
        var bytes = new byte[n * DTypes.SizeOf(dtype)];
        rng.NextBytes(bytes);
        return new ArrayWeightTensor(name, dtype, shape, bytes);
    }

    static readonly Gen<long[]> GenShape = Gen.Int[0, 4].SelectMany(rank => Gen.Long[0, 6].Array[rank]);

    [Fact]
    public void EveryDTypeRoundTripsBitForBit()
    {
        Gen.Select(Gen.Int, GenShape.Array[1, 4]).Sample((seed, shapes) =>
        {
            var rng = new Random(seed);
            var tensors = new List<WeightTensor>();
            foreach (var dtype in Enum.GetValues<DType>())
                for (int i = 0; i < shapes.Length; i++)
                    tensors.Add(RandomTensor(rng, $"{dtype}.{i}", dtype, shapes[i]));
            // Shuffle, so the layout follows the given order and not the dtype order.
            tensors = tensors.OrderBy(_ => rng.Next()).ToList();
            var path = _dir.File($"rt-{Guid.NewGuid():N}.safetensors");
            var metadata = new Dictionary<string, string> { ["format"] = "pt", ["seed"] = seed.ToString(), ["é \"q\"\n"] = "ü\\" };
            SafeTensorsWriter.Write(path, tensors, metadata);

            using var file = SafeTensorsFile.Open(path);
            Assert.Equal(path, file.Path);
            Assert.Equal(metadata.ToList(), file.Metadata.ToList());
            Assert.Equal(tensors.Select(t => t.Name), file.Tensors.Select(t => t.Name));
            foreach (var t in tensors)
            {
                var r = file[t.Name];
                Assert.Same(r, file.ByName[t.Name]);
                Assert.Equal(t.DType, r.DType);
                Assert.Equal(t.Shape, r.Shape);
                Assert.True(t.Bytes.SequenceEqual(r.Bytes), t.Name);
            }
            // Data is laid out back to back in the given order, right after the 8-aligned header.
            var raw = File.ReadAllBytes(path);
            long headerLength = BinaryPrimitives.ReadInt64LittleEndian(raw);
            Assert.Equal(0, headerLength % 8);
            Assert.Equal(8 + headerLength + tensors.Sum(t => t.ByteLength), raw.Length);
            long pos = 8 + headerLength;
            foreach (var t in tensors)
            {
                Assert.Equal(pos, ((SafeTensorsFile.MappedWeightTensor)file[t.Name]).FileOffset);
                pos += t.ByteLength;
            }
        }, iter: 40, threads: 1);
    }

    /// <summary>IEEE binary value of <paramref name="bits"/> computed in float64 from its fields.</summary>
    static double DecodeIeee(ulong bits, int exponentBits, int mantissaBits)
    {
        ulong mantissa = bits & ((1UL << mantissaBits) - 1);
        int exponent = (int)((bits >> mantissaBits) & ((1UL << exponentBits) - 1));
        bool negative = ((bits >> (mantissaBits + exponentBits)) & 1) != 0;
        int bias = (1 << (exponentBits - 1)) - 1;
        double magnitude;
        if (exponent == (1 << exponentBits) - 1)
            magnitude = mantissa == 0 ? double.PositiveInfinity : double.NaN;
        else if (exponent == 0)
            magnitude = Math.ScaleB(mantissa, 1 - bias - mantissaBits);
        else
            magnitude = Math.ScaleB((double)((1UL << mantissaBits) | mantissa), exponent - bias - mantissaBits);
        return negative ? -magnitude : magnitude;
    }

    [Theory]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void FloatValuesMatchFloat64Reference(DType dtype)
    {
        var rng = new Random(1234 + (int)dtype);
        int n = 4099;
        var t = RandomTensor(rng, "w", dtype, [n]);
        // Make sure the specials are in: zeros, subnormals, infinities, NaN.
        var extra = dtype switch
        {
            DType.F16 or DType.BF16 => new ulong[] { 0x0000, 0x8000, 0x0001, 0x8001, 0x7C00, 0xFC00, 0x7F80, 0xFF80, 0x7E00, 0x3C00 },
            DType.F32 => [0, 0x80000000, 1, 0x807FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000],
            _ => [0, 0x8000000000000000, 1, 0x7FF0000000000000, 0x7FF8000000000000, 0x47EFFFFFE0000000, 0x3810000000000000],
        };
        var bytes = t.Bytes.ToArray();
        int size = DTypes.SizeOf(dtype);
        if (dtype == DType.F64)
        {
            // Random bit patterns are mostly outside float's range: draw most values across it instead,
            // subnormal floats included, and keep a random-bits quarter for overflow and underflow.
            for (int i = 0; i < n * 3 / 4; i++)
                BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(8 * i), (rng.NextDouble() * 2 - 1) * Math.ScaleB(1, rng.Next(-150, 128)));
        }
        Span<byte> b = stackalloc byte[8];
        for (int i = 0; i < extra.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(b, extra[i]);
            b[..size].CopyTo(bytes.AsSpan(i * size));
        }
        var path = _dir.File("f.safetensors");
        SafeTensorsWriter.Write(path, [new ArrayWeightTensor("w", dtype, [n], bytes)]);
        using var file = SafeTensorsFile.Open(path);
        var values = file["w"].ToFloat32();
        Assert.True(bytes.AsSpan().SequenceEqual(file["w"].Bytes));
        int finite = 0;
        for (int i = 0; i < n; i++)
        {
            var span = bytes.AsSpan(i * size, size);
            double reference = dtype switch
            {
                DType.F16 => DecodeIeee(BinaryPrimitives.ReadUInt16LittleEndian(span), 5, 10),
                DType.BF16 => DecodeIeee(BinaryPrimitives.ReadUInt16LittleEndian(span), 8, 7),
                DType.F32 => DecodeIeee(BinaryPrimitives.ReadUInt32LittleEndian(span), 8, 23),
                _ => DecodeIeee(BinaryPrimitives.ReadUInt64LittleEndian(span), 11, 52),
            };
            if (double.IsNaN(reference)) { Assert.True(float.IsNaN(values[i]), $"[{i}] NaN expected"); continue; }
            if (dtype == DType.F64)
            {
                // Narrowing: the nearest float (overflow to infinity), so the relative error is at most 2^-24.
                if (Math.Abs(reference) >= 3.4028235677973366e38) { Assert.Equal(Math.Sign(reference) * double.PositiveInfinity, values[i]); continue; }
                if (Math.Abs(reference) < 1.1754943508222875e-38) { Assert.True(Math.Abs(values[i] - reference) <= Math.ScaleB(1, -150), $"[{i}]"); continue; }
                Assert.True(Math.Abs(values[i] - reference) <= Math.Abs(reference) * Math.ScaleB(1, -24), $"[{i}] {values[i]} vs {reference}");
            }
            else
            {
                // Widening is exact, signed zeros included.
                Assert.Equal(BitConverter.DoubleToInt64Bits(reference), BitConverter.DoubleToInt64Bits(values[i]));
            }
            if (double.IsFinite(reference) && reference != 0) finite++;
        }
        Assert.True(finite > n / 2); // the random part really exercised ordinary values
    }

    [Theory]
    [InlineData(DType.BOOL)]
    [InlineData(DType.U8)]
    [InlineData(DType.I8)]
    [InlineData(DType.I16)]
    [InlineData(DType.U16)]
    [InlineData(DType.I32)]
    [InlineData(DType.U32)]
    [InlineData(DType.I64)]
    [InlineData(DType.U64)]
    [InlineData(DType.F8_E4M3)]
    [InlineData(DType.F8_E5M2)]
    public void NonFloatDTypesLoadButDoNotConvert(DType dtype)
    {
        var path = _dir.File("i.safetensors");
        var t = RandomTensor(new Random(7), "ids", dtype, [3, 5]);
        SafeTensorsWriter.Write(path, [t]);
        using var file = SafeTensorsFile.Open(path);
        Assert.True(t.Bytes.SequenceEqual(file["ids"].Bytes));
        var e = Assert.Throws<UserInputException>(() => file["ids"].ToFloat32());
        Assert.Contains("ids", e.Message);
    }

    [Fact]
    public void EmptyFileAndZeroElementTensors()
    {
        var path = _dir.File("empty.safetensors");
        SafeTensorsWriter.Write(path, []);
        Assert.Equal(Encoding.ASCII.GetBytes("\u0008\0\0\0\0\0\0\0{}      "), File.ReadAllBytes(path));
        using (var file = SafeTensorsFile.Open(path))
        {
            Assert.Empty(file.Tensors);
            Assert.Empty(file.Metadata);
        }

        // Only zero-element tensors: a data section of length 0.
        SafeTensorsWriter.Write(path, [
            new ArrayWeightTensor("a", DType.F32, [0], []),
            new ArrayWeightTensor("b", DType.F16, [3, 0, 2], []),
            new ArrayWeightTensor("c", DType.BF16, [0, 9223372036854775807], []),
        ]);
        using (var file = SafeTensorsFile.Open(path))
        {
            Assert.Equal(["a", "b", "c"], file.Tensors.Select(t => t.Name));
            Assert.All(file.Tensors, t => Assert.Equal(0, t.Bytes.Length));
            Assert.Empty(file["b"].ToFloat32());
            Assert.Equal([0L, 9223372036854775807L], file["c"].Shape);
        }

        // A scalar (shape []) is one element.
        SafeTensorsWriter.Write(path, [ArrayWeightTensor.FromFloat32("s", [], [2.5f])]);
        using (var file = SafeTensorsFile.Open(path))
            Assert.Equal([2.5f], file["s"].ToFloat32());
    }

    [Fact]
    public void ZeroSizeTensorMayLieInsideAnotherRangeAndGapsAreAllowed()
    {
        var path = _dir.File("z.safetensors");
        File.WriteAllBytes(path, Bytes(J("{'a':{'dtype':'U8','shape':[4],'data_offsets':[0,4]},'z':{'dtype':'F32','shape':[0],'data_offsets':[2,2]},'b':{'dtype':'U8','shape':[2],'data_offsets':[6,8]}}"), 10));
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(3, file.Tensors.Count);
        Assert.Equal(new byte[] { (6 * 37 + 11) & 255, (7 * 37 + 11) & 255 }, file["b"].Bytes.ToArray());
    }

    /// <summary>
    /// The exact bytes the reference writer (Rust safetensors, serde_json compact) produces: header
    /// with __metadata__ first and fields dtype, shape, data_offsets, only '"', '\' and control
    /// characters escaped, padded with spaces to a multiple of 8, then the data.
    /// </summary>
    [Fact]
    public void WriterIsByteCompatibleWithReference()
    {
        var path = _dir.File("ref.safetensors");
        SafeTensorsWriter.Write(path, [
            ArrayWeightTensor.FromFloat32("b", [2], [1f, -2f]),
            new ArrayWeightTensor("a\"é\n", DType.BF16, [1, 1], [0xC0, 0x3F]),
        ], new Dictionary<string, string> { ["format"] = "pt" });

        byte[] header = [
            .. "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\\\""u8,
            0xC3, 0xA9,
            .. "\\n\":{\"dtype\":\"BF16\",\"shape\":[1,1],\"data_offsets\":[8,10]}}"u8,
        ];
        Assert.Equal(148, header.Length);
        byte[] expected = [
            152, 0, 0, 0, 0, 0, 0, 0,
            .. header, .. "    "u8,
            0x00, 0x00, 0x80, 0x3F,   // 1f
            0x00, 0x00, 0x00, 0xC0,   // -2f
            0xC0, 0x3F,               // bf16 1.5
        ];
        Assert.Equal(expected, File.ReadAllBytes(path));

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal([1f, -2f], file["b"].ToFloat32());
        Assert.Equal([1.5f], file["a\"é\n"].ToFloat32());
    }

    /// <summary>What Python's json.dumps writes (the pyshims writer): spaced separators, \u escapes.</summary>
    [Fact]
    public void ReadsPythonStyleHeader()
    {
        var path = _dir.File("py.safetensors");
        var header = "{\"__metadata__\": {\"format\": \"pt\"}, \"\\u00e9\\ud83d\\ude00\": {\"dtype\": \"F16\", \"shape\": [1, 2], \"data_offsets\": [0, 4]}}";
        header += new string(' ', (8 - header.Length % 8) % 8);
        File.WriteAllBytes(path, Craft.Bytes(Encoding.UTF8.GetBytes(header), [0x00, 0x3C, 0x00, 0xC0]));
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal([1f, -2f], file["é😀"].ToFloat32());
        Assert.Equal([1L, 2L], file["é😀"].Shape);
    }

    [Fact]
    public void TruncatedInPlaceWhileOpenIsAUserErrorNotACrash()
    {
        // `cp new old` truncates old in place and writes it again: a mapping would fault (SIGBUS).
        var path = _dir.File("trunc.safetensors");
        var rng = new Random(5);
        SafeTensorsWriter.Write(path, [RandomTensor(rng, "a", DType.F32, [64]), RandomTensor(rng, "b", DType.F16, [4096])]);
        using var file = SafeTensorsFile.Open(path);
        var expected = file["a"].Bytes.ToArray();
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
            fs.SetLength(file.FileLength / 2);
        var e = Assert.Throws<UserInputException>(() => file["b"].ToFloat32());
        Assert.Contains($"safetensors file '{path}' changed while in use", e.Message);
        Assert.Throws<UserInputException>(() => file["a"].Bytes.Length);
        Assert.Throws<UserInputException>(() => file["b"].Bytes.Length);
        // Written back to full length with other bytes (the rest of `cp`): still refused, it was modified.
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
            fs.SetLength(file.FileLength);
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddMinutes(1));
        e = Assert.Throws<UserInputException>(() => file["a"].ToFloat32());
        Assert.Contains("modified after it was opened", e.Message);
        Assert.Equal(64 * 4, expected.Length);
    }

    [Fact]
    public void ARenameOverTheFileLeavesTheOpenedOneReadable()
    {
        // An atomic writer renames a complete new file over the path: we keep reading the old inode.
        var path = _dir.File("renamed.safetensors");
        var rng = new Random(6);
        var a = RandomTensor(rng, "a", DType.F32, [64]);
        SafeTensorsWriter.Write(path, [a]);
        using var file = SafeTensorsFile.Open(path);
        SafeTensorsWriter.Write(path, [RandomTensor(rng, "a", DType.F32, [8])]);
        Assert.True(a.Bytes.SequenceEqual(file["a"].Bytes));
    }

    [Fact]
    public void RangesOfAFileTensorReadOnlyThoseBytes()
    {
        var path = _dir.File("range.safetensors");
        var rng = new Random(7);
        var a = RandomTensor(rng, "a", DType.F16, [300]);
        SafeTensorsWriter.Write(path, [a]);
        using var file = SafeTensorsFile.Open(path);
        var part = new byte[100];
        file["a"].ReadBytes(200, part);
        Assert.True(a.Bytes.Slice(200, 100).SequenceEqual(part));
        Assert.Throws<ArgumentOutOfRangeException>(() => file["a"].ReadBytes(550, part));
        Assert.Equal(a.ToFloat32(), file["a"].ToFloat32());
    }

    [Fact]
    public void DisposedFileRefusesReads()
    {
        var path = _dir.File("d.safetensors");
        SafeTensorsWriter.Write(path, [ArrayWeightTensor.FromFloat32("w", [2], [1f, 2f])]);
        var file = SafeTensorsFile.Open(path);
        var w = file["w"];
        file.Dispose();
        file.Dispose(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => w.Bytes.Length);
        Assert.Throws<ObjectDisposedException>(() => w.ToFloat32());
    }

    [Fact]
    public void MissingTensorNamesFileAndTensor()
    {
        var path = _dir.File("m.safetensors");
        SafeTensorsWriter.Write(path, [ArrayWeightTensor.FromFloat32("w", [1], [1f])]);
        using var file = SafeTensorsFile.Open(path);
        var e = Assert.Throws<UserInputException>(() => file["unet.conv_in.weight"]);
        Assert.Contains(path, e.Message);
        Assert.Contains("unet.conv_in.weight", e.Message);
    }

    [Fact]
    public void OpenFileCanBeRewrittenInPlace()
    {
        // Copy a file onto itself through its own mapped views: the rename leaves the old mapping intact.
        var path = _dir.File("self.safetensors");
        SafeTensorsWriter.Write(path, [ArrayWeightTensor.FromFloat32("w", [3], [1f, 2f, 3f])]);
        using (var file = SafeTensorsFile.Open(path))
        {
            SafeTensorsWriter.Write(path, [file["w"], ArrayWeightTensor.Rename(file["w"], "v")]);
            Assert.Equal([1f, 2f, 3f], file["w"].ToFloat32());
        }
        using var again = SafeTensorsFile.Open(path);
        Assert.Equal([1f, 2f, 3f], again["v"].ToFloat32());
    }
}
