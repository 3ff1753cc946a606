// tap_tile: the tile of the weight pack's and the grad-weight combine's
// shared-memory transposes.  The kernels stage 2^11 elements at most, rows of
// taps padded by one word (2 << 11 words of shared memory), read a tile's
// taps along one row of at most 32 lanes, and walk tiles of exactly the
// counts the tile reports.
#include <gtest/gtest.h>

#include <cstdint>

#include "cuda/tap_tile.h"

namespace tconv3d::cuda {
namespace {

TEST(TapTile, FitsTheStagingBufferAndCoversEveryTapAndChannelOnce) {
  const int64_t taps_list[] = {1, 2, 3, 8, 9, 27, 32, 33, 64, 105, 125, 343};
  const int64_t channels_list[] = {1, 3, 8, 16, 31, 32, 33, 64, 100, 256, 512, 4096, 65536};
  for (int64_t taps : taps_list) {
    for (int64_t channels : channels_list) {
      const TapTile t = tap_tile(taps, channels);
      const int64_t tap_count = int64_t(1) << t.log_taps, channel_count = int64_t(1) << t.log_channels;
      SCOPED_TRACE(testing::Message() << "taps " << taps << " channels " << channels);
      EXPECT_LE(tap_count, 32);
      EXPECT_LE(tap_count * channel_count, int64_t(1) << kLogTapTileElements);
      EXPECT_LE(channel_count * (tap_count + 1), int64_t(2) << kLogTapTileElements);
      EXPECT_GE(t.log_channels, 5);  // writes of at least a 32-lane row
      // The tiles cover the taps and channels, none wholly past the end.
      EXPECT_GE(t.tap_tiles * tap_count, taps);
      EXPECT_LT((t.tap_tiles - 1) * tap_count, taps);
      EXPECT_GE(t.channel_tiles * channel_count, channels);
      EXPECT_LT((t.channel_tiles - 1) * channel_count, channels);
    }
  }
}

TEST(TapTile, TakesAllOfARowsTapsUpTo32AndNoWiderTileThanTheChannels) {
  EXPECT_EQ(tap_tile(27, 512).log_taps, 5);    // the 3×3×3 bottleneck: one tap tile
  EXPECT_EQ(tap_tile(27, 512).log_channels, 6);
  EXPECT_EQ(tap_tile(27, 512).tap_tiles, 1);
  EXPECT_EQ(tap_tile(8, 64).log_taps, 3);       // k2s2: 8 taps, the 64 channels in one tile
  EXPECT_EQ(tap_tile(8, 64).log_channels, 6);
  EXPECT_EQ(tap_tile(8, 64).channel_tiles, 1);
  EXPECT_EQ(tap_tile(1, 4096).log_channels, 11);  // 1×1×1: all 2^11 elements along the channels
  EXPECT_EQ(tap_tile(125, 16).tap_tiles, 4);    // 5×5×5: four tap tiles
  EXPECT_EQ(tap_tile(125, 16).log_channels, 5);
}

}  // namespace
}  // namespace tconv3d::cuda
