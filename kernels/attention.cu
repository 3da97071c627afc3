// First flash-style attention: online softmax over key tiles held in shared memory; the score
// matrix is never materialized (O(M) memory). Storage fp16/bf16/fp32, all arithmetic fp32.
// One block = 4 warps x LF_ROWS_PER_WARP query rows of one (batch, head); each lane owns one key
// of the 32-key tile for the scores and a D/32 slice of the output row for the accumulation.
// Specialized at NVRTC time: -DLF_HEAD_DIM=D -DLF_ROWS_PER_WARP=R.
// q [B, M, H*D], k/v [B, N, H*D], key_bias [B, N] (optional, added to every score row),
// causal masks keys j > i. A row whose every key is masked gets zeros.
#include "lf_common.cuh"

#ifndef LF_HEAD_DIM
#error "LF_HEAD_DIM must be defined"
#endif
#ifndef LF_ROWS_PER_WARP
#define LF_ROWS_PER_WARP 4
#endif

#define LF_WARPS 4
#define LF_BC 32
#define LF_D LF_HEAD_DIM
#define LF_R LF_ROWS_PER_WARP
#define LF_DPL ((LF_D + 31) / 32)
#define LF_KSTRIDE (LF_D + 1)

extern "C" __global__ void __launch_bounds__(LF_WARPS * 32)
lf_attention(const elem_t* q, const elem_t* k, const elem_t* v, const elem_t* key_bias, elem_t* out, int m_len,
             int n_len, int heads, float scale, int causal)
{
    LF_DYNAMIC_SHARED(float, smem);
    float* qs = smem;                         // [LF_WARPS*LF_R][D], pre-scaled
    float* ks = qs + LF_WARPS * LF_R * LF_D;  // [LF_BC][D+1] (padded: lanes read different keys)
    float* vs = ks + LF_BC * LF_KSTRIDE;      // [LF_BC][D]

    const int b = blockIdx.z, h = blockIdx.y;
    const int row0 = blockIdx.x * (LF_WARPS * LF_R);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const lf_i64 rs = (lf_i64)heads * LF_D;
    const elem_t* qb = q + (lf_i64)b * m_len * rs + (lf_i64)h * LF_D;
    const elem_t* kb = k + (lf_i64)b * n_len * rs + (lf_i64)h * LF_D;
    const elem_t* vb = v + (lf_i64)b * n_len * rs + (lf_i64)h * LF_D;

    for (int i = threadIdx.x; i < LF_WARPS * LF_R * LF_D; i += blockDim.x)
    {
        const int r = i / LF_D, d = i - r * LF_D, m = row0 + r;
        qs[i] = m < m_len ? lf_load(qb, (lf_i64)m * rs + d) * scale : 0.f;
    }

    float o[LF_R][LF_DPL];
    float mrow[LF_R], lrow[LF_R];
#pragma unroll
    for (int r = 0; r < LF_R; ++r)
    {
        mrow[r] = -LF_INF;
        lrow[r] = 0.f;
#pragma unroll
        for (int i = 0; i < LF_DPL; ++i) o[r][i] = 0.f;
    }

    const int lastRow = min(row0 + LF_WARPS * LF_R, m_len) - 1;
    const int nEnd = causal ? min(n_len, lastRow + 1) : n_len;

    for (int kt = 0; kt < nEnd; kt += LF_BC)
    {
        __syncthreads();
        for (int i = threadIdx.x; i < LF_BC * LF_D; i += blockDim.x)
        {
            const int j = i / LF_D, d = i - j * LF_D, n = kt + j;
            float kv = 0.f, vv = 0.f;
            if (n < n_len)
            {
                kv = lf_load(kb, (lf_i64)n * rs + d);
                vv = lf_load(vb, (lf_i64)n * rs + d);
            }
            ks[j * LF_KSTRIDE + d] = kv;
            vs[j * LF_D + d] = vv;
        }
        __syncthreads();

        const int n = kt + lane;
        const float bias = (key_bias != 0 && n < n_len) ? lf_load(key_bias, (lf_i64)b * n_len + n) : 0.f;
        const float* kr = ks + lane * LF_KSTRIDE;
#pragma unroll
        for (int r = 0; r < LF_R; ++r)
        {
            const int lr = warp * LF_R + r, m = row0 + lr;
            const float* qr = qs + lr * LF_D;
            float s = 0.f;
#pragma unroll 8
            for (int d = 0; d < LF_D; ++d) s += qr[d] * kr[d];
            s += bias;
            const bool valid = n < n_len && m < m_len && !(causal && n > m);
            if (!valid) s = -LF_INF;

            const float mnew = fmaxf(mrow[r], lf_warp_max(s));
            float p = 0.f, corr = 1.f;
            if (mnew != -LF_INF)
            {
                p = valid ? expf(s - mnew) : 0.f;  // a -inf key bias gives exp(-inf) = 0
                corr = expf(mrow[r] - mnew);      // 0 on the first live tile (mrow = -inf)
            }
            mrow[r] = mnew;
            lrow[r] = lrow[r] * corr + lf_warp_sum(p);
#pragma unroll
            for (int i = 0; i < LF_DPL; ++i) o[r][i] *= corr;
#pragma unroll 4
            for (int j = 0; j < LF_BC; ++j)
            {
                const float pj = __shfl_sync(LF_FULL_MASK, p, j);
                const float* vr = vs + j * LF_D;
#pragma unroll
                for (int i = 0; i < LF_DPL; ++i)
                {
                    const int d = lane + 32 * i;
                    if (d < LF_D) o[r][i] += pj * vr[d];
                }
            }
        }
    }

    elem_t* ob = out + (lf_i64)b * m_len * rs + (lf_i64)h * LF_D;
#pragma unroll
    for (int r = 0; r < LF_R; ++r)
    {
        const int m = row0 + warp * LF_R + r;
        if (m >= m_len) continue;
        const float inv = lrow[r] > 0.f ? 1.f / lrow[r] : 0.f;
#pragma unroll
        for (int i = 0; i < LF_DPL; ++i)
        {
            const int d = lane + 32 * i;
            if (d < LF_D) lf_store(ob, (lf_i64)m * rs + d, o[r][i] * inv);
        }
    }
}
