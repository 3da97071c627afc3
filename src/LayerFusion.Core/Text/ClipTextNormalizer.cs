using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace LayerFusion.Core.Text;

/// <summary>
/// CLIP's text cleanup before BPE (openai/CLIP simple_tokenizer.py: basic_clean, whitespace_clean,
/// lower): ftfy.fix_text, html.unescape twice, strip, runs of whitespace to one space, lowercase.
/// ftfy is not available to .NET; the subset of its default fixes that can change a typed prompt is
/// implemented here (curly quotes, fullwidth ASCII, Latin ligatures); its NFC step, the rest of
/// its width map and its mojibake repair are not (see docs/decisions.md).
/// </summary>
public sealed class ClipTextNormalizer : Normalizer
{
    public static ClipTextNormalizer Instance { get; } = new();

    public override string Normalize(string original) => Clean(original);

    public override string Normalize(ReadOnlySpan<char> original) => Clean(original.ToString());

    public static string Clean(string text)
    {
        text = FixText(text);
        // html.unescape twice: prompts scraped from the web are often double-escaped ("&amp;amp;").
        text = WebUtility.HtmlDecode(WebUtility.HtmlDecode(text));
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

    /// <summary>The ftfy.fix_text defaults that matter for typed prompts.</summary>
    internal static string FixText(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (var c in text)
        {
            switch (c)
            {
                // ftfy uncurl_quotes: [\u02bc\u2018-\u201b] -> ', [\u201c-\u201f] -> "
                case '\u02bc' or (>= '\u2018' and <= '\u201b'): sb.Append('\''); break;
                case >= '\u201c' and <= '\u201f': sb.Append('"'); break;
                // ftfy fix_character_width: fullwidth ASCII to ASCII, the ideographic space to a space.
                case >= '\uff01' and <= '\uff5e': sb.Append((char)(c - 0xff01 + 0x21)); break;
                case '\u3000': sb.Append(' '); break;
                default:
                    if (LatinLigature(c) is { } expanded) sb.Append(expanded);
                    else sb.Append(c);
                    break;
            }
        }
        // ftfy's NFC step is not done: with InvariantGlobalization (this project's setting) .NET has
        // no Unicode normalization data (see docs/decisions.md).
        return sb.ToString();
    }

    // ftfy fix_latin_ligatures: the ligatures U+FB00..U+FB06 (the ones Unicode decomposes by NFKC).
    static string? LatinLigature(char c) => c switch
    {
        '\ufb00' => "ff",
        '\ufb01' => "fi",
        '\ufb02' => "fl",
        '\ufb03' => "ffi",
        '\ufb04' => "ffl",
        '\ufb05' => "st",
        '\ufb06' => "st",
        _ => null,
    };

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
