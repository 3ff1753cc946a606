// The grad-weight combines' shapes: the tile of the tap-major combine's
// shared-memory transpose (grad_weight_launch.cuh), between a layout with the
// taps innermost and one with channels innermost, and how many threads add
// each element's planes of partial sums, there and in combine_partials_kernel
// (deterministic_reduce.cuh).
// Host and device-free, so the C++ tests check it without a GPU.
#pragma once

#include <cstdint>

namespace tconv3d::cuda {

constexpr int kLogTapTileElements = 11;
// Blocks the combine aims for: two an SM of a 132-SM GPU.  A constant, not
// the device's count: the lanes, and so the sums' order, depend on the shape.
constexpr int64_t kCombineBlocks = 264;
constexpr int kLogMaxCombineLanes = 8;  // tap-major: a whole 256-thread block on one element
// combine_partials_kernel's threads take consecutive elements first: at most
// 8 lanes, so that a warp still reads 32 consecutive elements of a plane.
constexpr int kLogMaxPartialLanes = 3;

struct TapTile {
  int log_taps, log_channels;
  int64_t channel_tiles, tap_tiles;
};

// 2^11 elements of one input channel at most: taps a power of two up to 32
// (a contiguous gw's taps are contiguous, so the writes along them coalesce)
// by channels a power of two no wider than the channels.  Where `rows` input
// channels of such tiles would leave the GPU with fewer than kCombineBlocks
// blocks (U-Net k2s2: 64 tiles of 8 taps × 32 channels, each element the sum
// of 132 planes), narrower tiles: channels down to 8 (32-byte runs of fp32,
// whole sectors), then taps down to 4.
inline TapTile tap_tile(int64_t taps, int64_t channels, int64_t rows) {
  TapTile t{0, 0, 0, 0};
  while (t.log_taps < 5 && (int64_t(1) << t.log_taps) < taps) ++t.log_taps;
  t.log_channels = kLogTapTileElements - t.log_taps;
  while (t.log_channels > 5 && (int64_t(1) << (t.log_channels - 1)) >= channels) --t.log_channels;
  const auto count = [&] {
    t.channel_tiles = (channels + (int64_t(1) << t.log_channels) - 1) >> t.log_channels;
    t.tap_tiles = (taps + (int64_t(1) << t.log_taps) - 1) >> t.log_taps;
    return rows * t.channel_tiles * t.tap_tiles;
  };
  while (count() < kCombineBlocks && t.log_channels > 3) --t.log_channels;
  while (count() < kCombineBlocks && t.log_taps > 2) --t.log_taps;
  return t;
}

// Threads a combine aims for (about half of what 132 SMs hold): past them,
// more lanes only add barriers and shuffles.  A constant, not the device's.
constexpr int64_t kCombineThreads = int64_t(1) << 17;

// log2 of the threads that add each of `items` elements' (or vectors')
// `splits` planes, each lane every lanes-th plane in order, then combined in
// a fixed order: the most, up to 2^max_log_lanes, that leaves each lane at
// least four planes (one round of independent loads), stopping once
// items × lanes reaches kCombineThreads.  One thread adding 132 planes one
// after another held the U-Net k2s2 grad-weight's combine at 17.6 us for
// 8.6 MB (H200); four lanes on the 256-channel layers' 262144 elements
// slowed their combine from 5.2 to 8.1 us.
inline int combine_log_lanes(int64_t splits, int64_t items,
                             int max_log_lanes = kLogMaxCombineLanes) {
  int log_lanes = 0;
  while (log_lanes < max_log_lanes && (int64_t(4) << (log_lanes + 1)) <= splits &&
         (items << log_lanes) < kCombineThreads) {
    ++log_lanes;
  }
  return log_lanes;
}

}  // namespace tconv3d::cuda
