using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using LayerFusion.Core.Tensors;

namespace LayerFusion.Cpu;

public sealed partial class CpuOps
{
    /// <summary>Above this many keys Attention streams the softmax over key blocks (flash-style): a full
    /// score row no longer fits the core's L2 beside the packed operands (4096 tokens: a 64-query tile
    /// is 1 MiB). Up to it the whole row is scored at once, which PriorAttention's statistics share
    /// (its output equals Attention's bit for bit there). Tests lower it to reach the streamed path.</summary>
    internal int FlashMinKeys { get; init; } = 1024;

    /// <summary>Keys per block of the streamed softmax: a 96 x 256 score block (96 KiB) stays in L2.</summary>
    internal int FlashKeyBlock { get; init; } = 256;

    public Tensor Attention(Tensor q, Tensor k, Tensor v, int heads, Tensor? keyBias = null, bool causal = false)
    {
        var cq = C(q, "Attention q"); var ck = C(k, "Attention k"); var cv = C(v, "Attention v");
        if (cq.Rank != 3 || ck.Rank != 3 || cv.Rank != 3)
            throw new ArgumentException($"Attention: q {Fmt(cq)}, k {Fmt(ck)}, v {Fmt(cv)} must be [B, T, H*D]");
        int b = cq.Shape[0], m = cq.Shape[1], hd = cq.Shape[2], n = ck.Shape[1];
        if (heads <= 0 || hd % heads != 0) throw new ArgumentException($"Attention: {hd} channels not divisible into {heads} heads");
        if (ck.Shape[0] != b || cv.Shape[0] != b || ck.Shape[2] != hd || cv.Shape[2] != hd || cv.Shape[1] != n)
            throw new ArgumentException($"Attention: q {Fmt(cq)}, k {Fmt(ck)}, v {Fmt(cv)} do not agree");
        CpuTensor? kb = null;
        if (keyBias != null)
        {
            kb = C(keyBias, "Attention keyBias");
            if (kb.Rank != 2 || kb.Shape[0] != b || kb.Shape[1] != n)
                throw new ArgumentException($"Attention: keyBias {Fmt(kb)} must be [{b}, {n}]");
        }
        var y = New(b, m, hd);
        if (y.Length == 0) return y;
        if (n > FlashMinKeys) FlashAttention(cq, ck, cv, kb, causal, heads, y);
        else TiledAttention(cq, ck, cv, kb, causal, heads, y);
        return y;
    }

    /// <summary>Tiles of query rows per (batch, head): S = scale * Q K^T and O = softmax(S) V as two GEMMs
    /// straight from the [B, T, H*D] layouts (leading dimension H*D), one full score tile per task.</summary>
    void TiledAttention(CpuTensor cq, CpuTensor ck, CpuTensor cv, CpuTensor? kb, bool causal, int heads, CpuTensor y)
    {
        int b = cq.Shape[0], m = cq.Shape[1], hd = cq.Shape[2], n = ck.Shape[1], dh = hd / heads;
        float scale = 1f / MathF.Sqrt(dh);
        const int Mt = 64;
        int tiles = (m + Mt - 1) / Mt;
        var serial = new ParallelOptions { MaxDegreeOfParallelism = 1 };
        For(b * heads * tiles, (long)Math.Min(Mt, m) * n * dh * 4, task =>
        {
            int tile = task % tiles, h = task / tiles % heads, bi = task / tiles / heads;
            int i0 = tile * Mt, mt = Math.Min(Mt, m - i0);
            var scores = System.Buffers.ArrayPool<float>.Shared.Rent(mt * n);
            try
            {
                Gemm.Run(serial, mt, n, dh, cq.Data, cq.Offset + (bi * m + i0) * hd + h * dh, hd,
                    ck.Data, ck.Offset + bi * n * hd + h * dh, hd, true, scores, 0, n, scale);
                for (int r = 0; r < mt && n > 0; r++)
                {
                    var row = new Span<float>(scores, r * n, n);
                    if (kb != null) TensorPrimitives.Add(row, new ReadOnlySpan<float>(kb.Data, kb.Offset + bi * n, n), row);
                    if (causal && i0 + r + 1 < n) row[(i0 + r + 1)..].Fill(float.NegativeInfinity);
                    SoftmaxRow(row, row);
                }
                Gemm.Run(serial, mt, dh, n, scores, 0, n, cv.Data, cv.Offset + bi * n * hd + h * dh, hd, false,
                    y.Data, (bi * m + i0) * hd + h * dh, hd);
            }
            finally { System.Buffers.ArrayPool<float>.Shared.Return(scores); }
        });
    }

    /// <summary>Flash-style: per (batch, head, 96-query tile) the keys are swept in blocks; each block's
    /// scores are exponentiated against the running maximum, earlier partial sums and outputs are
    /// rescaled when the maximum grows, and the output is divided by the sum once at the end. No score
    /// row is ever held whole, so the working set stays in L2 at any sequence length.
    /// Transposed (S^T = K Q^T, O^T = V^T P^T): every operand packs with contiguous copies (P^T as the
    /// B panels, V^T as the A panels; P as A was a 12-row gather per key, as costly as the P V product
    /// at head dim 64), and the softmax runs along rows across the tile's queries.
    /// A query whose keys are all masked ends with sum 0 and output 0/0 = NaN, as the full softmax gives.</summary>
    void FlashAttention(CpuTensor cq, CpuTensor ck, CpuTensor cv, CpuTensor? kb, bool causal, int heads, CpuTensor y)
    {
        int b = cq.Shape[0], m = cq.Shape[1], hd = cq.Shape[2], n = ck.Shape[1], dh = hd / heads;
        float scale = 1f / MathF.Sqrt(dh);
        int nk = Math.Max(1, FlashKeyBlock);
        const int Mt = 96;   // 3 NR-wide panels of the 32-column kernel
        int tiles = (m + Mt - 1) / Mt;
        var serial = new ParallelOptions { MaxDegreeOfParallelism = 1 };
        For(b * heads * tiles, (long)Math.Min(Mt, m) * n * dh * 4, task =>
        {
            int tile = task % tiles, h = task / tiles % heads, bi = task / tiles / heads;
            int i0 = tile * Mt, mt = Math.Min(Mt, m - i0);
            var pool = System.Buffers.ArrayPool<float>.Shared;
            var st = pool.Rent(nk * mt);
            var acc = pool.Rent(dh * mt);
            var part = pool.Rent(dh * mt);
            var stats = pool.Rent(4 * mt);
            try
            {
                // per query: running max, running sum, this block's max then its correction, the max subtracted
                var colMax = stats.AsSpan(0, mt); var colSum = stats.AsSpan(mt, mt);
                var blockMax = stats.AsSpan(2 * mt, mt); var shift = stats.AsSpan(3 * mt, mt);
                colMax.Fill(float.NegativeInfinity); colSum.Clear();
                Array.Clear(acc, 0, dh * mt);
                int qOff = cq.Offset + (bi * m + i0) * hd + h * dh;
                // causal: keys past the tile's last query are masked for all of it
                int keys = causal ? Math.Min(n, i0 + mt) : n;
                for (int j0 = 0; j0 < keys; j0 += nk)
                {
                    int nb = Math.Min(nk, keys - j0), kvOff = (bi * n + j0) * hd + h * dh;
                    Gemm.Run(serial, nb, mt, dh, ck.Data, ck.Offset + kvOff, hd, cq.Data, qOff, hd, true, st, 0, mt, scale);
                    blockMax.Fill(float.NegativeInfinity);
                    for (int p = 0; p < nb; p++)
                    {
                        var row = new Span<float>(st, p * mt, mt);
                        if (kb != null) TensorPrimitives.Add(row, kb.Data[kb.Offset + bi * n + j0 + p], row);
                        if (causal && j0 + p > i0) row[..Math.Min(mt, j0 + p - i0)].Fill(float.NegativeInfinity);
                        TensorPrimitives.Max(blockMax, row, blockMax);
                    }
                    for (int j = 0; j < mt; j++)
                    {
                        float max = Math.Max(colMax[j], blockMax[j]);
                        // 0 until a key is unmasked (the sum and output are 0 then)
                        float corr = float.IsNegativeInfinity(colMax[j]) ? 0f : MathF.Exp(colMax[j] - max);
                        colSum[j] *= corr;
                        blockMax[j] = corr;
                        colMax[j] = max;
                        shift[j] = float.IsNegativeInfinity(max) ? 0f : max;   // exp(-inf - 0) = 0 for masked keys
                    }
                    for (int p = 0; p < nb; p++)
                    {
                        var row = new Span<float>(st, p * mt, mt);
                        TensorPrimitives.Subtract(row, shift, row);
                        TensorPrimitives.Exp(row, row);
                        TensorPrimitives.Add(colSum, row, colSum);
                    }
                    if (j0 > 0)
                        for (int e = 0; e < dh; e++)
                            TensorPrimitives.Multiply(new ReadOnlySpan<float>(acc, e * mt, mt), blockMax, new Span<float>(acc, e * mt, mt));
                    Gemm.Run(serial, dh, mt, nb, cv.Data, cv.Offset + kvOff, hd, st, 0, mt, false, part, 0, mt, transA: true);
                    TensorPrimitives.Add(new ReadOnlySpan<float>(acc, 0, dh * mt), new ReadOnlySpan<float>(part, 0, dh * mt), acc.AsSpan(0, dh * mt));
                }
                for (int j = 0; j < mt; j++) colSum[j] = 1f / colSum[j];
                var yd = y.Data;
                for (int j = 0; j < mt; j++)
                {
                    int dst = (bi * m + i0 + j) * hd + h * dh;
                    float inv = colSum[j];
                    for (int e = 0; e < dh; e++) yd[dst + e] = acc[e * mt + j] * inv;
                }
            }
            finally
            {
                pool.Return(st); pool.Return(acc); pool.Return(part); pool.Return(stats);
            }
        });
    }
}
