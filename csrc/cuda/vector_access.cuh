// Elements moved together: N values of a storage type as one aligned load or
// store (16 or 8 bytes where N makes them, else one element).
#pragma once

#include <cuda_runtime.h>

namespace tconv3d::cuda {

template <typename scalar_t, int N>
struct alignas(sizeof(scalar_t) * N) Vec {
  scalar_t v[N];
};

// N elements at p, read-only for the kernel's lifetime: one 16- or 8-byte
// load (p aligned to it), or the element itself.
template <typename scalar_t, int N>
__device__ __forceinline__ Vec<scalar_t, N> load_vec(const scalar_t* p) {
  if constexpr (N == 1) {
    return {{p[0]}};
  } else if constexpr (sizeof(Vec<scalar_t, N>) == 8) {
    const uint2 raw = __ldg(reinterpret_cast<const uint2*>(p));
    return *reinterpret_cast<const Vec<scalar_t, N>*>(&raw);
  } else {
    static_assert(sizeof(Vec<scalar_t, N>) == 16);
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    return *reinterpret_cast<const Vec<scalar_t, N>*>(&raw);
  }
}

}  // namespace tconv3d::cuda
