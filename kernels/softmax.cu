// Softmax over the last dimension, max-subtracted, fp32 arithmetic; one block per row.
#include "lf_common.cuh"

extern "C" __global__ void lf_softmax(const elem_t* x, elem_t* y, int d)
{
    __shared__ float scratch[32];
    const lf_i64 base = (lf_i64)blockIdx.x * d;
    float m = -LF_INF;
    for (int i = threadIdx.x; i < d; i += blockDim.x) m = fmaxf(m, lf_load(x, base + i));
    m = lf_block_max(m, scratch);
    float s = 0.f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) s += expf(lf_load(x, base + i) - m);
    const float inv = 1.f / lf_block_sum(s, scratch);
    for (int i = threadIdx.x; i < d; i += blockDim.x) lf_store(y, base + i, expf(lf_load(x, base + i) - m) * inv);
}
