using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;
using Microsoft.ML.Tokenizers;

namespace LayerFusion.Core.Text;

/// <summary>One prompt as a CLIP text encoder takes it.</summary>
/// <param name="Ids">MaxLength ids: BOS, the prompt's tokens, EOS, padding.</param>
/// <param name="PromptTokenCount">BPE tokens of the prompt before truncation (BOS/EOS not counted).</param>
/// <param name="Truncated">The prompt had more tokens than fit; the tail was dropped.</param>
/// <param name="Warning">Null, or a one-line message for the caller to show (the library never prints).</param>
public sealed record ClipTokenization(int[] Ids, int PromptTokenCount, bool Truncated, string? Warning);

/// <summary>
/// The CLIP BPE tokenizer of SDXL's `tokenizer/` and `tokenizer_2/` folders (transformers
/// CLIPTokenizer semantics): Microsoft.ML.Tokenizers' byte-level BPE with the `&lt;/w&gt;` end-of-word
/// suffix, CLIP's text cleanup (<see cref="ClipTextNormalizer"/>) and pre-tokenizer
/// (<see cref="ClipPreTokenizer"/>); sequences are BOS + tokens + EOS padded to model_max_length.
/// </summary>
public sealed class ClipTokenizer
{
    public const string DefaultBos = "<|startoftext|>";
    public const string DefaultEos = "<|endoftext|>";
    const long MaxVocabBytes = 64L << 20;
    const long MaxMergesBytes = 64L << 20;
    const long MaxConfigBytes = 4L << 20;

    readonly BpeTokenizer _bpe;
    readonly Dictionary<int, string> _idToToken;

    public ClipTokenizer(IReadOnlyDictionary<string, int> vocabulary, IEnumerable<(string Left, string Right)> merges,
        string bosToken = DefaultBos, string eosToken = DefaultEos, string padToken = DefaultEos,
        string? unknownToken = DefaultEos, int maxLength = 77)
    {
        if (maxLength < 2) throw new UserInputException($"tokenizer: model_max_length {maxLength} leaves no room for BOS and EOS");
        BosId = IdOf(vocabulary, bosToken, "bos_token");
        EosId = IdOf(vocabulary, eosToken, "eos_token");
        PadId = IdOf(vocabulary, padToken, "pad_token");
        MaxLength = maxLength;
        VocabularySize = vocabulary.Count == 0 ? 0 : vocabulary.Values.Max() + 1;
        _idToToken = new Dictionary<int, string>(vocabulary.Count);
        foreach (var (token, id) in vocabulary) _idToToken[id] = token;

        var special = new Dictionary<string, int> { [bosToken] = BosId, [eosToken] = EosId };
        var options = new BpeOptions(vocabulary)
        {
            Merges = merges.Select(m => m.Left + " " + m.Right).ToList(),
            SpecialTokens = special,
            Normalizer = ClipTextNormalizer.Instance,
            PreTokenizer = new ClipPreTokenizer(special.Keys),
            ByteLevel = true,
            EndOfWordSuffix = "</w>",
            UnknownToken = unknownToken is not null && vocabulary.ContainsKey(unknownToken) ? unknownToken : null,
        };
        try
        {
            _bpe = BpeTokenizer.Create(options);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException or KeyNotFoundException)
        {
            // e.g. a merge whose parts or result are not in the vocabulary
            throw new UserInputException($"tokenizer: vocabulary and merges do not fit together ({e.Message})");
        }
    }

    public int BosId { get; }
    public int EosId { get; }
    public int PadId { get; }
    /// <summary>Sequence length the encoder takes (77 for SDXL): BOS + MaxLength-2 tokens + EOS.</summary>
    public int MaxLength { get; }
    /// <summary>One more than the largest id in the vocabulary.</summary>
    public int VocabularySize { get; }

    /// <summary>The underlying Microsoft.ML.Tokenizers model (normalizer and pre-tokenizer included).</summary>
    public Tokenizer Inner => _bpe;

    /// <summary>The prompt's BPE ids without BOS/EOS and without truncation (openai CLIP's SimpleTokenizer.encode).</summary>
    public IReadOnlyList<int> EncodeBpe(string text) => _bpe.EncodeToIds(text);

    /// <summary>openai CLIP's decode: token strings joined, byte-level symbols back to UTF-8 bytes,
    /// every `&lt;/w&gt;` a space. (BpeTokenizer.Decode drops the suffix instead of spacing words.)</summary>
    public string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var id in ids)
        {
            if (!_idToToken.TryGetValue(id, out var token)) continue;
            foreach (var rune in token.EnumerateRunes())
            {
                if (rune.Value < ByteDecoder.Length && ByteDecoder[rune.Value] >= 0) bytes.Add((byte)ByteDecoder[rune.Value]);
                else bytes.AddRange(utf8[..rune.EncodeToUtf8(utf8)]);
            }
        }
        return Encoding.UTF8.GetString(bytes.ToArray()).Replace("</w>", " ");
    }

    /// <summary>Inverse of GPT-2/CLIP bytes_to_unicode: symbol code point -> byte, or -1.</summary>
    static readonly int[] ByteDecoder = BuildByteDecoder();

    static int[] BuildByteDecoder()
    {
        var decoder = new int[512];
        Array.Fill(decoder, -1);
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            decoder[printable ? b : 256 + n++] = b;
        }
        return decoder;
    }

    /// <summary>BOS + tokens + EOS + padding to <see cref="MaxLength"/>; a longer prompt is cut to fit,
    /// with a <see cref="ClipTokenization.Warning"/> naming what was dropped (as diffusers logs it).</summary>
    public ClipTokenization Tokenize(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var tokens = EncodeBpe(prompt);
        int room = MaxLength - 2;
        int kept = Math.Min(tokens.Count, room);
        var ids = new int[MaxLength];
        ids[0] = BosId;
        for (int i = 0; i < kept; i++) ids[1 + i] = tokens[i];
        ids[1 + kept] = EosId;
        for (int i = kept + 2; i < MaxLength; i++) ids[i] = PadId;
        string? warning = null;
        if (tokens.Count > room)
        {
            var removed = Decode(tokens.Skip(room)).Trim();
            warning = $"The following part of your input was truncated because CLIP can only handle sequences up to {MaxLength} tokens: {removed}";
        }
        return new ClipTokenization(ids, tokens.Count, tokens.Count > room, warning);
    }

    static int IdOf(IReadOnlyDictionary<string, int> vocab, string token, string role)
        => vocab.TryGetValue(token, out var id)
            ? id
            : throw new UserInputException($"tokenizer: {role} '{token}' is not in the vocabulary");

    // ---- loading a diffusers/transformers tokenizer folder -------------------------------------

    /// <summary>Loads vocab.json, merges.txt and the special tokens (special_tokens_map.json, then
    /// tokenizer_config.json) of a transformers CLIPTokenizer folder.</summary>
    public static ClipTokenizer FromDirectory(string dir)
    {
        if (!Directory.Exists(dir)) throw new UserInputException($"{dir}: tokenizer folder not found");
        var vocab = ReadVocabulary(Path.Combine(dir, "vocab.json"));
        var merges = ReadMerges(Path.Combine(dir, "merges.txt"));

        var tokens = new Dictionary<string, string?>
        {
            ["bos_token"] = DefaultBos, ["eos_token"] = DefaultEos, ["pad_token"] = DefaultEos, ["unk_token"] = DefaultEos,
        };
        int maxLength = 77;
        foreach (var file in new[] { "tokenizer_config.json", "special_tokens_map.json" })
        {
            var path = Path.Combine(dir, file);
            if (!File.Exists(path)) continue;
            var json = ReadJsonObject(path, MaxConfigBytes);
            foreach (var key in tokens.Keys.ToArray())
                if (json.TryGetPropertyValue(key, out var node) && node is not null)
                    tokens[key] = TokenContent(node, path, key);
            if (file == "tokenizer_config.json" && json.TryGetPropertyValue("model_max_length", out var ml) && ml is JsonValue v)
            {
                // transformers writes 1e30 ("no limit") for tokenizers without one; CLIP's is the
                // position table size, 77.
                if (!v.TryGetValue(out double d) || double.IsNaN(d) || d < 2)
                    throw new UserInputException($"{path}: field 'model_max_length' must be a number >= 2");
                if (d <= 1 << 16) maxLength = (int)d;
            }
        }
        return new ClipTokenizer(vocab, merges, tokens["bos_token"]!, tokens["eos_token"]!,
            tokens["pad_token"] ?? tokens["eos_token"]!, tokens["unk_token"], maxLength);
    }

    static string? TokenContent(JsonNode node, string path, string key) => node switch
    {
        JsonValue v when v.TryGetValue(out string? s) => s,
        JsonObject o when o.TryGetPropertyValue("content", out var c) && c is JsonValue cv && cv.TryGetValue(out string? s) => s,
        _ => throw new UserInputException($"{path}: field '{key}' must be a string or an object with 'content'"),
    };

    static JsonObject ReadJsonObject(string path, long maxBytes)
    {
        // Links followed, regular files only, bounded; ConfigReader's one JSON policy.
        return ConfigReader.ReadJsonFile(path, maxBytes) as JsonObject ?? throw new UserInputException($"{path}: must be a JSON object");
    }

    public static Dictionary<string, int> ReadVocabulary(string path)
    {
        var json = ReadJsonObject(path, MaxVocabBytes);
        var vocab = new Dictionary<string, int>(json.Count, StringComparer.Ordinal);
        var seen = new HashSet<int>();
        foreach (var (token, node) in json)
        {
            if (node is not JsonValue v || !v.TryGetValue(out int id) || id < 0 || id >= 1 << 24)
                throw new UserInputException($"{path}: the id of '{token}' must be an integer in [0, {1 << 24})");
            if (!seen.Add(id)) throw new UserInputException($"{path}: id {id} is used by more than one token ('{token}' and another)");
            vocab[token] = id;
        }
        if (vocab.Count == 0) throw new UserInputException($"{path}: the vocabulary is empty");
        return vocab;
    }

    public static List<(string, string)> ReadMerges(string path)
    {
        var text = UntrustedFile.ReadAllText(path, MaxMergesBytes);
        var merges = new List<(string, string)>();
        int lineNo = 0;
        foreach (var raw in text.Split('\n'))
        {
            lineNo++;
            var line = raw.TrimEnd('\r');
            if (lineNo == 1 && line.StartsWith("#version", StringComparison.Ordinal)) continue;
            if (line.Length == 0) continue;
            var parts = line.Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                throw new UserInputException($"{path}: line {lineNo} is not a merge of two symbols separated by one space");
            merges.Add((parts[0], parts[1]));
        }
        return merges;
    }
}
