#include "weight_pack.h"

#include <algorithm>
#include <cstdint>

#include "mma_sm80.cuh"
#include "tap_tile.h"

namespace tconv3d::cuda {
namespace {

constexpr int kThreads = 256;

// The packed weight's K side (channels) is contiguous, a contiguous weight's
// taps are: [Cin][Cout/G][taps], so the forward's channels (Cin) stride by
// Cout/G·taps and grad-input's (Cout/G) by taps.  Each block transposes one
// (group, column)'s channels × taps tile through shared memory, reading
// along the taps and writing along the channels, both coalesced, its taps
// decoded once.  On the 512→256 bottleneck's 7 MB weight (H200) this takes
// 25-29 us, bound in L2 (ncu: 67 % busy, 90 % hits, DRAM 5 %; RESULTS.md,
// "Pack, combine and small-grid round"), as the element-by-element pack
// before it did (27 us, bound by its 64-bit tap decoding).
template <typename Bits>
__global__ void __launch_bounds__(kThreads) pack_weight_kernel(const WeightPackGeometry w,
                                                               const TapTile tile, Bits* dst) {
  __shared__ uint32_t staged[2 << kLogTapTileElements];  // rows padded by one word: at most 2x
  __shared__ int64_t tap_offset[32];
  const Bits* src = static_cast<const Bits*>(w.weight);
  const int tap_count = 1 << tile.log_taps, channel_mask = (1 << tile.log_channels) - 1;
  const int count = tap_count << tile.log_channels;
  const int kw_count = int(w.kernel[2]), kh_count = int(w.kernel[1]);
  const int taps = int(w.kernel[0]) * kh_count * kw_count;
  const int64_t tap_step = w.columns * w.padded;
  const int64_t tiles = w.groups * w.columns * tile.channel_tiles * tile.tap_tiles;
  for (int64_t b = blockIdx.x; b < tiles; b += gridDim.x) {
    const int tap0 = int(b % tile.tap_tiles) * tap_count;
    int64_t rest = b / tile.tap_tiles;
    const int64_t k0 = (rest % tile.channel_tiles) << tile.log_channels;
    rest /= tile.channel_tiles;
    const int64_t column = rest % w.columns, g = rest / w.columns;
    if (int(threadIdx.x) < tap_count) {
      const int t = tap0 + int(threadIdx.x);
      const int kw = t % kw_count, kh = t / kw_count % kh_count, kd = t / (kw_count * kh_count);
      tap_offset[threadIdx.x] = kd * w.tap_stride[0] + kh * w.tap_stride[1] + kw * w.tap_stride[2];
    }
    __syncthreads();
    const Bits* from = src + g * w.group_stride + column * w.column_stride + k0 * w.channel_stride;
    for (int i = threadIdx.x; i < count; i += kThreads) {
      const int tt = i & (tap_count - 1), kk = i >> tile.log_taps;
      if (tap0 + tt < taps && k0 + kk < w.channels) {
        staged[kk * (tap_count + 1) + tt] = uint32_t(from[kk * w.channel_stride + tap_offset[tt]]);
      }
    }
    __syncthreads();
    Bits* to = dst + ((g * taps + tap0) * w.columns + column) * w.padded + k0;
    for (int i = threadIdx.x; i < count; i += kThreads) {
      const int kk = i & channel_mask, tt = i >> tile.log_channels;
      if (tap0 + tt < taps && k0 + kk < w.padded) {
        Bits value = k0 + kk < w.channels ? Bits(staged[kk * (tap_count + 1) + tt]) : Bits(0);
        if constexpr (sizeof(Bits) == 4) value = to_tf32(value);  // weight_pack.h
        to[tt * tap_step + kk] = value;
      }
    }
    __syncthreads();
  }
}

}  // namespace

cudaError_t launch_pack_weight(const WeightPackGeometry& w, int element_bytes, void* dst,
                               cudaStream_t stream) {
  const int64_t taps = w.kernel[0] * w.kernel[1] * w.kernel[2];
  if (w.groups * taps * w.columns * w.padded == 0) return cudaSuccess;
  const TapTile tile = tap_tile(taps, w.padded);
  const int64_t tiles = w.groups * w.columns * tile.channel_tiles * tile.tap_tiles;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(tiles, 8192));
  if (element_bytes == 2) {
    pack_weight_kernel<uint16_t><<<blocks, kThreads, 0, stream>>>(w, tile, static_cast<uint16_t*>(dst));
  } else if (element_bytes == 4) {
    pack_weight_kernel<uint32_t><<<blocks, kThreads, 0, stream>>>(w, tile, static_cast<uint32_t*>(dst));
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace tconv3d::cuda
