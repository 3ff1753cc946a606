// Fixed-order reductions: a block sum and a warp reduce-scatter whose trees
// do not depend on timing, and the pass that adds per-split partial sums in
// split order.
#pragma once

#include <cstdint>

#include "../direct_gather.h"
#include "dispatch.cuh"

namespace tconv3d::cuda {

// Sum of v over the block, valid in thread 0.  blockDim.x == kThreads.
template <typename T>
__device__ __forceinline__ T block_sum(T v) {
  __shared__ T warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? warp_sums[lane] : T(0);
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

// The warp's sums of each of v's kN elements, scattered over its lanes: while
// a lane holds an even count, each exchange sends half of its values and
// keeps the half its partner sends; an odd remainder is summed whole (48
// shuffles for 48 values, where a shuffle a value and offset takes 240).
// After h halvings lane l holds elements (l >> (5 − h))·m + j, j < m = kN/2^h,
// the same in each of its 2^(5−h) lanes.  A fixed order: bitwise reproducible.
template <int kN, int kOffset, typename T>
__device__ __forceinline__ void reduce_scatter(T* v, int lane) {
  if constexpr (kOffset > 0) {
    if constexpr (kN % 2 == 0) {
      constexpr int h = kN / 2;
      const bool upper = lane & kOffset;
#pragma unroll
      for (int j = 0; j < h; ++j) {
        const T send = upper ? v[j] : v[j + h];
        const T keep = upper ? v[j + h] : v[j];
        v[j] = keep + __shfl_xor_sync(0xffffffffu, send, kOffset);
      }
      reduce_scatter<h, kOffset / 2>(v, lane);
    } else {
#pragma unroll
      for (int j = 0; j < kN; ++j) v[j] += __shfl_xor_sync(0xffffffffu, v[j], kOffset);
      reduce_scatter<kN, kOffset / 2>(v, lane);
    }
  }
}

// Halvings reduce_scatter makes of kN values: one per factor 2, at most 5.
constexpr int halvings(int n) {
  int h = 0;
  for (; h < 5 && n % 2 == 0; ++h) n /= 2;
  return h;
}

// result[e] = Σ_{s = 0 … splits-1} partial[s · numel + e], in that order, for
// e over a dense 5-D result of logical sizes (n0, c, d, h, w) and strides `dst`;
// added kCombineChunk splits at a time, then the chunks: the error grows with
// chunk + splits / chunk, not with thousands of splits in a row.
constexpr int64_t kCombineChunk = 32;

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    combine_partials_kernel(const acc_t<scalar_t>* __restrict__ partial, int64_t splits,
                            int64_t numel, int64_t C, int64_t D, int64_t H, int64_t W,
                            Strides5 dst, scalar_t* __restrict__ result) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < numel;
       e += int64_t(gridDim.x) * blockDim.x) {
    acc_t<scalar_t> acc = 0;
    for (int64_t s0 = 0; s0 < splits; s0 += kCombineChunk) {
      acc_t<scalar_t> chunk = 0;
      const int64_t s1 = s0 + kCombineChunk < splits ? s0 + kCombineChunk : splits;
      for (int64_t s = s0; s < s1; ++s) chunk += partial[s * numel + e];
      acc += chunk;
    }
    const Index5 idx = unflatten<int64_t>(e, C, D, H, W);
    result[offset_of<int64_t>(dst, idx)] = from_acc<scalar_t>(acc);
  }
}

// Shape-only choice of the number of partial sums per result element: enough
// blocks to fill a large GPU, each with a worthwhile share of the reduction,
// and a workspace of at most kMaxSums accumulators (the generic kernels'
// bound, below launch.h's kMaxPartials).
inline int64_t choose_splits(int64_t numel, int64_t reduction_length) {
  constexpr int64_t kWorkPerBlock = int64_t(1) << 15;
  constexpr int64_t kTargetBlocks = 2048;
  constexpr int64_t kMaxSums = int64_t(1) << 22;
  if (numel <= 0) return 1;
  int64_t splits = (reduction_length + kWorkPerBlock - 1) / kWorkPerBlock;
  const int64_t for_occupancy = (kTargetBlocks + numel - 1) / numel;
  if (splits > for_occupancy) splits = for_occupancy;
  if (splits > kMaxSums / numel) splits = kMaxSums / numel;
  if (splits > 65535) splits = 65535;
  return splits < 1 ? 1 : splits;
}

}  // namespace tconv3d::cuda
