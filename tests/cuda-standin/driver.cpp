// Stand-in for the CUDA driver (libcuda.so.1): the entry points src/LayerFusion.Cuda/Interop/Driver.cs
// binds, with cuda.h's names, signatures, enum values and error codes, over an emulated sm_90
// device (see README.md). Device memory is host memory in guarded mappings; streams are in order
// and run work when it is issued; stream capture records work and graph launches replay it; what
// the real driver refuses (configuration limits, capture-unsafe calls) is refused with its code.
#include "standin.hpp"

#include <chrono>
#include <csetjmp>
#include <csignal>
#include <dlfcn.h>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <sys/mman.h>
#include <thread>
#include <vector>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

enum : int
{
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_ILLEGAL_STATE = 401,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_NOT_READY = 600,
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_CONTEXT_IS_DESTROYED = 709,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_NOT_SUPPORTED = 801,
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900,
    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901,
    CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD = 908,
    CUDA_ERROR_UNKNOWN = 999,
};

namespace
{
struct ErrorText { int code; const char* name; const char* text; };
const ErrorText kErrors[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {401, "CUDA_ERROR_ILLEGAL_STATE", "the operation cannot be performed in the present state"},
    {500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {600, "CUDA_ERROR_NOT_READY", "device not ready"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {709, "CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
    {719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {801, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", "operation not permitted when stream is capturing"},
    {901, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", "operation failed due to a previous error during capture"},
    {908, "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD", "attempt to terminate a thread-local capture sequence from another thread"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

// ---- the emulated device: an H100/H200-class sm_90 part --------------------------------------
constexpr int kSMs = 132;
constexpr int kSmemPerBlock = 48 * 1024;
constexpr int kSmemPerBlockOptin = 227 * 1024;
constexpr int kSmemPerSM = 228 * 1024;
constexpr size_t kTotalMem = 143771ull << 20;
constexpr int kDriverVersion = 12080;

int attribute(int a, bool& ok)
{
    ok = true;
    switch (a)
    {
    case 1: return 1024;           // MAX_THREADS_PER_BLOCK
    case 2: return 1024;           // MAX_BLOCK_DIM_X
    case 3: return 1024;           // MAX_BLOCK_DIM_Y
    case 4: return 64;             // MAX_BLOCK_DIM_Z
    case 5: return 2147483647;     // MAX_GRID_DIM_X
    case 6: return 65535;          // MAX_GRID_DIM_Y
    case 7: return 65535;          // MAX_GRID_DIM_Z
    case 8: return kSmemPerBlock;  // MAX_SHARED_MEMORY_PER_BLOCK
    case 9: return 65536;          // TOTAL_CONSTANT_MEMORY
    case 10: return 32;            // WARP_SIZE
    case 12: return 65536;         // MAX_REGISTERS_PER_BLOCK
    case 13: return 1980000;       // CLOCK_RATE (kHz)
    case 16: return kSMs;          // MULTIPROCESSOR_COUNT
    case 36: return 2619000;       // MEMORY_CLOCK_RATE
    case 37: return 5120;          // GLOBAL_MEMORY_BUS_WIDTH
    case 38: return 50 << 20;      // L2_CACHE_SIZE
    case 39: return 2048;          // MAX_THREADS_PER_MULTIPROCESSOR
    case 75: return 9;             // COMPUTE_CAPABILITY_MAJOR
    case 76: return 0;             // COMPUTE_CAPABILITY_MINOR
    case 81: return kSmemPerSM;    // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
    case 82: return 65536;         // MAX_REGISTERS_PER_MULTIPROCESSOR
    case 97: return kSmemPerBlockOptin;  // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    case 106: return 32;           // MAX_BLOCKS_PER_MULTIPROCESSOR
    default: ok = false; return 0;
    }
}

std::recursive_mutex g_mu;
bool g_init = false;
int g_sticky = 0;  // a fault in a kernel poisons the context, as on the hardware
std::string g_stickyWhy;
std::string g_stickyText;  // cuGetErrorString's text for the sticky code: the fault's kernel and address

struct Context
{
    int refs = 0;
};
Context g_primary;
thread_local Context* t_current = nullptr;

// ---- guarded memory ----------------------------------------------------------------------------
constexpr size_t kPage = 4096;
constexpr unsigned char kCanaryByte = 0xA5;

struct Alloc
{
    size_t bytes, slack;  // slack: the canary bytes between the data and a guard page
    bool slackAfter;      // LAYERFUSION_EMU_GUARD=start: the slack lies after the data's end
    char* map;
    size_t mapBytes;
};
std::map<uintptr_t, Alloc> g_allocs;
size_t g_allocated = 0;

size_t accounted(size_t bytes) { return (bytes + 255) / 256 * 256; }  // what the real driver's granularity would hold

// [guard page][slack (canary)][data][guard page]: the data end flush against the trailing guard
// page, so any read or write past the end faults, to the byte. The page-rounding slack lies before
// the start: a write there is caught by its canary (checked after every kernel), a read or write
// beyond it hits the leading guard page. The start is therefore aligned to the size's lowest set bit
// (256 or more for every arena chunk, an element's size at least for any typed buffer), not
// always to 256 as on the real driver; the kernels make no vector access that needs more.
// LAYERFUSION_EMU_GUARD=start turns the layout around, [guard page][data][slack (canary)][guard page]:
// then a read before the start faults to the byte too (and a read in the slack past the end is the one
// access not caught). `.ci/run` runs the CUDA op suites once more that way, so every kernel's accesses
// are checked to the byte at both ends.
bool guard_at_start()
{
    static const bool v = [] {
        const char* e = std::getenv("LAYERFUSION_EMU_GUARD");
        return e && std::strcmp(e, "start") == 0;
    }();
    return v;
}

CUresult guarded_alloc(size_t bytes, CUdeviceptr* out)
{
    size_t dataPages = (bytes + kPage - 1) / kPage * kPage;
    size_t mapBytes = dataPages + 2 * kPage;
    void* m = mmap(nullptr, mapBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    char* base = (char*)m;
    if (mprotect(base + kPage, dataPages, PROT_READ | PROT_WRITE) != 0)
    {
        munmap(m, mapBytes);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    size_t slack = dataPages - bytes;
    bool after = guard_at_start();
    char* data = after ? base + kPage : base + kPage + slack;
    std::memset(after ? data + bytes : base + kPage, kCanaryByte, slack);
    g_allocs[(uintptr_t)data] = {bytes, slack, after, base, mapBytes};
    g_allocated += accounted(bytes);
    *out = (CUdeviceptr)(uintptr_t)data;
    return CUDA_SUCCESS;
}

const std::pair<const uintptr_t, Alloc>* find_alloc(uintptr_t p)
{
    auto it = g_allocs.upper_bound(p);
    if (it == g_allocs.begin()) return nullptr;
    --it;
    return &*it;
}

bool in_range(uintptr_t p, size_t bytes)
{
    auto* a = find_alloc(p);
    return a && p + bytes <= a->first + a->second.bytes && p + bytes >= p;
}

// An address, against the allocation it lies in or the nearest one it missed (within 64 MB).
std::string describe(uintptr_t addr)
{
    char buf[256];
    auto it = g_allocs.upper_bound(addr);
    const std::pair<const uintptr_t, Alloc>* below = nullptr;
    if (it != g_allocs.begin()) below = &*std::prev(it);
    constexpr uintptr_t kNear = 64u << 20;
    uintptr_t past = below ? addr - below->first - below->second.bytes : ~uintptr_t(0);  // when addr >= below's end
    uintptr_t before = it != g_allocs.end() ? it->first - addr : ~uintptr_t(0);
    if (below && addr < below->first + below->second.bytes)
        std::snprintf(buf, sizeof buf, "0x%llx (inside the %zu-byte allocation at 0x%llx)", (unsigned long long)addr,
                      below->second.bytes, (unsigned long long)below->first);
    else if (below && past <= before && past < kNear)
        std::snprintf(buf, sizeof buf, "0x%llx, %llu bytes past the end of the %zu-byte allocation at 0x%llx", (unsigned long long)addr,
                      (unsigned long long)past, below->second.bytes, (unsigned long long)below->first);
    else if (before < kNear)
        std::snprintf(buf, sizeof buf, "0x%llx, %llu bytes before the %zu-byte allocation at 0x%llx", (unsigned long long)addr,
                      (unsigned long long)before, it->second.bytes, (unsigned long long)it->first);
    else
        std::snprintf(buf, sizeof buf, "0x%llx (outside every device allocation)", (unsigned long long)addr);
    return buf;
}

// Writes into an allocation's slack (reads and writes elsewhere outside it fault at once).
std::string check_canaries()
{
    constexpr uint64_t kWord = 0x0101010101010101ull * kCanaryByte;
    for (auto& [p, a] : g_allocs)
    {
        auto* s = a.slackAfter ? (const unsigned char*)p + a.bytes : (const unsigned char*)p - a.slack;
        size_t i = 0;
        if (!a.slackAfter)  // page-aligned: whole words first
            for (; i + 8 <= a.slack; i += 8)
            {
                uint64_t w;
                std::memcpy(&w, s + i, 8);
                if (w != kWord) break;
            }
        for (; i < a.slack; i++)
            if (s[i] != kCanaryByte)
            {
                char at[32];
                std::snprintf(at, sizeof at, "0x%llx", (unsigned long long)p);
                return a.slackAfter
                    ? "a write at byte " + std::to_string(i) + " past the end of the " + std::to_string(a.bytes) + "-byte allocation at " + at
                    : "a write " + std::to_string(a.slack - i) + " bytes before the " + std::to_string(a.bytes) + "-byte allocation at " + at;
            }
    }
    return "";
}

// ---- protected execution: a fault in emulated device code becomes CUDA_ERROR_ILLEGAL_ADDRESS ----
thread_local sigjmp_buf* t_jmp = nullptr;
thread_local uintptr_t t_faultAddr = 0;
thread_local int t_faultSig = 0;
thread_local std::string t_fatal;
struct sigaction g_oldSegv, g_oldBus, g_oldFpe;

void on_signal(int sig, siginfo_t* info, void* uc)
{
    if (t_jmp)
    {
        t_faultAddr = (uintptr_t)info->si_addr;
        t_faultSig = sig;
        siglongjmp(*t_jmp, sig == SIGFPE ? CUDA_ERROR_LAUNCH_FAILED : CUDA_ERROR_ILLEGAL_ADDRESS);
    }
    struct sigaction& old = sig == SIGSEGV ? g_oldSegv : sig == SIGBUS ? g_oldBus : g_oldFpe;
    if (old.sa_flags & SA_SIGINFO)
    {
        if (old.sa_sigaction) old.sa_sigaction(sig, info, uc);
        return;
    }
    if (old.sa_handler == SIG_IGN) return;
    if (old.sa_handler == SIG_DFL || old.sa_handler == nullptr)
    {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    old.sa_handler(sig);
}

void install_handlers()
{
    static bool done = false;
    if (done) return;
    done = true;
    struct sigaction sa{};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_oldSegv);
    sigaction(SIGBUS, &sa, &g_oldBus);
    sigaction(SIGFPE, &sa, &g_oldFpe);
}

[[noreturn]] void fatal_hook(const char* what)
{
    t_fatal = what;
    if (t_jmp) siglongjmp(*t_jmp, CUDA_ERROR_LAUNCH_FAILED);
    std::fprintf(stderr, "cuda stand-in: %s\n", what);
    std::abort();
}

void make_sticky(int code, const std::string& why)
{
    if (!g_sticky)
    {
        g_sticky = code;
        g_stickyWhy = why;
        for (auto& t : kErrors)
            if (t.code == code) g_stickyText = std::string(t.text) + "; emulated device: " + why;
        std::fprintf(stderr, "cuda stand-in (emulated device): %s\n", why.c_str());
    }
}

template <typename F>
int run_protected(const std::string& what, F&& f)
{
    sigjmp_buf jb;
    sigjmp_buf* prev = t_jmp;
    t_jmp = &jb;
    int rc = sigsetjmp(jb, 1);
    if (rc == 0)
    {
        rc = f();
        t_jmp = prev;
        return rc;
    }
    t_jmp = prev;
    if (!t_fatal.empty())
    {
        make_sticky(CUDA_ERROR_LAUNCH_FAILED, what + ": " + t_fatal);
        t_fatal.clear();
    }
    else if (t_faultSig == SIGFPE)
        make_sticky(CUDA_ERROR_LAUNCH_FAILED, what + ": arithmetic trap (integer division by zero?)");
    else
        make_sticky(CUDA_ERROR_ILLEGAL_ADDRESS, what + ": illegal memory access at " + describe(t_faultAddr));
    return g_sticky;
}

// ---- modules, functions -------------------------------------------------------------------------
struct dim3u { unsigned x, y, z; };
struct KernelInfo  // layout of lfemu_kernel in the generated module (standin.hpp)
{
    int max_threads, min_blocks, count;
    const int* sizes;
    const int* aligns;
    void (*launch)(dim3u, dim3u, size_t, void**);
};
struct Module
{
    void* dl = nullptr;
    bool live = true;
    std::string key;
};
struct Function
{
    Module* module;
    const KernelInfo* info;
    std::string name;
    int maxDynamicShared = kSmemPerBlock;
};
std::set<Module*> g_modules;
std::set<Function*> g_functions;

// ---- streams, events, graphs ---------------------------------------------------------------------
struct Event
{
    unsigned flags;
    bool recorded = false;
    std::chrono::steady_clock::time_point at;
};

struct Op
{
    enum Kind { Kernel, Copy, Memset, Host, Record } kind;
    Function* fn = nullptr;
    dim3u grid{}, block{};
    unsigned smem = 0;
    std::vector<unsigned char> params;
    std::vector<size_t> offsets;
    uintptr_t dst = 0, src = 0;
    size_t bytes = 0;
    unsigned value = 0;
    int width = 1;
    std::shared_ptr<void> host;  // the host call's context, released with the last copy of the op
    lfemu_host_fn hostFn = nullptr;
    Event* event = nullptr;
};

struct Stream
{
    unsigned flags = 0;
    bool capturing = false, invalidated = false;
    int mode = 0;
    std::thread::id captureThread;
    std::vector<Op> captured;
};
struct Graph { std::vector<Op> ops; };
struct GraphExec { std::vector<Op> ops; };

std::set<Stream*> g_streams;
std::set<Event*> g_events;
std::set<Graph*> g_graphs;
std::set<GraphExec*> g_execs;
Stream g_legacy;  // handle 0 (and CU_STREAM_LEGACY / CU_STREAM_PER_THREAD)

Stream* stream_of(void* h, bool& ok)
{
    ok = true;
    if (h == nullptr || h == (void*)1 || h == (void*)2) return &g_legacy;
    auto* s = (Stream*)h;
    if (!g_streams.count(s)) ok = false;
    return s;
}

int execute(const Op& op)
{
    switch (op.kind)
    {
    case Op::Kernel:
    {
        std::vector<void*> ptrs(op.offsets.size());
        auto* base = const_cast<unsigned char*>(op.params.data());
        for (size_t i = 0; i < ptrs.size(); i++) ptrs[i] = base + op.offsets[i];
        int rc = run_protected("kernel " + op.fn->name, [&] {
            op.fn->info->launch(op.grid, op.block, op.smem, ptrs.data());
            return 0;
        });
        if (rc) return rc;
        auto bad = check_canaries();
        if (!bad.empty())
        {
            make_sticky(CUDA_ERROR_ILLEGAL_ADDRESS, "kernel " + op.fn->name + ": " + bad);
            return g_sticky;
        }
        return 0;
    }
    case Op::Copy:
        return run_protected("memcpy", [&] { std::memmove((void*)op.dst, (const void*)op.src, op.bytes); return 0; });
    case Op::Memset:
        return run_protected("memset", [&] {
            if (op.width == 1) std::memset((void*)op.dst, (int)op.value, op.bytes);
            else if (op.width == 2)
                for (size_t i = 0; i < op.bytes; i++) ((uint16_t*)op.dst)[i] = (uint16_t)op.value;
            else
                for (size_t i = 0; i < op.bytes; i++) ((uint32_t*)op.dst)[i] = op.value;
            return 0;
        });
    case Op::Host:
        return run_protected("library call", [&] { return op.hostFn(op.host.get()); });
    case Op::Record:
        op.event->recorded = true;
        op.event->at = std::chrono::steady_clock::now();
        return 0;
    }
    return 0;
}

// Issues `op` on stream `s`: recorded while capturing, else run now (streams are in order).
int issue(Stream* s, Op&& op)
{
    if (s->capturing)
    {
        if (s->invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
        s->captured.push_back(std::move(op));
        return 0;
    }
    return execute(op);
}

// The real driver refuses "potentially unsafe" calls (allocation, free, synchronization) while a
// capture in global mode runs anywhere, or one in thread-local mode runs on the calling thread; the
// capture is invalidated and ends with CUDA_ERROR_STREAM_CAPTURE_INVALIDATED.
bool unsafe_during_capture()
{
    bool hit = false;
    for (auto* s : g_streams)
        if (s->capturing && (s->mode == 0 || (s->mode == 1 && s->captureThread == std::this_thread::get_id())))
        {
            s->invalidated = true;
            hit = true;
        }
    return hit;
}

#define LOCK std::lock_guard<std::recursive_mutex> lock_(g_mu)
#define NEED_INIT if (!g_init) return CUDA_ERROR_NOT_INITIALIZED
#define NEED_CTX                                                            \
    NEED_INIT;                                                              \
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;                     \
    if (t_current->refs <= 0) return CUDA_ERROR_CONTEXT_IS_DESTROYED;      \
    if (g_sticky) return g_sticky

void destroy_context_resources()
{
    for (auto& [p, a] : g_allocs) munmap(a.map, a.mapBytes);
    g_allocs.clear();
    g_allocated = 0;
    for (auto* s : g_streams) delete s;
    g_streams.clear();
    for (auto* e : g_events) delete e;
    g_events.clear();
    for (auto* g : g_graphs) delete g;
    g_graphs.clear();
    for (auto* x : g_execs) delete x;
    g_execs.clear();
    for (auto* m : g_modules) m->live = false;
    g_functions.clear();
}
}  // namespace

namespace
{
// LAYERFUSION_EMU_LAUNCH_LOG=FILE: one line per kernel launch (name, grid, block, each parameter as
// an integer of its size) and per library GEMM, appended, for the audit of launch shapes
// (tests/LayerFusion.Tests/Cuda/LaunchAuditTests.cs).
void log_line(const std::string& line)
{
    static FILE* f = [] {
        const char* p = std::getenv("LAYERFUSION_EMU_LAUNCH_LOG");
        return p && *p ? std::fopen(p, "a") : nullptr;
    }();
    if (!f) return;
    std::fputs((line + "\n").c_str(), f);
    std::fflush(f);
}

void log_launch(const Function* f, dim3u g, dim3u b, const std::vector<unsigned char>& params, const std::vector<size_t>& offsets)
{
    std::string line = "kernel " + f->name;
    for (unsigned v : {g.x, g.y, g.z, b.x, b.y, b.z}) line += " " + std::to_string(v);
    for (int i = 0; i < f->info->count; i++)
    {
        const unsigned char* p = params.data() + offsets[i];
        if (f->info->sizes[i] == 4) { int32_t v; std::memcpy(&v, p, 4); line += " " + std::to_string(v); }
        else if (f->info->sizes[i] == 8) { int64_t v; std::memcpy(&v, p, 8); line += " " + std::to_string(v); }
        else line += " -";
    }
    log_line(line);
}
}  // namespace

// ==== the driver API ==================================================================================

LFEMU_API CUresult cuInit(unsigned flags)
{
    LOCK;
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    install_handlers();
    g_init = true;
    return 0;
}

LFEMU_API CUresult cuDriverGetVersion(int* v)
{
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    *v = kDriverVersion;
    return 0;
}

LFEMU_API CUresult cuGetErrorName(CUresult e, const char** s)
{
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    for (auto& t : kErrors)
        if (t.code == e) { *s = t.name; return 0; }
    *s = nullptr;
    return CUDA_ERROR_INVALID_VALUE;
}

LFEMU_API CUresult cuGetErrorString(CUresult e, const char** s)
{
    LOCK;
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    // the poisoned context's code: the standard text plus which kernel faulted where, so the
    // failing call's exception names the fault (the string lives until the context is released)
    if (g_sticky && e == g_sticky) { *s = g_stickyText.c_str(); return 0; }
    for (auto& t : kErrors)
        if (t.code == e) { *s = t.text; return 0; }
    *s = nullptr;
    return CUDA_ERROR_INVALID_VALUE;
}

LFEMU_API CUresult cuDeviceGetCount(int* n)
{
    LOCK;
    NEED_INIT;
    if (!n) return CUDA_ERROR_INVALID_VALUE;
    *n = 1;
    return 0;
}

LFEMU_API CUresult cuDeviceGet(CUdevice* d, int ordinal)
{
    LOCK;
    NEED_INIT;
    if (!d) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *d = 0;
    return 0;
}

LFEMU_API CUresult cuDeviceGetName(char* name, int len, CUdevice d)
{
    LOCK;
    NEED_INIT;
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    std::snprintf(name, (size_t)len, "%s", "LayerFusion emulated sm_90 device (CPU stand-in, not a GPU)");
    return 0;
}

LFEMU_API CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice d)
{
    LOCK;
    NEED_INIT;
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    bool ok;
    int r = attribute(attr, ok);
    if (!ok) return CUDA_ERROR_INVALID_VALUE;
    *v = r;
    return 0;
}

LFEMU_API CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice d)
{
    LOCK;
    NEED_INIT;
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    *bytes = kTotalMem;
    return 0;
}

LFEMU_API CUresult cuDevicePrimaryCtxRetain(void** ctx, CUdevice d)
{
    LOCK;
    NEED_INIT;
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    g_primary.refs++;
    *ctx = &g_primary;
    return 0;
}

LFEMU_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d)
{
    LOCK;
    NEED_INIT;
    if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (g_primary.refs <= 0) return CUDA_ERROR_INVALID_CONTEXT;
    if (--g_primary.refs == 0)
    {
        // the last reference destroys the context: the next retain gets a fresh, unpoisoned one
        destroy_context_resources();
        g_sticky = 0;
        g_stickyWhy.clear();
    }
    return 0;
}

LFEMU_API CUresult cuCtxSetCurrent(void* ctx)
{
    LOCK;
    NEED_INIT;
    if (ctx != nullptr && ctx != &g_primary) return CUDA_ERROR_INVALID_CONTEXT;
    t_current = (Context*)ctx;
    return 0;
}

// ==== stand-in only: what the real driver would make the host wait for ==================================
// Calls that synchronize on the real driver (cuCtxSynchronize, cuStreamSynchronize, cuEventSynchronize,
// and cuMemFree, which waits for the device), host<->device copies, and driver allocations, counted so
// tests can assert a denoising step does none. Read through lfemu_counters, an export the real
// libcuda does not have (callers look it up optionally). Per calling thread, so CUDA work of other
// tests running in parallel does not count; refused calls included.
namespace
{
enum Count { SYNCS, HTOD, DTOH, ALLOCS, NCOUNTS };
thread_local unsigned long long g_counts[NCOUNTS];
}  // namespace

// The calling thread's counts since it started: out[0..n) = synchronizing calls, host-to-device
// copies, device-to-host copies, cuMemAlloc calls. Returns how many counters there are.
LFEMU_API int lfemu_counters(unsigned long long* out, int n)
{
    LOCK;
    for (int i = 0; out && i < n && i < NCOUNTS; i++) out[i] = g_counts[i];
    return NCOUNTS;
}

LFEMU_API CUresult cuCtxSynchronize()
{
    LOCK;
    g_counts[SYNCS]++;
    NEED_CTX;
    if (unsafe_during_capture()) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    return 0;
}

LFEMU_API CUresult cuMemGetInfo_v2(size_t* free_, size_t* total)
{
    LOCK;
    NEED_CTX;
    if (!free_ || !total) return CUDA_ERROR_INVALID_VALUE;
    *total = kTotalMem;
    *free_ = kTotalMem - g_allocated;
    return 0;
}

LFEMU_API CUresult cuStreamCreate(void** s, unsigned flags)
{
    LOCK;
    NEED_CTX;
    if (!s || flags > 1) return CUDA_ERROR_INVALID_VALUE;
    auto* st = new Stream;
    st->flags = flags;
    g_streams.insert(st);
    *s = st;
    return 0;
}

LFEMU_API CUresult cuStreamDestroy_v2(void* h)
{
    LOCK;
    NEED_CTX;
    auto* s = (Stream*)h;
    if (!g_streams.count(s)) return CUDA_ERROR_INVALID_HANDLE;
    g_streams.erase(s);
    delete s;
    return 0;
}

LFEMU_API CUresult cuStreamSynchronize(void* h)
{
    LOCK;
    g_counts[SYNCS]++;
    NEED_CTX;
    bool ok;
    Stream* s = stream_of(h, ok);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    if (s->capturing)
    {
        s->invalidated = true;
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    if (s == &g_legacy && unsafe_during_capture()) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    return 0;
}

LFEMU_API CUresult cuEventCreate(void** e, unsigned flags)
{
    LOCK;
    NEED_CTX;
    if (!e || (flags & ~7u)) return CUDA_ERROR_INVALID_VALUE;
    auto* ev = new Event{flags};
    g_events.insert(ev);
    *e = ev;
    return 0;
}

LFEMU_API CUresult cuEventDestroy_v2(void* e)
{
    LOCK;
    NEED_CTX;
    if (!g_events.count((Event*)e)) return CUDA_ERROR_INVALID_HANDLE;
    g_events.erase((Event*)e);
    delete (Event*)e;
    return 0;
}

LFEMU_API CUresult cuEventRecord(void* e, void* h)
{
    LOCK;
    NEED_CTX;
    if (!g_events.count((Event*)e)) return CUDA_ERROR_INVALID_HANDLE;
    bool ok;
    Stream* s = stream_of(h, ok);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    Op op{Op::Record};
    op.event = (Event*)e;
    return issue(s, std::move(op));
}

LFEMU_API CUresult cuEventSynchronize(void* e)
{
    LOCK;
    g_counts[SYNCS]++;
    NEED_CTX;
    if (!g_events.count((Event*)e)) return CUDA_ERROR_INVALID_HANDLE;
    if (unsafe_during_capture()) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    return 0;
}

LFEMU_API CUresult cuEventElapsedTime(float* ms, void* a, void* b)
{
    LOCK;
    NEED_CTX;
    auto *x = (Event*)a, *y = (Event*)b;
    if (!ms) return CUDA_ERROR_INVALID_VALUE;
    if (!g_events.count(x) || !g_events.count(y)) return CUDA_ERROR_INVALID_HANDLE;
    if ((x->flags & 2) || (y->flags & 2) || !x->recorded || !y->recorded) return CUDA_ERROR_INVALID_HANDLE;
    *ms = std::chrono::duration<float, std::milli>(y->at - x->at).count();
    return 0;
}

LFEMU_API CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes)
{
    LOCK;
    g_counts[ALLOCS]++;
    NEED_CTX;
    if (!p || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    if (unsafe_during_capture()) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (bytes > kTotalMem - g_allocated) return CUDA_ERROR_OUT_OF_MEMORY;
    return guarded_alloc(bytes, p);
}

LFEMU_API CUresult cuMemFree_v2(CUdeviceptr p)
{
    LOCK;
    g_counts[SYNCS]++;
    NEED_CTX;
    if (unsafe_during_capture()) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (p == 0) return 0;
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end()) return CUDA_ERROR_INVALID_VALUE;
    munmap(it->second.map, it->second.mapBytes);
    g_allocated -= accounted(it->second.bytes);
    g_allocs.erase(it);
    return 0;
}

namespace
{
CUresult copy(uintptr_t dst, uintptr_t src, size_t bytes, void* h, bool dstDevice, bool srcDevice)
{
    bool ok;
    Stream* s = stream_of(h, ok);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    if ((dstDevice && !in_range(dst, bytes)) || (srcDevice && !in_range(src, bytes)) || (!dstDevice && !dst) || (!srcDevice && !src))
        return CUDA_ERROR_INVALID_VALUE;
    if (s->capturing && (!dstDevice || !srcDevice))
    {
        // host memory here is pageable (we never pin): a capture cannot hold such a copy
        s->invalidated = true;
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    if (bytes == 0) return 0;
    Op op{Op::Copy};
    op.dst = dst;
    op.src = src;
    op.bytes = bytes;
    return issue(s, std::move(op));
}

CUresult memset_n(CUdeviceptr dst, unsigned value, size_t count, int width, void* h)
{
    bool ok;
    Stream* s = stream_of(h, ok);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    if (dst % width != 0 || !in_range((uintptr_t)dst, count * width)) return CUDA_ERROR_INVALID_VALUE;
    if (count == 0) return 0;
    Op op{Op::Memset};
    op.dst = (uintptr_t)dst;
    op.value = value;
    op.bytes = count;
    op.width = width;
    return issue(s, std::move(op));
}
}  // namespace

LFEMU_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes, void* s)
{
    LOCK;
    g_counts[HTOD]++;
    NEED_CTX;
    return copy((uintptr_t)dst, (uintptr_t)src, bytes, s, true, false);
}

LFEMU_API CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes, void* s)
{
    LOCK;
    g_counts[DTOH]++;
    NEED_CTX;
    return copy((uintptr_t)dst, (uintptr_t)src, bytes, s, false, true);
}

LFEMU_API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, void* s)
{
    LOCK;
    NEED_CTX;
    return copy((uintptr_t)dst, (uintptr_t)src, bytes, s, true, true);
}

LFEMU_API CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, void* s)
{
    LOCK;
    NEED_CTX;
    return memset_n(dst, v, n, 1, s);
}

LFEMU_API CUresult cuMemsetD16Async(CUdeviceptr dst, unsigned short v, size_t n, void* s)
{
    LOCK;
    NEED_CTX;
    return memset_n(dst, v, n, 2, s);
}

LFEMU_API CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, void* s)
{
    LOCK;
    NEED_CTX;
    return memset_n(dst, v, n, 4, s);
}

namespace
{
// PTX text (NUL-terminated), an ELF CUBIN (size from its headers), or the stand-in NVRTC's own image.
size_t image_size(const unsigned char* p)
{
    if (p[0] == 0x7f && p[1] == 'E' && p[2] == 'L' && p[3] == 'F' && p[4] == 2)
    {
        uint64_t phoff, shoff;
        uint16_t phentsize, phnum, shentsize, shnum;
        std::memcpy(&phoff, p + 0x20, 8);
        std::memcpy(&shoff, p + 0x28, 8);
        std::memcpy(&phentsize, p + 0x36, 2);
        std::memcpy(&phnum, p + 0x38, 2);
        std::memcpy(&shentsize, p + 0x3a, 2);
        std::memcpy(&shnum, p + 0x3c, 2);
        return std::max<uint64_t>(shoff + (uint64_t)shentsize * shnum, phoff + (uint64_t)phentsize * phnum);
    }
    return std::strlen((const char*)p) + 1;
}
}  // namespace

LFEMU_API CUresult cuModuleLoadData(void** module, const void* image)
{
    std::unique_lock<std::recursive_mutex> lock(g_mu);
    NEED_CTX;
    if (!module || !image) return CUDA_ERROR_INVALID_VALUE;
    auto* p = (const unsigned char*)image;
    std::string key;
    if (!lfemu::lookup_image(p, image_size(p), key))
    {
        std::fprintf(stderr, "cuda stand-in: cuModuleLoadData: this image was not compiled by the stand-in NVRTC "
                             "(no record of its source in %s)\n", lfemu::cache_dir().c_str());
        return CUDA_ERROR_INVALID_IMAGE;
    }
    std::string buildLog;
    lock.unlock();  // a first load builds the module with g++: other threads keep using the device
    bool built = lfemu::ensure_built(key, buildLog);
    lock.lock();
    if (!built)
    {
        std::fprintf(stderr, "cuda stand-in: cuModuleLoadData: the emulator cannot build this module:\n%s\n", buildLog.c_str());
        return CUDA_ERROR_INVALID_IMAGE;
    }
    std::string so = lfemu::cache_dir() + "/modules/" + key + "/module.so";
    void* dl = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!dl)
    {
        std::fprintf(stderr, "cuda stand-in: cuModuleLoadData: %s\n", dlerror());
        return CUDA_ERROR_INVALID_IMAGE;
    }
    if (auto init = (void (*)(void (*)(const char*)))dlsym(dl, "lfemu_module_init")) init(fatal_hook);
    else return CUDA_ERROR_INVALID_IMAGE;
    auto* m = new Module{dl, true, key};
    g_modules.insert(m);
    *module = m;
    return 0;
}

LFEMU_API CUresult cuModuleUnload(void* module)
{
    LOCK;
    NEED_CTX;
    auto* m = (Module*)module;
    if (!g_modules.count(m) || !m->live) return CUDA_ERROR_INVALID_HANDLE;
    m->live = false;  // the library stays mapped: captured graphs may still name its kernels
    for (auto it = g_functions.begin(); it != g_functions.end();)
        if ((*it)->module == m) it = g_functions.erase(it);
        else ++it;
    return 0;
}

LFEMU_API CUresult cuModuleGetFunction(void** fn, void* module, const char* name)
{
    LOCK;
    NEED_CTX;
    auto* m = (Module*)module;
    if (!fn || !name) return CUDA_ERROR_INVALID_VALUE;
    if (!g_modules.count(m) || !m->live) return CUDA_ERROR_INVALID_HANDLE;
    auto* info = (const KernelInfo*)dlsym(m->dl, ("lfemu_kernel_" + std::string(name)).c_str());
    if (!info) return CUDA_ERROR_NOT_FOUND;
    for (auto* f : g_functions)
        if (f->module == m && f->name == name) { *fn = f; return 0; }
    auto* f = new Function{m, info, name};
    g_functions.insert(f);
    *fn = f;
    return 0;
}

LFEMU_API CUresult cuFuncSetAttribute(void* fn, int attr, int value)
{
    LOCK;
    NEED_CTX;
    auto* f = (Function*)fn;
    if (!g_functions.count(f)) return CUDA_ERROR_INVALID_HANDLE;
    if (attr == 8)  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    {
        if (value < 0 || value > kSmemPerBlockOptin) return CUDA_ERROR_INVALID_VALUE;
        f->maxDynamicShared = value;
        return 0;
    }
    if (attr == 9)  // CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT
        return value >= -1 && value <= 100 ? 0 : CUDA_ERROR_INVALID_VALUE;
    return CUDA_ERROR_INVALID_VALUE;
}

LFEMU_API CUresult cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                                  unsigned smem, void* h, void** params, void** extra)
{
    LOCK;
    NEED_CTX;
    auto* f = (Function*)fn;
    if (!g_functions.count(f)) return CUDA_ERROR_INVALID_HANDLE;
    bool ok;
    Stream* s = stream_of(h, ok);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    if (extra) return CUDA_ERROR_INVALID_VALUE;  // we pass parameters through kernelParams only
    if (!gx || !gy || !gz || !bx || !by || !bz) return CUDA_ERROR_INVALID_VALUE;
    if (gx > 2147483647u || gy > 65535 || gz > 65535) return CUDA_ERROR_INVALID_VALUE;
    if (bx > 1024 || by > 1024 || bz > 64 || (unsigned long long)bx * by * bz > 1024) return CUDA_ERROR_INVALID_VALUE;
    if ((unsigned long long)bx * by * bz > (unsigned)f->info->max_threads) return CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;
    if (smem > (unsigned)f->maxDynamicShared) return CUDA_ERROR_INVALID_VALUE;
    if (f->info->count > 0 && !params) return CUDA_ERROR_INVALID_VALUE;
    Op op{Op::Kernel};
    op.fn = f;
    op.grid = {gx, gy, gz};
    op.block = {bx, by, bz};
    op.smem = smem;
    // parameters are copied now, by the kernel's own signature (a graph replays these values)
    size_t pos = 0;
    for (int i = 0; i < f->info->count; i++)
    {
        size_t a = (size_t)f->info->aligns[i];
        pos = (pos + a - 1) / a * a;
        op.offsets.push_back(pos);
        pos += (size_t)f->info->sizes[i];
    }
    op.params.resize(pos + 16);
    for (int i = 0; i < f->info->count; i++) std::memcpy(op.params.data() + op.offsets[i], params[i], (size_t)f->info->sizes[i]);
    log_launch(f, op.grid, op.block, op.params, op.offsets);
    return issue(s, std::move(op));
}

LFEMU_API CUresult cuStreamBeginCapture_v2(void* h, int mode)
{
    LOCK;
    NEED_CTX;
    bool ok;
    Stream* s = stream_of(h, ok);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    if (s == &g_legacy) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (mode < 0 || mode > 2) return CUDA_ERROR_INVALID_VALUE;
    if (s->capturing) return CUDA_ERROR_ILLEGAL_STATE;
    s->capturing = true;
    s->invalidated = false;
    s->mode = mode;
    s->captureThread = std::this_thread::get_id();
    s->captured.clear();
    return 0;
}

LFEMU_API CUresult cuStreamEndCapture(void* h, void** graph)
{
    LOCK;
    NEED_CTX;
    bool ok;
    Stream* s = stream_of(h, ok);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    if (!graph) return CUDA_ERROR_INVALID_VALUE;
    if (!s->capturing) return CUDA_ERROR_ILLEGAL_STATE;
    if (s->mode != 2 && s->captureThread != std::this_thread::get_id()) return CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
    s->capturing = false;
    if (s->invalidated)
    {
        s->captured.clear();
        *graph = nullptr;
        return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    }
    auto* g = new Graph{std::move(s->captured)};
    s->captured.clear();
    g_graphs.insert(g);
    *graph = g;
    return 0;
}

LFEMU_API CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long flags)
{
    LOCK;
    NEED_CTX;
    if (!exec) return CUDA_ERROR_INVALID_VALUE;
    auto* g = (Graph*)graph;
    if (!g_graphs.count(g)) return CUDA_ERROR_INVALID_VALUE;
    if (flags & ~0xfull) return CUDA_ERROR_INVALID_VALUE;
    auto* x = new GraphExec{g->ops};
    g_execs.insert(x);
    *exec = x;
    return 0;
}

LFEMU_API CUresult cuGraphLaunch(void* exec, void* h)
{
    LOCK;
    NEED_CTX;
    auto* x = (GraphExec*)exec;
    if (!g_execs.count(x)) return CUDA_ERROR_INVALID_VALUE;
    bool ok;
    Stream* s = stream_of(h, ok);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    for (auto& op : x->ops)
    {
        if (op.kind == Op::Kernel && !g_functions.count(op.fn)) return CUDA_ERROR_INVALID_HANDLE;
        Op copyOp = op;
        if (int rc = issue(s, std::move(copyOp))) return rc;
    }
    return 0;
}

LFEMU_API CUresult cuGraphExecDestroy(void* exec)
{
    LOCK;
    NEED_CTX;
    auto* x = (GraphExec*)exec;
    if (!g_execs.count(x)) return CUDA_ERROR_INVALID_VALUE;
    g_execs.erase(x);
    delete x;
    return 0;
}

LFEMU_API CUresult cuGraphDestroy(void* graph)
{
    LOCK;
    NEED_CTX;
    auto* g = (Graph*)graph;
    if (!g_graphs.count(g)) return CUDA_ERROR_INVALID_VALUE;
    g_graphs.erase(g);
    delete g;
    return 0;
}

// ==== for the stand-in cuBLAS/cuBLASLt ==================================================================

LFEMU_API int lfemu_has_context(void)
{
    LOCK;
    return g_init && t_current && t_current->refs > 0;
}

LFEMU_API int lfemu_stream_valid(void* h)
{
    LOCK;
    bool ok;
    stream_of(h, ok);
    return ok;
}

LFEMU_API int lfemu_enqueue_host(void* h, lfemu_host_fn fn, void* ctx, void (*release)(void*))
{
    LOCK;
    std::shared_ptr<void> owned(ctx, release);
    if (!g_init || !t_current || t_current->refs <= 0) return CUDA_ERROR_INVALID_CONTEXT;
    if (g_sticky) return g_sticky;
    bool ok;
    Stream* s = stream_of(h, ok);
    if (!ok) return CUDA_ERROR_INVALID_HANDLE;
    Op op{Op::Host};
    op.host = owned;
    op.hostFn = fn;
    return issue(s, std::move(op));
}

LFEMU_API void lfemu_log_line(const char* line) { LOCK; log_line(line); }

// Called by library work as it runs: 0 when [ptr, ptr + bytes) lies in one allocation; else the
// context is poisoned with CUDA_ERROR_ILLEGAL_ADDRESS, as a real out-of-bounds library kernel would.
LFEMU_API int lfemu_check_range(unsigned long long ptr, size_t bytes, const char* what)
{
    LOCK;
    if (bytes == 0 || in_range((uintptr_t)ptr, bytes)) return 0;
    make_sticky(CUDA_ERROR_ILLEGAL_ADDRESS, std::string(what) + ": " + std::to_string(bytes) + " bytes at " + describe((uintptr_t)ptr) +
                                                " do not lie inside one device allocation");
    return CUDA_ERROR_ILLEGAL_ADDRESS;
}
