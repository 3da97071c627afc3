namespace LayerFusion.Core.Fusion;

/// <summary>
/// What a prior-emitting attention call returns besides its output (the fused kernel of
/// kernels/attention_priors.cu and its CPU twin share this contract; DESIGN §5, §6).
/// </summary>
/// <param name="Sparsity">emit s_i = 1 / sum_j (mean_h p_hij)^2 per query (the structure prior's input).</param>
/// <param name="EosIndex">key index whose head-mean probability c_i = mean_h p_{h,i,EosIndex} to emit, or -1.</param>
public sealed record PriorAttentionOptions(bool Sparsity = false, int EosIndex = -1)
{
    public static PriorAttentionOptions None { get; } = new();

    /// <summary>True when any prior is asked for (the kernel then runs all heads of a query tile in one block).</summary>
    public bool EmitsPriors => Sparsity || EosIndex >= 0;

    public void Validate(int keys)
    {
        if (EosIndex < -1 || EosIndex >= keys)
            throw new ArgumentOutOfRangeException(nameof(EosIndex), $"<EOS> index {EosIndex} is outside {keys} keys");
    }
}

/// <summary>
/// Host form of the Eq. 1 / Eq. 2 epilogue inputs: the FG stream's attention output (same layout as
/// the output, [B, M, H*D]; receives a'_fg) and per-query masks [mask batches, M] read at
/// b * <paramref name="MaskBatchStride"/> + i (0: one mask pair for every batch row).
/// </summary>
public sealed record PriorBlendHost(float[] Fg, float[] SoftMask, float[] HardMask, int MaskBatchStride);

/// <summary>Host results of a prior-emitting attention call; all per-query vectors are [B, M].</summary>
/// <param name="Output">[B, M, H*D]; with a blend epilogue, a'_blend (Eq. 1).</param>
/// <param name="Fg">with a blend epilogue, a'_fg (Eq. 2); else null.</param>
public sealed record PriorAttentionHostResult(float[] Output, float[]? Sparsity, float[]? EosColumn, float[]? Fg);
