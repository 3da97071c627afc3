// The O(M) halves of the LayerFusion mask scheme (DESIGN sec. 5), between the attention launches of
// attention_priors.cu: min-max needs every query of a layer, so it cannot live in a tiled
// attention launch. One block per batch row for the normalizations; fp32 vectors [B, M].
// Semantics mirror LayerFusion.Core.Fusion.PriorMath (a constant vector min-max normalizes to 0).
#include "lf_common.cuh"

static __device__ __forceinline__ void lf_min_max(const float* x, int m, float* scratch32, float& lo, float& hi)
{
    float a = LF_INF, z = -LF_INF;
    for (int i = threadIdx.x; i < m; i += blockDim.x)
    {
        a = fminf(a, x[i]);
        z = fmaxf(z, x[i]);
    }
    hi = lf_block_max(z, scratch32);
    lo = -lf_block_max(-a, scratch32);
}

// s' = 1 - minmax(s): dense attention rows (foreground votes) score high.
extern "C" __global__ void lf_density_prior(const float* s, float* out, int m)
{
    __shared__ float scratch[32];
    const float* x = s + (lf_i64)blockIdx.x * m;
    float* y = out + (lf_i64)blockIdx.x * m;
    float lo, hi;
    lf_min_max(x, m, scratch, lo, hi);
    const float range = hi - lo;
    for (int i = threadIdx.x; i < m; i += blockDim.x) y[i] = 1.f - (range > 0.f ? (x[i] - lo) / range : 0.f);
}

// mask_soft = minmax(s' * c); mask_hard = sigmoid(d * (mask_soft - 0.5)). soft may alias nothing.
extern "C" __global__ void lf_prior_masks(const float* density, const float* content, float* soft, float* hard, int m, float d)
{
    __shared__ float scratch[32];
    const lf_i64 base = (lf_i64)blockIdx.x * m;
    float a = LF_INF, z = -LF_INF;
    for (int i = threadIdx.x; i < m; i += blockDim.x)
    {
        const float p = density[base + i] * content[base + i];
        soft[base + i] = p;  // the product, normalized below by the same thread
        a = fminf(a, p);
        z = fmaxf(z, p);
    }
    const float hi = lf_block_max(z, scratch);
    const float lo = -lf_block_max(-a, scratch);
    const float range = hi - lo;
    for (int i = threadIdx.x; i < m; i += blockDim.x)
    {
        const float sm = range > 0.f ? (soft[base + i] - lo) / range : 0.f;
        soft[base + i] = sm;
        hard[base + i] = 1.f / (1.f + expf(-d * (sm - 0.5f)));
    }
}

// Eq. 1 / Eq. 2 on [B, T, C] attention outputs after to_out (the exact form when FG has its own
// to_out): blend' = fg * soft + blend * (1 - soft); fg' = blend' * hard + fg * (1 - hard), in place.
// Masks fp32, read at b * mask_batch_stride + t (stride 0: one mask pair for every batch row).
extern "C" __global__ void lf_prior_blend(elem_t* fg, elem_t* blend, const float* mask_soft, const float* mask_hard,
                                          int mask_batch_stride, int tokens, int channels, lf_i64 total)
{
    LF_GRID_STRIDE(i, total)
    {
        const lf_i64 row = i / channels;
        const int t = (int)(row % tokens), b = (int)(row / tokens);
        const float soft = mask_soft[(lf_i64)b * mask_batch_stride + t], hard = mask_hard[(lf_i64)b * mask_batch_stride + t];
        const float f = lf_load(fg, i), x = lf_load(blend, i);
        const float y = f * soft + x * (1.f - soft);
        lf_store(blend, i, y);
        lf_store(fg, i, y * hard + f * (1.f - hard));
    }
}
