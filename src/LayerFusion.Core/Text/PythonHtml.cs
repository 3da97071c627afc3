using System.Text;

namespace LayerFusion.Core.Text;

/// <summary>
/// Python 3's html.unescape, which openai CLIP's basic_clean applies twice: HTML5's named references
/// (with the longest-prefix rule for names written without ';'), numeric references with the HTML5
/// parser's repairs (0x80..0x9F as Windows-1252, 0 / surrogates / beyond U+10FFFF to U+FFFD,
/// noncharacters and most C0/C1 controls to nothing). Hand-written because .NET's
/// WebUtility.HtmlDecode knows only HTML4's 253 names and decodes &amp;#150; as U+0096.
/// Lengths are counted in code points, as Python's str does.
/// </summary>
public static class PythonHtml
{
    sealed class Tables
    {
        public readonly Dictionary<string, string> Html5 = Parse(TextTables.Html5Entities);
        public readonly Dictionary<int, string> InvalidCharrefs = new();
        public readonly HashSet<int> InvalidCodepoints = new(TextTables.InvalidCodepoints.ToArray());

        public Tables()
        {
            var c = TextTables.InvalidCharrefs;
            for (int i = 0; i < c.Length; i += 2) InvalidCharrefs[c[i]] = char.ConvertFromUtf32(c[i + 1]);
        }
    }

    static readonly Lazy<Tables> s_tables = new(() => new Tables());

    internal static Dictionary<string, string> Html5 => s_tables.Value.Html5;

    /// <summary>Parses a TextTables entity table: name U+0000 value U+0001 ...</summary>
    internal static Dictionary<string, string> Parse(string table)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in table.Split('\u0001', StringSplitOptions.RemoveEmptyEntries))
        {
            int sep = entry.IndexOf('\u0000');
            d[entry[..sep]] = entry[(sep + 1)..];
        }
        return d;
    }

    public static string Unescape(string s)
    {
        ArgumentNullException.ThrowIfNull(s);
        if (!s.Contains('&')) return s;
        var sb = new StringBuilder(s.Length);
        int i = 0;
        while (i < s.Length)
        {
            if (s[i] == '&' && TryReference(s, i + 1, out int end, out string replacement))
            {
                sb.Append(replacement);
                i = end;
            }
            else sb.Append(s[i++]);
        }
        return sb.ToString();
    }

    /// <summary>One match of &amp;(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f &lt;&amp;#;]{1,32};?) starting after the '&amp;'.</summary>
    static bool TryReference(string s, int start, out int end, out string replacement)
    {
        end = start;
        replacement = "";
        if (start >= s.Length) return false;
        if (s[start] == '#')
        {
            int p = start + 1;
            bool hex = p < s.Length && s[p] is 'x' or 'X';
            // "#x" must be followed by a hex digit; "#" by a decimal digit
            int digits = hex ? p + 1 : p;
            int q = digits;
            while (q < s.Length && (hex ? char.IsAsciiHexDigit(s[q]) : char.IsAsciiDigit(s[q]))) q++;
            if (q == digits) return false;
            long num = 0;
            for (int k = digits; k < q; k++)
            {
                num = num * (hex ? 16 : 10) + HexValue(s[k]);
                if (num > 0x10FFFF) num = 0x110000; // saturate: any larger number decodes the same way
            }
            end = q < s.Length && s[q] == ';' ? q + 1 : q;
            replacement = Numeric((int)num);
            return true;
        }
        // a name: 1..32 code points outside \t \n \f space < & # ;
        int e = start, count = 0;
        while (e < s.Length && count < 32 && s[e] is not ('\t' or '\n' or '\f' or ' ' or '<' or '&' or '#' or ';'))
        {
            e += char.IsHighSurrogate(s[e]) && e + 1 < s.Length && char.IsLowSurrogate(s[e + 1]) ? 2 : 1;
            count++;
        }
        if (count == 0) return false;
        if (e < s.Length && s[e] == ';') e++;
        end = e;
        string name = s[start..e];
        var html5 = s_tables.Value.Html5;
        if (html5.TryGetValue(name, out var value)) { replacement = value; return true; }
        // the longest prefix of at least two code points that is a (semicolon-less) name
        var starts = CodePointStarts(name);
        for (int x = starts.Count - 2; x >= 2; x--) // starts has one entry per code point plus the end
        {
            if (html5.TryGetValue(name[..starts[x]], out value))
            {
                replacement = value + name[starts[x]..];
                return true;
            }
        }
        replacement = "&" + name;
        return true;
    }

    static List<int> CodePointStarts(string s)
    {
        var r = new List<int>(s.Length + 1);
        for (int i = 0; i < s.Length; i += char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? 2 : 1)
            r.Add(i);
        r.Add(s.Length);
        return r;
    }

    static int HexValue(char c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;

    static string Numeric(int num)
    {
        var t = s_tables.Value;
        if (t.InvalidCharrefs.TryGetValue(num, out var special)) return special;
        if (num is >= 0xD800 and <= 0xDFFF || num > 0x10FFFF) return "\uFFFD";
        if (t.InvalidCodepoints.Contains(num)) return "";
        return char.ConvertFromUtf32(num);
    }
}
