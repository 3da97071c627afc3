using System.IO.Compression;
using System.Text;
using System.Text.Json;

namespace LayerFusion.Tests.Text;

/// <summary>Paths of the committed reference fixtures and of the shared CLIP vocabulary.</summary>
static class TextTestFiles
{
    public static string RepoRoot { get; } = FindUp("LayerFusion.Native.sln")
        ?? throw new InvalidOperationException("repository root (LayerFusion.Native.sln) not found above " + AppContext.BaseDirectory);

    public static string Fixture(string name) => Path.Combine(RepoRoot, "tests", "reference", "text", name);

    /// <summary>
    /// OpenAI CLIP's BPE file (MIT, its LICENSE beside it), committed with the tests so they run on a
    /// fresh clone: Data/ is copied next to the test binaries, and read from the source tree otherwise.
    /// </summary>
    public static string ClipBpeFile()
    {
        var beside = Path.Combine(AppContext.BaseDirectory, "Text", "Data", "bpe_simple_vocab_16e6.txt.gz");
        return File.Exists(beside) ? beside : Path.Combine(RepoRoot, "tests", "LayerFusion.Tests", "Text", "Data", "bpe_simple_vocab_16e6.txt.gz");
    }

    static string? FindUp(string fileName)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, fileName))) return dir.FullName;
        return null;
    }

    /// <summary>GPT-2/CLIP bytes_to_unicode, in its dictionary order (the table the tiny tokenizer writer uses).</summary>
    public static IReadOnlyList<(byte Byte, char Char)> BytesToUnicode() => LayerFusion.WeightsLoader.Tiny.TinyTokenizer.BytesToUnicode();

    /// <summary>
    /// Writes a transformers CLIPTokenizer folder (vocab.json, merges.txt, special_tokens_map.json,
    /// tokenizer_config.json) built from openai's BPE file the way shared/reference/README.md
    /// describes: merges are lines 2..48895; vocab = 256 byte symbols, the same with &lt;/w&gt;, one per
    /// merge, then the two special tokens.
    /// </summary>
    public static void WriteClipTokenizerFolder(string bpeGz, string dir, string padToken)
    {
        Directory.CreateDirectory(dir);
        string[] lines;
        using (var gz = new GZipStream(File.OpenRead(bpeGz), CompressionMode.Decompress))
        using (var reader = new StreamReader(gz, Encoding.UTF8))
            lines = reader.ReadToEnd().Split('\n');
        var merges = lines[1..(49152 - 256 - 2 + 1)];
        var vocab = new List<string>();
        var symbols = BytesToUnicode().Select(p => p.Char.ToString()).ToList();
        vocab.AddRange(symbols);
        vocab.AddRange(symbols.Select(s => s + "</w>"));
        vocab.AddRange(merges.Select(m => m.Replace(" ", "")));
        vocab.Add("<|startoftext|>");
        vocab.Add("<|endoftext|>");
        var map = new Dictionary<string, int>();
        for (int i = 0; i < vocab.Count; i++) map[vocab[i]] = i;
        File.WriteAllText(Path.Combine(dir, "vocab.json"), JsonSerializer.Serialize(map));
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\n" + string.Join("\n", merges) + "\n");
        File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["bos_token"] = new { content = "<|startoftext|>", lstrip = false, normalized = true, rstrip = false, single_word = false },
            ["eos_token"] = new { content = "<|endoftext|>", lstrip = false, normalized = true, rstrip = false, single_word = false },
            ["pad_token"] = padToken,
            ["unk_token"] = new { content = "<|endoftext|>", lstrip = false, normalized = true, rstrip = false, single_word = false },
        }));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
            "{\"model_max_length\": 77, \"do_lower_case\": true, \"errors\": \"replace\", \"tokenizer_class\": \"CLIPTokenizer\", \"pad_token\": \"" + padToken + "\"}");
    }
}
