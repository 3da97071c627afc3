namespace LayerFusion.WeightsLoader.SafeTensors;

/// <summary>The validation rules of a safetensors file; each failure names exactly one.</summary>
public enum SafeTensorsRule
{
    /// <summary>The file is shorter than the 8-byte header length prefix.</summary>
    FileTooSmall,
    /// <summary>The header length exceeds the 100 MB limit.</summary>
    HeaderLengthTooLarge,
    /// <summary>The header length points past the end of the file.</summary>
    HeaderLengthBeyondFile,
    /// <summary>The header is not valid UTF-8 or not well-formed JSON (or nests too deeply).</summary>
    HeaderNotUtf8Json,
    /// <summary>The header's JSON value is not an object.</summary>
    HeaderNotObject,
    /// <summary>A tensor entry is not a JSON object.</summary>
    EntryNotObject,
    /// <summary>A tensor entry lacks one of dtype/shape/data_offsets, repeats one, has another field, or a field has the wrong JSON type.</summary>
    EntryFields,
    /// <summary>The dtype is not one of the safetensors dtype names.</summary>
    UnknownDType,
    /// <summary>The shape is not an array of non-negative 64-bit integers.</summary>
    BadShape,
    /// <summary>The tensor's byte size (product of the shape times the dtype size) overflows 64 bits.</summary>
    SizeOverflow,
    /// <summary>data_offsets is not two non-negative integers with begin &lt;= end.</summary>
    OffsetsInvalid,
    /// <summary>data_offsets reaches past the end of the data section.</summary>
    OffsetsOutsideData,
    /// <summary>end - begin differs from the byte size the dtype and shape give.</summary>
    SizeMismatch,
    /// <summary>Two tensors' byte ranges overlap.</summary>
    OverlappingRanges,
    /// <summary>__metadata__ is not a JSON object whose values are strings (or repeats a key).</summary>
    MetadataNotStringMap,
    /// <summary>A tensor name (or __metadata__) appears twice in the header.</summary>
    DuplicateName,
    /// <summary>A tensor is larger than 2 GiB - 1 bytes, more than one span can view.</summary>
    TensorTooLarge,
}

/// <summary>A safetensors file broke one of the format rules; the message names file, tensor and rule.</summary>
public sealed class SafeTensorsFormatException : UserInputException
{
    public SafeTensorsFormatException(string file, string? tensor, SafeTensorsRule rule, string detail)
        : base(Compose(file, tensor, rule, detail))
    {
        File = file;
        Tensor = tensor;
        Rule = rule;
    }

    /// <summary>The path of the offending file.</summary>
    public string File { get; }

    /// <summary>The offending tensor (or __metadata__), when the failure belongs to one.</summary>
    public string? Tensor { get; }

    public SafeTensorsRule Rule { get; }

    public static string Describe(SafeTensorsRule rule) => rule switch
    {
        SafeTensorsRule.FileTooSmall => "file shorter than the 8-byte header length",
        SafeTensorsRule.HeaderLengthTooLarge => "header length above the 100 MB limit",
        SafeTensorsRule.HeaderLengthBeyondFile => "header length beyond the end of the file",
        SafeTensorsRule.HeaderNotUtf8Json => "header is not UTF-8 JSON",
        SafeTensorsRule.HeaderNotObject => "header is not a JSON object",
        SafeTensorsRule.EntryNotObject => "tensor entry is not a JSON object",
        SafeTensorsRule.EntryFields => "tensor entry must have exactly dtype (string), shape (array) and data_offsets (array)",
        SafeTensorsRule.UnknownDType => "unknown dtype",
        SafeTensorsRule.BadShape => "shape entries must be non-negative integers",
        SafeTensorsRule.SizeOverflow => "tensor byte size overflows",
        SafeTensorsRule.OffsetsInvalid => "data_offsets must be two non-negative integers [begin, end] with begin <= end",
        SafeTensorsRule.OffsetsOutsideData => "data_offsets outside the data section",
        SafeTensorsRule.SizeMismatch => "data_offsets span differs from the size dtype and shape give",
        SafeTensorsRule.OverlappingRanges => "tensor byte ranges overlap",
        SafeTensorsRule.MetadataNotStringMap => "__metadata__ must be a JSON object of string values",
        SafeTensorsRule.DuplicateName => "duplicate name in header",
        SafeTensorsRule.TensorTooLarge => "tensor larger than 2 GiB - 1 bytes is not supported",
        _ => rule.ToString(),
    };

    static string Compose(string file, string? tensor, SafeTensorsRule rule, string detail)
    {
        // One line: the CLI prints the message alone, so it must say where and what.
        var where = tensor is null ? $"'{file}'" : $"'{file}', tensor '{Printable(tensor)}'";
        var text = $"invalid safetensors file {where}: {Describe(rule)} ({rule})";
        return detail.Length == 0 ? text : $"{text}: {Printable(detail)}";
    }

    /// <summary>Names come from untrusted headers: keep the message on one line and bounded.</summary>
    internal static string Printable(string s)
    {
        const int max = 200;
        var sb = new System.Text.StringBuilder(Math.Min(s.Length, max) + 8);
        foreach (var c in s)
        {
            if (sb.Length >= max) { sb.Append('…'); break; }
            sb.Append(char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString());
        }
        return sb.ToString();
    }
}
