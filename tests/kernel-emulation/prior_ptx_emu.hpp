// Lane-level CPU versions of the five PTX helpers of kernels/attention_priors.cu, for the emulator
// of cuda_emu.hpp. They follow the PTX ISA's fragment layouts for mma.m16n8k16 (.f16/.bf16, row.col):
//   A 16x16: a0 (row g, cols 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
//   B 16x8:  b0 (k 2t..2t+1, col g)  b1 (k 2t+8.., col g)
//   C 16x8:  c0,c1 (g, 2t..2t+1)  c2,c3 (g+8, 2t..)          (g = lane / 4, t = lane % 4)
//   ldmatrix .x4 .trans: lanes 8i..8i+7 address the rows of matrix i; each lane receives, per
//   matrix, the elements (rows 2t, 2t+1; column g), row 2t in the low half.
// Registers move between lanes only through warp-collective exchanges (one per mma or ldmatrix), as
// on the hardware, so an index error in the kernel shows as a wrong result here. cp.async copies synchronously.
#pragma once
#include "cuda_emu.hpp"
#include <cstdint>

typedef unsigned int lf_u32;

inline float lf_emu_lo(lf_u32 v)
{
#if LF_DTYPE == 1
    return lf_half_bits_to_f32((unsigned short)(v & 0xffff));
#else
    return __uint_as_float((v & 0xffffu) << 16);
#endif
}
inline float lf_emu_hi(lf_u32 v)
{
#if LF_DTYPE == 1
    return lf_half_bits_to_f32((unsigned short)(v >> 16));
#else
    return __uint_as_float(v & 0xffff0000u);
#endif
}

inline void lf_cp_async16(void* dst, const void* src, int src_bytes)
{
    if (src_bytes == 16) std::memcpy(dst, src, 16);
    else std::memset(dst, 0, 16);
}
inline void lf_cp_commit() {}
template <int N>
inline void lf_cp_wait() {}

inline void lf_mma(float* c, const lf_u32* a, lf_u32 b0, lf_u32 b1)
{
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const unsigned mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
    auto slot = lf_emu_publish(mine, 6);  // one exchange: every lane's fragments
    float A[2][16], B[2][16];
    for (int reg = 0; reg < 4; reg++)
        for (int ts = 0; ts < 4; ts++)
        {
            lf_u32 u = slot[g * 4 + ts][reg];
            int row = reg & 1, col = 2 * ts + 8 * (reg >> 1);
            A[row][col] = lf_emu_lo(u);
            A[row][col + 1] = lf_emu_hi(u);
        }
    for (int n2 = 0; n2 < 2; n2++)
        for (int reg = 0; reg < 2; reg++)
            for (int ts = 0; ts < 4; ts++)
            {
                lf_u32 u = slot[(2 * t + n2) * 4 + ts][4 + reg];
                int k = 2 * ts + 8 * reg;
                B[n2][k] = lf_emu_lo(u);
                B[n2][k + 1] = lf_emu_hi(u);
            }
    for (int row = 0; row < 2; row++)
        for (int n2 = 0; n2 < 2; n2++)
        {
            float acc = 0.f;
            for (int k = 0; k < 16; k++) acc += A[row][k] * B[n2][k];
            c[2 * row + n2] += acc;
        }
}

inline void lf_ldmatrix_x4_trans(lf_u32* r, const void* row)
{
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const auto p = (std::uint64_t)(std::uintptr_t)row;
    const unsigned mine[2] = {(unsigned)p, (unsigned)(p >> 32)};
    auto slot = lf_emu_publish(mine, 2);  // one exchange: every lane's row address
    for (int i = 0; i < 4; i++)
    {
        lf_u32 half[2];
        for (int e = 0; e < 2; e++)
        {
            int src = 8 * i + 2 * t + e;
            std::uint64_t addr = ((std::uint64_t)slot[src][1] << 32) | slot[src][0];
            const unsigned short* rp = (const unsigned short*)(std::uintptr_t)addr;
            half[e] = rp[g];
        }
        r[i] = half[0] | (half[1] << 16);
    }
}

inline lf_u32 lf_pack2(float lo, float hi)
{
#if LF_DTYPE == 1
    return (lf_u32)lf_f32_to_half_bits(lo) | ((lf_u32)lf_f32_to_half_bits(hi) << 16);
#else
    return (lf_u32)lf_f32_to_bf16_bits(lo) | ((lf_u32)lf_f32_to_bf16_bits(hi) << 16);
#endif
}
