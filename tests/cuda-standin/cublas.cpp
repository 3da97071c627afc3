// Stand-in for cuBLAS (libcublas.so.12): the entry points src/LayerFusion.Cuda/Interop/Cublas.cs
// binds, with cublas_api.h's names (_v2), signatures, enum values and status codes. GEMMs run on
// the stand-in driver's streams (so they are captured into graphs like the real library's kernels);
// arguments the real library refuses are refused with its status.
#include "gemm.hpp"

namespace
{
enum : int
{
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
constexpr int kVersion = 120805;  // 12.8.5

struct Handle
{
    void* stream = nullptr;
    int mathMode = 0;
    unsigned long long workspace = 0;
    size_t workspaceBytes = 0;
};

bool compute32f(int c) { return c == 68 || c == 69 || c == 74 || c == 75 || c == 77; }  // CUBLAS_COMPUTE_32F[_PEDANTIC|_FAST_16F|_FAST_16BF|_FAST_TF32]

// The (A, B, C) storage types cuBLAS accepts with an fp32 compute type (cublasGemmEx's table).
bool supported(int a, int b, int c)
{
    using namespace lfemu;
    if (a != b) return false;
    if (a == R_32F) return c == R_32F;
    if (a == R_16F || a == R_16BF) return c == a || c == R_32F;
    return false;
}

bool valid_algo(int algo) { return algo == -1 || (algo >= 0 && algo <= 23) || (algo >= 99 && algo <= 115); }

int issue(Handle* h, const lfemu::Gemm& g)
{
    if (g.m == 0 || g.n == 0 || g.batch == 0) return CUBLAS_STATUS_SUCCESS;
    auto* job = new lfemu::Gemm(g);
    int rc = lfemu_enqueue_host(h->stream, lfemu::run_gemm, job, lfemu::free_gemm);
    return rc == 0 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

int gemm(void* handle, int transa, int transb, int m, int n, int k, const void* alpha, unsigned long long a, int aType, int lda,
         long long strideA, unsigned long long b, int bType, int ldb, long long strideB, const void* beta, unsigned long long c, int cType,
         int ldc, long long strideC, int batch, int computeType, int algo, const char* what)
{
    auto* h = (Handle*)handle;
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (transa < 0 || transa > 2 || transb < 0 || transb > 2 || m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < std::max(1, transa == 0 ? m : k) || ldb < std::max(1, transb == 0 ? k : n) || ldc < std::max(1, m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!valid_algo(algo) || !alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    if (!compute32f(computeType)) return CUBLAS_STATUS_NOT_SUPPORTED;  // the only compute type we set
    if (!supported(aType, bType, cType)) return CUBLAS_STATUS_NOT_SUPPORTED;
    lfemu::Gemm g{transa != 0, transb != 0, m, n, k, *(const float*)alpha, *(const float*)beta, a, b, c, c, 0, aType, bType, cType, cType, 0,
                  lda, ldb, ldc, ldc, strideA, strideB, strideC, strideC, batch, what};
    return issue(h, g);
}
}  // namespace

LFEMU_API int cublasCreate_v2(void** handle)
{
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    if (!lfemu_has_context()) return CUBLAS_STATUS_NOT_INITIALIZED;
    // for the tests of a cuBLAS that cannot initialise (a library newer than the driver, no memory):
    // LAYERFUSION_EMU_CUBLAS_CREATE_STATUS=<one of cublasCreate's failure statuses> makes it fail so
    if (const char* e = std::getenv("LAYERFUSION_EMU_CUBLAS_CREATE_STATUS"); e && *e)
    {
        int status = std::atoi(e);
        for (int real : {CUBLAS_STATUS_NOT_INITIALIZED, CUBLAS_STATUS_ALLOC_FAILED, CUBLAS_STATUS_INVALID_VALUE, CUBLAS_STATUS_ARCH_MISMATCH,
                         CUBLAS_STATUS_INTERNAL_ERROR, CUBLAS_STATUS_NOT_SUPPORTED})
            if (status == real) return status;
    }
    *handle = new Handle;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasDestroy_v2(void* handle)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete (Handle*)handle;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasGetVersion_v2(void* handle, int* version)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!version) return CUBLAS_STATUS_INVALID_VALUE;
    *version = kVersion;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasSetStream_v2(void* handle, void* stream)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!lfemu_stream_valid(stream)) return CUBLAS_STATUS_INVALID_VALUE;
    ((Handle*)handle)->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasSetMathMode(void* handle, int mode)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    int base = mode & ~16;  // CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION is a flag
    if (base < 0 || base > 3) return CUBLAS_STATUS_INVALID_VALUE;
    ((Handle*)handle)->mathMode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasSetWorkspace_v2(void* handle, unsigned long long workspace, size_t bytes)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes > 0 && (workspace == 0 || workspace % 256 != 0)) return CUBLAS_STATUS_INVALID_VALUE;
    ((Handle*)handle)->workspace = workspace;
    ((Handle*)handle)->workspaceBytes = bytes;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasGemmEx(void* handle, int transa, int transb, int m, int n, int k, const void* alpha, unsigned long long a, int aType,
                           int lda, unsigned long long b, int bType, int ldb, const void* beta, unsigned long long c, int cType, int ldc,
                           int computeType, int algo)
{
    return gemm(handle, transa, transb, m, n, k, alpha, a, aType, lda, 0, b, bType, ldb, 0, beta, c, cType, ldc, 0, 1, computeType, algo,
                "cublasGemmEx");
}

LFEMU_API int cublasGemmStridedBatchedEx(void* handle, int transa, int transb, int m, int n, int k, const void* alpha, unsigned long long a,
                                         int aType, int lda, long long strideA, unsigned long long b, int bType, int ldb, long long strideB,
                                         const void* beta, unsigned long long c, int cType, int ldc, long long strideC, int batch,
                                         int computeType, int algo)
{
    return gemm(handle, transa, transb, m, n, k, alpha, a, aType, lda, strideA, b, bType, ldb, strideB, beta, c, cType, ldc, strideC, batch,
                computeType, algo, "cublasGemmStridedBatchedEx");
}
