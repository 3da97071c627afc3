// GroupNorm (+ fused SiLU) and LayerNorm. Statistics in fp32, two passes (mean, then centred
// sum of squares) so large groups do not lose precision to E[x^2] - E[x]^2 cancellation.
// Biased variance and eps inside the square root, as torch.
#include "lf_common.cuh"

// x [N, C, S] (S = product of spatial dims); grid (G, N); one block per (sample, group).
extern "C" __global__ void lf_group_norm(const elem_t* x, const elem_t* gamma, const elem_t* beta, elem_t* y,
                                         int channels, lf_i64 spatial, int groups, float eps, int silu)
{
    __shared__ float scratch[32];
    const int g = blockIdx.x, n = blockIdx.y, cpg = channels / groups;
    const lf_i64 base = ((lf_i64)n * channels + (lf_i64)g * cpg) * spatial;
    const lf_i64 count = (lf_i64)cpg * spatial;

    float s = 0.f;
    for (lf_i64 i = threadIdx.x; i < count; i += blockDim.x) s += lf_load(x, base + i);
    const float mean = lf_block_sum(s, scratch) / (float)count;
    float q = 0.f;
    for (lf_i64 i = threadIdx.x; i < count; i += blockDim.x)
    {
        const float d = lf_load(x, base + i) - mean;
        q += d * d;
    }
    const float rstd = rsqrtf(lf_block_sum(q, scratch) / (float)count + eps);

    for (lf_i64 i = threadIdx.x; i < count; i += blockDim.x)
    {
        const int c = g * cpg + (int)(i / spatial);
        float v = (lf_load(x, base + i) - mean) * rstd;
        if (gamma) v *= lf_load(gamma, c);
        if (beta) v += lf_load(beta, c);
        if (silu) v = v / (1.f + expf(-v));
        lf_store(y, base + i, v);
    }
}

// x [rows, D]; one block per row.
extern "C" __global__ void lf_layer_norm(const elem_t* x, const elem_t* gamma, const elem_t* beta, elem_t* y,
                                         int d, float eps)
{
    __shared__ float scratch[32];
    const lf_i64 base = (lf_i64)blockIdx.x * d;
    float s = 0.f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) s += lf_load(x, base + i);
    const float mean = lf_block_sum(s, scratch) / (float)d;
    float q = 0.f;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
    {
        const float t = lf_load(x, base + i) - mean;
        q += t * t;
    }
    const float rstd = rsqrtf(lf_block_sum(q, scratch) / (float)d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x)
    {
        float v = (lf_load(x, base + i) - mean) * rstd;
        if (gamma) v *= lf_load(gamma, i);
        if (beta) v += lf_load(beta, i);
        lf_store(y, base + i, v);
    }
}
