// Tensor-core flash attention that can also emit the LayerFusion priors in the same launch
// (DESIGN sec. 5, 6; issue 6). fp16 or bf16 storage (-DLF_DTYPE=1|2), fp32 accumulation, sm_80+:
// mma.sync.m16n8k16, ldmatrix and cp.async through inline PTX (no toolkit headers).
//
// Layouts: q [B, M, H*D], k/v [B, N, H*D], out [B, M, H*D]; key_bias [B, N] (optional, added to
// every score row; -inf excludes a key); per-query outputs sparsity/eos_col are fp32 [B, M].
// Row strides (H*D) and base pointers must be 16-byte aligned (H*D % 8 == 0): the host checks.
//
// Compile-time specialization (-D):
//   LF_HEAD_DIM   D, a multiple of 16, <= 128
//   LF_WARPS      warps per block (1, 2 or 4); each warp owns 16 query rows, a block LF_WARPS*16
//   LF_PRIORS     0: plain attention, grid (M tiles, H, B), one head per block.
//                 1: all heads of a query tile in one block, grid (M tiles, 1, B); needs LF_HEADS.
//   LF_HEADS      H (priors mode): sizes the per-head row statistics held in shared memory
//   LF_SPARSITY   1: emit s_i = 1 / sum_j (mean_h p_hij)^2            (priors mode)
//   LF_EOS        1: emit c_i = mean_h p_{h,i,eos_index}               (priors mode)
//   LF_KEY_BIAS   1: key_bias is read
//   LF_MIN_BLOCKS minimum resident blocks per SM for __launch_bounds__ (default 2; see below)
//
// The math. For head h, query i, key j: x_hij = (q_hi . k_hj) / sqrt(D) + bias_j, and
// p_hij = exp(x_hij - m_hi) / l_hi with m_hi = max_j x_hij, l_hi = sum_j exp(x_hij - m_hi).
// Scores are kept in the log2 domain (x * log2 e) so exp becomes one ex2 instruction.
//
// Plain attention (every mode): FlashAttention-2. Per key tile the running max m and the running
// normalizer l are updated, the partial output is rescaled by exp(m_old - m_new) and P V added;
// O = acc / l at the end. No score matrix ever leaves registers: memory is O(M) per head.
//
// Sparsity (structure prior). s_i needs the head-MEAN probability before squaring:
//   sum_j (mean_h p_hij)^2 = (1/H^2) sum_j (sum_h p_hij)^2
// which couples heads through the square, so neither a per-head pass nor the online
// normalization can produce it: the probabilities must be exact (final m, l) when squared. One
// block therefore owns all H heads of its query tile and makes two sweeps:
//   sweep 1, head by head: flash attention as above (writes O for that head), leaving the exact
//     m_hi and l_hi of each row in shared memory ([H][rows], O(H) per row, never M x N);
//   sweep 2, key tile by key tile, heads inside: recompute x_hij = q k^T for the tile (tensor
//     cores), form the exact p_hij = exp(x_hij - m_hi) / l_hi, sum it over heads into a
//     [rows x 64] register tile, then add that tile's squares into a per-row sum.
//   s_i = H^2 / sum_j (sum_h p_hij)^2. Cost: one extra Q K^T and one extra exp per score, i.e.
//   1.5x the tensor-core FLOPs of plain attention (predicted prior/plain time ratio about 1.5;
//   only one layer per denoising step needs it).
// <EOS> column (content prior): c_i = (1/H) sum_h p_{h,i,eos}. It needs no second sweep: while
//   sweep 1 passes the key tile holding eos, the thread that owns that column keeps the raw score
//   x_{h,i,eos}; once the head's final m and l are known, p = exp(x - m) / l is exact and summed.
//   For cross-attention (N = 77) this is the whole cost of the content prior.
// A query whose every key is excluded (all -inf) gets O = 0, c = 0 and s = +inf (LayerFusion never
// makes one: BG keys are never excluded).
//
// Eq. 1/2 (the blends) are not applied here: they act on the attention outputs after to_out
// (Alg. 3's Attention() includes to_out, and the FG stream's to_out carries LayerDiffuse's offsets),
// which is prior_masks.cu's lf_prior_blend. The masks need min/max over all M queries of a layer and
// c of attn2 comes from the FG pass, so the order per layer is: FG attention with LF_EOS (a_fg, c,
// and s at the prior layer) -> lf_density_prior / resize / lf_prior_masks -> BLEND attention ->
// to_out of both -> lf_prior_blend.
#include "lf_common.cuh"

#if LF_DTYPE != 1 && LF_DTYPE != 2
#error "attention_priors.cu needs fp16 (LF_DTYPE=1) or bf16 (LF_DTYPE=2) storage"
#endif
#ifndef LF_HEAD_DIM
#error "LF_HEAD_DIM must be defined"
#endif
#if LF_HEAD_DIM % 16 != 0 || LF_HEAD_DIM > 128
#error "LF_HEAD_DIM must be a multiple of 16 and at most 128"
#endif
#ifndef LF_WARPS
#define LF_WARPS 4
#endif
#if LF_WARPS != 1 && LF_WARPS != 2 && LF_WARPS != 4
#error "LF_WARPS must be 1, 2 or 4"
#endif
#ifndef LF_PRIORS
#define LF_PRIORS 0
#endif
// Minimum resident blocks per SM for __launch_bounds__. With none given, NVRTC 11.8 capped the
// sm_90 plain kernel at 128 registers and spilled 24 bytes; 2 leaves it 155 registers, no stack.
#ifndef LF_MIN_BLOCKS
#define LF_MIN_BLOCKS 2
#endif
#ifndef LF_SPARSITY
#define LF_SPARSITY 0
#endif
#ifndef LF_EOS
#define LF_EOS 0
#endif
#ifndef LF_KEY_BIAS
#define LF_KEY_BIAS 0
#endif
#if LF_PRIORS
#ifndef LF_HEADS
#error "priors mode needs LF_HEADS"
#endif
#else
#if LF_SPARSITY || LF_EOS
#error "LF_SPARSITY and LF_EOS need LF_PRIORS=1 (all heads of a query tile in one block)"
#endif
#endif

#define LF_D LF_HEAD_DIM
#define LF_BR (LF_WARPS * 16)   // query rows per block
#define LF_BC 64                // keys per tile
#define LF_NT (LF_BC / 8)       // n8 score tiles per key tile
#define LF_KD (LF_D / 16)       // k16 steps over the head dim
#define LF_DT (LF_D / 8)        // n8 output tiles over the head dim
#define LF_LD (LF_D + 8)        // shared row stride in halves: 16 B pad, conflict-free ldmatrix / u32 loads
#define LF_THREADS (LF_WARPS * 32)
#define LF_LOG2E 1.4426950408889634f

typedef unsigned int lf_u32;
struct __align__(16) lf_chunk16 { lf_u32 x, y, z, w; };

// The PTX helpers. tests/kernel-emulation/prior_ptx_emu.hpp supplies lane-level CPU versions of
// exactly these five (LF_HOST_EMULATION), so the rest of this file runs unchanged on the emulator.
#ifndef LF_HOST_EMULATION
static __device__ __forceinline__ lf_u32 lf_smem_addr(const void* p)
{
    unsigned long long a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (lf_u32)a;
}

// 16-byte asynchronous global -> shared copy; src_bytes = 0 zero-fills (keys past N).
static __device__ __forceinline__ void lf_cp_async16(void* dst_shared, const void* src, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(lf_smem_addr(dst_shared)), "l"(src), "r"(src_bytes));
}
static __device__ __forceinline__ void lf_cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
static __device__ __forceinline__ void lf_cp_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// D += A B, m16n8k16, fp32 accumulators. A: 4 regs of 2 halves (row-major 16x16), B: 2 regs (col-major 16x8).
static __device__ __forceinline__ void lf_mma(float* c, const lf_u32* a, lf_u32 b0, lf_u32 b1)
{
#if LF_DTYPE == 1
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Four 8x8 b16 matrices, transposed: lane L passes the address of row (L & 7) of matrix (L >> 3).
static __device__ __forceinline__ void lf_ldmatrix_x4_trans(lf_u32* r, const void* row_shared)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(lf_smem_addr(row_shared)));
}

// Two fp32 -> one register of two storage-type values; lo in the low half (the lower column index).
static __device__ __forceinline__ lf_u32 lf_pack2(float lo, float hi)
{
    lf_u32 r;
#if LF_DTYPE == 1
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
#else
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
#endif
    return r;
}
#endif

static __device__ __forceinline__ float lf_quad_sum(float v)
{
    v += __shfl_xor_sync(LF_FULL_MASK, v, 1);
    v += __shfl_xor_sync(LF_FULL_MASK, v, 2);
    return v;
}
static __device__ __forceinline__ float lf_quad_max(float v)
{
    v = fmaxf(v, __shfl_xor_sync(LF_FULL_MASK, v, 1));
    v = fmaxf(v, __shfl_xor_sync(LF_FULL_MASK, v, 2));
    return v;
}

// Issues the cp.async copies of one [LF_BC x D] tile of k (and v) for head h, keys [kt, kt + LF_BC).
static __device__ __forceinline__ void lf_load_tile(elem_t* ks, elem_t* vs, const elem_t* kb, const elem_t* vb, int kt,
                                                    int n_len, lf_i64 rs, int h, bool with_v)
{
    constexpr int chunks_per_row = LF_D / 8;  // 16-byte chunks
    for (int c = threadIdx.x; c < LF_BC * chunks_per_row; c += LF_THREADS)
    {
        const int j = c / chunks_per_row, d8 = (c - j * chunks_per_row) * 8, n = kt + j;
        const bool live = n < n_len;
        const lf_i64 off = live ? (lf_i64)n * rs + (lf_i64)h * LF_D + d8 : 0;
        lf_cp_async16(ks + j * LF_LD + d8, kb + off, live ? 16 : 0);
        if (with_v) lf_cp_async16(vs + j * LF_LD + d8, vb + off, live ? 16 : 0);
    }
}

// Q fragments (A operand) for this warp's 16 rows of head h, straight from global memory.
static __device__ __forceinline__ void lf_load_q(lf_u32 (&qf)[LF_KD][4], const elem_t* qb, int r0, int m_len, lf_i64 rs, int h)
{
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int kk = 0; kk < LF_KD; ++kk)
#pragma unroll
        for (int half = 0; half < 2; ++half)      // rows g, g + 8
#pragma unroll
            for (int col = 0; col < 2; ++col)     // k 2t.., 2t + 8..
            {
                const int m = r0 + g + 8 * half, d = kk * 16 + 2 * t + 8 * col;
                qf[kk][half + 2 * col] = m < m_len ? *(const lf_u32*)(qb + (lf_i64)m * rs + (lf_i64)h * LF_D + d) : 0u;
            }
}

// S = Q K^T for this warp's 16 rows and the LF_BC keys of the tile, in the log2 domain, with the
// key bias and the key-range mask applied. C layout: s[nt][0..1] row g, keys nt*8 + 2t + {0,1};
// s[nt][2..3] row g + 8.
static __device__ __forceinline__ void lf_scores(float (&s)[LF_NT][4], const lf_u32 (&qf)[LF_KD][4], const elem_t* ks, int kt,
                                                 int n_len, float scale_log2, const elem_t* bias_row)
{
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int nt = 0; nt < LF_NT; ++nt)
    {
        s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
        const elem_t* kr = ks + (nt * 8 + g) * LF_LD + 2 * t;
#pragma unroll
        for (int kk = 0; kk < LF_KD; ++kk)
        {
            const lf_u32 b0 = *(const lf_u32*)(kr + kk * 16);
            const lf_u32 b1 = *(const lf_u32*)(kr + kk * 16 + 8);
            lf_mma(s[nt], qf[kk], b0, b1);
        }
#pragma unroll
        for (int e = 0; e < 2; ++e)
        {
            const int n = kt + nt * 8 + 2 * t + e;
            float add = 0.f;
            if (n >= n_len) add = -LF_INF;
#if LF_KEY_BIAS
            else add = lf_load(bias_row, n) * LF_LOG2E;
#endif
            s[nt][e] = s[nt][e] * scale_log2 + add;
            s[nt][e + 2] = s[nt][e + 2] * scale_log2 + add;
        }
    }
}

extern "C" __global__ void __launch_bounds__(LF_THREADS, LF_MIN_BLOCKS)
lf_prior_attention(const elem_t* __restrict__ q, const elem_t* __restrict__ k, const elem_t* __restrict__ v,
                   const elem_t* __restrict__ key_bias, elem_t* __restrict__ out, float* __restrict__ sparsity,
                   float* __restrict__ eos_col, int eos_index, int m_len, int n_len, int heads, float scale)
{
    LF_DYNAMIC_SHARED(lf_chunk16, lf_smem);  // a 16-byte element type declares the alignment cp.async and ldmatrix need
    elem_t* ks = (elem_t*)lf_smem;            // [2][LF_BC][LF_LD]  (double-buffered)
    elem_t* vs = ks + 2 * LF_BC * LF_LD;      // [2][LF_BC][LF_LD]
#if LF_SPARSITY
    float* row_m = (float*)(vs + 2 * LF_BC * LF_LD);  // [LF_HEADS][LF_BR] final row max (log2 domain)
    float* row_il = row_m + LF_HEADS * LF_BR;         // [LF_HEADS][LF_BR] 1 / final normalizer
#endif
    (void)sparsity;
    (void)eos_col;
    (void)eos_index;
    (void)key_bias;

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int b = blockIdx.z;
    const int r0 = blockIdx.x * LF_BR + warp * 16;  // this warp's first query row
    const lf_i64 rs = (lf_i64)heads * LF_D;
    const elem_t* qb = q + (lf_i64)b * m_len * rs;
    const elem_t* kb = k + (lf_i64)b * n_len * rs;
    const elem_t* vb = v + (lf_i64)b * n_len * rs;
    elem_t* ob = out + (lf_i64)b * m_len * rs;
    const elem_t* bias_row = 0;
#if LF_KEY_BIAS
    bias_row = key_bias + (lf_i64)b * n_len;
#endif
    const float scale_log2 = scale * LF_LOG2E;
    const int tiles = (n_len + LF_BC - 1) / LF_BC;

#if LF_PRIORS
    const int h_begin = 0, h_end = heads;
#else
    const int h_begin = blockIdx.y, h_end = blockIdx.y + 1;
#endif
#if LF_EOS
    float eos_acc[2] = {0.f, 0.f};  // sum over heads of p_{h,row,eos}, rows g and g + 8
    const int eos_tile = eos_index / LF_BC, eos_nt = (eos_index % LF_BC) / 8, eos_t = (eos_index % 8) / 2, eos_e = eos_index % 2;
#endif

    // ---- sweep 1: flash attention, head by head ---------------------------------------------------
    for (int h = h_begin; h < h_end; ++h)
    {
        lf_u32 qf[LF_KD][4];
        lf_load_q(qf, qb, r0, m_len, rs, h);

        float o[LF_DT][4];
#pragma unroll
        for (int dt = 0; dt < LF_DT; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
        float mrow[2] = {-LF_INF, -LF_INF}, lrow[2] = {0.f, 0.f};  // lrow: this thread's partial sums
#if LF_EOS
        float eos_x[2] = {-LF_INF, -LF_INF};
#endif

        __syncthreads();  // the previous head's last tile is no longer read
        lf_load_tile(ks, vs, kb, vb, 0, n_len, rs, h, true);
        lf_cp_commit();
        for (int it = 0; it < tiles; ++it)
        {
            const int buf = it & 1;
            if (it + 1 < tiles)
                lf_load_tile(ks + (buf ^ 1) * LF_BC * LF_LD, vs + (buf ^ 1) * LF_BC * LF_LD, kb, vb, (it + 1) * LF_BC, n_len, rs, h, true);
            lf_cp_commit();
            lf_cp_wait<1>();
            __syncthreads();
            const elem_t* kt_s = ks + buf * LF_BC * LF_LD;
            const elem_t* vt_s = vs + buf * LF_BC * LF_LD;
            const int kt = it * LF_BC;

            float s[LF_NT][4];
            lf_scores(s, qf, kt_s, kt, n_len, scale_log2, bias_row);
#if LF_EOS
            // a run-time index into s[][] would move it to local memory: select with constant indices
            if (it == eos_tile && t == eos_t)
#pragma unroll
                for (int nt = 0; nt < LF_NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 2; ++e)
                        if (nt == eos_nt && e == eos_e)
                        {
                            eos_x[0] = s[nt][e];
                            eos_x[1] = s[nt][e + 2];
                        }
#endif
            // online softmax, rows g (e = 0, 1) and g + 8 (e = 2, 3)
#pragma unroll
            for (int half = 0; half < 2; ++half)
            {
                float mx = -LF_INF;
#pragma unroll
                for (int nt = 0; nt < LF_NT; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * half], s[nt][2 * half + 1]));
                mx = lf_quad_max(mx);
                const float mnew = fmaxf(mrow[half], mx);
                // all keys so far excluded: keep p = 0 and avoid (-inf) - (-inf)
                const float base = mnew == -LF_INF ? 0.f : mnew;
                const float corr = exp2f(mrow[half] - base);
                mrow[half] = mnew;
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < LF_NT; ++nt)
                {
                    s[nt][2 * half] = exp2f(s[nt][2 * half] - base);
                    s[nt][2 * half + 1] = exp2f(s[nt][2 * half + 1] - base);
                    sum += s[nt][2 * half] + s[nt][2 * half + 1];
                }
                lrow[half] = lrow[half] * corr + sum;
#pragma unroll
                for (int dt = 0; dt < LF_DT; ++dt)
                {
                    o[dt][2 * half] *= corr;
                    o[dt][2 * half + 1] *= corr;
                }
            }
            // O += P V: the C fragments of two adjacent score tiles are the A fragment of one k16 step
#pragma unroll
            for (int kk = 0; kk < LF_BC / 16; ++kk)
            {
                lf_u32 pa[4];
                pa[0] = lf_pack2(s[2 * kk][0], s[2 * kk][1]);
                pa[1] = lf_pack2(s[2 * kk][2], s[2 * kk][3]);
                pa[2] = lf_pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[3] = lf_pack2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
                const int mi = lane >> 3;
                const int key = kk * 16 + (lane & 7) + 8 * (mi & 1);
#pragma unroll
                for (int dp = 0; dp < LF_DT / 2; ++dp)
                {
                    lf_u32 vb4[4];
                    lf_ldmatrix_x4_trans(vb4, vt_s + key * LF_LD + dp * 16 + 8 * (mi >> 1));
                    lf_mma(o[2 * dp], pa, vb4[0], vb4[1]);
                    lf_mma(o[2 * dp + 1], pa, vb4[2], vb4[3]);
                }
            }
            __syncthreads();  // this buffer is refilled by the next iteration's prefetch
        }

        // epilogue for head h
#pragma unroll
        for (int half = 0; half < 2; ++half)
        {
            const float l = lf_quad_sum(lrow[half]);
            const float il = l > 0.f ? 1.f / l : 0.f;
            const int row = g + 8 * half, m = r0 + row;
#if LF_SPARSITY
            if (t == 0)
            {
                row_m[h * LF_BR + warp * 16 + row] = mrow[half] == -LF_INF ? 0.f : mrow[half];
                row_il[h * LF_BR + warp * 16 + row] = il;
            }
#endif
#if LF_EOS
            if (t == eos_t) eos_acc[half] += exp2f(eos_x[half] - (mrow[half] == -LF_INF ? 0.f : mrow[half])) * il;
#endif
            if (m < m_len)
            {
#pragma unroll
                for (int dt = 0; dt < LF_DT; ++dt)
                {
                    const lf_i64 off = (lf_i64)m * rs + (lf_i64)h * LF_D + dt * 8 + 2 * t;
                    const float y0 = o[dt][2 * half] * il, y1 = o[dt][2 * half + 1] * il;
                    *(lf_u32*)(ob + off) = lf_pack2(y0, y1);
                }
            }
        }
    }

#if LF_EOS
    if (t == eos_t)
#pragma unroll
        for (int half = 0; half < 2; ++half)
        {
            const int m = r0 + g + 8 * half;
            if (m < m_len) eos_col[(lf_i64)b * m_len + m] = eos_acc[half] / (float)heads;
        }
#endif

#if LF_SPARSITY
    // ---- sweep 2: exact probabilities, summed over heads per key tile, then squared ---------------
    float sumsq[2] = {0.f, 0.f};
    const int steps = tiles * heads;  // (key tile, head) pairs, head fastest
    __syncthreads();
    lf_load_tile(ks, vs, kb, vb, 0, n_len, rs, 0, false);
    lf_cp_commit();
    float acc[LF_NT][4];
#pragma unroll
    for (int nt = 0; nt < LF_NT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
    for (int it = 0; it < steps; ++it)
    {
        const int buf = it & 1, kt = (it / heads) * LF_BC, h = it % heads;
        if (it + 1 < steps)
        {
            const int nt1 = (it + 1) / heads, h1 = (it + 1) % heads;
            lf_load_tile(ks + (buf ^ 1) * LF_BC * LF_LD, vs, kb, vb, nt1 * LF_BC, n_len, rs, h1, false);
        }
        lf_cp_commit();
        lf_cp_wait<1>();
        __syncthreads();
        if (h == 0)
#pragma unroll
            for (int nt = 0; nt < LF_NT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;

        lf_u32 qf[LF_KD][4];
        lf_load_q(qf, qb, r0, m_len, rs, h);  // L1/L2-resident: read for every tile, not held for all heads
        float s[LF_NT][4];
        lf_scores(s, qf, ks + buf * LF_BC * LF_LD, kt, n_len, scale_log2, bias_row);
#pragma unroll
        for (int half = 0; half < 2; ++half)
        {
            const int row = h * LF_BR + warp * 16 + g + 8 * half;
            const float mh = row_m[row], il = row_il[row];
#pragma unroll
            for (int nt = 0; nt < LF_NT; ++nt)
            {
                acc[nt][2 * half] += exp2f(s[nt][2 * half] - mh) * il;
                acc[nt][2 * half + 1] += exp2f(s[nt][2 * half + 1] - mh) * il;
            }
        }
        if (h == heads - 1)
#pragma unroll
            for (int nt = 0; nt < LF_NT; ++nt)
            {
                sumsq[0] += acc[nt][0] * acc[nt][0] + acc[nt][1] * acc[nt][1];
                sumsq[1] += acc[nt][2] * acc[nt][2] + acc[nt][3] * acc[nt][3];
            }
        __syncthreads();
    }
#pragma unroll
    for (int half = 0; half < 2; ++half)
    {
        const float ss = lf_quad_sum(sumsq[half]);
        const int m = r0 + g + 8 * half;
        if (t == 0 && m < m_len) sparsity[(lf_i64)b * m_len + m] = (float)heads * (float)heads / ss;
    }
#endif
}
