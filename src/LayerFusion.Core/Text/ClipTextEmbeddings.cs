using LayerFusion.Core.Models;
using LayerFusion.Core.Tensors;
using LayerFusion.WeightsLoader;
using LayerFusion.WeightsLoader.Configs;

namespace LayerFusion.Core.Text;

/// <summary>transformers CLIPTextEmbeddings: token_embedding(ids) + position_embedding(0..T-1).</summary>
public sealed class ClipTextEmbeddings
{
    readonly ParameterStore _w;
    readonly ClipTextConfig _config;

    /// <param name="weights">Scoped at "text_model.embeddings".</param>
    public ClipTextEmbeddings(ClipTextConfig config, ParameterStore weights, string scope)
    {
        _config = config;
        _w = weights;
        WeightShapes.Expect(weights, scope, "token_embedding.weight", config.VocabSize, config.HiddenSize);
        WeightShapes.Expect(weights, scope, "position_embedding.weight", config.MaxPositionEmbeddings, config.HiddenSize);
    }

    /// <summary>ids [batch * tokens] (row-major [B, T]) -> [B, T, hidden].</summary>
    public Tensor Forward(ReadOnlySpan<int> ids, int batch)
    {
        if (batch <= 0 || ids.Length % batch != 0) throw new ArgumentException($"{ids.Length} ids do not split into {batch} rows");
        int tokens = ids.Length / batch;
        if (tokens > _config.MaxPositionEmbeddings)
            throw new UserInputException($"text encoder: {tokens} tokens, more than its {_config.MaxPositionEmbeddings} positions");
        foreach (var id in ids)
            if ((uint)id >= (uint)_config.VocabSize)
                throw new UserInputException($"text encoder: token id {id} is outside its vocabulary of {_config.VocabSize} (tokenizer and text encoder do not match)");
        var ops = _w.Ops;
        var positions = new int[tokens];
        for (int i = 0; i < tokens; i++) positions[i] = i;
        using var tok = ops.Gather(_w["token_embedding.weight"], ids);
        using var pos = ops.Gather(_w["position_embedding.weight"], positions);
        var sum = ops.Add(tok.Reshape(batch, tokens, _config.HiddenSize), pos);
        return sum;
    }
}
