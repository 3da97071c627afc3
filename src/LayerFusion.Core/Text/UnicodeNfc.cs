using System.Text;

namespace LayerFusion.Core.Text;

/// <summary>
/// Unicode NFC (UAX #15: full canonical decomposition, canonical ordering, canonical composition)
/// from the data in <see cref="TextTables"/>, i.e. exactly Python's unicodedata.normalize("NFC") of
/// the reference tokenizer (Unicode <see cref="TextTables.UnicodeVersion"/>). Hand-written because
/// the project runs with InvariantGlobalization, where string.Normalize does nothing; see
/// <see cref="IcuNfc"/> for the machine's ICU, which tests compare this against.
/// </summary>
public static class UnicodeNfc
{
    public static string UnicodeVersion => TextTables.UnicodeVersion;

    const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    sealed class Data
    {
        public readonly Dictionary<int, (int First, int Second)> Decomposition = new();
        public readonly Dictionary<long, int> Composition = new();
        public readonly int[] CccStart, CccEnd, CccValue;

        public Data()
        {
            var d = TextTables.Decompositions;
            var excluded = new HashSet<int>(TextTables.CompositionExclusions.ToArray());
            for (int i = 0; i < d.Length; i += 3)
            {
                Decomposition[d[i]] = (d[i + 1], d[i + 2]);
                if (d[i + 2] >= 0 && !excluded.Contains(d[i])) Composition[Key(d[i + 1], d[i + 2])] = d[i];
            }
            var c = TextTables.CombiningClassRanges;
            int n = c.Length / 3;
            CccStart = new int[n]; CccEnd = new int[n]; CccValue = new int[n];
            for (int i = 0; i < n; i++) { CccStart[i] = c[3 * i]; CccEnd[i] = c[3 * i + 1]; CccValue[i] = c[3 * i + 2]; }
        }
    }

    static readonly Lazy<Data> s_data = new(() => new Data());

    static long Key(int first, int second) => ((long)first << 21) | (uint)second;

    /// <summary>The canonical combining class of <paramref name="cp"/> (0 for starters).</summary>
    public static int CombiningClass(int cp)
    {
        if (cp < 0x300) return 0;
        var d = s_data.Value;
        int i = Array.BinarySearch(d.CccStart, cp);
        if (i < 0) i = ~i - 1;
        return i >= 0 && cp <= d.CccEnd[i] ? d.CccValue[i] : 0;
    }

    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        // below U+0300 nothing decomposes to something else or combines (the first combining mark is U+0300)
        bool simple = true;
        foreach (var ch in text) if (ch >= 0x300) { simple = false; break; }
        if (simple) return text;

        var data = s_data.Value;
        var cps = new List<int>(text.Length + 8);
        for (int i = 0; i < text.Length; i++)
        {
            int cp = text[i];
            // a lone surrogate stays itself (a starter that composes with nothing)
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                cp = char.ConvertToUtf32(text[i], text[++i]);
            Decompose(cp, data, cps);
        }
        CanonicalOrder(cps);
        Compose(cps, data);
        var sb = new StringBuilder(cps.Count);
        foreach (var cp in cps)
        {
            if (cp is >= 0xD800 and <= 0xDFFF) sb.Append((char)cp);
            else sb.Append(new Rune(cp).ToString());
        }
        return sb.ToString();
    }

    static void Decompose(int cp, Data data, List<int> output)
    {
        if (cp is >= SBase and < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) output.Add(TBase + s % TCount);
            return;
        }
        if (data.Decomposition.TryGetValue(cp, out var d))
        {
            Decompose(d.First, data, output);
            if (d.Second >= 0) Decompose(d.Second, data, output);
            return;
        }
        output.Add(cp);
    }

    /// <summary>Stable sort of every run of non-starters by combining class.</summary>
    static void CanonicalOrder(List<int> cps)
    {
        for (int i = 1; i < cps.Count; i++)
        {
            int cc = CombiningClass(cps[i]);
            if (cc == 0) continue;
            int j = i;
            while (j > 0 && CombiningClass(cps[j - 1]) > cc)
            {
                (cps[j - 1], cps[j]) = (cps[j], cps[j - 1]);
                j--;
            }
        }
    }

    static int ComposePair(int first, int second, Data data)
    {
        if (first is >= LBase and < LBase + LCount && second is >= VBase and < VBase + VCount)
            return SBase + ((first - LBase) * VCount + (second - VBase)) * TCount;
        if (first is >= SBase and < SBase + SCount && (first - SBase) % TCount == 0 && second is > TBase and < TBase + TCount)
            return first + (second - TBase);
        return data.Composition.TryGetValue(Key(first, second), out var c) ? c : -1;
    }

    /// <summary>Canonical composition: each character joins the last starter unless a character of equal or
    /// higher class (or a starter) stands between them.</summary>
    static void Compose(List<int> cps, Data data)
    {
        if (cps.Count == 0) return;
        int starterPos = 0, starter = cps[0];
        int lastClass = CombiningClass(starter);
        if (lastClass != 0) lastClass = 256; // no starter yet: nothing may compose
        int write = 1;
        for (int read = 1; read < cps.Count; read++)
        {
            int ch = cps[read], cc = CombiningClass(ch);
            int composite = ComposePair(starter, ch, data);
            if (composite >= 0 && (lastClass < cc || lastClass == 0))
            {
                cps[starterPos] = composite;
                starter = composite;
                continue;
            }
            if (cc == 0)
            {
                starterPos = write;
                starter = ch;
            }
            lastClass = cc;
            cps[write++] = ch;
        }
        cps.RemoveRange(write, cps.Count - write);
    }
}
