using System.Runtime.InteropServices;

namespace LayerFusion.Cuda.Interop;

/// <summary>cuBLAS (libcublas.so.13/.12/.11); column-major, as the library is.</summary>
public static unsafe partial class Cublas
{
    static Cublas() => NativeLibraries.EnsureRegistered();

    const string Lib = NativeLibraries.CublasName;

    public const int CUBLAS_OP_N = 0;
    public const int CUBLAS_OP_T = 1;
    public const int CUDA_R_32F = 0;
    public const int CUDA_R_16F = 2;
    public const int CUDA_R_16BF = 14;
    public const int CUBLAS_COMPUTE_32F = 68;
    public const int CUBLAS_GEMM_DEFAULT = -1;
    public const int CUBLAS_DEFAULT_MATH = 0;
    /// <summary>Keeps split-K reductions in fp32 too, so fp16 GEMMs accumulate in fp32 end to end.</summary>
    public const int CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16;

    [LibraryImport(Lib, EntryPoint = "cublasCreate_v2")] public static partial int cublasCreate(out IntPtr handle);
    [LibraryImport(Lib, EntryPoint = "cublasDestroy_v2")] public static partial int cublasDestroy(IntPtr handle);
    [LibraryImport(Lib, EntryPoint = "cublasGetVersion_v2")] public static partial int cublasGetVersion(IntPtr handle, out int version);
    [LibraryImport(Lib, EntryPoint = "cublasSetStream_v2")] public static partial int cublasSetStream(IntPtr handle, IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cublasSetMathMode")] public static partial int cublasSetMathMode(IntPtr handle, int mode);
    [LibraryImport(Lib, EntryPoint = "cublasSetWorkspace_v2")] public static partial int cublasSetWorkspace(IntPtr handle, ulong workspace, nuint bytes);

    [LibraryImport(Lib, EntryPoint = "cublasGemmEx")]
    public static partial int cublasGemmEx(IntPtr handle, int transa, int transb, int m, int n, int k, void* alpha,
        ulong a, int aType, int lda, ulong b, int bType, int ldb, void* beta, ulong c, int cType, int ldc,
        int computeType, int algo);

    [LibraryImport(Lib, EntryPoint = "cublasGemmStridedBatchedEx")]
    public static partial int cublasGemmStridedBatchedEx(IntPtr handle, int transa, int transb, int m, int n, int k,
        void* alpha, ulong a, int aType, int lda, long strideA, ulong b, int bType, int ldb, long strideB, void* beta,
        ulong c, int cType, int ldc, long strideC, int batchCount, int computeType, int algo);

    public static void Check(int status, string call)
    {
        if (status != 0) throw new CudaException($"{call} failed: cublasStatus {status}");
    }
}

/// <summary>The 64-byte opaque algorithm record of cuBLASLt.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct CublasLtMatmulAlgo
{
    public fixed ulong Data[8];
}

/// <summary>cublasLtMatmulHeuristicResult_t (96 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct CublasLtHeuristicResult
{
    public CublasLtMatmulAlgo Algo;
    public nuint WorkspaceSize;
    public int State;
    public float WavesCount;
    public fixed int Reserved[4];
}

/// <summary>cuBLASLt (libcublasLt.so.13/.12/.11): GEMMs with fused epilogues (bias, GELU).</summary>
public static unsafe partial class CublasLt
{
    static CublasLt() => NativeLibraries.EnsureRegistered();

    const string Lib = NativeLibraries.CublasLtName;

    public const int CUBLASLT_MATMUL_DESC_TRANSA = 3;
    public const int CUBLASLT_MATMUL_DESC_TRANSB = 4;
    public const int CUBLASLT_MATMUL_DESC_EPILOGUE = 7;
    public const int CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8;
    public const int CUBLASLT_EPILOGUE_DEFAULT = 1;
    public const int CUBLASLT_EPILOGUE_BIAS = 4;
    public const int CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1;

    [LibraryImport(Lib, EntryPoint = "cublasLtGetVersion")] public static partial nuint cublasLtGetVersion();
    [LibraryImport(Lib, EntryPoint = "cublasLtCreate")] public static partial int cublasLtCreate(out IntPtr handle);
    [LibraryImport(Lib, EntryPoint = "cublasLtDestroy")] public static partial int cublasLtDestroy(IntPtr handle);
    [LibraryImport(Lib, EntryPoint = "cublasLtMatmulDescCreate")] public static partial int cublasLtMatmulDescCreate(out IntPtr desc, int computeType, int scaleType);
    [LibraryImport(Lib, EntryPoint = "cublasLtMatmulDescDestroy")] public static partial int cublasLtMatmulDescDestroy(IntPtr desc);
    [LibraryImport(Lib, EntryPoint = "cublasLtMatmulDescSetAttribute")] public static partial int cublasLtMatmulDescSetAttribute(IntPtr desc, int attribute, void* value, nuint size);
    [LibraryImport(Lib, EntryPoint = "cublasLtMatrixLayoutCreate")] public static partial int cublasLtMatrixLayoutCreate(out IntPtr layout, int type, ulong rows, ulong cols, long ld);
    [LibraryImport(Lib, EntryPoint = "cublasLtMatrixLayoutDestroy")] public static partial int cublasLtMatrixLayoutDestroy(IntPtr layout);
    [LibraryImport(Lib, EntryPoint = "cublasLtMatmulPreferenceCreate")] public static partial int cublasLtMatmulPreferenceCreate(out IntPtr pref);
    [LibraryImport(Lib, EntryPoint = "cublasLtMatmulPreferenceDestroy")] public static partial int cublasLtMatmulPreferenceDestroy(IntPtr pref);
    [LibraryImport(Lib, EntryPoint = "cublasLtMatmulPreferenceSetAttribute")] public static partial int cublasLtMatmulPreferenceSetAttribute(IntPtr pref, int attribute, void* value, nuint size);
    [LibraryImport(Lib, EntryPoint = "cublasLtMatmulAlgoGetHeuristic")]
    public static partial int cublasLtMatmulAlgoGetHeuristic(IntPtr handle, IntPtr opDesc, IntPtr aDesc, IntPtr bDesc,
        IntPtr cDesc, IntPtr dDesc, IntPtr preference, int requested, CublasLtHeuristicResult* results, out int returned);
    [LibraryImport(Lib, EntryPoint = "cublasLtMatmul")]
    public static partial int cublasLtMatmul(IntPtr handle, IntPtr desc, void* alpha, ulong a, IntPtr aDesc, ulong b,
        IntPtr bDesc, void* beta, ulong c, IntPtr cDesc, ulong d, IntPtr dDesc, CublasLtMatmulAlgo* algo, ulong workspace,
        nuint workspaceBytes, IntPtr stream);
}
