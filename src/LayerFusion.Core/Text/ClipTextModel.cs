using LayerFusion.Core.Models;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Text;

/// <summary>What SDXL takes from a CLIP text encoder.</summary>
/// <param name="HiddenStates">transformers hidden_states[-(2 + clipSkip)], [B, T, C]: the penultimate
/// layer's output for clipSkip 0, without the final layer norm (SDXL's prompt_embeds part).</param>
/// <param name="Pooled">final_layer_norm(last hidden state) at each row's EOS position, [B, C]
/// (transformers pooler_output); null when not requested.</param>
/// <param name="TextEmbeds">Pooled @ text_projection^T, [B, projection_dim], for
/// CLIPTextModelWithProjection (SDXL's pooled text embedding); else null.</param>
public sealed record ClipTextOutput(Tensor HiddenStates, Tensor? Pooled, Tensor? TextEmbeds) : IDisposable
{
    public void Dispose()
    {
        HiddenStates.Dispose();
        Pooled?.Dispose();
        TextEmbeds?.Dispose();
    }
}

/// <summary>
/// transformers CLIPTextModel / CLIPTextModelWithProjection (the SDXL text_encoder and
/// text_encoder_2) on <see cref="IOps"/>. Weight names are the checkpoint's:
/// text_model.{embeddings, encoder.layers.N, final_layer_norm}.*, text_projection.weight.
/// </summary>
public sealed class ClipTextModel
{
    readonly ParameterStore _w;
    readonly ParameterStore _textModel;

    /// <param name="weights">The component's store (keys as in its model.safetensors).</param>
    public ClipTextModel(ClipTextConfig config, ParameterStore weights)
    {
        Config = config;
        _w = weights;
        _textModel = weights.Scope("text_model");
        Embeddings = new ClipTextEmbeddings(config, _textModel.Scope("embeddings"), "text_model.embeddings.");
        var layers = new ClipEncoderLayer[config.NumHiddenLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            var scope = $"encoder.layers.{i}";
            layers[i] = new ClipEncoderLayer(config, _textModel.Scope(scope), $"text_model.{scope}.");
        }
        Layers = layers;
        WeightShapes.Expect(_textModel, "text_model.", "final_layer_norm.weight", config.HiddenSize);
        WeightShapes.Expect(_textModel, "text_model.", "final_layer_norm.bias", config.HiddenSize);
        if (config.WithProjection)
            WeightShapes.Expect(weights, "", "text_projection.weight", config.ProjectionDim, config.HiddenSize);
    }

    public ClipTextConfig Config { get; }
    public ClipTextEmbeddings Embeddings { get; }
    public IReadOnlyList<ClipEncoderLayer> Layers { get; }

    /// <summary>Runs the encoder on <paramref name="ids"/> ([batch, T] row-major).</summary>
    /// <param name="clipSkip">diffusers' clip_skip: 0 returns hidden_states[-2], k returns hidden_states[-(k + 2)].</param>
    /// <param name="withPooled">Also compute the pooled (and, with a projection, projected) output.
    /// Without it the layers after the returned hidden state are not run.</param>
    public ClipTextOutput Forward(ReadOnlySpan<int> ids, int batch, int clipSkip = 0, bool withPooled = true)
    {
        int layerCount = Layers.Count;
        // hidden_states holds the embeddings plus each layer's output: index -(k+2) is the output of
        // layer count - 1 - k (0 = the embeddings themselves).
        int keepAfter = layerCount - 1 - clipSkip;
        if (clipSkip < 0 || keepAfter < 0)
            throw new UserInputException($"clip skip {clipSkip} is out of range for a text encoder with {layerCount} layers");

        var ops = _w.Ops;
        int tokens = ids.Length / Math.Max(batch, 1);
        var x = Embeddings.Forward(ids, batch);
        Tensor? selected = keepAfter == 0 ? x : null;
        int run = withPooled ? layerCount : keepAfter;
        for (int i = 0; i < run; i++)
        {
            var next = Layers[i].Forward(x);
            if (!ReferenceEquals(x, selected)) x.Dispose();
            x = next;
            if (i + 1 == keepAfter) selected = x;
        }
        if (!withPooled) return new ClipTextOutput(selected!, null, null);

        Tensor pooled;
        using (var last = ops.LayerNorm(x, _textModel["final_layer_norm.weight"], _textModel["final_layer_norm.bias"], (float)Config.LayerNormEps))
        {
            if (!ReferenceEquals(x, selected)) x.Dispose();
            pooled = GatherRows(ops, last, EosPositions(ids, batch, tokens));
        }
        var textEmbeds = Config.WithProjection ? ops.Linear(pooled, _w["text_projection.weight"]) : null;
        return new ClipTextOutput(selected!, pooled, textEmbeds);
    }

    /// <summary>
    /// The row CLIPTextTransformer pools per sequence: with the legacy eos_token_id == 2 (configs
    /// written before transformers knew the real id) the argmax of the ids, which is EOS because it is
    /// the vocabulary's largest id; otherwise the first occurrence of eos_token_id (0 if absent, as
    /// torch's argmax of an all-false mask).
    /// </summary>
    public int[] EosPositions(ReadOnlySpan<int> ids, int batch, int tokens)
    {
        var result = new int[batch];
        for (int b = 0; b < batch; b++)
        {
            var row = ids.Slice(b * tokens, tokens);
            int pos = 0;
            if (Config.EosTokenId == 2)
            {
                for (int t = 1; t < tokens; t++)
                    if (row[t] > row[pos]) pos = t;  // strict: first maximum, as torch.argmax
            }
            else
            {
                int first = row.IndexOf(Config.EosTokenId);
                pos = first < 0 ? 0 : first;
            }
            result[b] = pos;
        }
        return result;
    }

    static Tensor GatherRows(IOps ops, Tensor x, int[] positions)
    {
        int channels = x.Dim(2);
        var rows = new List<Tensor>(positions.Length);
        try
        {
            for (int b = 0; b < positions.Length; b++)
            {
                using var one = ops.Slice(x, 0, b, 1);
                rows.Add(ops.Slice(one, 1, positions[b], 1));
            }
            return ops.Concat(rows.Select(r => r.Reshape(1, channels)).ToList(), 0);
        }
        finally
        {
            foreach (var r in rows) r.Dispose();
        }
    }
}
