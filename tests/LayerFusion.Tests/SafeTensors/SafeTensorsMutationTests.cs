using System.Buffers.Binary;
using CsCheck;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.SafeTensors;

namespace LayerFusion.Tests.SafeTensors;

/// <summary>
/// Random byte mutations and truncations of a valid file: the reader either refuses with
/// <see cref="SafeTensorsFormatException"/> or opens a file whose tensors are exactly what its
/// bytes say; no other exception, ever.
/// </summary>
public sealed class SafeTensorsMutationTests : IDisposable
{
    readonly TempDir _dir = new();
    readonly byte[] _valid;
    readonly long _dataStart;
    readonly List<WeightTensor> _original;

    public SafeTensorsMutationTests()
    {
        var rng = new Random(42);
        _original = [];
        // Small tensors of several dtypes, a zero-element one and a scalar, so the header is a
        // large share of the file and mutations often land in it.
        (string, DType, long[])[] specs = [
            ("down.0.weight", DType.F16, [3, 2]), ("down.0.bias", DType.F32, [3]), ("empty", DType.BF16, [0, 4]),
            ("ids", DType.I64, [2]), ("mask", DType.BOOL, [5]), ("scale", DType.F64, []), ("up.w", DType.BF16, [2, 2]),
        ];
        foreach (var (name, dtype, shape) in specs)
        {
            var bytes = new byte[shape.Aggregate(1L, (a, d) => a * d) * DTypes.SizeOf(dtype)];
            rng.NextBytes(bytes);
            _original.Add(new ArrayWeightTensor(name, dtype, shape, bytes));
        }
        var path = _dir.File("valid.safetensors");
        SafeTensorsWriter.Write(path, _original, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "x" });
        _valid = File.ReadAllBytes(path);
        _dataStart = 8 + BinaryPrimitives.ReadInt64LittleEndian(_valid);
    }

    public void Dispose() => _dir.Dispose();

    /// <summary>Bytes JSON cares about, so header mutations are often syntactically plausible.</summary>
    static readonly byte[] JsonBytes = "{}[]\":,0123456789-+.eE \t\nFIUBLO_8tfn\\"u8.ToArray();

    Gen<(int Position, byte Value)> Mutation(bool headerOnly) =>
        Gen.Select(Gen.Int[0, headerOnly ? (int)_dataStart - 1 : _valid.Length - 1],
                   Gen.Frequency((1, Gen.Byte), (2, Gen.Int[0, JsonBytes.Length - 1].Select(i => JsonBytes[i]))));

    /// <summary>Opens the bytes; returns whether they opened, after checking everything an opened file must satisfy.</summary>
    bool OpenAndCheck(byte[] bytes)
    {
        var path = _dir.File($"m-{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(path, bytes);
        try
        {
            using var file = SafeTensorsFile.Open(path);
            long dataStart = 8 + BinaryPrimitives.ReadInt64LittleEndian(bytes);
            var ranges = new List<(long Begin, long End)>();
            foreach (var t in file.Tensors)
            {
                long offset = ((SafeTensorsFile.MappedWeightTensor)t).FileOffset;
                var span = t.Bytes;
                Assert.Equal(t.ByteLength, span.Length);
                Assert.InRange(offset, dataStart, bytes.Length - span.Length);
                Assert.True(bytes.AsSpan(checked((int)offset), span.Length).SequenceEqual(span));
                if (span.Length > 0) ranges.Add((offset, offset + span.Length));
                if (DTypes.IsFloat(t.DType)) Assert.Equal(t.ElementCount, t.ToFloat32().Length);
            }
            ranges.Sort();
            for (int i = 1; i < ranges.Count; i++) Assert.True(ranges[i].Begin >= ranges[i - 1].End);
            Assert.Equal(file.Tensors.Count, file.ByName.Count);
            return true;
        }
        catch (SafeTensorsFormatException e)
        {
            Assert.Equal(path, e.File);
            Assert.Contains(path, e.Message);
            return false;
        }
        finally
        {
            File.Delete(path);
        }
    }

    void AssertSameAsOriginal(byte[] mutated)
    {
        var path = _dir.File($"s-{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(path, mutated);
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(_original.Select(t => t.Name), file.Tensors.Select(t => t.Name));
        foreach (var t in _original)
        {
            var r = (SafeTensorsFile.MappedWeightTensor)file[t.Name];
            Assert.Equal(t.DType, r.DType);
            Assert.Equal(t.Shape, r.Shape);
            Assert.True(mutated.AsSpan((int)r.FileOffset, (int)t.ByteLength).SequenceEqual(r.Bytes));
        }
        File.Delete(path);
    }

    [Fact]
    public void ValidFileOpens() => Assert.True(OpenAndCheck(_valid));

    [Fact]
    public void HeaderMutationsGiveOnlyFormatErrors()
    {
        int opened = 0, refused = 0;
        Mutation(headerOnly: true).Array[1, 4].Sample(mutations =>
        {
            var bytes = (byte[])_valid.Clone();
            foreach (var (pos, value) in mutations) bytes[pos] = value;
            if (OpenAndCheck(bytes)) Interlocked.Increment(ref opened); else Interlocked.Increment(ref refused);
        }, iter: 3000, threads: 1);
        Assert.True(refused > 0);
    }

    [Fact]
    public void AnyMutationGivesOnlyFormatErrorsAndDataMutationsStillOpen()
    {
        Mutation(headerOnly: false).Array[1, 6].Sample(mutations =>
        {
            var bytes = (byte[])_valid.Clone();
            foreach (var (pos, value) in mutations) bytes[pos] = value;
            bool opened = OpenAndCheck(bytes);
            // Changes only to tensor data or header padding: the file is as valid as before.
            bool harmless = mutations.All(m => m.Position >= _dataStart || (_valid[m.Position] == (byte)' ' && m.Value == (byte)' '));
            if (harmless)
            {
                Assert.True(opened);
                AssertSameAsOriginal(bytes);
            }
        }, iter: 3000, threads: 1);
    }

    [Fact]
    public void TruncationsAreAlwaysRefused()
    {
        Gen.Int[0, _valid.Length - 1].Sample(length =>
        {
            // Every tensor but the zero-element one has bytes, and the writer packs them to the end.
            Assert.False(OpenAndCheck(_valid.AsSpan(0, length).ToArray()));
        }, iter: 1000, threads: 1);
    }

    [Fact]
    public void MutatedLengthPrefixGivesOnlyFormatErrors()
    {
        Gen.Select(Gen.Int[0, 7], Gen.Byte, Gen.Int[0, _valid.Length]).Sample((pos, value, length) =>
        {
            var bytes = _valid.AsSpan(0, length).ToArray();
            if (pos < bytes.Length) bytes[pos] = value;
            OpenAndCheck(bytes);
        }, iter: 1000, threads: 1);
    }
}
