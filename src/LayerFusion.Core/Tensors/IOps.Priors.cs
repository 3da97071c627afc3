namespace LayerFusion.Core.Tensors;

/// <summary>
/// What <see cref="IOps.PriorAttention"/> returns: the attention output and, when asked for, the
/// per-query LayerFusion statistics as backend tensors (never an M x N map).
/// </summary>
/// <param name="Output">[B, M, H*D], the same as <see cref="IOps.Attention"/>.</param>
/// <param name="Sparsity">[B, M]: s_i = 1 / sum_j (mean_h p_hij)^2 (Alg. 1), or null.</param>
/// <param name="Column">[B, M]: mean_h p_{h,i,column} (Alg. 2's &lt;EOS&gt; column), or null.</param>
public sealed record PriorAttentionOutputs(Tensor Output, Tensor? Sparsity, Tensor? Column) : IDisposable
{
    public void Dispose()
    {
        Output.Dispose();
        Sparsity?.Dispose();
        Column?.Dispose();
    }
}

// The LayerFusion prior ops (paper Sec. 3.2-3.3, supplement Alg. 1-3). Per-query vectors are
// [B, M] tensors of the backend (on CUDA: in its storage type); the host forms in
// LayerFusion.Core.Fusion.PriorMath / AttentionStatistics are the float64-checked reference.
public partial interface IOps
{
    /// <summary>
    /// <see cref="Attention"/> (no key bias, not causal) that also returns the head-mean statistics of
    /// its probabilities: s_i = 1 / sum_j m_ij^2 when <paramref name="sparsity"/>, and m_{i,column} when
    /// <paramref name="column"/> &gt;= 0, where m_ij = mean over heads of softmax(q k^T / sqrt(D))_hij.
    /// </summary>
    PriorAttentionOutputs PriorAttention(Tensor q, Tensor k, Tensor v, int heads, bool sparsity, int column);

    /// <summary>s' = 1 - minmax(s) per row of s [B, M] (a constant row gives all ones: minmax of it is 0).</summary>
    Tensor DensityPrior(Tensor sparsity);

    /// <summary>
    /// Bilinear resize of maps [B, h*w] to [B, outH*outW] (align_corners = false, no antialias: torch
    /// F.interpolate(mode="bilinear")); brings s' from the prior layer to a layer's token grid.
    /// </summary>
    Tensor ResizeBilinear(Tensor maps, int height, int width, int outHeight, int outWidth);

    /// <summary>mask_soft = minmax(density * content) per row, mask_hard = sigmoid(d (mask_soft - 0.5)); [B, T] each.</summary>
    (Tensor Soft, Tensor Hard) PriorMasks(Tensor density, Tensor content, float d);

    /// <summary>
    /// Eq. 1 then Eq. 2 on attention outputs after to_out, fg and blend [B, T, C], masks [T] (one pair
    /// for every batch row): blend' = fg * soft + blend * (1 - soft); fg' = blend' * hard + fg * (1 - hard).
    /// </summary>
    (Tensor Fg, Tensor Blend) PriorBlend(Tensor fg, Tensor blend, Tensor soft, Tensor hard);

    /// <summary>
    /// The sharing key bias [rows, open + T] over [open keys, masked keys]: 0 for the first
    /// <paramref name="openKeys"/> keys, and for key j of the rest -inf where hard[j] &gt; 0.5, else 0.
    /// </summary>
    Tensor ExclusionKeyBias(Tensor hard, int rows, int openKeys);
}
