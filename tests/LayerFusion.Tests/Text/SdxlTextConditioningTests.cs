using LayerFusion.Core.Models;
using LayerFusion.Core.Tensors;
using LayerFusion.Core.Text;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Tests.Text;

/// <summary>
/// The wiring of diffusers' SDXL encode_prompt around the (separately parity-tested) tokenizer and
/// encoders: which ids go to which encoder, which hidden state, the channel concat order, the pooled
/// source, zeros for an empty negative, clip skip, truncation warnings. Tiny random encoders over a
/// self-made byte-level vocabulary; expectations are assembled on the host from the parts.
/// </summary>
public sealed class SdxlTextConditioningTests
{
    static readonly IOps Ops = ClipTextModelParityTests.NewOps();

    /// <summary>Byte-level CLIP vocabulary: 256 symbols, the same with &lt;/w&gt;, a few merges, BOS, EOS.</summary>
    static ClipTokenizer TinyTokenizer(string pad)
    {
        var symbols = TextTestFiles.BytesToUnicode().Select(p => p.Char.ToString()).ToList();
        var vocab = new Dictionary<string, int>();
        foreach (var s in symbols) vocab[s] = vocab.Count;
        foreach (var s in symbols) vocab[s + "</w>"] = vocab.Count;
        (string, string)[] merges = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>")];
        foreach (var (l, r) in merges) vocab[l + r] = vocab.Count;
        vocab[ClipTokenizer.DefaultBos] = vocab.Count;
        vocab[ClipTokenizer.DefaultEos] = vocab.Count;
        return new ClipTokenizer(vocab, merges, padToken: pad);
    }

    static ClipTextModel TinyEncoder(ClipTextConfig c, int seed)
    {
        var rng = new Random(seed);
        var weights = new Dictionary<string, WeightTensor>();
        void Add(string name, float scale, float offset, params long[] shape)
        {
            var values = new float[shape.Aggregate(1L, (a, b) => a * b)];
            for (int i = 0; i < values.Length; i++) values[i] = offset + scale * (float)(rng.NextDouble() * 2 - 1);
            weights[name] = ArrayWeightTensor.FromFloat32(name, shape, values);
        }
        int h = c.HiddenSize, m = c.IntermediateSize;
        float s = 1f / MathF.Sqrt(h);
        Add("text_model.embeddings.token_embedding.weight", 1f, 0, c.VocabSize, h);
        Add("text_model.embeddings.position_embedding.weight", 0.3f, 0, c.MaxPositionEmbeddings, h);
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            var p = $"text_model.encoder.layers.{i}.";
            foreach (var proj in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
            {
                Add(p + $"self_attn.{proj}.weight", s, 0, h, h);
                Add(p + $"self_attn.{proj}.bias", 0.1f, 0, h);
            }
            Add(p + "layer_norm1.weight", 0.2f, 1, h);
            Add(p + "layer_norm1.bias", 0.1f, 0, h);
            Add(p + "layer_norm2.weight", 0.2f, 1, h);
            Add(p + "layer_norm2.bias", 0.1f, 0, h);
            Add(p + "mlp.fc1.weight", s, 0, m, h);
            Add(p + "mlp.fc1.bias", 0.1f, 0, m);
            Add(p + "mlp.fc2.weight", 1f / MathF.Sqrt(m), 0, h, m);
            Add(p + "mlp.fc2.bias", 0.1f, 0, h);
        }
        Add("text_model.final_layer_norm.weight", 0.2f, 1, h);
        Add("text_model.final_layer_norm.bias", 0.1f, 0, h);
        if (c.WithProjection) Add("text_projection.weight", s, 0, c.ProjectionDim, h);
        return new ClipTextModel(c, new ParameterStore(Ops, weights, c.WithProjection ? "text_encoder_2" : "text_encoder"));
    }

    sealed record Parts(ClipTokenizer Tok1, ClipTextModel Enc1, ClipTokenizer Tok2, ClipTextModel Enc2);

    static Parts MakeParts()
    {
        var tok1 = TinyTokenizer("<|endoftext|>");
        var tok2 = TinyTokenizer("!");
        var c1 = new ClipTextConfig
        {
            VocabSize = tok1.VocabularySize, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 2,
            NumAttentionHeads = 2, MaxPositionEmbeddings = 77, HiddenAct = "quick_gelu", EosTokenId = 2,
        };
        var c2 = new ClipTextConfig
        {
            Architecture = "CLIPTextModelWithProjection", VocabSize = tok2.VocabularySize, HiddenSize = 12,
            IntermediateSize = 20, NumHiddenLayers = 3, NumAttentionHeads = 3, MaxPositionEmbeddings = 77,
            HiddenAct = "gelu", ProjectionDim = 10, EosTokenId = tok2.EosId,
        };
        return new Parts(tok1, TinyEncoder(c1, 11), tok2, TinyEncoder(c2, 22));
    }

    /// <summary>prompt_embeds and pooled assembled on the host from each encoder's own output.</summary>
    static (float[] Embeds, float[] Pooled) Expected(Parts p, string prompt, string prompt2, int clipSkip = 0)
    {
        using var o1 = p.Enc1.Forward(p.Tok1.Tokenize(prompt).Ids, 1, clipSkip);
        using var o2 = p.Enc2.Forward(p.Tok2.Tokenize(prompt2).Ids, 1, clipSkip);
        var h1 = Ops.ToHost(o1.HiddenStates);
        var h2 = Ops.ToHost(o2.HiddenStates);
        int c1 = p.Enc1.Config.HiddenSize, c2 = p.Enc2.Config.HiddenSize, t = h1.Length / c1;
        var embeds = new float[t * (c1 + c2)];
        for (int i = 0; i < t; i++)
        {
            Array.Copy(h1, i * c1, embeds, i * (c1 + c2), c1);
            Array.Copy(h2, i * c2, embeds, i * (c1 + c2) + c1, c2);
        }
        return (embeds, Ops.ToHost(o2.TextEmbeds!));
    }

    static void AssertEmbeddings(SdxlPromptEmbeddings actual, (float[] Embeds, float[] Pooled) expected, Parts p)
    {
        Assert.Equal([1, 77, p.Enc1.Config.HiddenSize + p.Enc2.Config.HiddenSize], actual.PromptEmbeds.Shape);
        Assert.Equal([1, p.Enc2.Config.ProjectionDim], actual.PooledPromptEmbeds.Shape);
        Assert.Equal(expected.Embeds, Ops.ToHost(actual.PromptEmbeds));
        Assert.Equal(expected.Pooled, Ops.ToHost(actual.PooledPromptEmbeds));
    }

    [Fact]
    public void Positive_IsConcatOfPenultimateStates_AndPooledIsEncoder2TextEmbeds()
    {
        var p = MakeParts();
        var sdxl = new SdxlTextConditioning(p.Tok1, p.Enc1, p.Tok2, p.Enc2);
        Assert.Equal(28, sdxl.EmbeddingChannels);
        Assert.Equal(10, sdxl.PooledChannels);
        using var e = sdxl.Encode("a cat and a dog", "blurry");
        AssertEmbeddings(e.Positive, Expected(p, "a cat and a dog", "a cat and a dog"), p);
        AssertEmbeddings(e.Negative, Expected(p, "blurry", "blurry"), p);
        Assert.Empty(e.Warnings);

        // the encoders really see different ids (tokenizer_2 pads with "!"), so a swapped tokenizer shows
        Assert.NotEqual(p.Tok1.Tokenize("a cat").Ids, p.Tok2.Tokenize("a cat").Ids);
        var swapped = new SdxlTextConditioning(p.Tok2, p.Enc1, p.Tok1, p.Enc2);
        using var s = swapped.Encode("a cat and a dog");
        Assert.NotEqual(Ops.ToHost(e.Positive.PromptEmbeds), Ops.ToHost(s.Positive.PromptEmbeds));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    public void EmptyNegative_IsZeros_WhenForced(string? negative)
    {
        var p = MakeParts();
        using var e = new SdxlTextConditioning(p.Tok1, p.Enc1, p.Tok2, p.Enc2).Encode("a cat", negative);
        Assert.Equal(e.Positive.PromptEmbeds.Shape, e.Negative.PromptEmbeds.Shape);
        Assert.Equal(e.Positive.PooledPromptEmbeds.Shape, e.Negative.PooledPromptEmbeds.Shape);
        Assert.All(Ops.ToHost(e.Negative.PromptEmbeds), v => Assert.Equal(0f, v));
        Assert.All(Ops.ToHost(e.Negative.PooledPromptEmbeds), v => Assert.Equal(0f, v));

        using var notForced = new SdxlTextConditioning(p.Tok1, p.Enc1, p.Tok2, p.Enc2, forceZerosForEmptyPrompt: false).Encode("a cat", negative);
        AssertEmbeddings(notForced.Negative, Expected(p, "", ""), p);
    }

    [Fact]
    public void Prompt2_GoesToTheSecondEncoder_AndClipSkipPicksAnEarlierState()
    {
        var p = MakeParts();
        var sdxl = new SdxlTextConditioning(p.Tok1, p.Enc1, p.Tok2, p.Enc2);
        using var e = sdxl.Encode("a cat", prompt2: "a dog");
        AssertEmbeddings(e.Positive, Expected(p, "a cat", "a dog"), p);

        // clip skip 1 = hidden_states[-3]: for the 2-layer encoder 1 that is the embeddings output
        using var skipped = sdxl.Encode("a cat", "a dog", clipSkip: 1);
        var expected = Expected(p, "a cat", "a cat", clipSkip: 1);
        AssertEmbeddings(skipped.Positive, expected, p);
        using var emb = p.Enc1.Embeddings.Forward(p.Tok1.Tokenize("a cat").Ids, 1);
        var embHost = Ops.ToHost(emb);
        var got = Ops.ToHost(skipped.Positive.PromptEmbeds);
        for (int t = 0; t < 77; t++)
            Assert.Equal(embHost.AsSpan(t * 16, 16).ToArray(), got.AsSpan(t * 28, 16).ToArray());
        // diffusers encodes the negative with hidden_states[-2] whatever clip_skip is
        AssertEmbeddings(skipped.Negative, Expected(p, "a dog", "a dog"), p);
    }

    [Fact]
    public void LongPrompt_WarnsOnce()
    {
        var p = MakeParts();
        var sdxl = new SdxlTextConditioning(p.Tok1, p.Enc1, p.Tok2, p.Enc2);
        using var e = sdxl.Encode(string.Join(" ", Enumerable.Repeat("cat", 80)));
        var warning = Assert.Single(e.Warnings);
        Assert.Contains("truncated", warning);
    }
}
