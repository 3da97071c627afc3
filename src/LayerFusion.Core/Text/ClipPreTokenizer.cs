using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace LayerFusion.Core.Text;

/// <summary>
/// CLIP's pre-tokenizer: re.findall of
/// <c>&lt;\|startoftext\|&gt;|&lt;\|endoftext\|&gt;|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+</c>.
/// Written as a scanner over code points rather than a .NET <see cref="System.Text.RegularExpressions.Regex"/>
/// because .NET regexes see UTF-16 code units: a letter or digit outside the BMP (𝐀, 𝟏, CJK
/// extension B) is two surrogates there and would fall into the punctuation class.
/// </summary>
public sealed class ClipPreTokenizer : PreTokenizer
{
    static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];
    readonly string[] _specialTokens;

    public ClipPreTokenizer(IEnumerable<string> specialTokens)
    {
        // Longest first so one special token that prefixes another cannot shadow it.
        _specialTokens = specialTokens.OrderByDescending(t => t.Length).ToArray();
    }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text);

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text.ToString());

    List<(int Offset, int Length)> Split(string text)
    {
        var result = new List<(int, int)>();
        int i = 0;
        while (i < text.Length)
        {
            int len = MatchAt(text, i);
            if (len > 0)
            {
                result.Add((i, len));
                i += len;
            }
            else i += Rune.GetRuneAt(text, i).Utf16SequenceLength;  // whitespace: no alternative matches
        }
        return result;
    }

    int MatchAt(string s, int i)
    {
        var rest = s.AsSpan(i);
        foreach (var special in _specialTokens)
            if (rest.StartsWith(special, StringComparison.Ordinal)) return special.Length;
        foreach (var c in Contractions)
            if (rest.StartsWith(c, StringComparison.Ordinal)) return c.Length;
        var kind = Classify(s, i, out int width);
        switch (kind)
        {
            case CharKind.Letter:
            {
                int j = i + width;
                while (j < s.Length && Classify(s, j, out int w) == CharKind.Letter) j += w;
                return j - i;
            }
            case CharKind.Number:
                return width;
            case CharKind.Other:
            {
                int j = i + width;
                while (j < s.Length && Classify(s, j, out int w) == CharKind.Other) j += w;
                return j - i;
            }
            default:
                return 0;
        }
    }

    enum CharKind { Letter, Number, Space, Other }

    static CharKind Classify(string s, int i, out int width)
    {
        // A lone surrogate is not a letter, number or space: the punctuation class, as in Python.
        if (!Rune.TryGetRuneAt(s, i, out var r))
        {
            width = 1;
            return CharKind.Other;
        }
        width = r.Utf16SequenceLength;
        if (ClipTextNormalizer.IsRegexSpace(r.Value)) return CharKind.Space;
        return Rune.GetUnicodeCategory(r) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CharKind.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CharKind.Number,
            _ => CharKind.Other,
        };
    }
}
