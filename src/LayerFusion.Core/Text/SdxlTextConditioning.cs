using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Text;

/// <summary>One prompt's SDXL conditioning.</summary>
/// <param name="PromptEmbeds">[1, T, C1 + C2]: text_encoder's and text_encoder_2's hidden states
/// concatenated on the channel axis (the UNet's encoder_hidden_states).</param>
/// <param name="PooledPromptEmbeds">[1, projection_dim]: text_encoder_2's text_embeds (the UNet's
/// added text_embeds).</param>
public sealed record SdxlPromptEmbeddings(Tensor PromptEmbeds, Tensor PooledPromptEmbeds) : IDisposable
{
    public void Dispose()
    {
        PromptEmbeds.Dispose();
        PooledPromptEmbeds.Dispose();
    }
}

/// <summary>A prompt and its negative, as classifier-free guidance uses them, plus the tokenizers'
/// warnings (truncation) for the caller to show.</summary>
public sealed record SdxlTextEncoding(SdxlPromptEmbeddings Positive, SdxlPromptEmbeddings Negative, IReadOnlyList<string> Warnings)
    : IDisposable
{
    public void Dispose()
    {
        Positive.Dispose();
        Negative.Dispose();
    }
}

/// <summary>
/// diffusers v0.25 StableDiffusionXLPipeline.encode_prompt for one prompt: each tokenizer/encoder
/// pair gives hidden_states[-2] (or [-(clip_skip + 2)]); prompt_embeds concatenates them; the pooled
/// embedding is text_encoder_2's projected text_embeds. The negative prompt is encoded the same way
/// (always hidden_states[-2], as diffusers does), or is all zeros when it is empty and
/// force_zeros_for_empty_prompt is set (SDXL's model_index.json sets it).
/// </summary>
public sealed class SdxlTextConditioning
{
    public SdxlTextConditioning(ClipTokenizer tokenizer, ClipTextModel textEncoder,
        ClipTokenizer tokenizer2, ClipTextModel textEncoder2, bool forceZerosForEmptyPrompt = true)
    {
        if (!textEncoder2.Config.WithProjection)
            throw new UserInputException("text_encoder_2: SDXL needs a CLIPTextModelWithProjection (its pooled text_embeds)");
        if (tokenizer.MaxLength != tokenizer2.MaxLength)
            throw new UserInputException($"tokenizer and tokenizer_2 disagree on model_max_length ({tokenizer.MaxLength} vs {tokenizer2.MaxLength})");
        Tokenizer = tokenizer;
        TextEncoder = textEncoder;
        Tokenizer2 = tokenizer2;
        TextEncoder2 = textEncoder2;
        ForceZerosForEmptyPrompt = forceZerosForEmptyPrompt;
    }

    public ClipTokenizer Tokenizer { get; }
    public ClipTextModel TextEncoder { get; }
    public ClipTokenizer Tokenizer2 { get; }
    public ClipTextModel TextEncoder2 { get; }
    public bool ForceZerosForEmptyPrompt { get; }

    /// <summary>Channels of prompt_embeds (the UNet's cross_attention_dim).</summary>
    public int EmbeddingChannels => TextEncoder.Config.HiddenSize + TextEncoder2.Config.HiddenSize;
    public int PooledChannels => TextEncoder2.Config.ProjectionDim;

    /// <summary>
    /// The prompt's and the negative prompt's conditioning. A null or empty negative gives zeros
    /// when <see cref="ForceZerosForEmptyPrompt"/> (diffusers zeroes only an absent negative_prompt
    /// and encodes an explicit ""; a CLI cannot tell the two apart, so both count as absent here).
    /// </summary>
    /// <param name="prompt2">diffusers' prompt_2 for tokenizer_2/text_encoder_2; null = <paramref name="prompt"/>.</param>
    /// <param name="negativePrompt2">Likewise for the negative; null = <paramref name="negativePrompt"/>.</param>
    public SdxlTextEncoding Encode(string prompt, string? negativePrompt = null, string? prompt2 = null,
        string? negativePrompt2 = null, int clipSkip = 0)
    {
        var warnings = new List<string>();
        var positive = EncodePrompt(prompt, prompt2, clipSkip, warnings);
        SdxlPromptEmbeddings negative;
        if (string.IsNullOrEmpty(negativePrompt) && string.IsNullOrEmpty(negativePrompt2) && ForceZerosForEmptyPrompt)
        {
            var ops = positive.PromptEmbeds.Ops;
            negative = new SdxlPromptEmbeddings(ops.Zeros(positive.PromptEmbeds.Shape), ops.Zeros(positive.PooledPromptEmbeds.Shape));
        }
        else
        {
            negativePrompt ??= "";
            negative = EncodePrompt(negativePrompt, string.IsNullOrEmpty(negativePrompt2) ? negativePrompt : negativePrompt2, 0, warnings);
        }
        return new SdxlTextEncoding(positive, negative, warnings);
    }

    /// <summary>One prompt through both tokenizer/encoder pairs (encode_prompt's loop).</summary>
    public SdxlPromptEmbeddings EncodePrompt(string prompt, string? prompt2, int clipSkip, List<string> warnings)
    {
        // diffusers: prompt_2 = prompt_2 or prompt (an empty prompt_2 falls back too).
        prompt2 = string.IsNullOrEmpty(prompt2) ? prompt : prompt2;
        var t1 = Tokenizer.Tokenize(prompt);
        var t2 = Tokenizer2.Tokenize(prompt2);
        if (t1.Warning is not null) warnings.Add(t1.Warning);
        if (t2.Warning is not null && t2.Warning != t1.Warning) warnings.Add(t2.Warning);

        // text_encoder's pooled output is discarded by diffusers, so its last layers are skipped.
        using var o1 = TextEncoder.Forward(t1.Ids, 1, clipSkip, withPooled: false);
        var o2 = TextEncoder2.Forward(t2.Ids, 1, clipSkip, withPooled: true);
        Tensor embeds;
        try
        {
            embeds = o1.HiddenStates.Ops.Concat([o1.HiddenStates, o2.HiddenStates], 2);
        }
        catch
        {
            o2.Dispose();
            throw;
        }
        o2.HiddenStates.Dispose();
        o2.Pooled?.Dispose();
        return new SdxlPromptEmbeddings(embeds, o2.TextEmbeds!);
    }
}
