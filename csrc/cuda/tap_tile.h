// The tile of the tap-major grad-weight combine's shared-memory transpose
// (grad_weight_launch.cuh), between a layout with the taps innermost and one
// with channels innermost.  2^11 elements of one input channel: taps a power
// of two up to 32 (a contiguous tensor's taps are contiguous, so the reads
// along them coalesce) by channels a power of two no wider than the channels.
#pragma once

#include <cstdint>

namespace tconv3d::cuda {

constexpr int kLogTapTileElements = 11;

struct TapTile {
  int log_taps, log_channels;
  int64_t channel_tiles, tap_tiles;
};

inline TapTile tap_tile(int64_t taps, int64_t channels) {
  TapTile t{0, 0, 0, 0};
  while (t.log_taps < 5 && (int64_t(1) << t.log_taps) < taps) ++t.log_taps;
  t.log_channels = kLogTapTileElements - t.log_taps;
  while (t.log_channels > 5 && (int64_t(1) << (t.log_channels - 1)) >= channels) --t.log_channels;
  t.channel_tiles = (channels + (int64_t(1) << t.log_channels) - 1) >> t.log_channels;
  t.tap_tiles = (taps + (int64_t(1) << t.log_taps) - 1) >> t.log_taps;
  return t;
}

}  // namespace tconv3d::cuda
