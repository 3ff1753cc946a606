// Conversions between storage types and accumulator types.  The CPU build sees
// c10's Half/BFloat16, the CUDA build cuda_fp16/cuda_bf16 (torch compiles CUDA
// with the implicit half conversions disabled, hence explicit intrinsics).
#pragma once

#include "index_math.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#else
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#endif

namespace tconv3d {

// fp32 accumulation for every storage type but fp64.
template <typename scalar_t>
struct AccumulatorOf {
  using type = float;
};
template <>
struct AccumulatorOf<double> {
  using type = double;
};
template <typename scalar_t>
using acc_t = typename AccumulatorOf<scalar_t>::type;

TCONV3D_HOST_DEVICE float to_acc(float v) { return v; }
TCONV3D_HOST_DEVICE double to_acc(double v) { return v; }

template <typename scalar_t>
TCONV3D_HOST_DEVICE scalar_t from_acc(acc_t<scalar_t> v) {
  return static_cast<scalar_t>(v);
}

#if defined(__CUDACC__)
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
#else
inline float to_acc(c10::Half v) { return static_cast<float>(v); }
inline float to_acc(c10::BFloat16 v) { return static_cast<float>(v); }
#endif

}  // namespace tconv3d
