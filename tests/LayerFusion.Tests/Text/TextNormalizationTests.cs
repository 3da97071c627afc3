using System.Text;
using System.Text.Json;
using LayerFusion.Core.Text;

namespace LayerFusion.Tests.Text;

/// <summary>
/// CLIP's text cleanup against its reference (tests/reference/text/make_normalization_fixture.py:
/// openai CLIP's simple_tokenizer with real ftfy 6.3.1, Python's html.unescape and unicodedata):
/// ftfy.fix_text, html.unescape, NFC by the carried tables and by the machine's ICU, and the ids.
/// </summary>
public sealed class TextNormalizationTests : IDisposable
{
    readonly string _tmp = Directory.CreateTempSubdirectory("lf-clip-norm-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    sealed record Prompt(string Text, string Ftfy, string Cleaned, int[] BpeIds);

    sealed record Fixture(string UnicodeVersion, List<Prompt> Clip, List<(string In, string Out)> FtfyFuzz,
        List<(string In, string Out)> Html, List<(string In, string Out)> Nfc);

    static readonly Lazy<Fixture> s_fixture = new(() =>
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(TextTestFiles.Fixture("normalization_v1.json")));
        var root = doc.RootElement;
        // strings are stored as UTF-16 code units so that lone surrogates survive JSON
        static string S(JsonElement e) => new(e.EnumerateArray().Select(u => (char)u.GetInt32()).ToArray());
        static List<(string, string)> Pairs(JsonElement e) =>
            e.EnumerateArray().Select(c => (S(c.GetProperty("input")), S(c.GetProperty("output")))).ToList();
        return new Fixture(
            root.GetProperty("unicode_version").GetString()!,
            root.GetProperty("clip").EnumerateArray().Select(c => new Prompt(S(c.GetProperty("prompt")), S(c.GetProperty("ftfy")),
                S(c.GetProperty("cleaned")), c.GetProperty("bpe_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray())).ToList(),
            Pairs(root.GetProperty("ftfy_fuzz")), Pairs(root.GetProperty("html")), Pairs(root.GetProperty("nfc")));
    });

    static Fixture Data => s_fixture.Value;

    static string Show(string s) => string.Concat(s.Select(c => c is >= ' ' and < '\u007f' ? c.ToString() : $"\\u{(int)c:x4}"));

    static IcuNfc Icu()
    {
        var icu = IcuNfc.TryLoad();
        if (icu is not null) return icu;
        const string missing = "no ICU library (libicuuc) could be loaded; install libicu (Debian: apt-get install libicu72) to run this check";
        if (Environment.GetEnvironmentVariable("CI") == "true") Assert.Fail(missing);
        Assert.Skip(missing);
        return null!;
    }

    [Fact]
    public void TheTablesAreTheFixturesUnicodeVersion() => Assert.Equal(Data.UnicodeVersion, UnicodeNfc.UnicodeVersion);

    [Fact]
    public void HtmlUnescapeMatchesPython()
    {
        Assert.True(Data.Html.Count > 400);
        var failures = Data.Html.Where(c => PythonHtml.Unescape(c.In) != c.Out)
            .Select(c => $"'{Show(c.In)}': got '{Show(PythonHtml.Unescape(c.In))}', expected '{Show(c.Out)}'").ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public void NfcTablesMatchPythonsUnicodedata()
    {
        Assert.True(Data.Nfc.Count > 4000);
        var failures = Data.Nfc.Where(c => UnicodeNfc.Normalize(c.In) != c.Out)
            .Select(c => $"'{Show(c.In)}': got '{Show(UnicodeNfc.Normalize(c.In))}', expected '{Show(c.Out)}'").ToList();
        Assert.True(failures.Count == 0, $"{failures.Count} differ:\n" + string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public void IcuNfcMatchesPythonsUnicodedata()
    {
        var icu = Icu();
        // NFC is stable across Unicode versions for assigned characters, so ICU's newer data agrees on these
        var failures = Data.Nfc.Where(c => icu.Normalize(c.In) != c.Out)
            .Select(c => $"'{Show(c.In)}': ICU ({icu.Description}) gives '{Show(icu.Normalize(c.In))}', expected '{Show(c.Out)}'").ToList();
        Assert.True(failures.Count == 0, $"{failures.Count} differ:\n" + string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public void TablesAndIcuAgreeOnRandomMarkSoup()
    {
        var icu = Icu();
        // fresh random strings from the fixture's own characters: composites, bases, marks, jamo, in any order
        var alphabet = Data.Nfc.SelectMany(c => c.In.EnumerateRunes()).Select(r => r.Value).Distinct().ToArray();
        var rng = new Random(1211);
        for (int n = 0; n < 3000; n++)
        {
            var sb = new StringBuilder();
            int len = rng.Next(1, 9);
            for (int k = 0; k < len; k++) sb.Append(char.ConvertFromUtf32(alphabet[rng.Next(alphabet.Length)]));
            var s = sb.ToString();
            Assert.True(UnicodeNfc.Normalize(s) == icu.Normalize(s), $"'{Show(s)}': tables '{Show(UnicodeNfc.Normalize(s))}', ICU '{Show(icu.Normalize(s))}'");
        }
    }

    [Fact]
    public void FtfyFixTextMatchesFtfy()
    {
        var failures = Data.Clip.Where(p => FtfyFixes.FixText(p.Text) != p.Ftfy)
            .Select(p => $"'{Show(p.Text)}': got '{Show(FtfyFixes.FixText(p.Text))}', ftfy gives '{Show(p.Ftfy)}'").ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void FtfyFixTextMatchesFtfyOnRandomPieceSoup()
    {
        Assert.True(Data.FtfyFuzz.Count >= 500);
        var failures = Data.FtfyFuzz.Where(c => FtfyFixes.FixText(c.In) != c.Out)
            .Select(c => $"'{Show(c.In)}': got '{Show(FtfyFixes.FixText(c.In))}', ftfy gives '{Show(c.Out)}'").ToList();
        Assert.True(failures.Count == 0, $"{failures.Count} differ:\n" + string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public void CleanMatchesClipsBasicCleanWithEitherNfc()
    {
        var icu = IcuNfc.TryLoad();
        var failures = new List<string>();
        foreach (var p in Data.Clip)
        {
            var got = ClipTextNormalizer.Clean(p.Text);
            if (got != p.Cleaned) failures.Add($"'{Show(p.Text)}': got '{Show(got)}', CLIP gives '{Show(p.Cleaned)}'");
            if (icu is not null && ClipTextNormalizer.Clean(p.Text, icu.Normalize) != p.Cleaned) failures.Add($"'{Show(p.Text)}': differs with ICU's NFC");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [InlineData("&#150;", "\u2013")]
    [InlineData("&#128; &#x9F;", "\u20ac \u00ff")] // Ÿ, lowercased
    [InlineData("a&#0;b &#x110000; &#xD800;", "a\ufffdb \ufffd \ufffd")]
    [InlineData("a\u000bb\ufeffc", "abc")]
    [InlineData("e\u0301", "\u00e9")]
    [InlineData("&check; &hellip;", "\u2713 \u2026")]
    [InlineData("&SZLIG;", "ss")]
    [InlineData("\ufb05", "\u017ft")]
    public void TheIssuesExamples(string input, string expected) => Assert.Equal(expected, ClipTextNormalizer.Clean(input));

    [Fact]
    public void NestedEscapingPeelsOneLevelPerRoundUpToTheCap()
    {
        string Nested(int levels) => "&" + string.Concat(Enumerable.Repeat("amp;", levels)) + "lt;";
        // within the cap it is ftfy's fixed point: everything decoded
        Assert.Equal("<", ClipTextNormalizer.Clean(Nested(40)));
        // past it the rounds stop (then basic_clean's two html.unescape passes peel two more levels)
        int n = FtfyFixes.MaxRounds + 44;
        Assert.Equal(Nested(n - FtfyFixes.MaxRounds - 2), ClipTextNormalizer.Clean(Nested(n)));
    }

    [Fact]
    public void RealVocabularyIdsMatchOpenAiClipWithFtfy()
    {
        var bpe = TextTestFiles.ClipBpeFile();
        if (bpe is null)
        {
            const string missing = "shared/reference/clip/bpe_simple_vocab_16e6.txt.gz not found beside or above the repository";
            if (Environment.GetEnvironmentVariable("LAYERFUSION_NO_SHARED") == "1") Assert.Skip(missing + " (LAYERFUSION_NO_SHARED=1)");
            Assert.Fail(missing + " (set LAYERFUSION_NO_SHARED=1 to skip these tests)");
        }
        TextTestFiles.WriteClipTokenizerFolder(bpe!, Path.Combine(_tmp, "tokenizer"), "<|endoftext|>");
        var tok = ClipTokenizer.FromDirectory(Path.Combine(_tmp, "tokenizer"));
        var failures = new List<string>();
        foreach (var p in Data.Clip)
        {
            var ids = tok.EncodeBpe(p.Text).ToArray();
            if (!ids.SequenceEqual(p.BpeIds)) failures.Add($"'{Show(p.Text)}': [{string.Join(",", ids)}] expected [{string.Join(",", p.BpeIds)}]");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
