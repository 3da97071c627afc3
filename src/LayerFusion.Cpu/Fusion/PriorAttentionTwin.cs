using LayerFusion.Core.Fusion;

namespace LayerFusion.Cpu.Fusion;

/// <summary>
/// The CPU twin of the fused prior attention kernel (kernels/attention_priors.cu) on host arrays:
/// <see cref="CpuOps.PriorAttention"/> (streamed per query tile, all heads of a tile in one task,
/// head-mean before squaring, no M x N map, multi-threaded; the engine's CPU path) for the output, s
/// and the &lt;EOS&gt; column. GPU parity tests compare the kernel with this.
/// </summary>
public static class PriorAttentionTwin
{
    /// <param name="q">[batch, queries, heads*headDim]</param>
    /// <param name="k">[batch, keys, heads*headDim]</param>
    /// <param name="v">[batch, keys, heads*headDim]</param>
    /// <param name="keyBias">optional [batch, keys], added to every score row (output only; see remarks).</param>
    /// <remarks>
    /// CpuOps.PriorAttention takes no key bias, so priors together with a key bias are
    /// refused here (LayerFusion never asks for them together: priors come from FG attention, key
    /// bias only from BG sharing); the kernel supports the combination and is checked against the
    /// float64 reference for it.
    /// </remarks>
    public static PriorAttentionHostResult Run(float[] q, float[] k, float[] v, int batch, int queries, int keys, int heads,
        int headDim, PriorAttentionOptions options, float[]? keyBias = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (batch < 1 || queries < 1 || keys < 1 || heads < 1 || headDim < 1)
            throw new ArgumentException("prior attention needs at least one batch row, query, key, head and channel");
        int inner = heads * headDim;
        if (q.Length != (long)batch * queries * inner || k.Length != (long)batch * keys * inner || v.Length != k.Length)
            throw new ArgumentException($"q/k/v hold {q.Length}/{k.Length}/{v.Length} values; expected [{batch},{queries},{inner}] and [{batch},{keys},{inner}]");
        options.Validate(keys);
        if (keyBias is not null && keyBias.Length != (long)batch * keys)
            throw new ArgumentException($"key bias must be [{batch}, {keys}]");
        if (keyBias is not null && options.EmitsPriors)
            throw new NotSupportedException("the CPU twin's statistics (CpuOps.PriorAttention) take no key bias");

        float[] output;
        float[]? sparsity = null, column = null;
        var ops = new CpuOps();
        using (var qt = ops.FromHost(q, batch, queries, inner))
        using (var kt = ops.FromHost(k, batch, keys, inner))
        using (var vt = ops.FromHost(v, batch, keys, inner))
        using (var bt = keyBias is null ? null : ops.FromHost(keyBias, batch, keys))
        {
            if (options.EmitsPriors)
            {
                // the streamed, multi-threaded twin itself: CpuOps.PriorAttention (the engine's CPU path)
                using var r = ops.PriorAttention(qt, kt, vt, heads, options.Sparsity, options.EosIndex);
                output = ops.ToHost(r.Output);
                sparsity = r.Sparsity is null ? null : ops.ToHost(r.Sparsity);
                column = r.Column is null ? null : ops.ToHost(r.Column);
            }
            else
            {
                using var o = ops.Attention(qt, kt, vt, heads, bt);
                output = ops.ToHost(o);
            }
        }

        return new PriorAttentionHostResult(output, sparsity, column);
    }
}
