using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace LayerFusion.WeightsLoader.SafeTensors;

/// <summary>
/// A safetensors file, memory-mapped read-only and validated in full by <see cref="Open"/>.
/// Each tensor's <see cref="WeightTensor.Bytes"/> is a zero-copy view into the mapping, valid until
/// <see cref="Dispose"/> (afterwards reading Bytes throws <see cref="ObjectDisposedException"/>;
/// a span taken before Dispose must not be used after it).
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>The header length limit of the reference implementation (100 MB).</summary>
    public const long MaxHeaderLength = 100_000_000;

    readonly MemoryMappedFile _mapping;
    readonly MemoryMappedViewAccessor _view;
    byte* _base;
    int _disposed;

    SafeTensorsFile(string path, MemoryMappedFile mapping, MemoryMappedViewAccessor view, byte* basePtr, long length)
    {
        Path = path;
        _mapping = mapping;
        _view = view;
        _base = basePtr;
        FileLength = length;
        Metadata = new Dictionary<string, string>();
        Tensors = [];
        ByName = new Dictionary<string, WeightTensor>();
    }

    public string Path { get; }

    /// <summary>Length of the file in bytes.</summary>
    public long FileLength { get; }

    /// <summary>The header's __metadata__ map (empty if absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; private set; }

    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<WeightTensor> Tensors { get; private set; }

    public IReadOnlyDictionary<string, WeightTensor> ByName { get; private set; }

    /// <summary>The tensor of that name; a missing name is a <see cref="UserInputException"/> naming file and tensor.</summary>
    public WeightTensor this[string name] =>
        ByName.TryGetValue(name, out var t)
            ? t
            : throw new UserInputException($"safetensors file '{Path}' has no tensor '{SafeTensorsFormatException.Printable(name)}' ({ByName.Count} tensors)");

    public bool Contains(string name) => ByName.ContainsKey(name);

    /// <summary>
    /// Maps and validates <paramref name="path"/>. Format violations throw
    /// <see cref="SafeTensorsFormatException"/>; an unreadable path throws <see cref="UserInputException"/>.
    /// </summary>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        // Sized before it is opened: a FIFO (or a device) stats as 0 bytes, and opening or reading
        // one would block forever. A path that cannot be stat'ed is reported by the open below.
        FileInfo? info = null;
        try { info = new FileInfo(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException or UnauthorizedAccessException) { }
        if (info is { Exists: true, Length: < 8 })
            throw new SafeTensorsFormatException(path, null, SafeTensorsRule.FileTooSmall, $"{info.Length} bytes");
        FileStream stream;
        try
        {
            // FileShare.Delete: an atomic writer may rename a new file over this one while we read it.
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1, FileOptions.None);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new UserInputException($"cannot open safetensors file '{path}': {e.Message}", e);
        }

        MemoryMappedFile? mapping = null;
        MemoryMappedViewAccessor? view = null;
        SafeTensorsFile? file = null;
        try
        {
            long length;
            Span<byte> prefix = stackalloc byte[8];
            try
            {
                length = stream.Length;
                if (length >= 8) stream.ReadExactly(prefix);
            }
            catch (IOException e)
            {
                throw new UserInputException($"cannot read safetensors file '{path}': {e.Message}", e);
            }
            // Checked before mapping: also guarantees the mapping is never of length 0, which
            // MemoryMappedFile refuses (a file with an empty header and no data is still 8+ bytes).
            if (length < 8)
                throw new SafeTensorsFormatException(path, null, SafeTensorsRule.FileTooSmall, $"{length} bytes");
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            // Both length checks come before anything is allocated or mapped.
            if (headerLength > MaxHeaderLength)
                throw new SafeTensorsFormatException(path, null, SafeTensorsRule.HeaderLengthTooLarge, $"{headerLength} bytes");
            if ((long)headerLength > length - 8)
                throw new SafeTensorsFormatException(path, null, SafeTensorsRule.HeaderLengthBeyondFile,
                    $"header length {headerLength}, file has {length - 8} bytes after the length prefix");

            try
            {
                // Capacity = the length validated against: a read-only mapping refuses a capacity
                // beyond the file, so a file that shrank meanwhile fails here instead of faulting later.
                mapping = MemoryMappedFile.CreateFromFile(stream, null, length, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
                view = mapping.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            }
            catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
            {
                throw new UserInputException($"cannot map safetensors file '{path}': {e.Message}", e);
            }
            byte* ptr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref ptr);
            ptr += view.PointerOffset;
            file = new SafeTensorsFile(path, mapping, view, ptr, length);

            long dataStart = 8 + (long)headerLength;
            var header = new ReadOnlySpan<byte>(ptr + 8, checked((int)headerLength));
            var parsed = SafeTensorsHeader.Parse(file, header, dataStart);
            file.Metadata = parsed.Metadata;
            file.Tensors = parsed.Tensors.AsReadOnly();
            file.ByName = parsed.ByName.AsReadOnly();
            return file;
        }
        catch
        {
            if (file is not null) file.Dispose();
            else
            {
                view?.Dispose();
                mapping?.Dispose();
            }
            stream.Dispose(); // the mapping owns it once created; disposing twice is harmless
            throw;
        }
    }

    ReadOnlySpan<byte> Slice(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return new ReadOnlySpan<byte>(_base + offset, length);
    }

    /// <summary>madvise(MADV_DONTNEED) over the whole pages inside [offset, offset + length): they leave the
    /// resident set and are read back from the file on the next access (the mapping is read-only, so
    /// nothing is lost). Linux only; elsewhere a no-op.</summary>
    void ReleasePages(long offset, int length)
    {
        if (!OperatingSystem.IsLinux() || Volatile.Read(ref _disposed) != 0 || length <= 0) return;
        long page = Environment.SystemPageSize;
        long start = (long)(_base + offset), end = start + length;
        long first = (start + page - 1) / page * page, last = end / page * page;
        if (last > first) _ = Madvise((nint)first, (nuint)(last - first), MadvDontNeed);
    }

    const int MadvDontNeed = 4;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    static extern int Madvise(nint addr, nuint length, int advice);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (_base != null)
        {
            _base = null;
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
        _view.Dispose();
        _mapping.Dispose();
    }

    public override string ToString() => $"{Path} ({Tensors.Count} tensors)";

    internal sealed class MappedWeightTensor(SafeTensorsFile owner, string name, DType dtype, long[] shape, long offset, int length)
        : WeightTensor(name, dtype, shape)
    {
        /// <summary>Absolute position of the first byte in the file (tests compare against raw file bytes).</summary>
        internal long FileOffset => offset;

        public override ReadOnlySpan<byte> Bytes => owner.Slice(offset, length);

        public override void ReleaseResidentPages() => owner.ReleasePages(offset, length);
    }
}

/// <summary>
/// The header parser: a streaming <see cref="Utf8JsonReader"/> over the mapped header (no copy of
/// it), so what is allocated is only what is returned: names, shapes, metadata and tensor objects,
/// a small constant times the header's own size (see docs/decisions.md), never sizes the file claims.
/// </summary>
internal static class SafeTensorsHeader
{
    internal sealed record Result(List<WeightTensor> Tensors, Dictionary<string, WeightTensor> ByName, IReadOnlyDictionary<string, string> Metadata);

    // A valid header nests three deep (object > entry > shape); anything deeper is refused early.
    const int MaxDepth = 8;

    /// <summary>
    /// Torch's own limit on tensor rank; the format sets none, but without one a shape of millions
    /// of zeros would make the reader allocate several times the header's size.
    /// </summary>
    internal const int MaxRank = 64;

    static readonly JsonReaderOptions Options = new()
    {
        MaxDepth = MaxDepth,
        CommentHandling = JsonCommentHandling.Disallow,
        AllowTrailingCommas = false,
        AllowMultipleValues = false,
    };

    static readonly (byte[] Utf8, DType DType)[] DTypeNames =
        Enum.GetValues<DType>().Select(t => (System.Text.Encoding.UTF8.GetBytes(t.ToString()), t)).ToArray();

    internal static Result Parse(SafeTensorsFile owner, ReadOnlySpan<byte> header, long dataStart)
    {
        string file = owner.Path;
        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new SafeTensorsFormatException(file, null, SafeTensorsRule.HeaderNotUtf8Json, "invalid UTF-8");

        // Pass 1: syntax only (allocates nothing), so pass 2 may assume well-formed JSON. It also
        // counts the entries, so the collections are allocated once at their final size.
        int topLevel = 0, metadataKeys = 0;
        try
        {
            var syntax = new Utf8JsonReader(header, Options);
            bool inMetadata = false;
            while (syntax.Read())
            {
                if (syntax.TokenType != JsonTokenType.PropertyName) continue;
                if (syntax.CurrentDepth == 1)
                {
                    topLevel++;
                    inMetadata = syntax.ValueTextEquals("__metadata__"u8);
                }
                else if (inMetadata && syntax.CurrentDepth == 2)
                {
                    metadataKeys++;
                }
            }
        }
        catch (JsonException e)
        {
            throw new SafeTensorsFormatException(file, null, SafeTensorsRule.HeaderNotUtf8Json, e.Message);
        }

        try
        {
            return Interpret(owner, header, dataStart, topLevel, metadataKeys);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // Strings the syntax pass accepts but that cannot be decoded (lone surrogate escapes).
            throw new SafeTensorsFormatException(file, null, SafeTensorsRule.HeaderNotUtf8Json, e.Message);
        }
    }

    static Result Interpret(SafeTensorsFile owner, ReadOnlySpan<byte> header, long dataStart, int topLevel, int metadataKeys)
    {
        string file = owner.Path;
        long dataLength = owner.FileLength - dataStart;
        var r = new Utf8JsonReader(header, Options);
        if (!r.Read())
            throw new SafeTensorsFormatException(file, null, SafeTensorsRule.HeaderNotUtf8Json, "empty header");
        if (r.TokenType != JsonTokenType.StartObject)
            throw new SafeTensorsFormatException(file, null, SafeTensorsRule.HeaderNotObject, $"found {r.TokenType}");

        var tensors = new List<WeightTensor>(topLevel);
        var byName = new Dictionary<string, WeightTensor>(topLevel, StringComparer.Ordinal);
        IReadOnlyDictionary<string, string>? metadata = null;
        var scratch = new long[MaxRank];
        while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
        {
            string name = r.GetString()!;
            if (byName.ContainsKey(name) || (metadata is not null && name == "__metadata__"))
                throw new SafeTensorsFormatException(file, name, SafeTensorsRule.DuplicateName, "the name appears more than once");
            r.Read();
            if (name == "__metadata__")
            {
                metadata = ReadMetadata(file, ref r, metadataKeys);
                continue;
            }
            var (dtype, shape, begin, length) = ReadEntry(file, name, ref r, dataLength, scratch);
            var t = new SafeTensorsFile.MappedWeightTensor(owner, name, dtype, shape, dataStart + begin, length);
            tensors.Add(t);
            byName.Add(name, t);
        }

        CheckOverlaps(file, tensors);
        return new Result(tensors, byName, metadata ?? new Dictionary<string, string>().AsReadOnly());
    }

    static IReadOnlyDictionary<string, string> ReadMetadata(string file, ref Utf8JsonReader r, int capacity)
    {
        const string tensor = "__metadata__";
        if (r.TokenType != JsonTokenType.StartObject)
            throw new SafeTensorsFormatException(file, tensor, SafeTensorsRule.MetadataNotStringMap, $"found {r.TokenType}");
        var map = new Dictionary<string, string>(capacity, StringComparer.Ordinal);
        while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
        {
            string key = r.GetString()!;
            r.Read();
            if (r.TokenType != JsonTokenType.String)
                throw new SafeTensorsFormatException(file, tensor, SafeTensorsRule.MetadataNotStringMap,
                    $"value of '{key}' is {r.TokenType}, not a string");
            if (!map.TryAdd(key, r.GetString()!))
                throw new SafeTensorsFormatException(file, tensor, SafeTensorsRule.MetadataNotStringMap, $"key '{key}' appears more than once");
        }
        return map.AsReadOnly();
    }

    static (DType DType, long[] Shape, long Begin, int Length) ReadEntry(string file, string name, ref Utf8JsonReader r, long dataLength, long[] scratch)
    {
        if (r.TokenType != JsonTokenType.StartObject)
            throw new SafeTensorsFormatException(file, name, SafeTensorsRule.EntryNotObject, $"found {r.TokenType}");

        DType? dtype = null;
        long[]? shape = null;
        long begin = -1, end = -1;
        bool haveOffsets = false;
        while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
        {
            if (r.ValueTextEquals("dtype"u8))
            {
                if (dtype is not null) throw Fields(file, name, "dtype appears more than once");
                r.Read();
                if (r.TokenType != JsonTokenType.String) throw Fields(file, name, $"dtype is {r.TokenType}, not a string");
                dtype = ReadDType(file, name, ref r);
            }
            else if (r.ValueTextEquals("shape"u8))
            {
                if (shape is not null) throw Fields(file, name, "shape appears more than once");
                r.Read();
                if (r.TokenType != JsonTokenType.StartArray) throw Fields(file, name, $"shape is {r.TokenType}, not an array");
                int rank = 0;
                while (r.Read() && r.TokenType != JsonTokenType.EndArray)
                {
                    if (rank == MaxRank)
                        throw new SafeTensorsFormatException(file, name, SafeTensorsRule.BadShape, $"more than {MaxRank} dimensions");
                    scratch[rank] = ReadNonNegative(file, name, ref r, SafeTensorsRule.BadShape, "shape", rank);
                    rank++;
                }
                shape = rank == 0 ? [] : scratch.AsSpan(0, rank).ToArray();
            }
            else if (r.ValueTextEquals("data_offsets"u8))
            {
                if (haveOffsets) throw Fields(file, name, "data_offsets appears more than once");
                haveOffsets = true;
                r.Read();
                if (r.TokenType != JsonTokenType.StartArray) throw Fields(file, name, $"data_offsets is {r.TokenType}, not an array");
                int count = 0;
                while (r.Read() && r.TokenType != JsonTokenType.EndArray)
                {
                    if (count >= 2)
                        throw new SafeTensorsFormatException(file, name, SafeTensorsRule.OffsetsInvalid, "more than two values");
                    long v = ReadNonNegative(file, name, ref r, SafeTensorsRule.OffsetsInvalid, "data_offsets", count);
                    if (count == 0) begin = v; else end = v;
                    count++;
                }
                if (count != 2)
                    throw new SafeTensorsFormatException(file, name, SafeTensorsRule.OffsetsInvalid, $"{count} values instead of two");
            }
            else
            {
                throw Fields(file, name, $"unexpected field '{SafeTensorsFormatException.Printable(r.GetString()!)}'");
            }
        }

        if (dtype is null) throw Fields(file, name, "dtype is missing");
        if (shape is null) throw Fields(file, name, "shape is missing");
        if (!haveOffsets) throw Fields(file, name, "data_offsets is missing");

        long size = DTypes.SizeOf(dtype.Value);
        foreach (var d in shape)
        {
            // Left to right as the reference does: [2^62, 2^62, 0] overflows before the 0.
            if (d != 0 && size > long.MaxValue / d)
                throw new SafeTensorsFormatException(file, name, SafeTensorsRule.SizeOverflow,
                    $"{dtype} [{string.Join(", ", shape)}] needs 2^63 bytes or more");
            size *= d;
        }
        if (begin > end)
            throw new SafeTensorsFormatException(file, name, SafeTensorsRule.OffsetsInvalid, $"begin {begin} > end {end}");
        if (end > dataLength)
            throw new SafeTensorsFormatException(file, name, SafeTensorsRule.OffsetsOutsideData,
                $"[{begin}, {end}] but the data section has {dataLength} bytes");
        if (end - begin != size)
            throw new SafeTensorsFormatException(file, name, SafeTensorsRule.SizeMismatch,
                $"data_offsets [{begin}, {end}] span {end - begin} bytes, {dtype} [{string.Join(", ", shape)}] needs {size}");
        if (size > int.MaxValue)
            throw new SafeTensorsFormatException(file, name, SafeTensorsRule.TensorTooLarge, $"{size} bytes");
        return (dtype.Value, shape, begin, (int)size);
    }

    static DType ReadDType(string file, string name, ref Utf8JsonReader r)
    {
        // Compared as UTF-8 against the known names: exact and case-sensitive like DTypes.TryParse,
        // without allocating a string per tensor.
        foreach (var (utf8, dtype) in DTypeNames)
            if (r.ValueTextEquals(utf8)) return dtype;
        throw new SafeTensorsFormatException(file, name, SafeTensorsRule.UnknownDType,
            $"'{SafeTensorsFormatException.Printable(r.GetString()!)}' is not one of {string.Join(", ", Enum.GetNames<DType>())}");
    }

    static long ReadNonNegative(string file, string name, ref Utf8JsonReader r, SafeTensorsRule rule, string field, int index)
    {
        if (r.TokenType != JsonTokenType.Number)
            throw new SafeTensorsFormatException(file, name, rule, $"{field}[{index}] is {r.TokenType}, not an integer");
        if (r.TryGetInt64(out long v))
        {
            if (v < 0) throw new SafeTensorsFormatException(file, name, rule, $"{field}[{index}] is negative ({v})");
            return v;
        }
        // A JSON integer too large for 64 bits, or a fraction/exponent form.
        var text = System.Text.Encoding.UTF8.GetString(r.ValueSpan.Length > 40 ? r.ValueSpan[..40] : r.ValueSpan);
        throw new SafeTensorsFormatException(file, name, rule, $"{field}[{index}] ({text}) is not an integer in [0, 2^63)");
    }

    static SafeTensorsFormatException Fields(string file, string name, string detail) =>
        new(file, name, SafeTensorsRule.EntryFields, detail);

    static void CheckOverlaps(string file, List<WeightTensor> tensors)
    {
        // Zero-size tensors occupy nothing, so they may sit anywhere (even inside another's range).
        int count = 0;
        foreach (var t in tensors) if (t.ByteLength > 0) count++;
        var begins = new long[count];
        var order = new int[count];
        count = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            if (tensors[i].ByteLength == 0) continue;
            begins[count] = ((SafeTensorsFile.MappedWeightTensor)tensors[i]).FileOffset;
            order[count++] = i;
        }
        Array.Sort(begins, order);
        // Sorted by begin, ranges are disjoint iff each begins at or after the previous one's end.
        for (int k = 1; k < count; k++)
        {
            var prev = tensors[order[k - 1]];
            var cur = tensors[order[k]];
            long prevBegin = begins[k - 1], prevEnd = prevBegin + prev.ByteLength;
            if (begins[k] < prevEnd)
            {
                // Report the later one in header order, so the message does not depend on sort stability.
                var (a, b, aBegin, bBegin) = order[k - 1] < order[k] ? (prev, cur, prevBegin, begins[k]) : (cur, prev, begins[k], prevBegin);
                throw new SafeTensorsFormatException(file, b.Name, SafeTensorsRule.OverlappingRanges,
                    $"bytes [{bBegin}, {bBegin + b.ByteLength}) overlap '{SafeTensorsFormatException.Printable(a.Name)}' [{aBegin}, {aBegin + a.ByteLength}) (file offsets)");
            }
        }
    }
}
