using System.Buffers.Binary;
using System.Text;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.SafeTensors;
using static LayerFusion.Tests.SafeTensors.Craft;

namespace LayerFusion.Tests.SafeTensors;

/// <summary>One crafted bad file per validation rule, each giving its own rule and a message naming file and tensor.</summary>
public sealed class SafeTensorsValidationTests : IDisposable
{
    readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    SafeTensorsFormatException Reject(byte[] bytes, SafeTensorsRule rule, string? tensor)
    {
        var path = _dir.File($"bad-{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(path).Dispose());
        Assert.Equal(rule, e.Rule);
        Assert.Equal(path, e.File);
        Assert.Equal(tensor, e.Tensor);
        Assert.Contains(path, e.Message);
        Assert.Contains(SafeTensorsFormatException.Describe(rule), e.Message);
        if (tensor is not null) Assert.Contains($"tensor '{SafeTensorsFormatException.Printable(tensor)}'", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.IsAssignableFrom<UserInputException>(e);
        return e;
    }

    const string Ok = "'dtype':'F32','shape':[2],'data_offsets':[0,8]";

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(7)]
    public void FileTooSmall(int length) =>
        Reject(new byte[length], SafeTensorsRule.FileTooSmall, null);

    [Theory]
    [InlineData(100_000_001UL)]
    [InlineData(ulong.MaxValue)]
    [InlineData(1UL << 63)]
    public void HeaderLengthTooLarge(ulong length)
    {
        // The file is tiny: the check must come before any allocation of that size.
        var e = Reject(Bytes(Encoding.UTF8.GetBytes("{}      "), [], length), SafeTensorsRule.HeaderLengthTooLarge, null);
        Assert.Contains(length.ToString(), e.Message);
    }

    [Theory]
    [InlineData(9UL)]
    [InlineData(100_000_000UL)]
    public void HeaderLengthBeyondFile(ulong length) =>
        Reject(Bytes(Encoding.UTF8.GetBytes("{}      "), [], length), SafeTensorsRule.HeaderLengthBeyondFile, null);

    [Theory]
    [InlineData("")]
    [InlineData("        ")]
    [InlineData("{'w':{" + Ok + "}")]               // unterminated
    [InlineData("{'w':{" + Ok + "}} x")]            // trailing garbage
    [InlineData("{'w':{" + Ok + "},}")]             // trailing comma
    [InlineData("{/*c*/'w':{" + Ok + "}}")]         // comment
    [InlineData("{'w':{'dtype':'F32','shape':[[[[[[[[[[2]]]]]]]]]],'data_offsets':[0,8]}}")] // too deep
    [InlineData("{'\\ud800':{" + Ok + "}}")]        // lone surrogate escape
    [InlineData("{'w':{" + Ok + "}}{}")]            // two values
    public void HeaderNotJson(string header) =>
        Reject(Bytes(J(header), 8), SafeTensorsRule.HeaderNotUtf8Json, null);

    [Fact]
    public void HeaderNotUtf8()
    {
        var header = Encoding.UTF8.GetBytes(J("{'w':{" + Ok + "}}"));
        header[2] = 0xFF; // inside the name
        Reject(Bytes(header, new byte[8]), SafeTensorsRule.HeaderNotUtf8Json, null);
        // A UTF-8 byte order mark is not JSON either (the reference refuses it too).
        Reject(Bytes([0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes("{}")], []), SafeTensorsRule.HeaderNotUtf8Json, null);
        // Overlong encoding of '"'.
        Reject(Bytes([(byte)'{', 0xC0, 0xA2, (byte)'}'], []), SafeTensorsRule.HeaderNotUtf8Json, null);
    }

    [Theory]
    [InlineData("[]")]
    [InlineData("'w'")]
    [InlineData("12")]
    [InlineData("null")]
    public void HeaderNotObject(string header) =>
        Reject(Bytes(J(header)), SafeTensorsRule.HeaderNotObject, null);

    [Theory]
    [InlineData("{'w':[0,8]}")]
    [InlineData("{'w':'F32'}")]
    [InlineData("{'w':null}")]
    public void EntryNotObject(string header) =>
        Reject(Bytes(J(header), 8), SafeTensorsRule.EntryNotObject, "w");

    [Theory]
    [InlineData("{'w':{'shape':[2],'data_offsets':[0,8]}}", "dtype is missing")]
    [InlineData("{'w':{'dtype':'F32','data_offsets':[0,8]}}", "shape is missing")]
    [InlineData("{'w':{'dtype':'F32','shape':[2]}}", "data_offsets is missing")]
    [InlineData("{'w':{" + Ok + ",'extra':1}}", "unexpected field 'extra'")]
    [InlineData("{'w':{" + Ok + ",'dtype':'F32'}}", "dtype appears more than once")]
    [InlineData("{'w':{" + Ok + ",'shape':[2]}}", "shape appears more than once")]
    [InlineData("{'w':{" + Ok + ",'data_offsets':[0,8]}}", "data_offsets appears more than once")]
    [InlineData("{'w':{'dtype':7,'shape':[2],'data_offsets':[0,8]}}", "dtype is Number")]
    [InlineData("{'w':{'dtype':'F32','shape':{},'data_offsets':[0,8]}}", "shape is StartObject")]
    [InlineData("{'w':{'dtype':'F32','shape':[2],'data_offsets':'0-8'}}", "data_offsets is String")]
    public void EntryFields(string header, string detail)
    {
        var e = Reject(Bytes(J(header), 8), SafeTensorsRule.EntryFields, "w");
        Assert.Contains(detail, e.Message);
    }

    [Theory]
    [InlineData("F33")]
    [InlineData("f32")]
    [InlineData("float32")]
    [InlineData("")]
    public void UnknownDType(string dtype)
    {
        var e = Reject(Bytes(J($"{{'w':{{'dtype':'{dtype}','shape':[2],'data_offsets':[0,8]}}}}"), 8), SafeTensorsRule.UnknownDType, "w");
        Assert.Contains($"'{dtype}'", e.Message);
    }

    [Theory]
    [InlineData("[-1]")]
    [InlineData("[1.5]")]
    [InlineData("[2.0]")]
    [InlineData("[1e3]")]
    [InlineData("['2']")]
    [InlineData("[true]")]
    [InlineData("[null]")]
    [InlineData("[[2]]")]
    [InlineData("[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2]")] // rank 65
    [InlineData("[18446744073709551616]")]
    [InlineData("[9223372036854775808]")]
    public void BadShape(string shape) =>
        Reject(Bytes(J($"{{'w':{{'dtype':'F32','shape':{shape},'data_offsets':[0,8]}}}}"), 8), SafeTensorsRule.BadShape, "w");

    [Theory]
    [InlineData("F32", "[4611686018427387904]")]                 // 2^62 * 4 bytes
    [InlineData("U8", "[4294967296,4294967296]")]                 // 2^64 elements
    [InlineData("U8", "[9223372036854775807,2,0]")]                // overflows before the zero, as the reference computes
    [InlineData("F64", "[2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2]")]
    public void SizeOverflow(string dtype, string shape) =>
        Reject(Bytes(J($"{{'w':{{'dtype':'{dtype}','shape':{shape},'data_offsets':[0,8]}}}}"), 8), SafeTensorsRule.SizeOverflow, "w");

    [Theory]
    [InlineData("[0]")]
    [InlineData("[]")]
    [InlineData("[0,8,16]")]
    [InlineData("[-1,7]")]
    [InlineData("[8,0]")]
    [InlineData("['0',8]")]
    [InlineData("[0,8.0]")]
    [InlineData("[0,1e1]")]
    [InlineData("[0,18446744073709551615]")]
    public void OffsetsInvalid(string offsets) =>
        Reject(Bytes(J($"{{'w':{{'dtype':'F32','shape':[2],'data_offsets':{offsets}}}}}"), 8), SafeTensorsRule.OffsetsInvalid, "w");

    [Theory]
    [InlineData("[0,8]", 7)]
    [InlineData("[8,16]", 8)]
    [InlineData("[9223372036854775799,9223372036854775807]", 8)]
    public void OffsetsOutsideData(string offsets, int dataLength) =>
        Reject(Bytes(J($"{{'w':{{'dtype':'F32','shape':[2],'data_offsets':{offsets}}}}}"), dataLength), SafeTensorsRule.OffsetsOutsideData, "w");

    [Theory]
    [InlineData("F32", "[2]", "[0,4]")]
    [InlineData("F32", "[2]", "[0,12]")]
    [InlineData("F16", "[2]", "[0,8]")]
    [InlineData("F32", "[0]", "[0,4]")]
    [InlineData("F32", "[]", "[0,8]")]   // a scalar is one element
    public void SizeMismatch(string dtype, string shape, string offsets)
    {
        var e = Reject(Bytes(J($"{{'w':{{'dtype':'{dtype}','shape':{shape},'data_offsets':{offsets}}}}}"), 16), SafeTensorsRule.SizeMismatch, "w");
        Assert.Contains("needs", e.Message);
    }

    [Fact]
    public void OverlappingRanges()
    {
        Reject(Bytes(J("{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},'b':{'dtype':'F32','shape':[2],'data_offsets':[4,12]}}"), 12),
            SafeTensorsRule.OverlappingRanges, "b");
        // Ranges are compared sorted by offset, whatever the header order; the later entry in the
        // header is the one reported, and the message names the other one too.
        var e = Reject(Bytes(J("{'b':{'dtype':'U8','shape':[2],'data_offsets':[6,8]},'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]}}"), 12),
            SafeTensorsRule.OverlappingRanges, "a");
        Assert.Contains("'b'", e.Message);
        // Identical ranges (aliasing) overlap too.
        Reject(Bytes(J("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]},'b':{'dtype':'I32','shape':[1],'data_offsets':[0,4]}}"), 4),
            SafeTensorsRule.OverlappingRanges, "b");
    }

    [Theory]
    [InlineData("{'__metadata__':{'k':1}}")]
    [InlineData("{'__metadata__':{'k':null}}")]
    [InlineData("{'__metadata__':{'k':{'x':'y'}}}")]
    [InlineData("{'__metadata__':['k','v']}")]
    [InlineData("{'__metadata__':'k'}")]
    [InlineData("{'__metadata__':{'k':'v','k':'w'}}")]
    public void MetadataNotStringMap(string header) =>
        Reject(Bytes(J(header)), SafeTensorsRule.MetadataNotStringMap, "__metadata__");

    [Theory]
    [InlineData("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]},'a':{'dtype':'F32','shape':[1],'data_offsets':[4,8]}}", "a")]
    [InlineData("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]},'\\u0061':{'dtype':'F32','shape':[1],'data_offsets':[4,8]}}", "a")]
    [InlineData("{'__metadata__':{},'__metadata__':{}}", "__metadata__")]
    public void DuplicateName(string header, string name) =>
        Reject(Bytes(J(header), 8), SafeTensorsRule.DuplicateName, name);

    [Fact]
    public void TensorTooLarge()
    {
        // A sparse file: 2 GiB of data costs no disk, and the mapping only reserves address space.
        var header = Encoding.UTF8.GetBytes(J("{'big':{'dtype':'U8','shape':[2147483648],'data_offsets':[0,2147483648]}}"));
        var path = _dir.File("big.safetensors");
        using (var fs = new FileStream(path, FileMode.CreateNew))
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            fs.Write(prefix);
            fs.Write(header);
            fs.SetLength(8 + header.Length + 2147483648L);
        }
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(path).Dispose());
        Assert.Equal(SafeTensorsRule.TensorTooLarge, e.Rule);
        Assert.Equal("big", e.Tensor);
    }

    [Fact]
    public void EveryRuleHasACraftedFile()
    {
        // Guards the list above: a rule added to the enum needs its test here.
        var tested = typeof(SafeTensorsValidationTests).GetMethods()
            .Where(m => m.GetCustomAttributes(typeof(FactAttribute), true).Length > 0)
            .Select(m => m.Name).ToHashSet();
        tested.Add(nameof(SafeTensorsRule.HeaderNotUtf8Json)); // covered by HeaderNotJson + HeaderNotUtf8
        foreach (var rule in Enum.GetNames<SafeTensorsRule>())
            Assert.Contains(rule, tested);
    }

    [Fact]
    public void NameInMessageIsOneLineAndBounded()
    {
        var name = "evil\nname" + new string('x', 5000);
        var e = Reject(Bytes(J($"{{'{name.Replace("\n", "\\n")}':{{'dtype':'F99','shape':[],'data_offsets':[0,4]}}}}"), 4),
            SafeTensorsRule.UnknownDType, name);
        Assert.True(e.Message.Length < 1000);
    }

    [Fact]
    public void MissingFileIsUserInputNotFormat()
    {
        var path = _dir.File("nope.safetensors");
        var e = Assert.Throws<UserInputException>(() => SafeTensorsFile.Open(path));
        Assert.IsNotType<SafeTensorsFormatException>(e);
        Assert.Contains(path, e.Message);
        var dirE = Assert.Throws<UserInputException>(() => SafeTensorsFile.Open(_dir.Path));
        Assert.Contains(_dir.Path, dirE.Message);
    }
}

/// <summary>Hostile headers cost memory in proportion to the file's real size, never to sizes it claims.</summary>
public sealed class SafeTensorsAllocationTests : IDisposable
{
    readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    static string Pad(string header) => header + new string(' ', (8 - Encoding.UTF8.GetByteCount(header) % 8) % 8);

    public static TheoryData<string, string> Headers()
    {
        const int n = 20000;
        return new()
        {
            { "many zero-size tensors", "{" + string.Join(",", Enumerable.Range(0, n).Select(i => $"\"{i}\":{{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}")) + "}" },
            { "many metadata keys", "{\"__metadata__\":{" + string.Join(",", Enumerable.Range(0, n).Select(i => $"\"{i}\":\"\"")) + "}}" },
            { "huge rank", "{\"a\":{\"dtype\":\"U8\",\"shape\":[" + string.Join(",", Enumerable.Repeat("0", 10 * n)) + "],\"data_offsets\":[0,0]}}" },
            { "long name", "{\"" + new string('a', 10 * n) + "\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}" },
            { "long number", "{\"a\":{\"dtype\":\"U8\",\"shape\":[" + new string('9', 10 * n) + "],\"data_offsets\":[0,0]}}" },
            { "deep nesting", "{\"a\":" + new string('[', 10 * n) + new string(']', 10 * n) + "}" },
            { "claims 2^62 elements", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4611686018427387904]}}" },
            { "claims a huge shape product", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1073741824,1073741824],\"data_offsets\":[0,4]}}" },
        };
    }

    [Theory]
    [MemberData(nameof(Headers))]
    public void AllocationIsBoundedByFileSize(string what, string header)
    {
        var warm = _dir.File("warm.safetensors");
        SafeTensorsWriter.Write(warm, [ArrayWeightTensor.FromFloat32("w", [1], [1f])], new Dictionary<string, string> { ["k"] = "v" });
        SafeTensorsFile.Open(warm).Dispose();
        try { SafeTensorsFile.Open(_dir.File("missing")); } catch (UserInputException) { }

        var path = _dir.File("hostile.safetensors");
        File.WriteAllBytes(path, Craft.Bytes(Encoding.UTF8.GetBytes(Pad(header)), []));
        long fileLength = new FileInfo(path).Length;
        long before = GC.GetAllocatedBytesForCurrentThread();
        try { SafeTensorsFile.Open(path).Dispose(); }
        catch (SafeTensorsFormatException) { }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        // Names, shapes and objects for the tensors a header lists: a few times its size at worst
        // (measured: ~3x for minimal zero-size entries, ~6x for minimal metadata pairs).
        Assert.True(allocated <= 8 * fileLength + 65536, $"{what}: {allocated} bytes allocated for a {fileLength}-byte file");
    }
}
