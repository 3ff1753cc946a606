// Fixed-order reductions: a block sum and a warp reduce-scatter whose trees
// do not depend on timing, and the pass that adds per-split partial sums in
// split order.
#pragma once

#include <climits>
#include <cstdint>

#include "../direct_gather.h"
#include "dispatch.cuh"
#include "tap_tile.h"

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

// result[e] = Σ_s partial[s · numel + e] for e over a dense 5-D result of
// logical sizes (n0, c, d, h, w) and strides `dst`.  Each element's planes
// are added by 2^log_lanes threads (combine_log_lanes, tap_tile.h), lane l
// every lanes-th plane from l in order, kCombineChunk of them at a time and
// then the chunks (the error grows with chunk + planes / chunk, not with
// thousands of planes in a row); then the lanes' sums in lane order through
// shared memory.  The order is set by the shape alone: bitwise
// reproducible.  A block's threads take consecutive elements first, so each
// plane's loads coalesce whatever the lanes.  Indices are 32-bit: the
// callers' partials hold at most kMaxPartials (2^24) sums.
constexpr int kCombineChunk = 32;
constexpr int kLogThreads = 8;
static_assert(kThreads == 1 << kLogThreads, "lanes split the block by shifts");

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    combine_partials_kernel(const acc_t<scalar_t>* __restrict__ partial, int splits, int numel,
                            int C, int D, int H, int W, Strides5 dst, int log_lanes,
                            scalar_t* __restrict__ result) {
  using acc = acc_t<scalar_t>;
  __shared__ acc lane_sums[kThreads];
  const int lanes = 1 << log_lanes, per_pass = kThreads >> log_lanes;
  const int slot = int(threadIdx.x) & (per_pass - 1), lane = int(threadIdx.x) >> (kLogThreads - log_lanes);
  // Block-uniform trip count: every thread reaches the barriers.
  for (int e0 = int(blockIdx.x) * per_pass; e0 < numel; e0 += int(gridDim.x) * per_pass) {
    const int e = e0 + slot;
    acc sum = 0;
    if (e < numel) {
      const acc* from = partial + e;
      for (int s0 = lane; s0 < splits; s0 += kCombineChunk * lanes) {
        const int s1 = s0 + kCombineChunk * lanes < splits ? s0 + kCombineChunk * lanes : splits;
        acc chunk = 0;
        int s = s0;
        for (; s + 3 * lanes < s1; s += 4 * lanes) {
          const acc a = from[int64_t(s) * numel], b = from[int64_t(s + lanes) * numel];
          const acc c = from[int64_t(s + 2 * lanes) * numel], d = from[int64_t(s + 3 * lanes) * numel];
          chunk = chunk + a + b + c + d;
        }
        for (; s < s1; s += lanes) chunk += from[int64_t(s) * numel];
        sum += chunk;
      }
    }
    if (log_lanes > 0) {
      lane_sums[threadIdx.x] = sum;
      __syncthreads();
      if (lane == 0) {
        for (int l = 1; l < lanes; ++l) sum += lane_sums[l * per_pass + slot];
      }
      __syncthreads();
    }
    if (lane == 0 && e < numel) {
      const Index5 idx = unflatten<int>(e, C, D, H, W);
      result[offset_of<int64_t>(dst, idx)] = from_acc<scalar_t>(sum);
    }
  }
}

// combine_partials_kernel over `splits` planes of `numel` sums on `stream`;
// cudaErrorInvalidConfiguration past its 32-bit indices (no caller's
// workspace comes near).
template <typename scalar_t>
cudaError_t launch_combine_partials(const acc_t<scalar_t>* partial, int64_t splits, int64_t numel,
                                    int64_t C, int64_t D, int64_t H, int64_t W, Strides5 dst,
                                    scalar_t* result, cudaStream_t stream) {
  if (numel <= 0) return cudaSuccess;
  if (splits * numel > int64_t(INT32_MAX)) return cudaErrorInvalidConfiguration;
  const int log_lanes = combine_log_lanes(splits, numel, kLogMaxPartialLanes);
  combine_partials_kernel<scalar_t><<<grid_for(numel << log_lanes), kThreads, 0, stream>>>(
      partial, int(splits), int(numel), int(C), int(D), int(H), int(W), dst, log_lanes, result);
  return cudaGetLastError();
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
