// The GEMM both stand-in BLAS libraries run, as cuBLAS defines it (column-major):
//   D = alpha op(A) op(B) + beta C (+ bias[i] per row), op(X) = X or X^T, strided batches,
// fp32/fp16/bf16 storage, fp32 accumulation and scaling (CUBLAS_COMPUTE_32F). beta = 0 never reads C.
#pragma once
#include "standin.hpp"
#include <cmath>
#include <cstring>
#include <vector>

namespace lfemu
{
constexpr int R_32F = 0, R_16F = 2, R_16BF = 14;

inline int type_size(int t) { return t == R_32F ? 4 : t == R_16F || t == R_16BF ? 2 : 0; }

inline float load(const void* p, long long i, int t)
{
    if (t == R_32F) return ((const float*)p)[i];
    uint16_t b = ((const uint16_t*)p)[i];
    if (t == R_16F) { _Float16 h; std::memcpy(&h, &b, 2); return (float)h; }
    uint32_t u = (uint32_t)b << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline void store(void* p, long long i, int t, float v)
{
    if (t == R_32F) { ((float*)p)[i] = v; return; }
    uint16_t b;
    if (t == R_16F) { _Float16 h = (_Float16)v; std::memcpy(&b, &h, 2); }
    else
    {
        uint32_t u;
        std::memcpy(&u, &v, 4);
        b = std::isnan(v) ? (uint16_t)((u >> 16) | 0x40) : (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }
    ((uint16_t*)p)[i] = b;
}

struct Gemm
{
    int transa, transb, m, n, k;
    float alpha, beta;
    unsigned long long a, b, c, d, bias;
    int aType, bType, cType, dType, biasType;
    long long lda, ldb, ldc, ldd, strideA, strideB, strideC, strideD;
    int batch;
    const char* what;
};

// Bytes spanned by a column-major [rows x cols] matrix with leading dimension ld.
inline size_t span(long long rows, long long cols, long long ld, int t)
{
    if (rows == 0 || cols == 0) return 0;
    return (size_t)(((cols - 1) * ld + rows) * type_size(t));
}

inline int run_gemm(void* ctx)
{
    const Gemm& g = *(const Gemm*)ctx;
    lfemu_log_line(("gemm " + std::string(g.what ? g.what : "?") + " " + std::to_string(g.m) + " " + std::to_string(g.n) + " " +
                    std::to_string(g.k) + " " + std::to_string(g.batch)).c_str());
    long long ar = g.transa ? g.k : g.m, ac = g.transa ? g.m : g.k;
    long long br = g.transb ? g.n : g.k, bc = g.transb ? g.k : g.n;
    std::vector<float> A((size_t)g.m * g.k), B((size_t)g.n * g.k);
    for (int t = 0; t < g.batch; t++)
    {
        unsigned long long a = g.a + (unsigned long long)(t * g.strideA * type_size(g.aType));
        unsigned long long b = g.b + (unsigned long long)(t * g.strideB * type_size(g.bType));
        unsigned long long c = g.c + (unsigned long long)(t * g.strideC * type_size(g.cType));
        unsigned long long d = g.d + (unsigned long long)(t * g.strideD * type_size(g.dType));
        if (int rc = lfemu_check_range(a, span(ar, ac, g.lda, g.aType), g.what)) return rc;
        if (int rc = lfemu_check_range(b, span(br, bc, g.ldb, g.bType), g.what)) return rc;
        if (g.beta != 0.f)
            if (int rc = lfemu_check_range(c, span(g.m, g.n, g.ldc, g.cType), g.what)) return rc;
        if (int rc = lfemu_check_range(d, span(g.m, g.n, g.ldd, g.dType), g.what)) return rc;
        if (g.bias)
            if (int rc = lfemu_check_range(g.bias, (size_t)g.m * type_size(g.biasType), g.what)) return rc;
        // op(A) as A[i][p] row-major, op(B) as B[j][p]: every dot product runs over contiguous memory
        for (long long i = 0; i < g.m; i++)
            for (long long p = 0; p < g.k; p++)
                A[i * g.k + p] = load((const void*)a, g.transa ? p + i * g.lda : i + p * g.lda, g.aType);
        for (long long j = 0; j < g.n; j++)
            for (long long p = 0; p < g.k; p++)
                B[j * g.k + p] = load((const void*)b, g.transb ? j + p * g.ldb : p + j * g.ldb, g.bType);
        for (long long j = 0; j < g.n; j++)
            for (long long i = 0; i < g.m; i++)
            {
                const float* x = &A[i * g.k];
                const float* y = &B[j * g.k];
                float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                long long p = 0;
                for (; p + 4 <= g.k; p += 4)
                {
                    s0 += x[p] * y[p];
                    s1 += x[p + 1] * y[p + 1];
                    s2 += x[p + 2] * y[p + 2];
                    s3 += x[p + 3] * y[p + 3];
                }
                for (; p < g.k; p++) s0 += x[p] * y[p];
                float v = g.alpha * ((s0 + s1) + (s2 + s3));
                if (g.beta != 0.f) v += g.beta * load((const void*)c, i + j * g.ldc, g.cType);
                if (g.bias) v += load((const void*)g.bias, i, g.biasType);
                store((void*)d, i + j * g.ldd, g.dType, v);
            }
    }
    return 0;
}

inline void free_gemm(void* p) { delete (Gemm*)p; }
}  // namespace lfemu
