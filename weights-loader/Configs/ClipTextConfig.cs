namespace LayerFusion.WeightsLoader.Configs;

/// <summary>transformers CLIPTextConfig (CLIPTextModel / CLIPTextModelWithProjection), defaults as ViT-L/14.</summary>
public sealed record ClipTextConfig
{
    public string Architecture { get; init; } = "CLIPTextModel";
    public int VocabSize { get; init; } = 49408;
    public int HiddenSize { get; init; } = 768;
    public int IntermediateSize { get; init; } = 3072;
    public int ProjectionDim { get; init; } = 768;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 12;
    public int MaxPositionEmbeddings { get; init; } = 77;
    /// <summary>"quick_gelu" (ViT-L) or "gelu" (OpenCLIP bigG).</summary>
    public string HiddenAct { get; init; } = "quick_gelu";
    public double LayerNormEps { get; init; } = 1e-5;
    public int BosTokenId { get; init; } = 49406;
    /// <summary>transformers: eos_token_id == 2 selects the legacy pooling (argmax of input ids).</summary>
    public int EosTokenId { get; init; } = 2;
    public int PadTokenId { get; init; } = 1;
    public bool WithProjection => Architecture == "CLIPTextModelWithProjection";

    public static ClipTextConfig Read(ConfigReader r)
    {
        var d = new ClipTextConfig();
        var arch = r.Strings("architectures", [d.Architecture]);
        var c = new ClipTextConfig
        {
            Architecture = arch.Length > 0 ? arch[0] : d.Architecture,
            VocabSize = r.Int("vocab_size", d.VocabSize, 1, 1 << 24),
            HiddenSize = r.Int("hidden_size", d.HiddenSize, 1, 1 << 16),
            IntermediateSize = r.Int("intermediate_size", d.IntermediateSize, 1, 1 << 18),
            ProjectionDim = r.Int("projection_dim", 512, 1, 1 << 16),
            NumHiddenLayers = r.Int("num_hidden_layers", d.NumHiddenLayers, 1, 1024),
            NumAttentionHeads = r.Int("num_attention_heads", d.NumAttentionHeads, 1, 4096),
            MaxPositionEmbeddings = r.Int("max_position_embeddings", d.MaxPositionEmbeddings, 1, 1 << 16),
            HiddenAct = r.String("hidden_act", d.HiddenAct),
            // added to a variance under a square root: <= 0 gives NaN (or inf) for constant rows
            LayerNormEps = r.Double("layer_norm_eps", d.LayerNormEps, 0, 1, minExclusive: true),
            BosTokenId = r.Int("bos_token_id", 49406),
            EosTokenId = r.Int("eos_token_id", 49407),
            PadTokenId = r.Int("pad_token_id", d.PadTokenId),
        };
        r.Require(c.HiddenSize % c.NumAttentionHeads == 0, "num_attention_heads", $"({c.NumAttentionHeads}) must divide hidden_size ({c.HiddenSize})");
        r.Require(c.HiddenAct is "quick_gelu" or "gelu", "hidden_act", $"'{c.HiddenAct}' is not supported (quick_gelu or gelu)");
        return c;
    }
}
