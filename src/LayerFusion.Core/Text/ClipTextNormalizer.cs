using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace LayerFusion.Core.Text;

/// <summary>
/// CLIP's text cleanup before BPE (openai/CLIP simple_tokenizer.py: basic_clean, whitespace_clean,
/// lower): ftfy.fix_text (<see cref="FtfyFixes"/>: all of its default fixes but the mojibake
/// repair, NFC from carried Unicode data), Python's html.unescape twice (<see cref="PythonHtml"/>,
/// HTML5 names), strip, runs of whitespace to one space, Python's lowercase.
/// </summary>
public sealed class ClipTextNormalizer : Normalizer
{
    readonly Func<string, string>? _nfc;

    /// <param name="nfc">The NFC step; null = <see cref="UnicodeNfc.Normalize"/> (the reference's Unicode data).</param>
    public ClipTextNormalizer(Func<string, string>? nfc = null) => _nfc = nfc;

    public static ClipTextNormalizer Instance { get; } = new();

    public override string Normalize(string original) => Clean(original, _nfc);

    public override string Normalize(ReadOnlySpan<char> original) => Clean(original.ToString(), _nfc);

    public static string Clean(string text) => Clean(text, null);

    public static string Clean(string text, Func<string, string>? nfc)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = FtfyFixes.FixText(text, nfc);
        // html.unescape twice: prompts scraped from the web are often double-escaped ("&amp;amp;").
        text = PythonHtml.Unescape(PythonHtml.Unescape(text));
        return PythonLower(CollapseWhitespace(text));
    }

    /// <summary>Python's str.lower: per code point lowercase, plus the two context rules a prompt can
    /// hit (final sigma, and U+0130 to "i" + combining dot), which .NET's ToLowerInvariant lacks.</summary>
    public static string PythonLower(string text)
    {
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length;)
        {
            var r = Rune.GetRuneAt(text, i);
            if (r.Value == 0x03a3) sb.Append(IsFinalSigma(text, i) ? '\u03c2' : '\u03c3');
            else if (r.Value == 0x0130) sb.Append("i\u0307");
            else sb.Append(Rune.ToLowerInvariant(r).ToString());
            i += r.Utf16SequenceLength;
        }
        return sb.ToString();
    }

    // Unicode Final_Sigma: a cased letter before (skipping case-ignorables), none after.
    static bool IsFinalSigma(string s, int index)
    {
        int j = index;
        bool casedBefore = false;
        while (j > 0)
        {
            var r = Rune.GetRuneAt(s, char.IsLowSurrogate(s[j - 1]) && j >= 2 ? j - 2 : j - 1);
            j -= r.Utf16SequenceLength;
            if (IsCaseIgnorable(r)) continue;
            casedBefore = IsCased(r);
            break;
        }
        if (!casedBefore) return false;
        for (int k = index + 1; k < s.Length;)
        {
            var r = Rune.GetRuneAt(s, k);
            k += r.Utf16SequenceLength;
            if (IsCaseIgnorable(r)) continue;
            return !IsCased(r);
        }
        return true;
    }

    static bool IsCased(Rune r) => Rune.GetUnicodeCategory(r) is UnicodeCategory.UppercaseLetter
        or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter;

    static bool IsCaseIgnorable(Rune r) => r.Value is '\'' or '.' or ':' or 0x00b7 or 0x2019
        || Rune.GetUnicodeCategory(r) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark
            or UnicodeCategory.Format or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol;

    /// <summary>Unicode White_Space: what `\s` matches in CLIP's regexes (Python's `regex` module).</summary>
    public static bool IsRegexSpace(int c) => c switch
    {
        >= 0x09 and <= 0x0d => true,
        0x20 or 0x85 or 0xa0 or 0x1680 or 0x2028 or 0x2029 or 0x202f or 0x205f or 0x3000 => true,
        >= 0x2000 and <= 0x200a => true,
        _ => false,
    };

    /// <summary>Python's str.isspace (what str.strip removes): White_Space plus U+001C..U+001F.</summary>
    public static bool IsPythonSpace(int c) => IsRegexSpace(c) || c is >= 0x1c and <= 0x1f;

    /// <summary>basic_clean's strip, then whitespace_clean: re.sub(r'\s+', ' ', text).strip().</summary>
    static string CollapseWhitespace(string text)
    {
        int start = 0, end = text.Length;
        while (start < end && IsPythonSpace(text[start])) start++;
        while (end > start && IsPythonSpace(text[end - 1])) end--;
        var sb = new StringBuilder(end - start);
        bool inSpace = false;
        for (int i = start; i < end; i++)
        {
            var c = text[i];
            if (IsRegexSpace(c))
            {
                if (!inSpace) sb.Append(' ');
                inSpace = true;
                continue;
            }
            inSpace = false;
            sb.Append(c);
        }
        return sb.ToString();
    }
}
