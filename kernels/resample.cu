// Nearest 2x upsampling, diffusers' sinusoidal timestep embedding, and embedding-table gather.
#include "lf_common.cuh"

// x [P, H, W] -> y [P, 2H, 2W] (P = N*C).
extern "C" __global__ void lf_upsample2x_nearest(const elem_t* x, elem_t* y, lf_i64 planes, int h, int w)
{
    const lf_i64 ho = 2 * (lf_i64)h, wo = 2 * (lf_i64)w;
    LF_GRID_STRIDE(i, planes * ho * wo)
    {
        const lf_i64 p = i / (ho * wo), r = i - p * ho * wo;
        const lf_i64 yy = r / wo, xx = r - yy * wo;
        y[i] = x[(p * h + yy / 2) * w + xx / 2];
    }
}

// diffusers.models.embeddings.get_timestep_embedding, in fp32 as torch computes it:
// exponent = -ln(max_period) * i / (half - shift); arg = scale * t * exp(exponent).
// Row r embeds values[s * stride + r / repeat], s = the step counter (clamped to steps - 1; step null:
// s = 0), so a denoising loop reads its timestep from a table uploaded once (stride = the table's
// row length) and its constant time ids with stride 0.
extern "C" __global__ void lf_timestep_embedding(const float* values, const int* step, int stride, int steps, int repeat,
                                                 elem_t* y, int count, int dim, int flip, float shift, float scale,
                                                 float log_max_period)
{
    const int half = dim / 2;
    const float* timesteps = values + (step ? (lf_i64)lf_step_row(*step, steps) * stride : 0);
    LF_GRID_STRIDE(i, (lf_i64)count * dim)
    {
        const int r = (int)(i / dim), c = (int)(i - (lf_i64)r * dim);
        float v = 0.f;
        if (c < 2 * half)
        {
            const int k = c < half ? c : c - half;
            const bool first = c < half;
            const float freq = expf(-log_max_period * (float)k / ((float)half - shift));
            const float arg = scale * (timesteps[r / repeat] * freq);
            // [sin, cos] by default; flip_sin_to_cos swaps the halves to [cos, sin]
            const bool useSin = flip ? !first : first;
            v = useSin ? sinf(arg) : cosf(arg);
        }
        lf_store(y, i, v);
    }
}

// y [count, D] = table[ids[r], :]; ids are validated on the host.
extern "C" __global__ void lf_gather(const elem_t* table, const int* ids, elem_t* y, int count, lf_i64 d)
{
    LF_GRID_STRIDE(i, (lf_i64)count * d)
    {
        const lf_i64 r = i / d, c = i - r * d;
        y[i] = table[(lf_i64)ids[r] * d + c];
    }
}
