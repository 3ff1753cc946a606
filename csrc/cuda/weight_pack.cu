#include "weight_pack.h"

#include <algorithm>
#include <cstdint>

#include "mma_sm80.cuh"

namespace tconv3d::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTileElements = 2048;  // a tile: kK channels × kT taps of one (group, column)

// A tile's shape: taps a tile (a power of two up to 32, the taps of a
// weight's row being contiguous in a contiguous weight) and channels a tile.
struct PackTile {
  int log_taps, channels;
  int64_t channel_tiles, tap_tiles;
};

// The packed weight's K side (channels) is contiguous, a contiguous weight's
// taps are: [Cin][Cout/G][taps], so the forward's channels (Cin) stride by
// Cout/G·taps and grad-input's (Cout/G) by taps.  Each block transposes one
// (group, column)'s channels × taps tile through shared memory, reading
// along the taps and writing along the channels, both coalesced.  Packed
// element by element, every read was a sector of its own (27 us for the
// 512→256 bottleneck's 7 MB weight, H200).
template <typename Bits>
__global__ void __launch_bounds__(kThreads) pack_weight_kernel(const WeightPackGeometry w,
                                                               const PackTile tile, Bits* dst) {
  __shared__ uint32_t staged[2 * kTileElements];  // rows padded by one word: at most 2x
  const Bits* src = static_cast<const Bits*>(w.weight);
  const int tap_count = 1 << tile.log_taps, kk_count = tile.channels;
  const int64_t taps = w.kernel[0] * w.kernel[1] * w.kernel[2];
  const int64_t tiles = w.groups * w.columns * tile.channel_tiles * tile.tap_tiles;
  for (int64_t b = blockIdx.x; b < tiles; b += gridDim.x) {
    int64_t rest = b;
    const int64_t tap0 = rest % tile.tap_tiles * tap_count;
    rest /= tile.tap_tiles;
    const int64_t k0 = rest % tile.channel_tiles * kk_count;
    rest /= tile.channel_tiles;
    const int64_t column = rest % w.columns, g = rest / w.columns;
    const Bits* base = src + g * w.group_stride + column * w.column_stride;
    for (int i = threadIdx.x; i < kk_count * tap_count; i += kThreads) {
      const int tt = i & (tap_count - 1), kk = i >> tile.log_taps;
      const int64_t t = tap0 + tt, k = k0 + kk;
      if (t < taps && k < w.channels) {
        const int64_t kw = t % w.kernel[2], kh = t / w.kernel[2] % w.kernel[1],
                      kd = t / (w.kernel[2] * w.kernel[1]);
        staged[kk * (tap_count + 1) + tt] = uint32_t(
            base[k * w.channel_stride + kd * w.tap_stride[0] + kh * w.tap_stride[1] + kw * w.tap_stride[2]]);
      }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < kk_count * tap_count; i += kThreads) {
      const int kk = i % kk_count, tt = i / kk_count;
      const int64_t t = tap0 + tt, k = k0 + kk;
      if (t < taps && k < w.padded) {
        Bits value = k < w.channels ? Bits(staged[kk * (tap_count + 1) + tt]) : Bits(0);
        if constexpr (sizeof(Bits) == 4) value = to_tf32(value);  // weight_pack.h
        dst[((g * taps + t) * w.columns + column) * w.padded + k] = value;
      }
    }
    __syncthreads();
  }
}

}  // namespace

cudaError_t launch_pack_weight(const WeightPackGeometry& w, int element_bytes, void* dst,
                               cudaStream_t stream) {
  const int64_t taps = w.kernel[0] * w.kernel[1] * w.kernel[2];
  const int64_t total = w.groups * taps * w.columns * w.padded;
  if (total == 0) return cudaSuccess;
  PackTile tile{0, 0, 0, 0};
  while (tile.log_taps < 5 && (int64_t(1) << tile.log_taps) < taps) ++tile.log_taps;
  tile.channels = kTileElements >> tile.log_taps;
  while (tile.channels > 32 && tile.channels / 2 >= w.padded) tile.channels /= 2;
  tile.channel_tiles = (w.padded + tile.channels - 1) / tile.channels;
  tile.tap_tiles = (taps + (1 << tile.log_taps) - 1) >> tile.log_taps;
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
