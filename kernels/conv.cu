// Convolution support: im2col, so a conv2d becomes one strided-batched cuBLAS GEMM
// y[n] [O, Ho*Wo] = W [O, C*kh*kw] @ col[n] [C*kh*kw, Ho*Wo]. (1x1 stride-1 convs skip im2col.)
#include "lf_common.cuh"

extern "C" __global__ void lf_im2col(const elem_t* x, elem_t* col, int n, int c, int h, int w, int kh, int kw,
                                     int stride, int pad, int ho, int wo)
{
    const lf_i64 plane = (lf_i64)ho * wo;
    const lf_i64 rowsPerImage = (lf_i64)c * kh * kw;
    LF_GRID_STRIDE(i, (lf_i64)n * rowsPerImage * plane)
    {
        const lf_i64 img = i / (rowsPerImage * plane);
        lf_i64 r = i - img * rowsPerImage * plane;
        const lf_i64 row = r / plane, p = r - row * plane;
        const int ci = (int)(row / (kh * kw)), k = (int)(row - (lf_i64)ci * kh * kw);
        const int ky = k / kw, kx = k - ky * kw;
        const int oy = (int)(p / wo), ox = (int)(p - (lf_i64)oy * wo);
        const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
        if (iy >= 0 && iy < h && ix >= 0 && ix < w)
            col[i] = x[(((lf_i64)img * c + ci) * h + iy) * w + ix];
        else
            lf_store(col, i, 0.f);
    }
}
