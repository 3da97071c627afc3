// Elementwise ops: activations, affine, broadcast binary ops, GEGLU.
// Semantics follow torch: GELU erf form 0.5x(1+erf(x/sqrt2)); tanh form
// 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))); CLIP quick_gelu x*sigmoid(1.702x); SiLU x*sigmoid(x).
#include "lf_common.cuh"

static __device__ __forceinline__ float lf_dev_sigmoid(float x) { return 1.f / (1.f + expf(-x)); }
static __device__ __forceinline__ float lf_dev_gelu_erf(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
static __device__ __forceinline__ float lf_dev_gelu_tanh(float x)
{
    const float inner = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.f + tanhf(inner));
}

extern "C" __global__ void lf_affine(const elem_t* x, elem_t* y, lf_i64 n, float alpha, float beta)
{
    LF_GRID_STRIDE(i, n) lf_store(y, i, alpha * lf_load(x, i) + beta);
}

// min/max written as comparisons: fminf/fmaxf would turn NaN into a bound, torch clamp keeps it.
extern "C" __global__ void lf_clamp(const elem_t* x, elem_t* y, lf_i64 n, float lo, float hi)
{
    LF_GRID_STRIDE(i, n)
    {
        const float v = lf_load(x, i);
        lf_store(y, i, v < lo ? lo : (v > hi ? hi : v));
    }
}

// The denoising loop's per-step scalars (StepScalars): a and b are columns of an fp32 table read at the
// device step counter (clamped to steps - 1), so a captured step graph replays with each step's values.
// y may be null (then out = a x).
extern "C" __global__ void lf_step_combine(const elem_t* x, const elem_t* y, elem_t* out, lf_i64 n, const float* a,
                                           const float* b, const int* step, int stride, int steps)
{
    const lf_i64 row = (lf_i64)lf_step_row(*step, steps) * stride;
    const float av = a[row], bv = y ? b[row] : 0.f;
    LF_GRID_STRIDE(i, n) lf_store(out, i, y ? av * lf_load(x, i) + bv * lf_load(y, i) : av * lf_load(x, i));
}

// y [n] = rows[lf_step_row(*step), :] of rows [steps, n] (a stochastic sampler's noise, uploaded once).
extern "C" __global__ void lf_step_select_row(const elem_t* rows, elem_t* y, lf_i64 n, const int* step, int steps)
{
    const elem_t* row = rows + (lf_i64)lf_step_row(*step, steps) * n;
    LF_GRID_STRIDE(i, n) y[i] = row[i];
}

// step[0] += 1: the loop's step counter moves on the device, inside a captured step graph too.
extern "C" __global__ void lf_step_advance(int* step)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) step[0] += 1;
}

extern "C" __global__ void lf_silu(const elem_t* x, elem_t* y, lf_i64 n)
{
    LF_GRID_STRIDE(i, n) { const float v = lf_load(x, i); lf_store(y, i, v * lf_dev_sigmoid(v)); }
}

extern "C" __global__ void lf_gelu_erf(const elem_t* x, elem_t* y, lf_i64 n)
{
    LF_GRID_STRIDE(i, n) lf_store(y, i, lf_dev_gelu_erf(lf_load(x, i)));
}

extern "C" __global__ void lf_gelu_tanh(const elem_t* x, elem_t* y, lf_i64 n)
{
    LF_GRID_STRIDE(i, n) lf_store(y, i, lf_dev_gelu_tanh(lf_load(x, i)));
}

extern "C" __global__ void lf_quick_gelu(const elem_t* x, elem_t* y, lf_i64 n)
{
    LF_GRID_STRIDE(i, n) { const float v = lf_load(x, i); lf_store(y, i, v * lf_dev_sigmoid(1.702f * v)); }
}

// diffusers GEGLU: x [rows, 2D] -> y [rows, D] = x[:, :D] * gelu(x[:, D:]).
extern "C" __global__ void lf_geglu(const elem_t* x, elem_t* y, lf_i64 rows, lf_i64 d)
{
    LF_GRID_STRIDE(i, rows * d)
    {
        const lf_i64 r = i / d, c = i - r * d;
        const float a = lf_load(x, r * 2 * d + c), g = lf_load(x, r * 2 * d + d + c);
        lf_store(y, i, a * lf_dev_gelu_erf(g));
    }
}

// y = a OP b, b broadcast to a's shape through the index map (stride 0 on broadcast axes).
#define LF_BINARY(name, expr)                                                                          \
    extern "C" __global__ void name(const elem_t* a, const elem_t* b, elem_t* y, lf_i64 n, lf_index_map map, \
                                    int same)                                                          \
    {                                                                                                  \
        LF_GRID_STRIDE(i, n)                                                                           \
        {                                                                                              \
            const float u = lf_load(a, i);                                                             \
            const float w = lf_load(b, same ? i : lf_map_index(map, i));                               \
            lf_store(y, i, expr);                                                                      \
        }                                                                                              \
    }

LF_BINARY(lf_add, u + w)
LF_BINARY(lf_sub, u - w)
LF_BINARY(lf_mul, u * w)
