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

/// <summary>Host results of a prior-emitting attention call; all per-query vectors are [B, M].</summary>
/// <param name="Output">[B, M, H*D].</param>
public sealed record PriorAttentionHostResult(float[] Output, float[]? Sparsity, float[]? EosColumn);
