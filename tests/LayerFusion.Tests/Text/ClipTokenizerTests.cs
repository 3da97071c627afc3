using System.Text.Json;
using LayerFusion.Core.Text;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Tests.Text;

/// <summary>Token ids with the real CLIP vocabulary equal openai/CLIP's reference tokenizer's
/// (tests/reference/text/make_tokenizer_fixture.py wrote the fixture).</summary>
public sealed class ClipTokenizerTests : IDisposable
{
    readonly string _tmp = Directory.CreateTempSubdirectory("lf-clip-tok-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    sealed record Case(string Prompt, int[] BpeIds, int[] Tokenizer, int[] Tokenizer2, bool Truncated, bool FtfyFixedByHand);

    static List<Case> LoadCases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(TextTestFiles.Fixture("tokenizer_ids.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("prompt").GetString()!,
            c.GetProperty("bpe_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            c.GetProperty("tokenizer").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            c.GetProperty("tokenizer_2").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            c.GetProperty("truncated").GetBoolean(),
            c.GetProperty("ftfy_fixed_by_hand").GetBoolean())).ToList();
    }

    (ClipTokenizer Tok1, ClipTokenizer Tok2) RealTokenizers()
    {
        var bpe = TextTestFiles.ClipBpeFile();
        TextTestFiles.WriteClipTokenizerFolder(bpe, Path.Combine(_tmp, "tokenizer"), "<|endoftext|>");
        TextTestFiles.WriteClipTokenizerFolder(bpe, Path.Combine(_tmp, "tokenizer_2"), "!");
        return (ClipTokenizer.FromDirectory(Path.Combine(_tmp, "tokenizer")),
                ClipTokenizer.FromDirectory(Path.Combine(_tmp, "tokenizer_2")));
    }

    [Fact]
    public void RealVocabulary_MatchesOpenAiReferenceIds()
    {
        var (tok1, tok2) = RealTokenizers();
        var cases = LoadCases();
        Assert.True(cases.Count >= 30, $"fixture has only {cases.Count} prompts");
        var failures = new List<string>();
        foreach (var c in cases)
        {
            var bpe = tok1.EncodeBpe(c.Prompt).ToArray();
            if (!bpe.SequenceEqual(c.BpeIds))
                failures.Add($"'{c.Prompt}': bpe [{string.Join(",", bpe)}] expected [{string.Join(",", c.BpeIds)}]");
            var t1 = tok1.Tokenize(c.Prompt);
            var t2 = tok2.Tokenize(c.Prompt);
            if (!t1.Ids.SequenceEqual(c.Tokenizer)) failures.Add($"'{c.Prompt}': tokenizer ids differ");
            if (!t2.Ids.SequenceEqual(c.Tokenizer2)) failures.Add($"'{c.Prompt}': tokenizer_2 ids differ");
            if (t1.Truncated != c.Truncated || t2.Truncated != c.Truncated) failures.Add($"'{c.Prompt}': truncation flag");
            if ((t1.Warning is not null) != c.Truncated) failures.Add($"'{c.Prompt}': warning presence");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void SpecialIdsAndPadding_FollowTheFolderConfig()
    {
        var (tok1, tok2) = RealTokenizers();
        Assert.Equal(49406, tok1.BosId);
        Assert.Equal(49407, tok1.EosId);
        Assert.Equal(49407, tok1.PadId);
        Assert.Equal(0, tok2.PadId);
        Assert.Equal(77, tok1.MaxLength);
        Assert.Equal(49408, tok1.VocabularySize);
        var t = tok2.Tokenize("a photo of a cat");
        Assert.Equal([49406, 320, 1125, 539, 320, 2368, 49407], t.Ids[..7]);
        Assert.All(t.Ids[7..], id => Assert.Equal(0, id));
        Assert.False(t.Truncated);
        Assert.Null(t.Warning);
    }

    [Fact]
    public void LongPrompt_IsTruncatedTo77_WithWarningNamingTheDroppedText()
    {
        var (tok1, _) = RealTokenizers();
        var words = Enumerable.Range(0, 80).Select(i => i % 2 == 0 ? "cat" : "dog").ToList();
        words.Add("zebra");
        var t = tok1.Tokenize(string.Join(" ", words));
        Assert.Equal(81, t.PromptTokenCount);
        Assert.True(t.Truncated);
        Assert.Equal(77, t.Ids.Length);
        Assert.Equal(49407, t.Ids[76]);
        Assert.NotNull(t.Warning);
        Assert.Contains("77 tokens", t.Warning);
        // tokens 75..80 are dropped: words 75..79 alternate dog/cat from an odd index, then zebra
        Assert.EndsWith("tokens: dog cat dog cat dog zebra", t.Warning);
        Assert.DoesNotContain('\n', t.Warning);

        // exactly 75 tokens fit without a warning
        var fits = tok1.Tokenize(string.Join(" ", words.Take(75)));
        Assert.False(fits.Truncated);
        Assert.Null(fits.Warning);
        Assert.Equal(49407, fits.Ids[76]);
    }

    [Theory]
    [InlineData("  Hello\t\n World  ", "hello world")]
    [InlineData("rock &amp;amp; roll", "rock & roll")]
    [InlineData("it\u2019s \u201cok\u201d", "it's \"ok\"")]
    [InlineData("\uff21\uff22\uff23\u3000\ufb01", "abc fi")]
    [InlineData("\u039f\u0394\u039f\u03a3 \u03a3", "\u03bf\u03b4\u03bf\u03c2 \u03c3")]
    public void Normalizer_CleansLikeClip(string input, string expected)
        => Assert.Equal(expected, ClipTextNormalizer.Clean(input));

    [Fact]
    public void FromDirectory_RejectsMalformedFiles()
    {
        var dir = Path.Combine(_tmp, "bad");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "vocab.json"), "{\"a\": 0, \"b\": 0}");
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\na b\n");
        var e = Assert.Throws<UserInputException>(() => ClipTokenizer.FromDirectory(dir));
        Assert.Contains("more than one token", e.Message);

        File.WriteAllText(Path.Combine(dir, "vocab.json"), "{\"a\": 0, \"b\": 1, \"<|startoftext|>\": 2, \"<|endoftext|>\": 3}");
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\na b c\n");
        e = Assert.Throws<UserInputException>(() => ClipTokenizer.FromDirectory(dir));
        Assert.Contains("line 2", e.Message);

        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\na b\n");
        File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), "{\"pad_token\": \"!\"}");
        e = Assert.Throws<UserInputException>(() => ClipTokenizer.FromDirectory(dir));
        Assert.Contains("pad_token '!'", e.Message);

        File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), "{}");
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\na zz\n");
        e = Assert.Throws<UserInputException>(() => ClipTokenizer.FromDirectory(dir));
        Assert.Contains("tokenizer", e.Message);

        File.WriteAllText(Path.Combine(dir, "vocab.json"), "[1, 2]");
        Assert.Throws<UserInputException>(() => ClipTokenizer.FromDirectory(dir));
    }
}
