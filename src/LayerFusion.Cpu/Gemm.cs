using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace LayerFusion.Cpu;

/// <summary>
/// Single-precision GEMM: C[M, N] = alpha * A[M, K] @ op(B) (+ bias[N] broadcast over rows),
/// with op(B) = B[K, N] or B[N, K]^T, and A stored as A[M, K] or, with transA, as A^T[K, M].
/// All operands are row-major with explicit leading dims.
/// Hand-written (no managed BLAS is available here): a BLIS-style blocked GEMM — B packed into
/// KC x NR micro-panels (L1), A into MC x KC blocks of MR-row micro-panels (L2), and a register-blocked
/// FMA micro-kernel (12 x 32 on 512-bit or 6 x 16 on 256-bit vectors); work split over (M block, N range) tasks.
/// </summary>
internal static class Gemm
{
    internal const int KC = 256, MC = 96, NC = 3072;

    /// <summary>The shortest slice of C a coarse task takes beyond one task per thread (see Blocked).</summary>
    internal const int MinSliceLength = 512;

    /// <summary>12 x 32 micro-kernel on 512-bit vectors where AVX-512 runs natively (about 2x the 256-bit
    /// kernel measured on the AMD EPYC here), else 6 x 16 on 256-bit vectors.</summary>
    internal static readonly bool Wide = Vector512.IsHardwareAccelerated;

    /// <summary>Below this many multiply-adds the packing overhead outweighs the blocked kernel.</summary>
    internal const long SmallWork = 16 * 16 * 16;

    internal static bool BlockedAvailable => Vector256.IsHardwareAccelerated;

    public static void Run(ParallelOptions po, int m, int n, int k,
        float[] a, int aOff, int lda,
        float[] b, int bOff, int ldb, bool transB,
        float[] c, int cOff, int ldc,
        float alpha = 1f, float[]? bias = null, int biasOff = 0, bool transA = false)
    {
        if (m == 0 || n == 0) return;
        if (k == 0 || !BlockedAvailable || (long)m * n * k < SmallWork)
            Simple(po, m, n, k, a, aOff, lda, b, bOff, ldb, transB, c, cOff, ldc, alpha, bias, biasOff, transA);
        else
            Blocked(po, m, n, k, a, aOff, lda, b, bOff, ldb, transB, c, cOff, ldc, alpha, bias, biasOff, Wide, transA);
    }

    /// <summary>Row-at-a-time reference path: dot products (transB) or axpy rows; also the fallback
    /// where 256-bit vectors are not hardware accelerated.</summary>
    internal static void Simple(ParallelOptions po, int m, int n, int k,
        float[] a, int aOff, int lda, float[] b, int bOff, int ldb, bool transB,
        float[] c, int cOff, int ldc, float alpha, float[]? bias, int biasOff, bool transA = false)
    {
        if (transA && k > 0)
        {
            // row i of A is column i of the stored A^T: gathered once into a contiguous copy
            var rows = new float[(long)m * k];
            for (int p = 0; p < k; p++)
                for (int i = 0; i < m; i++) rows[(long)i * k + p] = a[aOff + p * lda + i];
            a = rows; aOff = 0; lda = k;
        }
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

    /// <summary>Packs op(B)[pc:pc+kc, j0:j0+nr] into dst[dstOff + p * NR + j], zero for nr &lt;= j &lt; NR.</summary>
    internal delegate void BPacker(int pc, int kc, int j0, int nr, int NR, float[] dst, int dstOff);

    internal static void Blocked(ParallelOptions po, int m, int n, int k,
        float[] a, int aOff, int lda, float[] b, int bOff, int ldb, bool transB,
        float[] c, int cOff, int ldc, float alpha, float[]? bias, int biasOff, bool wide, bool transA = false) =>
        Blocked(po, m, n, k, a, aOff, lda, (pc, kc, j0, nr, NR, dst, d) => PackB(b, bOff, ldb, transB, pc, kc, j0, nr, NR, dst, d),
            c, cOff, ldc, alpha, bias, biasOff, wide, transA);

    /// <summary>C = alpha * A @ B (+ bias) where B exists only through <paramref name="packB"/> (implicit GEMM:
    /// a convolution packs its input patches straight from the image, no im2col matrix).</summary>
    internal static void Run(ParallelOptions po, int m, int n, int k, float[] a, int aOff, int lda, BPacker packB,
        float[] c, int cOff, int ldc)
    {
        if (m == 0 || n == 0) return;
        if (!BlockedAvailable) throw new PlatformNotSupportedException("implicit GEMM needs 256-bit vectors");
        if (k == 0) { for (int i = 0; i < m; i++) Array.Clear(c, cOff + i * ldc, n); return; }
        Blocked(po, m, n, k, a, aOff, lda, packB, c, cOff, ldc, 1f, null, 0, Wide);
    }

    internal static unsafe void Blocked(ParallelOptions po, int m, int n, int k,
        float[] a, int aOff, int lda, BPacker packB,
        float[] c, int cOff, int ldc, float alpha, float[]? bias, int biasOff, bool wide, bool transA = false)
    {
        int MR = wide ? 12 : 6, NR = wide ? 32 : 16;
        int dop = po.MaxDegreeOfParallelism > 0 ? po.MaxDegreeOfParallelism : Environment.ProcessorCount;
        if (dop > 1 && (long)m * n * k >= 1L << 18)
        {
            // Coarse tasks: each a serial blocked GEMM on a slice of C along the longer of M and N, so
            // there is no barrier per K block (two per block before: under a shared machine's load a
            // descheduled worker stalled every block). The slice's duplicate packing (A per N slice,
            // B per M slice) is one memory-bound pass over that operand per task, so short slices of a
            // GEMM with a large packed operand re-pack a lot: conv3x3 640 at 32x32 in 8 slices of 128
            // columns re-packed its 14.7 MB of weights 8 times per image. At most dim / 512 tasks (at least
            // one per thread) measured +10-20% GFLOP per CPU-second on conv3x3 640 and 1280, GEMMs unchanged.
            bool splitN = n >= m;
            int unit = splitN ? 4 * NR : MC, dim = splitN ? n : m;
            int units = (dim + unit - 1) / unit;
            int tasks = Math.Min(Math.Min(4 * dop, units), Math.Max(dop, dim / MinSliceLength));
            if (tasks > 1)
            {
                int per = (units + tasks - 1) / tasks * unit;
                tasks = (dim + per - 1) / per;
                var serial = new ParallelOptions { MaxDegreeOfParallelism = 1 };
                Parallel.For(0, tasks, po, t =>
                {
                    int s0 = t * per, len = Math.Min(per, dim - s0);
                    if (splitN)
                        Blocked(serial, m, len, k, a, aOff, lda, (pc, kc, j0, nr, nR, dst, d) => packB(pc, kc, s0 + j0, nr, nR, dst, d),
                            c, cOff + s0, ldc, alpha, bias, biasOff + s0, wide, transA);
                    else
                        Blocked(serial, len, n, k, a, aOff + (transA ? s0 : s0 * lda), lda, packB, c, cOff + s0 * ldc, ldc, alpha, bias, biasOff, wide, transA);
                });
                return;
            }
        }
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
                        packB(pc, kc, jc + jp * NR, Math.Min(NR, nc - jp * NR), NR, bPack, jp * kc * NR));

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
                        // edge tiles go through this buffer; one per task, not per micro-kernel call
                        // (a stackalloc in the kernel is zero-initialized on every call: 3x slower UNet)
                        float* edge = stackalloc float[12 * 32];
                        try
                        {
                            if (transA) PackAT(a, aOff, lda, ic, mc, pc, kc, MR, aPack);
                            else PackA(a, aOff, lda, ic, mc, pc, kc, MR, aPack);
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
                                            if (wide) Kernel12x32(kc, ap + ir * kc, bp + jp * kc * NR, cTile, ldc, mr, nr,
                                                first, last, alpha, biasP == null ? null : biasP + j, edge);
                                            else Kernel6x16(kc, ap + ir * kc, bp + jp * kc * NR, cTile, ldc, mr, nr,
                                                first, last, alpha, biasP == null ? null : biasP + j, edge);
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
    static unsafe void PackB(float[] b, int bOff, int ldb, bool transB, int pc, int kc, int j0, int nr, int NR, float[] bp, int dst)
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
            int j8 = 0, p8 = 0;
            if (Avx.IsSupported)
            {
                // 8 x 8 blocks through an AVX register transpose; the ragged edges below go scalar
                j8 = nr / 8 * 8; p8 = kc / 8 * 8;
                for (int j = 0; j < j8; j += 8)
                    for (int p = 0; p < p8; p += 8)
                        Transpose8x8(b, bOff + (j0 + j) * ldb + pc + p, ldb, bp, dst + p * NR + j, NR);
            }
            for (int j = 0; j < nr; j++)
            {
                int src = bOff + (j0 + j) * ldb + pc;
                for (int p = j < j8 ? p8 : 0; p < kc; p++) bp[dst + p * NR + j] = b[src + p];
            }
            if (nr < NR)
                for (int p = 0; p < kc; p++) Array.Clear(bp, dst + p * NR + nr, NR - nr);
        }
    }

    /// <summary>dst[p * ldd + j] = src[j * lds + p] for an 8 x 8 block.</summary>
    static unsafe void Transpose8x8(float[] src, int s, int lds, float[] dst, int d, int ldd)
    {
        fixed (float* sp0 = &src[s], dp0 = &dst[d])
        {
            float* sp = sp0;
            var r0 = Avx.LoadVector256(sp); var r1 = Avx.LoadVector256(sp + lds);
            var r2 = Avx.LoadVector256(sp + 2 * lds); var r3 = Avx.LoadVector256(sp + 3 * lds);
            var r4 = Avx.LoadVector256(sp + 4 * lds); var r5 = Avx.LoadVector256(sp + 5 * lds);
            var r6 = Avx.LoadVector256(sp + 6 * lds); var r7 = Avx.LoadVector256(sp + 7 * lds);
            var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
            var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
            var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
            var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
            var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
            var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
            var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
            var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
            float* dp = dp0;
            Avx.Store(dp, Avx.Permute2x128(u0, u4, 0x20));
            Avx.Store(dp + ldd, Avx.Permute2x128(u1, u5, 0x20));
            Avx.Store(dp + 2 * ldd, Avx.Permute2x128(u2, u6, 0x20));
            Avx.Store(dp + 3 * ldd, Avx.Permute2x128(u3, u7, 0x20));
            Avx.Store(dp + 4 * ldd, Avx.Permute2x128(u0, u4, 0x31));
            Avx.Store(dp + 5 * ldd, Avx.Permute2x128(u1, u5, 0x31));
            Avx.Store(dp + 6 * ldd, Avx.Permute2x128(u2, u6, 0x31));
            Avx.Store(dp + 7 * ldd, Avx.Permute2x128(u3, u7, 0x31));
        }
    }

    /// <summary>A block rows [ic, ic+mc) x cols [pc, pc+kc) as MR-row micro-panels: Ap[ir*kc + k*MR + r], zero-padded rows.
    /// Pointer loop, k outer and the MR rows inner, so the writes run contiguously (the bounds-checked
    /// scalar version cost up to half the multiply-adds of the attention's P V product, N = 64).</summary>
    static unsafe void PackA(float[] a, int aOff, int lda, int ic, int mc, int pc, int kc, int MR, float[] ap)
    {
        if (mc <= 0 || kc <= 0) return;
        if ((long)aOff + (long)(ic + mc - 1) * lda + pc + kc > a.Length || RoundUp(mc, MR) * kc > ap.Length)
            throw new ArgumentOutOfRangeException(nameof(a), "PackA block outside its arrays");
        long* rows = stackalloc long[MR];
        fixed (float* src = a, dst0 = ap)
        {
            for (int ir = 0; ir < mc; ir += MR)
            {
                int mr = Math.Min(MR, mc - ir);
                float* dst = dst0 + (long)ir * kc;
                for (int r = 0; r < mr; r++) rows[r] = aOff + (long)(ic + ir + r) * lda + pc;
                if (mr == MR)
                {
                    for (int p = 0; p < kc; p++, dst += MR)
                        for (int r = 0; r < MR; r++) dst[r] = src[rows[r] + p];
                }
                else
                {
                    for (int p = 0; p < kc; p++, dst += MR)
                    {
                        int r = 0;
                        for (; r < mr; r++) dst[r] = src[rows[r] + p];
                        for (; r < MR; r++) dst[r] = 0f;
                    }
                }
            }
        }
    }

    /// <summary>PackA's layout from a stored A^T (A[i, p] = a[aOff + p * lda + i]): each k step's MR rows are
    /// contiguous in the source, so a panel row is one block copy (the attention's V^T: no gather).</summary>
    static unsafe void PackAT(float[] a, int aOff, int lda, int ic, int mc, int pc, int kc, int MR, float[] ap)
    {
        if (mc <= 0 || kc <= 0) return;
        if ((long)aOff + (long)(pc + kc - 1) * lda + ic + mc > a.Length || RoundUp(mc, MR) * kc > ap.Length)
            throw new ArgumentOutOfRangeException(nameof(a), "PackAT block outside its arrays");
        fixed (float* src = a, dst0 = ap)
        {
            for (int ir = 0; ir < mc; ir += MR)
            {
                int mr = Math.Min(MR, mc - ir);
                float* dst = dst0 + (long)ir * kc;
                float* s = src + aOff + (long)pc * lda + ic + ir;
                for (int p = 0; p < kc; p++, dst += MR, s += lda)
                {
                    Buffer.MemoryCopy(s, dst, 4L * MR, 4L * mr);
                    for (int r = mr; r < MR; r++) dst[r] = 0f;
                }
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
        bool first, bool last, float alpha, float* bias, float* edge)
    {
        const int MR = 6, NR = 16;
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
        if (mr == MR && nr == NR)
        {
            var al = Vector256.Create(alpha);
            Vector256<float> b0v = default, b1v = default;
            bool hasBias = last && bias != null;
            if (hasBias) { b0v = Vector256.Load(bias); b1v = Vector256.Load(bias + 8); }
            Emit(c00, c01, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(c10, c11, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(c20, c21, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(c30, c31, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(c40, c41, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(c50, c51, c, first, last, al, hasBias, b0v, b1v);
            return;
        }
        float* tile = edge;
        c00.Store(tile); c01.Store(tile + 8);
        c10.Store(tile + 16); c11.Store(tile + 24);
        c20.Store(tile + 32); c21.Store(tile + 40);
        c30.Store(tile + 48); c31.Store(tile + 56);
        c40.Store(tile + 64); c41.Store(tile + 72);
        c50.Store(tile + 80); c51.Store(tile + 88);
        StoreTile(tile, NR, c, ldc, mr, nr, first, last, alpha, bias);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Fmadd(Vector512<float> a, Vector512<float> b, Vector512<float> c) =>
        Avx512F.IsSupported ? Avx512F.FusedMultiplyAdd(a, b, c) : a * b + c;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void Kernel12x32(int kc, float* a, float* b, float* c, int ldc, int mr, int nr,
        bool first, bool last, float alpha, float* bias, float* edge)
    {
        const int MR = 12, NR = 32;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default,
            d00 = default, d01 = default, d10 = default, d11 = default, d20 = default, d21 = default,
            d30 = default, d31 = default, d40 = default, d41 = default, d50 = default, d51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var av = Vector512.Create(a[0]); c00 = Fmadd(av, b0, c00); c01 = Fmadd(av, b1, c01);
            av = Vector512.Create(a[1]); c10 = Fmadd(av, b0, c10); c11 = Fmadd(av, b1, c11);
            av = Vector512.Create(a[2]); c20 = Fmadd(av, b0, c20); c21 = Fmadd(av, b1, c21);
            av = Vector512.Create(a[3]); c30 = Fmadd(av, b0, c30); c31 = Fmadd(av, b1, c31);
            av = Vector512.Create(a[4]); c40 = Fmadd(av, b0, c40); c41 = Fmadd(av, b1, c41);
            av = Vector512.Create(a[5]); c50 = Fmadd(av, b0, c50); c51 = Fmadd(av, b1, c51);
            av = Vector512.Create(a[6]); d00 = Fmadd(av, b0, d00); d01 = Fmadd(av, b1, d01);
            av = Vector512.Create(a[7]); d10 = Fmadd(av, b0, d10); d11 = Fmadd(av, b1, d11);
            av = Vector512.Create(a[8]); d20 = Fmadd(av, b0, d20); d21 = Fmadd(av, b1, d21);
            av = Vector512.Create(a[9]); d30 = Fmadd(av, b0, d30); d31 = Fmadd(av, b1, d31);
            av = Vector512.Create(a[10]); d40 = Fmadd(av, b0, d40); d41 = Fmadd(av, b1, d41);
            av = Vector512.Create(a[11]); d50 = Fmadd(av, b0, d50); d51 = Fmadd(av, b1, d51);
            a += MR; b += NR;
        }
        if (mr == MR && nr == NR)
        {
            // full tile: straight from the registers into C
            var al = Vector512.Create(alpha);
            Vector512<float> b0v = default, b1v = default;
            bool hasBias = last && bias != null;
            if (hasBias) { b0v = Vector512.Load(bias); b1v = Vector512.Load(bias + 16); }
            Emit(c00, c01, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(c10, c11, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(c20, c21, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(c30, c31, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(c40, c41, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(c50, c51, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(d00, d01, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(d10, d11, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(d20, d21, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(d30, d31, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(d40, d41, c, first, last, al, hasBias, b0v, b1v); c += ldc;
            Emit(d50, d51, c, first, last, al, hasBias, b0v, b1v);
            return;
        }
        float* tile = edge;
        c00.Store(tile); c01.Store(tile + 16); c10.Store(tile + 32); c11.Store(tile + 48);
        c20.Store(tile + 64); c21.Store(tile + 80); c30.Store(tile + 96); c31.Store(tile + 112);
        c40.Store(tile + 128); c41.Store(tile + 144); c50.Store(tile + 160); c51.Store(tile + 176);
        d00.Store(tile + 192); d01.Store(tile + 208); d10.Store(tile + 224); d11.Store(tile + 240);
        d20.Store(tile + 256); d21.Store(tile + 272); d30.Store(tile + 288); d31.Store(tile + 304);
        d40.Store(tile + 320); d41.Store(tile + 336); d50.Store(tile + 352); d51.Store(tile + 368);
        StoreTile(tile, NR, c, ldc, mr, nr, first, last, alpha, bias);
    }

    /// <summary>One full row of a 12 x 32 tile: C[0:32] = (first ? 0 : C) + acc, then on the last K block alpha * . + bias.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void Emit(Vector512<float> v0, Vector512<float> v1, float* c, bool first, bool last, Vector512<float> alpha,
        bool hasBias, Vector512<float> b0, Vector512<float> b1)
    {
        if (!first) { v0 += Vector512.Load(c); v1 += Vector512.Load(c + 16); }
        if (last)
        {
            v0 *= alpha; v1 *= alpha;
            if (hasBias) { v0 += b0; v1 += b1; }
        }
        v0.Store(c); v1.Store(c + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void Emit(Vector256<float> v0, Vector256<float> v1, float* c, bool first, bool last, Vector256<float> alpha,
        bool hasBias, Vector256<float> b0, Vector256<float> b1)
    {
        if (!first) { v0 += Vector256.Load(c); v1 += Vector256.Load(c + 8); }
        if (last)
        {
            v0 *= alpha; v1 *= alpha;
            if (hasBias) { v0 += b0; v1 += b1; }
        }
        v0.Store(c); v1.Store(c + 8);
    }

    /// <summary>C[r, j] = (first ? 0 : C[r, j]) + tile[r, j], then on the last K block alpha * . + bias[j].</summary>
    static unsafe void StoreTile(float* tile, int tileNr, float* c, int ldc, int mr, int nr,
        bool first, bool last, float alpha, float* bias)
    {
        var al = Vector256.Create(alpha);
        for (int r = 0; r < mr; r++)
        {
            float* cr = c + (long)r * ldc;
            float* tr = tile + r * tileNr;
            int j = 0;
            for (; j + 8 <= nr; j += 8)
            {
                var v = Vector256.Load(tr + j);
                if (!first) v += Vector256.Load(cr + j);
                if (last)
                {
                    v *= al;
                    if (bias != null) v += Vector256.Load(bias + j);
                }
                v.Store(cr + j);
            }
            for (; j < nr; j++)
            {
                float v = tr[j];
                if (!first) v += cr[j];
                if (last) v = v * alpha + (bias == null ? 0f : bias[j]);
                cr[j] = v;
            }
        }
    }
}
