using LayerFusion.Core.Schedulers;
using LayerFusion.Core.Tensors;
using LayerFusion.Core.Text;

namespace LayerFusion.Core.Pipelines;

/// <summary>
/// The UNet's conditioning for one batched call, laid out as diffusers' StableDiffusionXLPipeline
/// builds it: with guidance, rows [negative x n, positive x n] (torch.cat([negative, positive]) after
/// each was repeated per image); without guidance, [positive x n]. Every row gets the same
/// add_time_ids (negative_add_time_ids = add_time_ids when no negative sizes are given).
/// </summary>
public sealed class SdxlUnetConditioning : IDisposable
{
    SdxlUnetConditioning(Tensor encoderHiddenStates, Tensor textEmbeds, float[] timeIds, int imagesPerHalf, bool guided)
    {
        EncoderHiddenStates = encoderHiddenStates;
        TextEmbeds = textEmbeds;
        TimeIds = timeIds;
        ImagesPerHalf = imagesPerHalf;
        Guided = guided;
    }

    /// <summary>[Batch, T, C]: prompt_embeds (the UNet's encoder_hidden_states).</summary>
    public Tensor EncoderHiddenStates { get; }
    /// <summary>[Batch, P]: the pooled text_embeds of added_cond_kwargs.</summary>
    public Tensor TextEmbeds { get; }
    /// <summary>[Batch, 6] row-major: add_time_ids.</summary>
    public float[] TimeIds { get; }
    /// <summary>Images per half (num_images_per_prompt).</summary>
    public int ImagesPerHalf { get; }
    /// <summary>True when the rows are [uncond, cond] for classifier-free guidance.</summary>
    public bool Guided { get; }
    /// <summary>Rows of the UNet batch: 2n with guidance, n without.</summary>
    public int Batch => Guided ? 2 * ImagesPerHalf : ImagesPerHalf;

    /// <param name="encoding">The prompt's and negative prompt's embeddings (not disposed here).</param>
    /// <param name="images">num_images_per_prompt.</param>
    /// <param name="timeIds">Six add_time_ids (<see cref="SdxlTimeIds"/>).</param>
    /// <param name="guided">diffusers' do_classifier_free_guidance (guidance_scale &gt; 1).</param>
    public static SdxlUnetConditioning Create(SdxlTextEncoding encoding, int images, float[] timeIds, bool guided)
    {
        ArgumentNullException.ThrowIfNull(encoding);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(images);
        var ops = encoding.Positive.PromptEmbeds.Ops;
        var embedRows = new List<Tensor>();
        var pooledRows = new List<Tensor>();
        if (guided)
            for (int i = 0; i < images; i++)
            {
                embedRows.Add(encoding.Negative.PromptEmbeds);
                pooledRows.Add(encoding.Negative.PooledPromptEmbeds);
            }
        for (int i = 0; i < images; i++)
        {
            embedRows.Add(encoding.Positive.PromptEmbeds);
            pooledRows.Add(encoding.Positive.PooledPromptEmbeds);
        }
        int batch = embedRows.Count;
        var embeds = ops.Concat(embedRows, 0);
        Tensor pooled;
        try
        {
            pooled = ops.Concat(pooledRows, 0);
        }
        catch
        {
            embeds.Dispose();
            throw;
        }
        return new SdxlUnetConditioning(embeds, pooled, SdxlTimeIds.Repeat(timeIds, batch), images, guided);
    }

    public void Dispose()
    {
        EncoderHiddenStates.Dispose();
        TextEmbeds.Dispose();
    }
}
