using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using LayerFusion.Core.Tensors;

namespace LayerFusion.Cpu;

// The LayerFusion prior ops (IOps.Priors.cs) on the CPU. The attention with statistics is the
// streamed twin of kernels/attention_priors.cu: one task owns a tile of query rows of one batch row
// and sweeps every head over it, so the head-mean of the tile's probabilities exists (tile x N
// floats, never M x N) before it is squared; the output is computed from the same probabilities in
// the same GEMMs as Attention, so it equals Attention's bit for bit up to Attention's FlashMinKeys
// (above, Attention streams the softmax over key blocks; both stay within fp32 rounding of float64).
public sealed partial class CpuOps
{
    public PriorAttentionOutputs PriorAttention(Tensor q, Tensor k, Tensor v, int heads, bool sparsity, int column)
    {
        var cq = C(q, "PriorAttention q"); var ck = C(k, "PriorAttention k"); var cv = C(v, "PriorAttention v");
        if (cq.Rank != 3 || ck.Rank != 3 || cv.Rank != 3)
            throw new ArgumentException($"PriorAttention: q {Fmt(cq)}, k {Fmt(ck)}, v {Fmt(cv)} must be [B, T, H*D]");
        int b = cq.Shape[0], m = cq.Shape[1], hd = cq.Shape[2], n = ck.Shape[1];
        if (heads <= 0 || hd % heads != 0) throw new ArgumentException($"PriorAttention: {hd} channels not divisible into {heads} heads");
        if (ck.Shape[0] != b || cv.Shape[0] != b || ck.Shape[2] != hd || cv.Shape[2] != hd || cv.Shape[1] != n)
            throw new ArgumentException($"PriorAttention: q {Fmt(cq)}, k {Fmt(ck)}, v {Fmt(cv)} do not agree");
        if (n < 1) throw new ArgumentException("PriorAttention needs at least one key");
        if (column >= n) throw new ArgumentOutOfRangeException(nameof(column), $"PriorAttention: column {column} is outside {n} keys");
        int dh = hd / heads;
        float scale = 1f / MathF.Sqrt(dh), invHeads = 1f / heads;
        var y = New(b, m, hd);
        var s = sparsity ? New(b, m) : null;
        var col = column >= 0 ? New(b, m) : null;
        bool stats = s != null || col != null;
        if (y.Length == 0) return new PriorAttentionOutputs(y, s, col);
        const int Mt = 64;
        int tiles = (m + Mt - 1) / Mt;
        var serial = new ParallelOptions { MaxDegreeOfParallelism = 1 };
        For(b * tiles, (long)Math.Min(Mt, m) * n * hd * 4, task =>
        {
            int tile = task % tiles, bi = task / tiles;
            int i0 = tile * Mt, mt = Math.Min(Mt, m - i0);
            var pool = System.Buffers.ArrayPool<float>.Shared;
            var scores = pool.Rent(mt * n);
            var mean = stats ? pool.Rent(mt * n) : null;
            try
            {
                if (mean != null) Array.Clear(mean, 0, mt * n);
                for (int h = 0; h < heads; h++)
                {
                    Gemm.Run(serial, mt, n, dh, cq.Data, cq.Offset + (bi * m + i0) * hd + h * dh, hd,
                        ck.Data, ck.Offset + bi * n * hd + h * dh, hd, true, scores, 0, n, scale);
                    for (int r = 0; r < mt; r++)
                    {
                        var row = new Span<float>(scores, r * n, n);
                        SoftmaxRow(row, row);
                        if (mean != null) TensorPrimitives.MultiplyAdd(row, invHeads, new ReadOnlySpan<float>(mean, r * n, n), new Span<float>(mean, r * n, n));
                    }
                    Gemm.Run(serial, mt, dh, n, scores, 0, n, cv.Data, cv.Offset + bi * n * hd + h * dh, hd, false,
                        y.Data, (bi * m + i0) * hd + h * dh, hd);
                }
                for (int r = 0; r < mt && mean != null; r++)
                {
                    var row = new ReadOnlySpan<float>(mean, r * n, n);
                    if (s != null) s.Data[bi * m + i0 + r] = (float)(1.0 / SumOfSquares(row));
                    if (col != null) col.Data[bi * m + i0 + r] = row[column];
                }
            }
            finally
            {
                pool.Return(scores);
                if (mean != null) pool.Return(mean);
            }
        });
        return new PriorAttentionOutputs(y, s, col);
    }

    // float64 accumulation: s is a reciprocal of a sum of up to N small squares
    static double SumOfSquares(ReadOnlySpan<float> row)
    {
        double acc = 0;
        foreach (var x in row) acc += (double)x * x;
        return acc;
    }

    CpuTensor Rows(Tensor x, string what, out int rows, out int m)
    {
        var c = C(x, what);
        if (c.Rank != 2) throw new ArgumentException($"{what}: expected per-query vectors [B, M], got {Fmt(c)}");
        rows = c.Shape[0];
        m = c.Shape[1];
        return c;
    }

    static void MinMaxInPlace(Span<float> x)
    {
        if (x.Length == 0) return;
        float lo = TensorPrimitives.Min(x), hi = TensorPrimitives.Max(x), range = hi - lo;
        if (!(range > 0)) { x.Clear(); return; }
        for (int i = 0; i < x.Length; i++) x[i] = (x[i] - lo) / range;
    }

    public Tensor DensityPrior(Tensor sparsity)
    {
        var s = Rows(sparsity, "DensityPrior", out int rows, out int m);
        var y = New(rows, m);
        for (int r = 0; r < rows; r++)
        {
            var dst = y.Data.AsSpan(r * m, m);
            s.ReadOnlySpan.Slice(r * m, m).CopyTo(dst);
            MinMaxInPlace(dst);
            for (int i = 0; i < m; i++) dst[i] = 1f - dst[i];
        }
        return y;
    }

    public Tensor ResizeBilinear(Tensor maps, int height, int width, int outHeight, int outWidth)
    {
        var x = Rows(maps, "ResizeBilinear", out int rows, out int m);
        if (height < 1 || width < 1 || outHeight < 1 || outWidth < 1 || (long)height * width != m)
            throw new ArgumentException($"ResizeBilinear: maps {Fmt(x)} are not {height}x{width} grids, or the target {outHeight}x{outWidth} is empty");
        var y = New(rows, outHeight * outWidth);
        double sy = (double)height / outHeight, sx = (double)width / outWidth;
        for (int r = 0; r < rows; r++)
        {
            var src = x.ReadOnlySpan.Slice(r * m, m);
            var dst = y.Data.AsSpan(r * outHeight * outWidth, outHeight * outWidth);
            for (int oy = 0; oy < outHeight; oy++)
            {
                double fy = Math.Max((oy + 0.5) * sy - 0.5, 0);
                int y0 = Math.Min((int)fy, height - 1), y1 = Math.Min(y0 + 1, height - 1);
                double ly = fy - y0;
                for (int ox = 0; ox < outWidth; ox++)
                {
                    double fx = Math.Max((ox + 0.5) * sx - 0.5, 0);
                    int x0 = Math.Min((int)fx, width - 1), x1 = Math.Min(x0 + 1, width - 1);
                    double lx = fx - x0;
                    double top = src[y0 * width + x0] * (1 - lx) + src[y0 * width + x1] * lx;
                    double bottom = src[y1 * width + x0] * (1 - lx) + src[y1 * width + x1] * lx;
                    dst[oy * outWidth + ox] = (float)(top * (1 - ly) + bottom * ly);
                }
            }
        }
        return y;
    }

    public (Tensor Soft, Tensor Hard) PriorMasks(Tensor density, Tensor content, float d)
    {
        var a = Rows(density, "PriorMasks density", out int rows, out int m);
        var c = Rows(content, "PriorMasks content", out int rows2, out int m2);
        if (rows != rows2 || m != m2) throw new ArgumentException($"PriorMasks: density {Fmt(a)} and content {Fmt(c)} differ in shape");
        if (!float.IsFinite(d)) throw new ArgumentException($"PriorMasks: d must be finite, got {d}");
        var soft = New(rows, m);
        var hard = New(rows, m);
        TensorPrimitives.Multiply(a.ReadOnlySpan, c.ReadOnlySpan, soft.Span);
        for (int r = 0; r < rows; r++) MinMaxInPlace(soft.Data.AsSpan(r * m, m));
        for (int i = 0; i < soft.Length; i++) hard.Data[i] = 1f / (1f + MathF.Exp(-d * (soft.Data[i] - 0.5f)));
        return (soft, hard);
    }

    public (Tensor Fg, Tensor Blend) PriorBlend(Tensor fg, Tensor blend, Tensor soft, Tensor hard)
    {
        var f = C(fg, "PriorBlend fg"); var x = C(blend, "PriorBlend blend");
        var sm = C(soft, "PriorBlend soft"); var hm = C(hard, "PriorBlend hard");
        if (f.Rank != 3 || !f.Shape.AsSpan().SequenceEqual(x.Shape))
            throw new ArgumentException($"PriorBlend: fg {Fmt(f)} and blend {Fmt(x)} must both be [B, T, C]");
        int b = f.Shape[0], t = f.Shape[1], ch = f.Shape[2];
        if (sm.ElementCount != t || hm.ElementCount != t)
            throw new ArgumentException($"PriorBlend: masks {Fmt(sm)} / {Fmt(hm)} must hold one value per token ({t})");
        var fy = New(b, t, ch);
        var by = New(b, t, ch);
        For(b * t, ch * 4L, row =>
        {
            int tok = row % t;
            float s = sm.Data[sm.Offset + tok], h = hm.Data[hm.Offset + tok];
            var fi = f.ReadOnlySpan.Slice(row * ch, ch);
            var bi = x.ReadOnlySpan.Slice(row * ch, ch);
            var fo = fy.Data.AsSpan(row * ch, ch);
            var bo = by.Data.AsSpan(row * ch, ch);
            for (int c = 0; c < ch; c++)
            {
                float blended = fi[c] * s + bi[c] * (1 - s);
                bo[c] = blended;
                fo[c] = blended * h + fi[c] * (1 - h);
            }
        });
        return (fy, by);
    }

    public Tensor ExclusionKeyBias(Tensor hard, int rows, int openKeys)
    {
        var hm = C(hard, "ExclusionKeyBias hard");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(openKeys);
        int t = hm.Length, n = checked(openKeys + t);
        var y = New(rows, n);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < t; j++)
                if (hm.Data[hm.Offset + j] > 0.5f) y.Data[r * n + openKeys + j] = float.NegativeInfinity;
        return y;
    }
}
