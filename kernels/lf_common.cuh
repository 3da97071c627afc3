// Shared definitions for every LayerFusion kernel. No CUDA toolkit header is included anywhere:
// NVRTC compiles these sources with only its built-in device functions (math, intrinsics), so the
// same sources build with Debian's NVRTC 11.8 in CI and with CUDA 13 on the device machine.
//
// Storage precision is chosen per module with -DLF_DTYPE=0|1|2 (fp32, fp16, bf16); all arithmetic
// is fp32 (the conversions below are the only places the storage type shows).
#pragma once

#ifndef LF_DTYPE
#define LF_DTYPE 1
#endif

typedef unsigned short lf_u16;
typedef long long lf_i64;

struct __align__(2) lf_half { lf_u16 bits; };
struct __align__(2) lf_bf16 { lf_u16 bits; };

#define LF_INF __int_as_float(0x7f800000)
#define LF_FULL_MASK 0xffffffffu

// Dynamic shared memory; tests/kernel-emulation runs these sources on the CPU (LF_HOST_EMULATION),
// where the emulator supplies the conversions and the per-block shared buffer instead.
#ifndef LF_HOST_EMULATION
#define LF_DYNAMIC_SHARED(type, name) extern __shared__ type name[]

static __device__ __forceinline__ float lf_half_bits_to_f32(lf_u16 bits)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(bits));
    return f;
}
static __device__ __forceinline__ lf_u16 lf_f32_to_half_bits(float f)
{
    lf_u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
static __device__ __forceinline__ lf_u16 lf_f32_to_bf16_bits(float f)
{
    lf_u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
#endif

static __device__ __forceinline__ float lf_to_f32(float v) { return v; }
static __device__ __forceinline__ float lf_to_f32(lf_half v) { return lf_half_bits_to_f32(v.bits); }
static __device__ __forceinline__ float lf_to_f32(lf_bf16 v) { return __uint_as_float(((unsigned)v.bits) << 16); }

static __device__ __forceinline__ void lf_from_f32(float f, float* out) { *out = f; }
static __device__ __forceinline__ void lf_from_f32(float f, lf_half* out) { out->bits = lf_f32_to_half_bits(f); }
static __device__ __forceinline__ void lf_from_f32(float f, lf_bf16* out) { out->bits = lf_f32_to_bf16_bits(f); }

#if LF_DTYPE == 0
typedef float elem_t;
#elif LF_DTYPE == 1
typedef lf_half elem_t;
#elif LF_DTYPE == 2
typedef lf_bf16 elem_t;
#else
#error "LF_DTYPE must be 0 (fp32), 1 (fp16) or 2 (bf16)"
#endif

static __device__ __forceinline__ float lf_load(const elem_t* p, lf_i64 i) { return lf_to_f32(p[i]); }
static __device__ __forceinline__ void lf_store(elem_t* p, lf_i64 i, float v) { lf_from_f32(v, p + i); }

static __device__ __forceinline__ float lf_warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(LF_FULL_MASK, v, o);
    return v;
}

static __device__ __forceinline__ float lf_warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(LF_FULL_MASK, v, o));
    return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
static __device__ __forceinline__ float lf_block_sum(float v, float* scratch32)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = lf_warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch32[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch32[lane] : 0.f;
    return lf_warp_sum(t);
}

static __device__ __forceinline__ float lf_block_max(float v, float* scratch32)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = lf_warp_max(v);
    __syncthreads();
    if (lane == 0) scratch32[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch32[lane] : -LF_INF;
    return lf_warp_max(t);
}

// Maps an output element's linear index to a source offset: broadcasting (stride 0) and permutes.
// Layout mirrored by LayerFusion.Cuda.IndexMap (C#): int rank, int pad, i64 dims[8], i64 strides[8].
struct lf_index_map
{
    int rank;
    int pad;
    lf_i64 dims[8];
    lf_i64 strides[8];
};

static __device__ __forceinline__ lf_i64 lf_map_index(const lf_index_map& m, lf_i64 i)
{
    lf_i64 off = 0;
    for (int a = m.rank - 1; a >= 0; --a)
    {
        const lf_i64 d = m.dims[a];
        off += (i % d) * m.strides[a];
        i /= d;
    }
    return off;
}

// The row of a step table the device step counter selects (StepScalars): clamped to [0, steps - 1],
// since a counter past the last step cannot raise an error on the device.
static __device__ __forceinline__ int lf_step_row(int step, int steps) { return step < 0 ? 0 : step >= steps ? steps - 1 : step; }

#define LF_GRID_STRIDE(i, n) for (lf_i64 i = (lf_i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (lf_i64)gridDim.x * blockDim.x)
