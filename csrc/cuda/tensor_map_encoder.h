// The driver's tensor-map encoder for the Hopper kernels' TMA loaders, and
// the channels-last box maps both kernels load their sources through.
// Host-only.
#pragma once

#include <cstdint>

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include "../params.h"

namespace tconv3d::cuda {

// cuTensorMapEncodeTiled from the driver the runtime already loaded (no link
// against libcuda); null where the driver lacks it.
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();  // clear
      fn = nullptr;
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// fp32 (read as TF32 by the kernels), fp16 or bf16.
inline CUtensorMapDataType tensor_map_type(ScalarKind dtype) {
  return dtype == ScalarKind::Float32   ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32
         : dtype == ScalarKind::Float16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                        : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
}

// The swizzle a box of `row_bytes`-wide rows (128, 64 or 32) lands in, the
// one the kernels' descriptors of that row width read.
inline CUtensorMapSwizzle swizzle_for_rows(int64_t row_bytes) {
  return row_bytes == 128 ? CU_TENSOR_MAP_SWIZZLE_128B
         : row_bytes == 64 ? CU_TENSOR_MAP_SWIZZLE_64B
                           : CU_TENSOR_MAP_SWIZZLE_32B;
}

// A tiled tensor map of `rank` dimensions (innermost first; strides in bytes
// of dimensions 1 and up; boxes of `box`, every step[i]-th element), in
// `swizzle`, positions outside the tensor loading as zeros.  False where there
// is no encoder or it refuses (addresses and strides must be 16-byte
// multiples).
inline bool encode_tiled(CUtensorMap& map, ScalarKind dtype, const void* base, int rank,
                         const cuuint64_t* dim, const cuuint64_t* stride_bytes,
                         const cuuint32_t* box, const cuuint32_t* step, CUtensorMapSwizzle swizzle) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  return encode != nullptr &&
         encode(&map, tensor_map_type(dtype), cuuint32_t(rank), const_cast<void*>(base), dim,
                stride_bytes, box, step, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) ==
             CUDA_SUCCESS;
}

// A channels-last tensor ([N][D][H][W][channels], element strides n, d, h,
// w) as a 5-D tensor map whose boxes are box_channels channels × box[a]
// positions' span per axis (d, h, w), every element_stride[a]-th position
// loaded (TMA's traversal strides), in `swizzle`; positions outside the
// tensor load as zeros.  fp32, fp16 or bf16.  False where there is no encoder or it refuses
// (addresses and strides must be 16-byte multiples).
inline bool encode_channels_last_box(CUtensorMap& map, ScalarKind dtype, const void* base,
                                     int64_t channels, int64_t batch, const int64_t (&extent)[3],
                                     const int64_t (&strides)[4], int64_t box_channels,
                                     const int64_t (&box)[3], const int64_t (&element_stride)[3],
                                     CUtensorMapSwizzle swizzle) {
  const int64_t element = dtype == ScalarKind::Float32 ? 4 : 2;
  const cuuint64_t dim[5] = {cuuint64_t(channels), cuuint64_t(extent[2]), cuuint64_t(extent[1]),
                             cuuint64_t(extent[0]), cuuint64_t(batch)};
  const cuuint64_t stride[4] = {cuuint64_t(strides[3] * element), cuuint64_t(strides[2] * element),
                                cuuint64_t(strides[1] * element), cuuint64_t(strides[0] * element)};
  const cuuint32_t box_dim[5] = {cuuint32_t(box_channels), cuuint32_t(box[2]), cuuint32_t(box[1]),
                                 cuuint32_t(box[0]), 1};
  const cuuint32_t step[5] = {1, cuuint32_t(element_stride[2]), cuuint32_t(element_stride[1]),
                              cuuint32_t(element_stride[0]), 1};
  return encode_tiled(map, dtype, base, 5, dim, stride, box_dim, step, swizzle);
}

// The row tiles' boxes: 2^log_box positions a side, each element_stride apart.
inline bool encode_channels_last_boxes(CUtensorMap& map, ScalarKind dtype, const void* base,
                                       int64_t channels, int64_t batch,
                                       const int64_t (&extent)[3], const int64_t (&strides)[4],
                                       int64_t box_channels, const int (&log_box)[3],
                                       const int64_t (&element_stride)[3],
                                       CUtensorMapSwizzle swizzle) {
  int64_t box[3];
  for (int a = 0; a < 3; ++a) box[a] = (int64_t(1) << log_box[a]) * element_stride[a];
  return encode_channels_last_box(map, dtype, base, channels, batch, extent, strides, box_channels,
                                  box, element_stride, swizzle);
}

}  // namespace tconv3d::cuda
