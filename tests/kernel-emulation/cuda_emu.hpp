// A CPU emulator for our CUDA kernels' dialect, so their indexing, reductions, shuffles and online
// softmax can be checked where no GPU exists. Every CUDA thread of a block is a fiber on one OS
// thread; blocks run one at a time, so function-local `static` arrays behave as __shared__ memory.
// __syncthreads is a block barrier; a warp shuffle is one write to a per-warp slot array, one warp
// barrier and one read (slots are double-buffered by the lane's collective count, so no second
// barrier is needed: a lane cannot start collective i+2 before every lane has finished i).
// Fibers switch through a hand-written x86-64 context switch (callee-saved registers only) on
// stacks reused from a pool; elsewhere ucontext is the fallback.
// It checks logic, not timing or memory-model subtleties (races that the GPU's scheduling would
// expose can stay hidden here).
// Used by the kernel-emulation programs of this folder and by the stand-in CUDA driver
// (tests/cuda-standin), which builds every module NVRTC compiles against this header.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>
#include <sys/mman.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#define LF_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#ifndef LF_EMU_SCAN
#define __launch_bounds__(...)
#endif
#define __align__(n) alignas(n)

struct lf_emu_dim3 { unsigned x = 1, y = 1, z = 1; };
inline lf_emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

// ---- fibers ----------------------------------------------------------------------------------
#if defined(__x86_64__)
extern "C" void lf_emu_swap(void** save_sp, void* load_sp);
asm(R"(
    .text
    .p2align 4
    .hidden lf_emu_swap
    .weak lf_emu_swap
    .type lf_emu_swap, @function
lf_emu_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size lf_emu_swap, .-lf_emu_swap
)");
#endif

struct lf_emu_fiber
{
#if defined(__x86_64__)
    void* sp = nullptr;
#else
    ucontext_t ctx;
#endif
    char* stack = nullptr;
    lf_emu_dim3 tid;
    bool done = false;
};

struct lf_emu_warp
{
    unsigned gen = 0, count = 0, live = 32;
    unsigned parity[32];
    unsigned slot[2][32][8];
};

struct lf_emu_sched
{
#if defined(__x86_64__)
    void* main_sp = nullptr;
#else
    ucontext_t main;
#endif
    std::vector<lf_emu_fiber> fibers;
    std::vector<lf_emu_warp> warps;
    unsigned n = 0, current = 0, live = 0;
    unsigned blockGen = 0, blockCount = 0;
    void (*body)(void*) = nullptr;
    void* arg = nullptr;
};
inline lf_emu_sched lf_emu_s_storage;
inline lf_emu_sched* lf_emu_s = &lf_emu_s_storage;

// Called when a kernel can never finish (barrier deadlock) or traps; the stand-in driver installs
// one that unwinds the launch, standalone programs abort.
inline void (*lf_emu_fatal_hook)(const char*) = nullptr;
[[noreturn]] inline void lf_emu_fatal(const char* what)
{
    if (lf_emu_fatal_hook) lf_emu_fatal_hook(what);
    std::fprintf(stderr, "cuda emulator: %s\n", what);
    std::abort();
}

constexpr size_t lf_emu_stack_bytes = 256 * 1024;

// Stacks are mapped once and reused by every launch (1024 threads at most per block).
inline char* lf_emu_stack(unsigned i)
{
    static char* pool[1024];
    if (!pool[i])
    {
        void* p = mmap(nullptr, lf_emu_stack_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) lf_emu_fatal("cannot map a fiber stack");
        pool[i] = (char*)p;
    }
    return pool[i];
}

inline void lf_emu_switch(unsigned from, unsigned to)
{
    auto& s = *lf_emu_s;
    s.current = to;
    threadIdx = s.fibers[to].tid;
#if defined(__x86_64__)
    lf_emu_swap(&s.fibers[from].sp, s.fibers[to].sp);
#else
    swapcontext(&s.fibers[from].ctx, &s.fibers[to].ctx);
#endif
}

// To the next live fiber of the block (round robin); returns when this one is scheduled again.
inline void lf_emu_yield()
{
    auto& s = *lf_emu_s;
    unsigned cur = s.current, next = cur;
    do next = next + 1 == s.n ? 0 : next + 1;
    while (s.fibers[next].done && next != cur);
    if (next != cur) lf_emu_switch(cur, next);
}

inline void lf_emu_wait(const unsigned& gen, unsigned g)
{
    for (unsigned long spins = 0; gen == g; spins++)
    {
        if (spins > (1ul << 22)) lf_emu_fatal("barrier deadlock: some threads of the block never reach it");
        lf_emu_yield();
    }
}

inline void __syncthreads()
{
    auto& s = *lf_emu_s;
    unsigned g = s.blockGen;
    if (++s.blockCount >= s.live) { s.blockCount = 0; s.blockGen++; return; }
    lf_emu_wait(s.blockGen, g);
}

inline unsigned lf_emu_linear_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

inline void lf_emu_warp_barrier()
{
    auto& w = lf_emu_s->warps[lf_emu_linear_tid() / 32];
    unsigned g = w.gen;
    if (++w.count >= w.live) { w.count = 0; w.gen++; return; }
    lf_emu_wait(w.gen, g);
}

// One warp-collective exchange: every lane publishes `words` 32-bit words and, after one warp
// barrier, may read any lane's. Returns the slot table of this exchange.
inline unsigned (*lf_emu_publish(const unsigned* v, int words))[8]
{
    unsigned t = lf_emu_linear_tid(), lane = t & 31;
    auto& w = lf_emu_s->warps[t / 32];
    unsigned p = w.parity[lane]++ & 1;
    for (int i = 0; i < words; i++) w.slot[p][lane][i] = v[i];
    lf_emu_warp_barrier();
    return w.slot[p];
}

inline unsigned lf_emu_f2u(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float lf_emu_u2f(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }

inline float lf_emu_exchange(float v, int src)
{
    unsigned u = lf_emu_f2u(v);
    return lf_emu_u2f(lf_emu_publish(&u, 1)[src & 31][0]);
}
inline float __shfl_xor_sync(unsigned, float v, int o) { return lf_emu_exchange(v, (int)(lf_emu_linear_tid() & 31) ^ o); }
inline float __shfl_sync(unsigned, float v, int src) { return lf_emu_exchange(v, src); }

inline std::vector<unsigned char> lf_emu_dynamic;

inline void lf_emu_finish()
{
    auto& s = *lf_emu_s;
    unsigned cur = s.current;
    s.fibers[cur].done = true;
    s.live--;
    auto& w = s.warps[cur / 32];
    w.live--;
    // exited threads no longer count at barriers
    if (w.count > 0 && w.count >= w.live) { w.count = 0; w.gen++; }
    if (s.blockCount > 0 && s.blockCount >= s.live) { s.blockCount = 0; s.blockGen++; }
    unsigned next = cur;
    do next = next + 1 == s.n ? 0 : next + 1;
    while (s.fibers[next].done && next != cur);
#if defined(__x86_64__)
    if (next == cur) { void* dead; lf_emu_swap(&dead, s.main_sp); }
    s.current = next;
    threadIdx = s.fibers[next].tid;
    void* dead;
    lf_emu_swap(&dead, s.fibers[next].sp);
#else
    if (next == cur) { setcontext(&s.main); }
    s.current = next;
    threadIdx = s.fibers[next].tid;
    setcontext(&s.fibers[next].ctx);
#endif
    __builtin_unreachable();
}

inline void lf_emu_entry()
{
    lf_emu_s->body(lf_emu_s->arg);
    lf_emu_finish();
}

// Runs body(arg) as every thread of every block of the grid.
inline void lf_emu_run_grid(lf_emu_dim3 grid, lf_emu_dim3 block, size_t dynamicShared, void (*body)(void*), void* arg)
{
    auto& s = *lf_emu_s;
    gridDim = grid;
    blockDim = block;
    unsigned n = block.x * block.y * block.z;
    if (n == 0 || n > 1024) lf_emu_fatal("block size outside 1..1024");
    lf_emu_dynamic.assign(dynamicShared + 16, 0xFF);  // garbage, as on a GPU
    s.body = body;
    s.arg = arg;
    s.n = n;
    s.fibers.resize(n);
    s.warps.resize((n + 31) / 32);
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++)
            {
                blockIdx = {bx, by, bz};
                s.blockGen = s.blockCount = 0;
                s.live = n;
                for (unsigned w = 0; w < s.warps.size(); w++)
                {
                    auto& wp = s.warps[w];
                    wp.gen = wp.count = 0;
                    wp.live = std::min(32u, n - 32 * w);
                    std::memset(wp.parity, 0, sizeof wp.parity);
                }
                for (unsigned t = 0; t < n; t++)
                {
                    auto& f = s.fibers[t];
                    f.done = false;
                    f.tid = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
                    f.stack = lf_emu_stack(t);
#if defined(__x86_64__)
                    // callee-saved registers (zero), then the return address: lf_emu_entry's entry sees
                    // rsp = 8 (mod 16), as after a call.
                    auto top = (std::uintptr_t)(f.stack + lf_emu_stack_bytes) & ~(std::uintptr_t)15;
                    auto* sp = (void**)(top - 16);
                    sp[0] = (void*)&lf_emu_entry;
                    sp -= 6;
                    for (int r = 0; r < 6; r++) sp[r] = nullptr;
                    f.sp = sp;
#else
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack;
                    f.ctx.uc_stack.ss_size = lf_emu_stack_bytes;
                    f.ctx.uc_link = nullptr;
                    makecontext(&f.ctx, lf_emu_entry, 0);
#endif
                }
                s.current = 0;
                threadIdx = s.fibers[0].tid;
#if defined(__x86_64__)
                lf_emu_swap(&s.main_sp, s.fibers[0].sp);
#else
                swapcontext(&s.main, &s.fibers[0].ctx);
#endif
            }
}

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

inline float lf_half_bits_to_f32(unsigned short bits) { _Float16 h; std::memcpy(&h, &bits, 2); return (float)h; }
inline unsigned short lf_f32_to_half_bits(float f) { _Float16 h = (_Float16)f; unsigned short b; std::memcpy(&b, &h, 2); return b; }
inline unsigned short lf_f32_to_bf16_bits(float f)
{
    unsigned u; std::memcpy(&u, &f, 4);
    if (std::isnan(f)) return (unsigned short)((u >> 16) | 0x40);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

#define LF_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(lf_emu_dynamic.data())

// Kernel launch from a host program: arguments converted to the kernel's parameter types.
template <typename... P, typename... A>
void lf_emu_launch(void (*kernel)(P...), lf_emu_dim3 grid, unsigned threads, size_t dynamicShared, A... args)
{
    struct Call
    {
        void (*k)(P...);
        std::tuple<std::remove_cv_t<std::remove_reference_t<P>>...> a;
    };
    Call c{kernel, {static_cast<P>(args)...}};
    lf_emu_run_grid(grid, {threads, 1, 1}, dynamicShared, [](void* p) {
        auto* c = (Call*)p;
        std::apply(c->k, c->a);
    }, &c);
}

// Kernel launch from the stand-in driver: cuLaunchKernel's void** params, each read as the
// kernel's own parameter type (what the real driver does with the image's parameter table).
template <typename... P>
struct lf_emu_params_of
{
    static constexpr int count = sizeof...(P);
    static constexpr int sizes[sizeof...(P) + 1] = {(int)sizeof(std::remove_cv_t<std::remove_reference_t<P>>)..., 0};
    static constexpr int aligns[sizeof...(P) + 1] = {(int)alignof(std::remove_cv_t<std::remove_reference_t<P>>)..., 0};
};

template <typename... P>
void lf_emu_launch_params(void (*kernel)(P...), lf_emu_dim3 grid, lf_emu_dim3 block, size_t dynamicShared, void** params)
{
    struct Call { void (*k)(P...); void** params; };
    Call c{kernel, params};
    lf_emu_run_grid(grid, block, dynamicShared, [](void* p) {
        auto* c = (Call*)p;
        [&]<size_t... I>(std::index_sequence<I...>) {
            c->k(*reinterpret_cast<std::remove_cv_t<std::remove_reference_t<P>>*>(c->params[I])...);
        }(std::index_sequence_for<P...>{});
    }, &c);
}

