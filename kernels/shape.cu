// Data movement: materialized permutes, and row-block copies that implement concat and slice.
#include "lf_common.cuh"

// y (contiguous, output shape in map.dims) gathers x through the permuted strides in map.strides.
extern "C" __global__ void lf_permute(const elem_t* x, elem_t* y, lf_i64 n, lf_index_map map)
{
    LF_GRID_STRIDE(i, n) y[i] = x[lf_map_index(map, i)];
}

// For r < rows: dst[r * dst_stride + dst_offset + c] = src[r * src_stride + src_offset + c], c < len.
// Concat along an axis is one call per part; a slice is one call.
extern "C" __global__ void lf_copy_rows(const elem_t* src, lf_i64 src_stride, lf_i64 src_offset, elem_t* dst,
                                        lf_i64 dst_stride, lf_i64 dst_offset, lf_i64 rows, lf_i64 len)
{
    LF_GRID_STRIDE(i, rows * len)
    {
        const lf_i64 r = i / len, c = i - r * len;
        dst[r * dst_stride + dst_offset + c] = src[r * src_stride + src_offset + c];
    }
}
