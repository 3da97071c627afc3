using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace LayerFusion.Cpu;

/// <summary>
/// Single-precision GEMM: C[M, N] = alpha * A[M, K] @ op(B) (+ bias[N] broadcast over rows),
/// with op(B) = B[K, N] or B[N, K]^T. All operands are row-major with explicit leading dims.
/// Hand-written (no managed BLAS is available here): a BLIS-style blocked GEMM — B packed into
/// KC x NR micro-panels (L1), A into MC x KC blocks of MR-row micro-panels (L2), and a 6 x 16
/// register-blocked FMA micro-kernel on 256-bit vectors; work split over (M block, N range) tasks.
/// </summary>
internal static class Gemm
{
    internal const int MR = 6, NR = 16, KC = 256, MC = 96, NC = 3072;

    /// <summary>Below this many multiply-adds the packing overhead outweighs the blocked kernel.</summary>
    internal const long SmallWork = 16 * 16 * 16;

    internal static bool BlockedAvailable => Vector256.IsHardwareAccelerated;

    public static void Run(ParallelOptions po, int m, int n, int k,
        float[] a, int aOff, int lda,
        float[] b, int bOff, int ldb, bool transB,
        float[] c, int cOff, int ldc,
        float alpha = 1f, float[]? bias = null, int biasOff = 0)
    {
        if (m == 0 || n == 0) return;
        if (k == 0 || !BlockedAvailable || (long)m * n * k < SmallWork)
            Simple(po, m, n, k, a, aOff, lda, b, bOff, ldb, transB, c, cOff, ldc, alpha, bias, biasOff);
        else
            Blocked(po, m, n, k, a, aOff, lda, b, bOff, ldb, transB, c, cOff, ldc, alpha, bias, biasOff);
    }

    /// <summary>Row-at-a-time reference path: dot products (transB) or axpy rows; also the fallback
    /// where 256-bit vectors are not hardware accelerated.</summary>
    internal static void Simple(ParallelOptions po, int m, int n, int k,
        float[] a, int aOff, int lda, float[] b, int bOff, int ldb, bool transB,
        float[] c, int cOff, int ldc, float alpha, float[]? bias, int biasOff)
    {
        void Row(int i)
        {
            var crow = new Span<float>(c, cOff + i * ldc, n);
            if (transB)
            {
                var arow = new ReadOnlySpan<float>(a, aOff + i * lda, k);
                for (int j = 0; j < n; j++)
                    crow[j] = k == 0 ? 0f : TensorPrimitives.Dot(arow, new ReadOnlySpan<float>(b, bOff + j * ldb, k));
            }
            else
            {
                crow.Clear();
                for (int p = 0; p < k; p++)
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(b, bOff + p * ldb, n), a[aOff + i * lda + p], crow, crow);
            }
            if (alpha != 1f) TensorPrimitives.Multiply(crow, alpha, crow);
            if (bias != null) TensorPrimitives.Add(crow, new ReadOnlySpan<float>(bias, biasOff, n), crow);
        }
        if (po.MaxDegreeOfParallelism == 1 || (long)m * n * k < 1 << 16) for (int i = 0; i < m; i++) Row(i);
        else Parallel.For(0, m, po, Row);
    }

    internal static unsafe void Blocked(ParallelOptions po, int m, int n, int k,
        float[] a, int aOff, int lda, float[] b, int bOff, int ldb, bool transB,
        float[] c, int cOff, int ldc, float alpha, float[]? bias, int biasOff)
    {
        int dop = po.MaxDegreeOfParallelism > 0 ? po.MaxDegreeOfParallelism : Environment.ProcessorCount;
        int ncMax = Math.Min(NC, RoundUp(n, NR));
        var bPack = ArrayPool<float>.Shared.Rent(KC * ncMax);
        try
        {
            for (int jc = 0; jc < n; jc += NC)
            {
                int nc = Math.Min(NC, n - jc);
                int panels = (nc + NR - 1) / NR;
                for (int pc = 0; pc < k; pc += KC)
                {
                    int kc = Math.Min(KC, k - pc);
                    bool first = pc == 0, last = pc + kc == k;
                    // pack B[pc:pc+kc, jc:jc+nc] into NR-wide micro-panels, zero-padding the last one
                    ForRange(po, dop, panels, (long)kc * NR, jp =>
                        PackB(b, bOff, ldb, transB, pc, kc, jc + jp * NR, Math.Min(NR, nc - jp * NR), bPack, jp * kc * NR));

                    int mBlocks = (m + MC - 1) / MC;
                    // split N too when there are fewer M blocks than threads (few tokens, few channels)
                    int nGroups = Math.Clamp((2 * dop + mBlocks - 1) / mBlocks, 1, panels);
                    if (dop == 1) nGroups = 1;
                    int panelsPerGroup = (panels + nGroups - 1) / nGroups;
                    nGroups = (panels + panelsPerGroup - 1) / panelsPerGroup;
                    long work = (long)Math.Min(MC, m) * kc * panelsPerGroup * NR;
                    ForRange(po, dop, mBlocks * nGroups, work, task =>
                    {
                        int mb = task / nGroups, ng = task % nGroups;
                        int ic = mb * MC, mc = Math.Min(MC, m - ic);
                        int jp0 = ng * panelsPerGroup, jp1 = Math.Min(panels, jp0 + panelsPerGroup);
                        var aPack = ArrayPool<float>.Shared.Rent(RoundUp(mc, MR) * kc);
                        try
                        {
                            PackA(a, aOff, lda, ic, mc, pc, kc, aPack);
                            fixed (float* ap = aPack, bp = bPack, cp = c)
                            {
                                float* biasP = null;
                                fixed (float* biasBase = bias)
                                {
                                    if (bias != null && last) biasP = biasBase + biasOff;
                                    for (int jp = jp0; jp < jp1; jp++)
                                    {
                                        int j = jc + jp * NR, nr = Math.Min(NR, nc - jp * NR);
                                        for (int ir = 0; ir < mc; ir += MR)
                                        {
                                            int mr = Math.Min(MR, mc - ir);
                                            float* cTile = cp + cOff + (long)(ic + ir) * ldc + j;
                                            Kernel6x16(kc, ap + ir * kc, bp + jp * kc * NR, cTile, ldc, mr, nr,
                                                first, last, alpha, biasP == null ? null : biasP + j);
                                        }
                                    }
                                }
                            }
                        }
                        finally { ArrayPool<float>.Shared.Return(aPack); }
                    });
                }
            }
        }
        finally { ArrayPool<float>.Shared.Return(bPack); }
    }

    static int RoundUp(int x, int m) => (x + m - 1) / m * m;

    static void ForRange(ParallelOptions po, int dop, int count, long workPerItem, Action<int> body)
    {
        if (dop == 1 || count == 1 || count * workPerItem < 1 << 15)
            for (int i = 0; i < count; i++) body(i);
        else
            Parallel.For(0, count, po, body);
    }

    /// <summary>Bp[k * NR + j] = op(B)[pc + k, j0 + j] for j &lt; nr, zero for nr &lt;= j &lt; NR.</summary>
    static void PackB(float[] b, int bOff, int ldb, bool transB, int pc, int kc, int j0, int nr, float[] bp, int dst)
    {
        if (!transB)
        {
            for (int p = 0; p < kc; p++)
            {
                int d = dst + p * NR;
                Array.Copy(b, bOff + (pc + p) * ldb + j0, bp, d, nr);
                if (nr < NR) Array.Clear(bp, d + nr, NR - nr);
            }
        }
        else
        {
            for (int j = 0; j < nr; j++)
            {
                int src = bOff + (j0 + j) * ldb + pc;
                for (int p = 0; p < kc; p++) bp[dst + p * NR + j] = b[src + p];
            }
            if (nr < NR)
                for (int p = 0; p < kc; p++) Array.Clear(bp, dst + p * NR + nr, NR - nr);
        }
    }

    /// <summary>A block rows [ic, ic+mc) x cols [pc, pc+kc) as MR-row micro-panels: Ap[ir*kc + k*MR + r], zero-padded rows.</summary>
    static void PackA(float[] a, int aOff, int lda, int ic, int mc, int pc, int kc, float[] ap)
    {
        for (int ir = 0; ir < mc; ir += MR)
        {
            int mr = Math.Min(MR, mc - ir);
            int dst = ir * kc;
            for (int r = 0; r < MR; r++)
            {
                if (r >= mr) { for (int p = 0; p < kc; p++) ap[dst + p * MR + r] = 0f; continue; }
                int src = aOff + (ic + ir + r) * lda + pc;
                for (int p = 0; p < kc; p++) ap[dst + p * MR + r] = a[src + p];
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Fmadd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : a * b + c;

    /// <summary>C tile (mr x nr) = / += packed A micro-panel (MR x kc) times packed B micro-panel (kc x NR);
    /// on the last K block also scaled by alpha and offset by bias[j].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void Kernel6x16(int kc, float* a, float* b, float* c, int ldc, int mr, int nr,
        bool first, bool last, float alpha, float* bias)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var av = Vector256.Create(a[0]); c00 = Fmadd(av, b0, c00); c01 = Fmadd(av, b1, c01);
            av = Vector256.Create(a[1]); c10 = Fmadd(av, b0, c10); c11 = Fmadd(av, b1, c11);
            av = Vector256.Create(a[2]); c20 = Fmadd(av, b0, c20); c21 = Fmadd(av, b1, c21);
            av = Vector256.Create(a[3]); c30 = Fmadd(av, b0, c30); c31 = Fmadd(av, b1, c31);
            av = Vector256.Create(a[4]); c40 = Fmadd(av, b0, c40); c41 = Fmadd(av, b1, c41);
            av = Vector256.Create(a[5]); c50 = Fmadd(av, b0, c50); c51 = Fmadd(av, b1, c51);
            a += MR; b += NR;
        }
        float* tile = stackalloc float[MR * NR];
        c00.Store(tile); c01.Store(tile + 8);
        c10.Store(tile + 16); c11.Store(tile + 24);
        c20.Store(tile + 32); c21.Store(tile + 40);
        c30.Store(tile + 48); c31.Store(tile + 56);
        c40.Store(tile + 64); c41.Store(tile + 72);
        c50.Store(tile + 80); c51.Store(tile + 88);
        if (nr == NR)
        {
            var bias0 = bias == null ? Vector256<float>.Zero : Vector256.Load(bias);
            var bias1 = bias == null ? Vector256<float>.Zero : Vector256.Load(bias + 8);
            var al = Vector256.Create(alpha);
            for (int r = 0; r < mr; r++)
            {
                float* cr = c + (long)r * ldc;
                var v0 = Vector256.Load(tile + r * NR);
                var v1 = Vector256.Load(tile + r * NR + 8);
                if (!first) { v0 += Vector256.Load(cr); v1 += Vector256.Load(cr + 8); }
                if (last) { v0 = v0 * al + bias0; v1 = v1 * al + bias1; }
                v0.Store(cr); v1.Store(cr + 8);
            }
        }
        else
        {
            for (int r = 0; r < mr; r++)
            {
                float* cr = c + (long)r * ldc;
                for (int j = 0; j < nr; j++)
                {
                    float v = tile[r * NR + j];
                    if (!first) v += cr[j];
                    if (last) v = v * alpha + (bias == null ? 0f : bias[j]);
                    cr[j] = v;
                }
            }
        }
    }
}
