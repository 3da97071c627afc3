// A CPU emulator for our CUDA kernels' dialect, so their indexing, reductions, shuffles and online
// softmax can be checked where no GPU exists. Every CUDA thread is a fiber (ucontext); blocks run one
// at a time, so function-local `static` arrays behave as __shared__ memory; __syncthreads is a block
// barrier and warp shuffles exchange through a slot array between two warp barriers.
// It checks logic, not timing or memory-model subtleties (races that the GPU's scheduling would
// expose can stay hidden here).
#pragma once
#include <ucontext.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#define LF_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

struct lf_emu_dim3 { unsigned x = 1, y = 1, z = 1; };
inline lf_emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

// One block's threads are cooperative fibers on one OS thread: a barrier yields to the next fiber
// until every thread of the block (or warp) has arrived. Deterministic, and cheap enough to run
// real launch shapes.
struct lf_emu_fiber
{
    ucontext_t ctx;
    std::vector<char> stack;
    unsigned tid = 0;
    bool done = false;
};

struct lf_emu_sched
{
    ucontext_t main;
    std::vector<lf_emu_fiber> fibers;
    size_t current = 0;
    std::function<void()> body;
    unsigned blockGen = 0, blockCount = 0;
    std::vector<unsigned> warpGen, warpCount;
    float slot[1024];
};
inline lf_emu_sched* lf_emu_s;

inline void lf_emu_yield() { swapcontext(&lf_emu_s->fibers[lf_emu_s->current].ctx, &lf_emu_s->main); }

inline void __syncthreads()
{
    auto& s = *lf_emu_s;
    unsigned g = s.blockGen;
    if (++s.blockCount == blockDim.x) { s.blockCount = 0; s.blockGen++; return; }
    while (s.blockGen == g) lf_emu_yield();
}

inline void lf_emu_warp_barrier()
{
    auto& s = *lf_emu_s;
    unsigned w = threadIdx.x / 32, g = s.warpGen[w];
    if (++s.warpCount[w] == 32) { s.warpCount[w] = 0; s.warpGen[w]++; return; }
    while (s.warpGen[w] == g) lf_emu_yield();
}

inline float lf_emu_exchange(float v, int src)
{
    unsigned base = threadIdx.x / 32 * 32;
    lf_emu_s->slot[threadIdx.x] = v;
    lf_emu_warp_barrier();
    float r = lf_emu_s->slot[base + (src & 31)];
    lf_emu_warp_barrier();
    return r;
}
inline float __shfl_xor_sync(unsigned, float v, int o) { return lf_emu_exchange(v, (int)(threadIdx.x % 32) ^ o); }
inline float __shfl_sync(unsigned, float v, int src) { return lf_emu_exchange(v, src); }

inline std::vector<unsigned char> lf_emu_dynamic;

inline void lf_emu_entry()
{
    lf_emu_s->body();
    lf_emu_s->fibers[lf_emu_s->current].done = true;
    swapcontext(&lf_emu_s->fibers[lf_emu_s->current].ctx, &lf_emu_s->main);
}

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline int min(int a, int b) { return a < b ? a : b; }

inline float lf_half_bits_to_f32(unsigned short bits) { _Float16 h; std::memcpy(&h, &bits, 2); return (float)h; }
inline unsigned short lf_f32_to_half_bits(float f) { _Float16 h = (_Float16)f; unsigned short b; std::memcpy(&b, &h, 2); return b; }
inline unsigned short lf_f32_to_bf16_bits(float f)
{
    unsigned u; std::memcpy(&u, &f, 4);
    if (std::isnan(f)) return (unsigned short)((u >> 16) | 0x40);
    return (unsigned short)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

#define LF_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(lf_emu_dynamic.data())

template <typename... P, typename... A>
void lf_emu_launch(void (*kernel)(P...), lf_emu_dim3 grid, unsigned threads, size_t dynamicShared, A... args)
{
    gridDim = grid;
    blockDim = {threads, 1, 1};
    lf_emu_dynamic.assign(dynamicShared + 16, 0xFF);  // garbage, as on a GPU
    lf_emu_sched s;
    lf_emu_s = &s;
    s.body = [&] { kernel(static_cast<P>(args)...); };
    s.fibers.resize(threads);
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++)
            {
                blockIdx = {bx, by, bz};
                s.blockGen = s.blockCount = 0;
                s.warpGen.assign(threads / 32 + 1, 0);
                s.warpCount.assign(threads / 32 + 1, 0);
                for (unsigned t = 0; t < threads; t++)
                {
                    auto& f = s.fibers[t];
                    f.tid = t;
                    f.done = false;
                    f.stack.resize(256 * 1024);
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack.data();
                    f.ctx.uc_stack.ss_size = f.stack.size();
                    f.ctx.uc_link = nullptr;
                    makecontext(&f.ctx, lf_emu_entry, 0);
                }
                for (bool live = true; live;)
                {
                    live = false;
                    for (unsigned t = 0; t < threads; t++)
                    {
                        if (s.fibers[t].done) continue;
                        live = true;
                        s.current = t;
                        threadIdx = {t, 0, 0};
                        swapcontext(&s.main, &s.fibers[t].ctx);
                    }
                }
            }
}
