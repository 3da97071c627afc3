// Stand-in for cuBLASLt (libcublasLt.so.12): the entry points CublasLt in
// src/LayerFusion.Cuda/Interop/Cublas.cs binds, with cublasLt.h's names, attribute and epilogue
// values, the 96-byte heuristic result and the status codes. Supports what the backend uses:
// TRANSA/TRANSB, the DEFAULT and BIAS epilogues, fp32 compute and scale, fp32/fp16/bf16 layouts.
#include "gemm.hpp"

namespace
{
enum : int
{
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum : int
{
    DESC_COMPUTE_TYPE = 0, DESC_SCALE_TYPE = 1, DESC_POINTER_MODE = 2, DESC_TRANSA = 3, DESC_TRANSB = 4, DESC_TRANSC = 5,
    DESC_EPILOGUE = 7, DESC_BIAS_POINTER = 8, DESC_BIAS_DATA_TYPE = 26,
};
enum : int { EPILOGUE_DEFAULT = 1, EPILOGUE_BIAS = 4 };

struct Handle { int magic = 0x4c54; };
struct Desc
{
    int compute, scale, transa = 0, transb = 0, epilogue = EPILOGUE_DEFAULT, biasType = -1;
    unsigned long long bias = 0;
};
struct Layout { int type; unsigned long long rows, cols; long long ld; };
struct Pref { unsigned long long maxWorkspace = 0; };

struct Algo { unsigned long long data[8]; };
struct Heuristic
{
    Algo algo;
    size_t workspaceSize;
    int state;
    float wavesCount;
    int reserved[4];
};
static_assert(sizeof(Heuristic) == 96, "cublasLtMatmulHeuristicResult_t is 96 bytes");
constexpr unsigned long long kAlgoTag = 0x4c46454d55414c47ull;  // marks algorithms this stand-in handed out

template <typename T>
int set_scalar(T& field, const void* value, size_t size)
{
    if (!value || size != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
    std::memcpy(&field, value, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}

bool compute32f(int c) { return c == 68 || c == 69 || c == 74 || c == 75 || c == 77; }

// op(A) [m x k], op(B) [k x n], C and D [m x n]: the problem the layouts describe, or an error.
int problem(const Desc* d, const Layout* a, const Layout* b, const Layout* c, const Layout* dd, long long& m, long long& n, long long& k)
{
    if (!d || !a || !b || !c || !dd) return CUBLAS_STATUS_INVALID_VALUE;
    m = d->transa ? a->cols : a->rows;
    k = d->transa ? a->rows : a->cols;
    long long kb = d->transb ? b->cols : b->rows;
    n = d->transb ? b->rows : b->cols;
    if (kb != k || (long long)c->rows != m || (long long)c->cols != n || (long long)dd->rows != m || (long long)dd->cols != n)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!compute32f(d->compute) || d->scale != lfemu::R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (a->type != b->type || c->type != dd->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (a->type == lfemu::R_32F ? dd->type != lfemu::R_32F : (dd->type != a->type && dd->type != lfemu::R_32F)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (d->epilogue != EPILOGUE_DEFAULT && d->epilogue != EPILOGUE_BIAS) return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}
}  // namespace

LFEMU_API size_t cublasLtGetVersion(void) { return 120805; }

LFEMU_API int cublasLtCreate(void** h)
{
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    if (!lfemu_has_context()) return CUBLAS_STATUS_NOT_INITIALIZED;
    *h = new Handle;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasLtDestroy(void* h)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete (Handle*)h;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasLtMatmulDescCreate(void** desc, int compute, int scale)
{
    if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
    if (compute < 64 || compute > 79) return CUBLAS_STATUS_INVALID_VALUE;  // cublasComputeType_t
    *desc = new Desc{compute, scale};
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasLtMatmulDescDestroy(void* desc)
{
    delete (Desc*)desc;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasLtMatmulDescSetAttribute(void* desc, int attr, const void* value, size_t size)
{
    auto* d = (Desc*)desc;
    if (!d) return CUBLAS_STATUS_NOT_INITIALIZED;
    int rc;
    switch (attr)
    {
    case DESC_COMPUTE_TYPE: return set_scalar(d->compute, value, size);
    case DESC_SCALE_TYPE: return set_scalar(d->scale, value, size);
    case DESC_POINTER_MODE:
    {
        int mode = 0;
        if ((rc = set_scalar(mode, value, size))) return rc;
        return mode == 0 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;  // host pointers only
    }
    case DESC_TRANSA:
    case DESC_TRANSB:
    {
        int op = 0;
        if ((rc = set_scalar(op, value, size))) return rc;
        if (op < 0 || op > 2) return CUBLAS_STATUS_INVALID_VALUE;
        (attr == DESC_TRANSA ? d->transa : d->transb) = op != 0;
        return CUBLAS_STATUS_SUCCESS;
    }
    case DESC_TRANSC:
    {
        int op = 0;
        if ((rc = set_scalar(op, value, size))) return rc;
        return op == 0 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
    }
    case DESC_EPILOGUE:
    {
        unsigned e = 0;
        if ((rc = set_scalar(e, value, size))) return rc;
        d->epilogue = (int)e;
        return CUBLAS_STATUS_SUCCESS;
    }
    case DESC_BIAS_POINTER: return set_scalar(d->bias, value, size);
    case DESC_BIAS_DATA_TYPE: return set_scalar(d->biasType, value, size);
    default: return CUBLAS_STATUS_INVALID_VALUE;
    }
}

LFEMU_API int cublasLtMatrixLayoutCreate(void** layout, int type, unsigned long long rows, unsigned long long cols, long long ld)
{
    if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
    if (lfemu::type_size(type) == 0) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (ld < (long long)std::max<unsigned long long>(1, rows)) return CUBLAS_STATUS_INVALID_VALUE;
    *layout = new Layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasLtMatrixLayoutDestroy(void* layout)
{
    delete (Layout*)layout;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasLtMatmulPreferenceCreate(void** pref)
{
    if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
    *pref = new Pref;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasLtMatmulPreferenceDestroy(void* pref)
{
    delete (Pref*)pref;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasLtMatmulPreferenceSetAttribute(void* pref, int attr, const void* value, size_t size)
{
    auto* p = (Pref*)pref;
    if (!p) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (attr == 0)  // CUBLASLT_MATMUL_PREF_SEARCH_MODE
    {
        unsigned mode;
        return set_scalar(mode, value, size);
    }
    if (attr == 1) return set_scalar(p->maxWorkspace, value, size);  // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES (uint64)
    return CUBLAS_STATUS_INVALID_VALUE;
}

LFEMU_API int cublasLtMatmulAlgoGetHeuristic(void* handle, void* desc, void* a, void* b, void* c, void* d, void* pref, int requested,
                                             Heuristic* results, int* returned)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!pref || requested <= 0 || !results || !returned) return CUBLAS_STATUS_INVALID_VALUE;
    long long m, n, k;
    int rc = problem((const Desc*)desc, (const Layout*)a, (const Layout*)b, (const Layout*)c, (const Layout*)d, m, n, k);
    *returned = 0;
    if (rc) return rc;
    std::memset(results, 0, sizeof(Heuristic));
    results->algo.data[0] = kAlgoTag;
    results->workspaceSize = 0;
    results->state = CUBLAS_STATUS_SUCCESS;
    results->wavesCount = 1.f;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

LFEMU_API int cublasLtMatmul(void* handle, void* desc, const void* alpha, unsigned long long a, void* aDesc, unsigned long long b,
                             void* bDesc, const void* beta, unsigned long long c, void* cDesc, unsigned long long d, void* dDesc,
                             const Algo* algo, unsigned long long workspace, size_t workspaceBytes, void* stream)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    auto* ds = (const Desc*)desc;
    long long m, n, k;
    if (int rc = problem(ds, (const Layout*)aDesc, (const Layout*)bDesc, (const Layout*)cDesc, (const Layout*)dDesc, m, n, k)) return rc;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    if (algo && algo->data[0] != kAlgoTag) return CUBLAS_STATUS_INVALID_VALUE;
    if (workspaceBytes > 0 && workspace == 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (ds->epilogue == EPILOGUE_BIAS && ds->bias == 0) return CUBLAS_STATUS_INVALID_VALUE;
    auto *A = (const Layout*)aDesc, *B = (const Layout*)bDesc, *C = (const Layout*)cDesc, *D = (const Layout*)dDesc;
    if (c == d && (C->ld != D->ld || C->type != D->type)) return CUBLAS_STATUS_INVALID_VALUE;  // in place needs identical layouts
    if (!lfemu_stream_valid(stream)) return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    // the bias defaults to D's type (fp32 D: fp32 bias)
    int biasType = ds->biasType >= 0 ? ds->biasType : D->type;
    auto* job = new lfemu::Gemm{ds->transa, ds->transb, (int)m, (int)n, (int)k, *(const float*)alpha, *(const float*)beta, a, b, c, d,
                                ds->epilogue == EPILOGUE_BIAS ? ds->bias : 0, A->type, B->type, C->type, D->type, biasType, A->ld, B->ld,
                                C->ld, D->ld, 0, 0, 0, 0, 1, "cublasLtMatmul"};
    int rc = lfemu_enqueue_host(stream, lfemu::run_gemm, job, lfemu::free_gemm);
    return rc == 0 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}
