// Elements moved together: N values of a storage type as one aligned load or
// store (16 or 8 bytes where N makes them, else one element), and a pair of
// 16-bit values as one word.
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

// Two fp16/bf16 values as one 32-bit word, the first in the low half (their
// order in memory): the word the epilogues' quad transposes move
// (quad_transpose.h).
template <typename scalar_t>
__device__ __forceinline__ uint32_t pack_pair(scalar_t x, scalar_t y) {
  static_assert(sizeof(scalar_t) == 2, "fp16/bf16 only");
  uint16_t a, b;
  memcpy(&a, &x, 2);
  memcpy(&b, &y, 2);
  return uint32_t(a) | uint32_t(b) << 16;
}

// Four words to global memory at p (16-byte aligned) in one 16-byte store.
// Where the compiler builds uint4's fields apart (after a quad transpose's
// selects), a plain `*reinterpret_cast<uint4*>(p) = v` came out as four
// 4-byte stores in some instances (the Hopper grad-weight's 32-co copies).
__device__ __forceinline__ void store_global_16(void* p, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"l"(p), "r"(a), "r"(b), "r"(c), "r"(d)
               : "memory");
}

}  // namespace tconv3d::cuda
