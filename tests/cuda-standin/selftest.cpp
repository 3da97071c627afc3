// Checks the stand-ins refuse what the real libraries refuse, with the real codes, and that a fault
// in device code becomes CUDA_ERROR_ILLEGAL_ADDRESS with a message instead of a crash. A separate
// process (a fault poisons the context for the rest of the process, as on the hardware).
//   selftest LIBDIR    exit status = number of failed checks
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <string>
#include <vector>

static int failures = 0;
static void expect(const char* what, long got, long want)
{
    bool ok = got == want;
    if (!ok) failures++;
    std::printf("%s %-64s got %ld want %ld\n", ok ? "PASS" : "FAIL", what, got, want);
}

static void* lib(const std::string& dir, const char* name)
{
    void* h = dlopen((dir + "/" + name).c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) { std::printf("FAIL cannot load %s: %s\n", name, dlerror()); std::exit(99); }
    return h;
}
#define SYM(h, name) auto name = (decltype(&name##_t))dlsym(h, #name)

typedef unsigned long long dptr;
int cuInit_t(unsigned);
int cuDeviceGet_t(int*, int);
int cuDevicePrimaryCtxRetain_t(void**, int);
int cuDevicePrimaryCtxRelease_v2_t(int);
int cuGetErrorString_t(int, const char**);
int cuCtxSetCurrent_t(void*);
int cuStreamCreate_t(void**, unsigned);
int cuStreamSynchronize_t(void*);
int cuMemAlloc_v2_t(dptr*, size_t);
int cuMemFree_v2_t(dptr);
int cuMemcpyHtoDAsync_v2_t(dptr, const void*, size_t, void*);
int cuMemcpyDtoHAsync_v2_t(void*, dptr, size_t, void*);
int cuModuleLoadData_t(void**, const void*);
int cuModuleGetFunction_t(void**, void*, const char*);
int cuFuncSetAttribute_t(void*, int, int);
int cuLaunchKernel_t(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void*, void**, void**);
int cuStreamBeginCapture_v2_t(void*, int);
int cuStreamEndCapture_t(void*, void**);
int cuGraphInstantiateWithFlags_t(void**, void*, unsigned long long);
int cuGraphLaunch_t(void*, void*);
int nvrtcCreateProgram_t(void**, const char*, const char*, int, const char* const*, const char* const*);
int nvrtcCompileProgram_t(void*, int, const char* const*);
int nvrtcGetProgramLogSize_t(void*, size_t*);
int nvrtcGetProgramLog_t(void*, char*);
int nvrtcGetCUBINSize_t(void*, size_t*);
int nvrtcGetCUBIN_t(void*, char*);
int cublasCreate_v2_t(void**);
int cublasSetStream_v2_t(void*, void*);
int cublasGemmEx_t(void*, int, int, int, int, int, const void*, dptr, int, int, dptr, int, int, const void*, dptr, int, int, int, int);

static const char* kSource = R"(
extern "C" __global__ void __launch_bounds__(128) scale(float* y, const float* x, int n, float a)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
}
extern "C" __global__ void past_end(float* y, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    y[i + n + 1024] = 1.f;  // far beyond the allocation: the guard page
}
extern "C" __global__ void read_at(float* y, const float* x, long long at) { y[0] = x[at]; }
extern "C" __global__ void write_at(float* x, long long at) { x[at] = 1.f; }
)";

int main(int argc, char** argv)
{
    if (argc < 2) return 99;
    std::string dir = argv[1];
    void* cu = lib(dir, "libcuda.so.1");
    void* nv = lib(dir, "libnvrtc.so.12");
    void* bl = lib(dir, "libcublas.so.12");
    SYM(cu, cuInit); SYM(cu, cuDeviceGet); SYM(cu, cuDevicePrimaryCtxRetain); SYM(cu, cuDevicePrimaryCtxRelease_v2); SYM(cu, cuGetErrorString); SYM(cu, cuCtxSetCurrent); SYM(cu, cuStreamCreate);
    SYM(cu, cuStreamSynchronize); SYM(cu, cuMemAlloc_v2); SYM(cu, cuMemFree_v2); SYM(cu, cuMemcpyHtoDAsync_v2);
    SYM(cu, cuMemcpyDtoHAsync_v2); SYM(cu, cuModuleLoadData); SYM(cu, cuModuleGetFunction); SYM(cu, cuFuncSetAttribute);
    SYM(cu, cuLaunchKernel); SYM(cu, cuStreamBeginCapture_v2); SYM(cu, cuStreamEndCapture); SYM(cu, cuGraphInstantiateWithFlags);
    SYM(cu, cuGraphLaunch);
    SYM(nv, nvrtcCreateProgram); SYM(nv, nvrtcCompileProgram); SYM(nv, nvrtcGetProgramLogSize); SYM(nv, nvrtcGetProgramLog);
    SYM(nv, nvrtcGetCUBINSize); SYM(nv, nvrtcGetCUBIN);
    SYM(bl, cublasCreate_v2); SYM(bl, cublasSetStream_v2); SYM(bl, cublasGemmEx);

    expect("cuDeviceGet before cuInit: CUDA_ERROR_NOT_INITIALIZED", [&] { int d; return cuDeviceGet(&d, 0); }(), 3);
    expect("cuInit", cuInit(0), 0);
    int dev;
    expect("cuDeviceGet(1): CUDA_ERROR_INVALID_DEVICE", cuDeviceGet(&dev, 1), 101);
    cuDeviceGet(&dev, 0);
    dptr p0;
    expect("cuMemAlloc without a current context: CUDA_ERROR_INVALID_CONTEXT", cuMemAlloc_v2(&p0, 64), 201);
    void* ctx;
    cuDevicePrimaryCtxRetain(&ctx, dev);
    cuCtxSetCurrent(ctx);
    void* s;
    cuStreamCreate(&s, 1);

    // a compile error comes back through the program log
    void* bad;
    nvrtcCreateProgram(&bad, "extern \"C\" __global__ void k(float* y) { y[0] = undefined_name; }", "bad.cu", 0, nullptr, nullptr);
    const char* opts[] = {"--std=c++17", "-arch=sm_90"};
    expect("nvrtcCompileProgram of a broken source: NVRTC_ERROR_COMPILATION", nvrtcCompileProgram(bad, 2, opts), 6);
    size_t logn = 0;
    nvrtcGetProgramLogSize(bad, &logn);
    std::string log(logn, '\0');
    nvrtcGetProgramLog(bad, log.data());
    expect("... and its log names the undefined identifier", log.find("undefined_name") != std::string::npos, 1);

    void* prog;
    nvrtcCreateProgram(&prog, kSource, "selftest.cu", 0, nullptr, nullptr);
    expect("nvrtcCompileProgram", nvrtcCompileProgram(prog, 2, opts), 0);
    size_t n = 0;
    nvrtcGetCUBINSize(prog, &n);
    std::vector<char> image(n);
    nvrtcGetCUBIN(prog, image.data());
    void* mod;
    expect("cuModuleLoadData", cuModuleLoadData(&mod, image.data()), 0);
    void *scale, *pastEnd, *none;
    cuModuleGetFunction(&scale, mod, "scale");
    cuModuleGetFunction(&pastEnd, mod, "past_end");
    expect("cuModuleGetFunction(missing): CUDA_ERROR_NOT_FOUND", cuModuleGetFunction(&none, mod, "missing"), 500);

    const int N = 1000;
    std::vector<float> hx(N), hy(N);
    for (int i = 0; i < N; i++) hx[i] = (float)i;
    dptr x, y;
    cuMemAlloc_v2(&x, N * 4);
    cuMemAlloc_v2(&y, N * 4);
    expect("cuMemcpyHtoD of more bytes than the allocation: CUDA_ERROR_INVALID_VALUE", cuMemcpyHtoDAsync_v2(x, hx.data(), N * 4 + 4, s), 1);
    cuMemcpyHtoDAsync_v2(x, hx.data(), N * 4, s);
    int nn = N;
    float a = 2.f;
    void* params[] = {&y, &x, &nn, &a};
    expect("launch with 256 threads over __launch_bounds__(128): CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
           cuLaunchKernel(scale, 8, 1, 1, 256, 1, 1, 0, s, params, nullptr), 701);
    expect("launch with grid y = 65536: CUDA_ERROR_INVALID_VALUE", cuLaunchKernel(scale, 1, 65536, 1, 128, 1, 1, 0, s, params, nullptr), 1);
    expect("launch with 64 KB dynamic shared memory, no opt-in: CUDA_ERROR_INVALID_VALUE",
           cuLaunchKernel(scale, 8, 1, 1, 128, 1, 1, 64 << 10, s, params, nullptr), 1);
    expect("opt-in beyond 227 KB: CUDA_ERROR_INVALID_VALUE", cuFuncSetAttribute(scale, 8, 228 << 10), 1);
    expect("opt-in to 64 KB", cuFuncSetAttribute(scale, 8, 64 << 10), 0);
    expect("launch with 64 KB after the opt-in", cuLaunchKernel(scale, 8, 1, 1, 128, 1, 1, 64 << 10, s, params, nullptr), 0);
    cuMemcpyDtoHAsync_v2(hy.data(), y, N * 4, s);
    expect("scale's result (y[999] = 1998)", (long)hy[999], 1998);

    // capture: launches are recorded with their parameter values; unsafe calls invalidate
    expect("cuStreamBeginCapture", cuStreamBeginCapture_v2(s, 1), 0);
    a = 3.f;
    expect("launch while capturing", cuLaunchKernel(scale, 8, 1, 1, 128, 1, 1, 0, s, params, nullptr), 0);
    a = 100.f;  // the graph keeps the value at capture time
    void* graph;
    expect("cuStreamEndCapture", cuStreamEndCapture(s, &graph), 0);
    void* exec;
    cuGraphInstantiateWithFlags(&exec, graph, 0);
    expect("cuGraphLaunch", cuGraphLaunch(exec, s), 0);
    cuMemcpyDtoHAsync_v2(hy.data(), y, N * 4, s);
    expect("replayed launch used the captured a = 3 (y[10] = 30)", (long)hy[10], 30);

    cuStreamBeginCapture_v2(s, 1);
    dptr z;
    expect("cuMemAlloc while capturing: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", cuMemAlloc_v2(&z, 64), 900);
    expect("... then cuStreamEndCapture: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", cuStreamEndCapture(s, &graph), 901);
    cuStreamBeginCapture_v2(s, 1);
    expect("cuMemFree while capturing: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", cuMemFree_v2(x), 900);
    expect("... then cuStreamEndCapture: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", cuStreamEndCapture(s, &graph), 901);
    cuStreamBeginCapture_v2(s, 1);
    expect("pageable cuMemcpyHtoDAsync while capturing: ..._UNSUPPORTED", cuMemcpyHtoDAsync_v2(x, hx.data(), 64, s), 900);
    expect("... then cuStreamEndCapture: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", cuStreamEndCapture(s, &graph), 901);
    cuStreamBeginCapture_v2(s, 1);
    expect("cuStreamSynchronize while capturing: ..._UNSUPPORTED", cuStreamSynchronize(s), 900);
    expect("... then cuStreamEndCapture: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", cuStreamEndCapture(s, &graph), 901);

    // cuBLAS refuses bad arguments with its status codes
    void* blas;
    expect("cublasCreate", cublasCreate_v2(&blas), 0);
    cublasSetStream_v2(blas, s);
    float one = 1.f, zero = 0.f;
    expect("cublasGemmEx lda < m: CUBLAS_STATUS_INVALID_VALUE",
           cublasGemmEx(blas, 0, 0, 10, 10, 10, &one, x, 0, 5, x, 0, 10, &zero, y, 0, 10, 68, -1), 7);
    expect("cublasGemmEx fp16 A with fp32 B: CUBLAS_STATUS_NOT_SUPPORTED",
           cublasGemmEx(blas, 0, 0, 10, 10, 10, &one, x, 2, 10, x, 0, 10, &zero, y, 0, 10, 68, -1), 15);
    expect("cublasGemmEx 10x10x10 fp32", cublasGemmEx(blas, 0, 0, 10, 10, 10, &one, x, 0, 10, x, 0, 10, &zero, y, 0, 10, 68, -1), 0);

    // a write past the end of an allocation: the launch's work fails with ILLEGAL_ADDRESS, the
    // process lives on, and the context stays poisoned (every later call fails), as on the hardware
    void* oob[] = {&y, &nn};
    int rc = cuLaunchKernel(pastEnd, 1, 1, 1, 32, 1, 1, 0, s, oob, nullptr);
    int sync = cuStreamSynchronize(s);
    expect("out-of-bounds write: CUDA_ERROR_ILLEGAL_ADDRESS", rc ? rc : sync, 700);
    expect("... and the context stays poisoned", cuMemAlloc_v2(&z, 64), 700);
    const char* text = nullptr;
    cuGetErrorString(700, &text);
    std::string why = text ? text : "";
    std::printf("     cuGetErrorString(700): %s\n", why.c_str());
    expect("... and cuGetErrorString(700) names the kernel and the allocation it missed",
           why.find("kernel past_end") != std::string::npos && why.find("past the end of the 4000-byte allocation") != std::string::npos, 1);

    // releasing the last reference destroys the poisoned context; the next retain gets a fresh one
    void* readAt = nullptr;
    void* writeAt = nullptr;
    auto fresh = [&] {
        cuDevicePrimaryCtxRelease_v2(dev);
        cuDevicePrimaryCtxRetain(&ctx, dev);
        cuCtxSetCurrent(ctx);
        int r = cuStreamCreate(&s, 1) | cuModuleLoadData(&mod, image.data());
        cuModuleGetFunction(&readAt, mod, "read_at");
        cuModuleGetFunction(&writeAt, mod, "write_at");
        r |= cuMemAlloc_v2(&x, N * 4) | cuMemAlloc_v2(&y, N * 4);
        return r;
    };
    expect("a fresh context after the last release", fresh(), 0);
    cuGetErrorString(700, &text);
    expect("... where CUDA_ERROR_ILLEGAL_ADDRESS has its plain text again", std::string(text) == "an illegal memory access was encountered", 1);
    // every byte outside the allocation faults: reads (x is 4000 bytes: 96 bytes of page slack before it)
    auto launch = [&](void* fn, void** p) {
        int r = cuLaunchKernel(fn, 1, 1, 1, 1, 1, 1, 0, s, p, nullptr);
        return r ? r : cuStreamSynchronize(s);
    };
    long long at = N - 1;
    void* readParams[] = {&y, &x, &at};
    void* writeParams[] = {&x, &at};
    expect("read of the last element", launch(readAt, readParams), 0);
    if (const char* g = std::getenv("LAYERFUSION_EMU_GUARD"); g && std::string(g) == "start")
    {
        // the other layout: data flush against the leading guard page, the slack (canary) after the end
        at = 0;
        expect("[guard=start] read of the first element", launch(readAt, readParams), 0);
        at = -1;
        expect("[guard=start] read one element before the start: CUDA_ERROR_ILLEGAL_ADDRESS", launch(readAt, readParams), 700);
        fresh();
        at = N + 24;
        expect("[guard=start] read 96 bytes past the end (past the slack): CUDA_ERROR_ILLEGAL_ADDRESS", launch(readAt, readParams), 700);
        fresh();
        at = N;
        expect("[guard=start] off-by-one write past the end (in the slack): CUDA_ERROR_ILLEGAL_ADDRESS", launch(writeAt, writeParams), 700);
        cuGetErrorString(700, &text);
        expect("... named as a write at byte 0 past the end", std::string(text).find("a write at byte 0 past the end of the 4000-byte") != std::string::npos, 1);
        fresh();
        at = -1;
        expect("[guard=start] write one element before the start: CUDA_ERROR_ILLEGAL_ADDRESS", launch(writeAt, writeParams), 700);
        fresh();
        std::printf("%s\n", failures ? "FAILED" : "OK");
        return failures;
    }
    at = N;
    expect("off-by-one read past the end: CUDA_ERROR_ILLEGAL_ADDRESS", launch(readAt, readParams), 700);
    fresh();
    at = -1024;
    expect("read 4096 bytes before the start: CUDA_ERROR_ILLEGAL_ADDRESS", launch(readAt, readParams), 700);
    fresh();
    at = -25;
    expect("read 100 bytes before the start (past the slack): CUDA_ERROR_ILLEGAL_ADDRESS", launch(readAt, readParams), 700);
    fresh();
    at = N;
    expect("off-by-one write past the end: CUDA_ERROR_ILLEGAL_ADDRESS", launch(writeAt, writeParams), 700);
    fresh();
    at = -1;
    expect("write one element before the start (in the slack): CUDA_ERROR_ILLEGAL_ADDRESS", launch(writeAt, writeParams), 700);
    cuGetErrorString(700, &text);
    expect("... named as a write 4 bytes before the allocation", std::string(text).find("a write 4 bytes before the 4000-byte") != std::string::npos, 1);
    fresh();

    // cuBLAS told to fail its creation (LAYERFUSION_EMU_CUBLAS_CREATE_STATUS, read by the stand-in only)
    setenv("LAYERFUSION_EMU_CUBLAS_CREATE_STATUS", "3", 1);
    void* failed = nullptr;
    expect("cublasCreate told to refuse: status 3 (out of memory for its handle)", cublasCreate_v2(&failed), 3);
    unsetenv("LAYERFUSION_EMU_CUBLAS_CREATE_STATUS");
    expect("... and succeeds again without the variable", cublasCreate_v2(&failed), 0);
    std::printf("%s\n", failures ? "FAILED" : "OK");
    return failures;
}
