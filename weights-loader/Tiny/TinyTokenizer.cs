using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LayerFusion.WeightsLoader.Tiny;

/// <summary>
/// A small CLIP-format BPE vocabulary made here (the real one is not ours to ship): the 256
/// byte-level symbols in GPT-2's bytes_to_unicode order, the same with `&lt;/w&gt;`, one token per merge
/// learned by plain BPE on a built-in English word list, then `&lt;|startoftext|&gt;`, `&lt;|endoftext|&gt;`.
/// The layout mirrors openai/CLIP's simple_tokenizer, so the same loader reads both.
/// </summary>
public static class TinyTokenizer
{
    public const string StartOfText = "<|startoftext|>";
    public const string EndOfText = "<|endoftext|>";
    public const int DefaultMerges = 200;

    static readonly string Words = """
        a an the of and or to in on at by for with from into over under above below near behind between
        is are was were be been being has have had do does did can could will would should may might must
        cat dog bird fish horse cow sheep lion tiger bear fox wolf rabbit mouse owl duck eagle whale shark
        man woman boy girl child person people king queen knight wizard robot astronaut pirate chef farmer
        red green blue yellow orange purple pink brown black white gray golden silver dark light bright
        tree flower grass forest mountain river lake ocean sea beach desert island sky cloud sun moon star
        house castle city street road bridge tower garden room kitchen window door table chair bed lamp
        car bus train plane ship boat bicycle rocket truck apple banana cake bread coffee tea water fire
        photo painting drawing portrait landscape closeup sketch render illustration cartoon anime style
        beautiful small large tiny huge old young happy sad cute strong soft hard warm cold wet dry
        sitting standing running walking flying swimming reading holding wearing looking playing sleeping
        morning evening night winter summer spring autumn rain snow storm fog sunset sunrise shadow
        glass wood stone metal paper cloth leather plastic gold crystal ice smoke background foreground
        high quality detailed realistic cinematic lighting sharp focus masterpiece transparent isolated
        """;

    /// <summary>GPT-2's byte -> printable unicode map, in its order (printable bytes first).</summary>
    public static IReadOnlyList<(byte Byte, char Char)> BytesToUnicode()
    {
        var bs = new List<int>();
        for (int b = '!'; b <= '~'; b++) bs.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) bs.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) bs.Add(b);
        var cs = new List<int>(bs);
        int n = 0;
        for (int b = 0; b < 256; b++)
            if (!bs.Contains(b)) { bs.Add(b); cs.Add(256 + n); n++; }
        return bs.Select((b, i) => ((byte)b, (char)cs[i])).ToList();
    }

    /// <summary>Merges learned by BPE on the word list (most frequent pair; ties by ordinal order).</summary>
    public static IReadOnlyList<(string A, string B)> LearnMerges(int count = DefaultMerges)
    {
        var map = BytesToUnicode().ToDictionary(p => p.Byte, p => p.Char);
        var words = Words.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)
            .Select(w => Encoding.UTF8.GetBytes(w.ToLowerInvariant()).Select(b => map[b].ToString()).ToList())
            .Select(s => { s[^1] += "</w>"; return s; })
            .ToList();
        var merges = new List<(string, string)>();
        while (merges.Count < count)
        {
            var freq = new Dictionary<(string, string), int>();
            foreach (var w in words)
                for (int i = 0; i + 1 < w.Count; i++)
                    freq[(w[i], w[i + 1])] = freq.GetValueOrDefault((w[i], w[i + 1])) + 1;
            if (freq.Count == 0) break;
            var best = freq.OrderByDescending(kv => kv.Value)
                .ThenBy(kv => kv.Key.Item1, StringComparer.Ordinal).ThenBy(kv => kv.Key.Item2, StringComparer.Ordinal).First().Key;
            merges.Add(best);
            foreach (var w in words)
                for (int i = 0; i + 1 < w.Count; i++)
                    if (w[i] == best.Item1 && w[i + 1] == best.Item2) { w[i] += w[i + 1]; w.RemoveAt(i + 1); }
        }
        return merges;
    }

    /// <summary>Token strings in id order.</summary>
    public static IReadOnlyList<string> Vocabulary(IReadOnlyList<(string A, string B)> merges)
    {
        var symbols = BytesToUnicode().Select(p => p.Char.ToString()).ToList();
        var vocab = new List<string>(symbols);
        vocab.AddRange(symbols.Select(s => s + "</w>"));
        vocab.AddRange(merges.Select(m => m.A + m.B));
        vocab.Add(StartOfText);
        vocab.Add(EndOfText);
        return vocab;
    }

    public static int VocabSize(int merges = DefaultMerges) => 512 + LearnMerges(merges).Count + 2;

    /// <summary>Writes vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json (transformers' CLIPTokenizer files).</summary>
    public static void Write(string dir, string padToken, int merges = DefaultMerges, int maxLength = 77)
    {
        Directory.CreateDirectory(dir);
        var m = LearnMerges(merges);
        var vocab = Vocabulary(m);
        var vocabJson = new JsonObject();
        for (int i = 0; i < vocab.Count; i++) vocabJson[vocab[i]] = i;
        var utf8 = new UTF8Encoding(false);
        File.WriteAllText(Path.Combine(dir, "vocab.json"), vocabJson.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }), utf8);
        var sb = new StringBuilder("#version: 0.2\n");
        foreach (var (a, b) in m) sb.Append(a).Append(' ').Append(b).Append('\n');
        File.WriteAllText(Path.Combine(dir, "merges.txt"), sb.ToString(), utf8);
        var special = new JsonObject
        {
            ["bos_token"] = StartOfText, ["eos_token"] = EndOfText, ["pad_token"] = padToken, ["unk_token"] = EndOfText,
        };
        File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), special.ToJsonString(Indented), utf8);
        var config = new JsonObject
        {
            ["add_prefix_space"] = false, ["bos_token"] = StartOfText, ["clean_up_tokenization_spaces"] = true,
            ["do_lower_case"] = true, ["eos_token"] = EndOfText, ["errors"] = "replace", ["model_max_length"] = maxLength,
            ["pad_token"] = padToken, ["tokenizer_class"] = "CLIPTokenizer", ["unk_token"] = EndOfText,
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString(Indented), utf8);
    }

    internal static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };
}
