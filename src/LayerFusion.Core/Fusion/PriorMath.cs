namespace LayerFusion.Core.Fusion;

/// <summary>
/// The LayerFusion prior and mask math (paper Sec. 3.2-3.3, supplement Alg. 1-3) on host vectors.
/// These are the semantics every backend's fused kernel must reproduce; they are small (one value
/// per query token), so the CPU form is also what the engine uses between attention calls.
/// </summary>
public static class PriorMath
{
    /// <summary>
    /// Structure-prior sparsity score per query: s_i = 1 / sum_j m_ij^2, where m is the head-mean of
    /// the attention probabilities (rows of <paramref name="headMeanProbabilities"/>, [M, N]).
    /// A row that is all mass on one key gives 1 (sparsest); uniform over N keys gives N.
    /// </summary>
    public static float[] SparsityScores(ReadOnlySpan<float> headMeanProbabilities, int queries, int keys)
    {
        if (headMeanProbabilities.Length != (long)queries * keys)
            throw new ArgumentException($"expected {queries}x{keys} probabilities, got {headMeanProbabilities.Length}");
        var s = new float[queries];
        for (int i = 0; i < queries; i++)
        {
            double sumSq = 0;
            foreach (var m in headMeanProbabilities.Slice(i * keys, keys)) sumSq += (double)m * m;
            s[i] = (float)(1.0 / sumSq);
        }
        return s;
    }

    /// <summary>Min-max normalization to [0, 1]; a constant vector maps to all zeros (our decision: no
    /// division by zero, and a flat prior then carries no foreground evidence).</summary>
    public static float[] MinMax(ReadOnlySpan<float> x)
    {
        var result = new float[x.Length];
        if (x.Length == 0) return result;
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        foreach (var v in x)
        {
            if (v < min) min = v;
            if (v > max) max = v;
        }
        float range = max - min;
        if (!(range > 0)) return result;
        for (int i = 0; i < x.Length; i++) result[i] = (x[i] - min) / range;
        return result;
    }

    /// <summary>s' = 1 - minmax(s): dense attention rows (foreground votes) score high.</summary>
    public static float[] DensityPrior(ReadOnlySpan<float> sparsity)
    {
        var n = MinMax(sparsity);
        for (int i = 0; i < n.Length; i++) n[i] = 1f - n[i];
        return n;
    }

    /// <summary>mask_soft = minmax(s' * c) elementwise, both at the layer's resolution.</summary>
    public static float[] SoftMask(ReadOnlySpan<float> densityPrior, ReadOnlySpan<float> contentPrior)
    {
        if (densityPrior.Length != contentPrior.Length)
            throw new ArgumentException($"structure prior has {densityPrior.Length} values, content prior {contentPrior.Length}");
        var product = new float[densityPrior.Length];
        for (int i = 0; i < product.Length; i++) product[i] = densityPrior[i] * contentPrior[i];
        return MinMax(product);
    }

    /// <summary>mask_hard = sigmoid(d * (mask_soft - 0.5)); d is the decision-boundary coefficient (paper: 10).</summary>
    public static float[] HardMask(ReadOnlySpan<float> softMask, float d)
    {
        var h = new float[softMask.Length];
        for (int i = 0; i < h.Length; i++) h[i] = 1f / (1f + MathF.Exp(-d * (softMask[i] - 0.5f)));
        return h;
    }

    /// <summary>
    /// Bilinear resize of a [h, w] map (align_corners = false, no antialias: torch
    /// F.interpolate(mode="bilinear")), used to bring s' from the prior layer to each layer's size.
    /// </summary>
    public static float[] ResizeBilinear(ReadOnlySpan<float> map, int h, int w, int outH, int outW)
    {
        if (map.Length != h * w) throw new ArgumentException($"map has {map.Length} values, not {h}x{w}");
        var result = new float[outH * outW];
        double sy = (double)h / outH, sx = (double)w / outW;
        for (int y = 0; y < outH; y++)
        {
            double fy = Math.Max((y + 0.5) * sy - 0.5, 0);
            int y0 = Math.Min((int)fy, h - 1), y1 = Math.Min(y0 + 1, h - 1);
            double ly = fy - y0;
            for (int x = 0; x < outW; x++)
            {
                double fx = Math.Max((x + 0.5) * sx - 0.5, 0);
                int x0 = Math.Min((int)fx, w - 1), x1 = Math.Min(x0 + 1, w - 1);
                double lx = fx - x0;
                double top = map[y0 * w + x0] * (1 - lx) + map[y0 * w + x1] * lx;
                double bottom = map[y1 * w + x0] * (1 - lx) + map[y1 * w + x1] * lx;
                result[y * outW + x] = (float)(top * (1 - ly) + bottom * ly);
            }
        }
        return result;
    }

    /// <summary>
    /// Eq. 1 and Eq. 2 on attention outputs [tokens, channels] with a per-token mask:
    /// blend' = fg * soft + blend * (1 - soft);  fg' = blend' * hard + fg * (1 - hard).
    /// Writes the results into <paramref name="blend"/> and <paramref name="fg"/>.
    /// </summary>
    public static void BlendInPlace(Span<float> fg, Span<float> blend, ReadOnlySpan<float> softMask,
        ReadOnlySpan<float> hardMask, int channels)
    {
        int tokens = softMask.Length;
        if (fg.Length != (long)tokens * channels || blend.Length != fg.Length || hardMask.Length != tokens)
            throw new ArgumentException("attention outputs and masks disagree in size");
        for (int t = 0; t < tokens; t++)
        {
            float soft = softMask[t], hard = hardMask[t];
            var f = fg.Slice(t * channels, channels);
            var b = blend.Slice(t * channels, channels);
            for (int c = 0; c < channels; c++)
            {
                float blended = f[c] * soft + b[c] * (1 - soft);
                b[c] = blended;
                f[c] = blended * hard + f[c] * (1 - hard);
            }
        }
    }
}
