using LayerFusion.Core.Tensors;
using LayerFusion.Core.Text;
using LayerFusion.WeightsLoader;

namespace LayerFusion.Core.Pipelines;

/// <summary>
/// A model component produced NaN or infinity (NaN/Inf weights, an fp16 overflow): without this
/// check the result is a uniform black image and a success. <see cref="Component"/> names the first
/// component whose output went bad (text encoders, unet, sampler, vae, transparent decoder).
/// </summary>
public sealed class NonFiniteOutputException(string component, string message) : UserInputException(message)
{
    public string Component { get; } = component;
}

/// <summary>
/// The cheap checks the pipelines run on what they already hold on the host (one pass over a
/// latent per step, over each decoded image once, over the text embeddings once).
/// </summary>
public static class FiniteCheck
{
    /// <summary>Throws <see cref="NonFiniteOutputException"/> when <paramref name="values"/> holds NaN or infinity.</summary>
    public static void Require(ReadOnlySpan<float> values, string component, string where)
    {
        int bad = -1;
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i])) { bad = i; break; }
        if (bad < 0) return;
        int count = 0;
        foreach (var v in values) if (!float.IsFinite(v)) count++;
        throw new NonFiniteOutputException(component,
            $"the {component} produced non-finite values ({count} of {values.Length} are NaN or infinity, first {values[bad]} at index {bad}) {where}; " +
            $"its weights may hold NaN/Inf, or its values overflow this backend's precision");
    }

    /// <summary><see cref="Require(ReadOnlySpan{float}, string, string)"/> on a backend tensor (copied to the host).</summary>
    public static void Require(Tensor tensor, string component, string where)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        Require(tensor.Ops.ToHost(tensor), component, where);
    }

    /// <summary>Both prompts' embeddings (sequence and pooled) of an encoding.</summary>
    public static void Require(SdxlTextEncoding encoding, string what)
    {
        ArgumentNullException.ThrowIfNull(encoding);
        foreach (var (e, branch) in new[] { (encoding.Positive, "prompt"), (encoding.Negative, "negative prompt") })
        {
            Require(e.PromptEmbeds, "text encoders", $"for the {what} {branch} (prompt_embeds)");
            Require(e.PooledPromptEmbeds, "text encoder 2", $"for the {what} {branch} (pooled_prompt_embeds)");
        }
    }
}
