using LayerFusion.Core.Models.Blocks;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Fusion;

/// <summary>
/// Every LayerFusion decision as a switch, so the paper's ablations can be run (DESIGN §5).
/// Defaults are the paper's method with our DESIGN decisions.
/// </summary>
public sealed record LayerFusionOptions
{
    /// <summary>BG queries also attend over the BLEND stream's keys/values (self-attention), and in
    /// cross-attention BLEND queries read the BG prompt (Alg. 3: Attention_θ([h_BG, h_Blended], p_BG)).</summary>
    public bool Sharing { get; init; } = true;

    /// <summary>With sharing: BLEND keys inside the foreground (mask_hard &gt; 0.5) are hidden from BG
    /// queries, so the object does not leak into the background (our decision, DESIGN §5).</summary>
    public bool Exclusion { get; init; } = true;

    /// <summary>Decision-boundary coefficient d of mask_hard = sigmoid(d (mask_soft - 0.5)) (paper: 10).</summary>
    public float D { get; init; } = 10f;

    /// <summary>Apply Eq. 1/2 to self-attention (attn1) outputs.</summary>
    public bool BlendSelfAttention { get; init; } = true;

    /// <summary>Apply Eq. 1/2 to cross-attention (attn2) outputs.</summary>
    public bool BlendCrossAttention { get; init; } = true;

    /// <summary>diffusers path of the self-attention layer the structure prior is read from; null =
    /// <see cref="DefaultPriorLayer"/>.</summary>
    public string? PriorLayer { get; init; }

    /// <summary>The BLEND stream's prompt; null = "{fg}, {bg}".</summary>
    public string? BlendPrompt { get; init; }

    /// <summary>Flip/rotation 8-way median in the transparent decoder (LayerDiffuse's augmentation).</summary>
    public bool TransparentAugment { get; init; } = true;

    public const string PaperPriorLayer = "up_blocks.1.attentions.2.transformer_blocks.1.attn1";

    /// <summary>The paper's layer when the model has it (SDXL), else the model's last self-attention.</summary>
    public static string DefaultPriorLayer(IReadOnlyList<AttentionSite> sites)
    {
        if (sites.Any(s => s.Path == PaperPriorLayer && s.Kind == AttentionKind.Self)) return PaperPriorLayer;
        var last = sites.LastOrDefault(s => s.Kind == AttentionKind.Self)
            ?? throw new UserInputException("the UNet has no self-attention layer to read a structure prior from");
        return last.Path;
    }

    /// <summary>The prior layer these options name, checked against the model's sites.</summary>
    public AttentionSite ResolvePriorLayer(IReadOnlyList<AttentionSite> sites)
    {
        var path = PriorLayer ?? DefaultPriorLayer(sites);
        return sites.FirstOrDefault(s => s.Path == path && s.Kind == AttentionKind.Self)
            ?? throw new UserInputException($"prior layer '{path}' is not a self-attention layer of this UNet");
    }

    public string BlendPromptFor(string fg, string bg) => BlendPrompt ?? $"{fg}, {bg}";

    public void Validate()
    {
        if (!float.IsFinite(D) || D <= 0) throw new UserInputException($"d must be a positive number, got {D}");
    }
}

/// <summary>
/// Batch layout of the interaction pass: stream-major, uncond before cond within a stream:
/// rows [FG_u, FG_c, BLEND_u, BLEND_c, BG_u, BG_c].
/// </summary>
public static class TripletLayout
{
    public const int Foreground = 0, Blend = 1, Background = 2;
    public const int Streams = 3, Branches = 2, Rows = Streams * Branches;

    public static int Row(int stream, bool cond) => stream * Branches + (cond ? 1 : 0);
}
