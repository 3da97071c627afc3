// The LayerFusion prior ops of IOps (IOps.Priors.cs) on tensors in the module's storage type; the
// CPU backend's CpuOps.Priors.cs is the reference of each. prior_masks.cu keeps the fp32-vector
// forms the fused tensor-core kernel's own tests and benchmarks use.
#include "lf_common.cuh"

// Head-mean statistics of softmax(q k^T * scale) without any M x N map, on CUDA cores: one warp per
// query row, three sweeps over the keys per head (max, normalizer, then the head-mean row from the
// per-head max/normalizer kept in shared memory). For shapes the tensor-core kernel does not take
// (fp32 storage, head dims not a multiple of 16, pre-sm_80); the cost is ~3x the score FLOPs of
// one attention, which only one layer per step pays.
// Grid (ceil(m / warps), b), block 32 * warps; dynamic shared: 2 * heads * warps floats.
extern "C" __global__ void lf_attention_stats(const elem_t* __restrict__ q, const elem_t* __restrict__ k,
                                              elem_t* __restrict__ s_out, elem_t* __restrict__ col_out, int column,
                                              int m, int n, int heads, int head_dim, float scale)
{
    LF_DYNAMIC_SHARED(float, stats);
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i = blockIdx.x * warps + warp, b = blockIdx.y;
    if (i >= m) return;
    const int inner = heads * head_dim;
    const elem_t* qi = q + ((lf_i64)b * m + i) * inner;
    const elem_t* kb = k + (lf_i64)b * n * inner;
    float* mx = stats + 2 * heads * warp;
    float* inv = mx + heads;
    for (int h = 0; h < heads; h++)
    {
        float best = -LF_INF;
        for (int j = lane; j < n; j += 32)
        {
            float acc = 0.f;
            for (int d = 0; d < head_dim; d++) acc += lf_load(qi, h * head_dim + d) * lf_load(kb, (lf_i64)j * inner + h * head_dim + d);
            best = fmaxf(best, acc * scale);
        }
        best = lf_warp_max(best);
        float z = 0.f;
        for (int j = lane; j < n; j += 32)
        {
            float acc = 0.f;
            for (int d = 0; d < head_dim; d++) acc += lf_load(qi, h * head_dim + d) * lf_load(kb, (lf_i64)j * inner + h * head_dim + d);
            z += expf(acc * scale - best);
        }
        z = lf_warp_sum(z);
        // every lane holds the reduced values and writes the same ones, then reads back its own
        // writes: no warp barrier needed
        mx[h] = best;
        inv[h] = 1.f / (z * (float)heads);
    }
    float ss = 0.f, cv = 0.f;
    for (int j = lane; j < n; j += 32)
    {
        float mean = 0.f;
        for (int h = 0; h < heads; h++)
        {
            float acc = 0.f;
            for (int d = 0; d < head_dim; d++) acc += lf_load(qi, h * head_dim + d) * lf_load(kb, (lf_i64)j * inner + h * head_dim + d);
            mean += expf(acc * scale - mx[h]) * inv[h];
        }
        ss += mean * mean;
        if (j == column) cv = mean;
    }
    ss = lf_warp_sum(ss);
    cv = lf_warp_sum(cv);
    if (lane == 0)
    {
        if (s_out) lf_store(s_out, (lf_i64)b * m + i, 1.f / ss);
        if (col_out) lf_store(col_out, (lf_i64)b * m + i, cv);
    }
}

// The fused kernel's fp32 [B, M] outputs into storage-typed tensors.
extern "C" __global__ void lf_f32_to_storage(const float* __restrict__ x, elem_t* __restrict__ y, lf_i64 n)
{
    LF_GRID_STRIDE(i, n) lf_store(y, i, x[i]);
}

static __device__ __forceinline__ void lf_row_min_max(const elem_t* x, const elem_t* c, int m, float* scratch32, float& lo, float& hi)
{
    float a = LF_INF, z = -LF_INF;
    for (int i = threadIdx.x; i < m; i += blockDim.x)
    {
        const float v = c ? lf_load(x, i) * lf_load(c, i) : lf_load(x, i);
        a = fminf(a, v);
        z = fmaxf(z, v);
    }
    hi = lf_block_max(z, scratch32);
    lo = -lf_block_max(-a, scratch32);
}

// s' = 1 - minmax(s) per row; one block per row.
extern "C" __global__ void lf_po_density(const elem_t* __restrict__ s, elem_t* __restrict__ out, int m)
{
    __shared__ float scratch[32];
    const elem_t* x = s + (lf_i64)blockIdx.x * m;
    elem_t* y = out + (lf_i64)blockIdx.x * m;
    float lo, hi;
    lf_row_min_max(x, 0, m, scratch, lo, hi);
    const float range = hi - lo;
    for (int i = threadIdx.x; i < m; i += blockDim.x) lf_store(y, i, 1.f - (range > 0.f ? (lf_load(x, i) - lo) / range : 0.f));
}

// mask_soft = minmax(s' c), mask_hard = sigmoid(d (mask_soft - 0.5)) per row; the product is formed
// again in fp32 in the second sweep rather than stored rounded to the storage type.
extern "C" __global__ void lf_po_masks(const elem_t* __restrict__ density, const elem_t* __restrict__ content,
                                       elem_t* __restrict__ soft, elem_t* __restrict__ hard, int m, float d)
{
    __shared__ float scratch[32];
    const lf_i64 base = (lf_i64)blockIdx.x * m;
    float lo, hi;
    lf_row_min_max(density + base, content + base, m, scratch, lo, hi);
    const float range = hi - lo;
    for (int i = threadIdx.x; i < m; i += blockDim.x)
    {
        const float p = lf_load(density, base + i) * lf_load(content, base + i);
        const float sm = range > 0.f ? (p - lo) / range : 0.f;
        lf_store(soft, base + i, sm);
        lf_store(hard, base + i, 1.f / (1.f + expf(-d * (sm - 0.5f))));
    }
}

// Bilinear resize of [rows, h*w] maps to [rows, oh*ow], align_corners = false, no antialias.
extern "C" __global__ void lf_po_resize_bilinear(const elem_t* __restrict__ x, elem_t* __restrict__ y, int h, int w, int oh, int ow, lf_i64 total)
{
    const float sy = (float)h / (float)oh, sx = (float)w / (float)ow;
    LF_GRID_STRIDE(i, total)
    {
        const int ox = (int)(i % ow), oy = (int)(i / ow % oh);
        const lf_i64 r = i / ((lf_i64)ow * oh);
        const float fy = fmaxf((oy + 0.5f) * sy - 0.5f, 0.f), fx = fmaxf((ox + 0.5f) * sx - 0.5f, 0.f);
        const int y0 = min((int)fy, h - 1), y1 = min(y0 + 1, h - 1), x0 = min((int)fx, w - 1), x1 = min(x0 + 1, w - 1);
        const float ly = fy - (float)y0, lx = fx - (float)x0;
        const elem_t* src = x + r * h * w;
        const float top = lf_load(src, y0 * w + x0) * (1.f - lx) + lf_load(src, y0 * w + x1) * lx;
        const float bottom = lf_load(src, y1 * w + x0) * (1.f - lx) + lf_load(src, y1 * w + x1) * lx;
        lf_store(y, i, top * (1.f - ly) + bottom * ly);
    }
}

// Eq. 1 / Eq. 2 after to_out on [B, T, C]; masks [T] shared by every batch row; new outputs.
extern "C" __global__ void lf_po_blend(const elem_t* __restrict__ fg, const elem_t* __restrict__ blend,
                                       const elem_t* __restrict__ soft, const elem_t* __restrict__ hard,
                                       elem_t* __restrict__ fg_out, elem_t* __restrict__ blend_out, int tokens, int channels, lf_i64 total)
{
    LF_GRID_STRIDE(i, total)
    {
        const int t = (int)(i / channels % tokens);
        const float s = lf_load(soft, t), hm = lf_load(hard, t);
        const float f = lf_load(fg, i), x = lf_load(blend, i);
        const float yb = f * s + x * (1.f - s);
        lf_store(blend_out, i, yb);
        lf_store(fg_out, i, yb * hm + f * (1.f - hm));
    }
}

// [rows, open + T] key bias: 0 over the open keys, -inf over masked keys whose hard mask is > 0.5.
extern "C" __global__ void lf_po_exclusion_bias(const elem_t* __restrict__ hard, elem_t* __restrict__ y, int open, int tokens, lf_i64 total)
{
    const int n = open + tokens;
    LF_GRID_STRIDE(i, total)
    {
        const int j = (int)(i % n);
        lf_store(y, i, j >= open && lf_load(hard, j - open) > 0.5f ? -LF_INF : 0.f);
    }
}
