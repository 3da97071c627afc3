using System.Globalization;
using System.Text;

namespace LayerFusion.Core.Text;

/// <summary>
/// ftfy 6.3's fix_text with its default TextFixerConfig, as openai CLIP's basic_clean calls it, minus
/// fix_encoding (the mojibake detector and its heuristics: restore_byte_a0, replace_lossy_sequences,
/// decode_inconsistent_utf8). What runs, per line (a segment ends after '\n'), repeated until the
/// text stops changing: unescape_html ("auto": off from the first line holding '&lt;' on),
/// fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes, fix_line_breaks,
/// fix_surrogates, remove_terminal_escapes, remove_control_chars, NFC. ftfy has no .NET port; this
/// follows its source (rspeer/python-ftfy v6.3.1) and is checked against it by
/// tests/reference/text/make_normalization_fixture.py.
/// </summary>
public static class FtfyFixes
{
    /// <summary>ftfy's max_decode_length: a line longer than this is fixed in pieces of this many chars.</summary>
    const int MaxDecodeLength = 1_000_000;

    sealed class Tables
    {
        public readonly Dictionary<string, string> Entities = new(StringComparer.Ordinal);
        public readonly Dictionary<char, string> Width = new();

        public Tables()
        {
            // ftfy decodes only the names that end in ';' (and all-caps forms of lowercase ones)
            foreach (var (name, value) in PythonHtml.Html5)
                if (name.EndsWith(';')) Entities["&" + name] = value;
            foreach (var (name, value) in PythonHtml.Parse(TextTables.FtfyUpperEntities)) Entities["&" + name] = value;
            foreach (var entry in TextTables.WidthMap.Split('\u0001', StringSplitOptions.RemoveEmptyEntries))
                Width[entry[0]] = entry[1..];
        }
    }

    static readonly Lazy<Tables> s_tables = new(() => new Tables());

    /// <summary>ftfy.fix_text(text) with the defaults (fix_encoding aside), NFC by <paramref name="nfc"/>
    /// (default: <see cref="UnicodeNfc.Normalize"/>).</summary>
    public static string FixText(string text, Func<string, string>? nfc = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        nfc ??= UnicodeNfc.Normalize;
        var sb = new StringBuilder(text.Length);
        bool unescape = true;
        int pos = 0;
        while (pos < text.Length)
        {
            int nl = text.IndexOf('\n', pos);
            int end = nl < 0 ? text.Length : nl + 1;
            if (end - pos > MaxDecodeLength) end = pos + MaxDecodeLength;
            var segment = text[pos..end];
            // "auto": a line that looks like HTML turns unescaping off for it and every later line
            if (segment.Contains('<')) unescape = false;
            sb.Append(FixSegment(segment, unescape, nfc));
            pos = end;
        }
        return sb.ToString();
    }

    /// <summary>ftfy repeats its fixes until nothing changes; each round at most peels one level of
    /// escaping, so a pathological "&amp;amp;amp;..." would cost rounds x length. Past this many rounds
    /// the text is returned as it stands (a typed prompt needs two or three).</summary>
    internal const int MaxRounds = 256;

    static string FixSegment(string text, bool unescape, Func<string, string> nfc)
    {
        for (int round = 0; ; round++)
        {
            var original = text;
            if (unescape) text = UnescapeHtml(text);
            text = FixC1Controls(text);
            text = Translate(text);
            text = FixLineBreaks(text);
            text = FixSurrogates(text);
            text = RemoveTerminalEscapes(text);
            text = RemoveControlChars(text);
            text = nfc(text);
            if (text == original || round == MaxRounds - 1) return text;
        }
    }

    /// <summary>ftfy's unescape_html: &amp;#?[0-9A-Za-z]{1,24}; matches that are known names, or numeric
    /// references html.unescape decodes completely.</summary>
    internal static string UnescapeHtml(string text)
    {
        if (!text.Contains('&')) return text;
        var entities = s_tables.Value.Entities;
        var sb = new StringBuilder(text.Length);
        int i = 0;
        while (i < text.Length)
        {
            if (text[i] == '&')
            {
                int p = i + 1;
                if (p < text.Length && text[p] == '#') p++;
                int q = p;
                while (q < text.Length && q - p < 24 && char.IsAsciiLetterOrDigit(text[q])) q++;
                if (q > p && q < text.Length && text[q] == ';')
                {
                    var match = text[i..(q + 1)];
                    string replacement = match;
                    if (entities.TryGetValue(match, out var value)) replacement = value;
                    else if (match.StartsWith("&#", StringComparison.Ordinal))
                    {
                        var unescaped = PythonHtml.Unescape(match);
                        if (!unescaped.Contains(';')) replacement = unescaped; // only a reference consumed whole
                    }
                    sb.Append(replacement);
                    i = q + 1;
                    continue;
                }
            }
            sb.Append(text[i++]);
        }
        return sb.ToString();
    }

    /// <summary>fix_c1_controls: U+0080..U+009F read as the Windows-1252 bytes they are (its holes kept).</summary>
    static string FixC1Controls(string text)
    {
        if (!text.Any(c => c is >= '\u0080' and <= '\u009f')) return text;
        var sb = new StringBuilder(text.Length);
        foreach (var c in text) sb.Append(c is >= '\u0080' and <= '\u009f' ? PythonHtml.Unescape($"&#{(int)c};") : c);
        return sb.ToString();
    }

    /// <summary>fix_latin_ligatures, fix_character_width, uncurl_quotes: character-for-string maps, applied in that order.</summary>
    static string Translate(string text)
    {
        var width = s_tables.Value.Width;
        StringBuilder? sb = null;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            string? r = Ligature(c);
            if (r is null && width.TryGetValue(c, out var w)) r = w;
            if (r is not null) r = Uncurl(r);
            else if (Uncurl(c) is var u && u != c) r = u.ToString();
            if (r is null) { sb?.Append(c); continue; }
            sb ??= new StringBuilder(text.Length).Append(text, 0, i);
            sb.Append(r);
        }
        return sb?.ToString() ?? text;
    }

    static char Uncurl(char c) => c switch
    {
        '\u02bc' or (>= '\u2018' and <= '\u201b') => '\'',
        >= '\u201c' and <= '\u201f' => '"',
        _ => c,
    };

    static string Uncurl(string s) => string.Concat(s.Select(Uncurl));

    // ftfy's LIGATURES: Latin typographic ligatures and the legacy digraph code points
    static string? Ligature(char c) => c switch
    {
        '\u0132' => "IJ", '\u0133' => "ij", '\u0149' => "\u02bcn",
        '\u01f1' => "DZ", '\u01f2' => "Dz", '\u01f3' => "dz",
        '\u01c4' => "D\u017d", '\u01c5' => "D\u017e", '\u01c6' => "d\u017e",
        '\u01c7' => "LJ", '\u01c8' => "Lj", '\u01c9' => "lj",
        '\u01ca' => "NJ", '\u01cb' => "Nj", '\u01cc' => "nj",
        '\ufb00' => "ff", '\ufb01' => "fi", '\ufb02' => "fl", '\ufb03' => "ffi", '\ufb04' => "ffl",
        '\ufb05' => "\u017ft", '\ufb06' => "st",
        _ => null,
    };

    static string FixLineBreaks(string text) =>
        text.Replace("\r\n", "\n").Replace('\r', '\n').Replace('\u2028', '\n').Replace('\u2029', '\n').Replace('\u0085', '\n');

    /// <summary>fix_surrogates: pairs are already one code point in .NET strings; a lone surrogate becomes U+FFFD.</summary>
    static string FixSurrogates(string text)
    {
        if (!text.Any(char.IsSurrogate)) return text;
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) sb.Append(text, i++, 2);
            else sb.Append(char.IsSurrogate(text[i]) ? '\uFFFD' : text[i]);
        }
        return sb.ToString();
    }

    /// <summary>remove_terminal_escapes: ESC [ (digits or ;)* letter, digits being Unicode Nd as in Python's \d.</summary>
    static string RemoveTerminalEscapes(string text)
    {
        int esc = text.IndexOf('\u001b');
        if (esc < 0) return text;
        var sb = new StringBuilder(text.Length);
        int i = 0;
        while (i < text.Length)
        {
            if (text[i] == '\u001b' && i + 1 < text.Length && text[i + 1] == '[')
            {
                int j = i + 2;
                while (j < text.Length)
                {
                    if (text[j] == ';') { j++; continue; }
                    if (!Rune.TryGetRuneAt(text, j, out var r) || Rune.GetUnicodeCategory(r) != UnicodeCategory.DecimalDigitNumber) break;
                    j += r.Utf16SequenceLength;
                }
                if (j < text.Length && char.IsAsciiLetter(text[j])) { i = j + 1; continue; }
            }
            sb.Append(text[i++]);
        }
        return sb.ToString();
    }

    /// <summary>remove_control_chars: C0 controls but \t \n \f \r, DEL, U+206A..U+206F, U+FEFF, U+FFF9..U+FFFC.</summary>
    internal static bool IsRemovedControl(char c) => c is (>= '\u0000' and <= '\u0008') or '\u000b' or (>= '\u000e' and <= '\u001f')
        or '\u007f' or (>= '\u206a' and <= '\u206f') or '\ufeff' or (>= '\ufff9' and <= '\ufffc');

    static string RemoveControlChars(string text) => text.Any(IsRemovedControl) ? string.Concat(text.Where(c => !IsRemovedControl(c))) : text;
}
