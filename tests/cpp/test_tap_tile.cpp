// tap_tile: the tile of the grad-weight combine's shared-memory transpose.
// The kernel stages 2^11 elements at most, rows of taps padded by one word
// (2 << 11 words of shared memory), computes a tile's tap offsets on at most
// 32 threads, and walks tiles of exactly the counts the tile reports.
// combine_log_lanes: how many threads add one element's planes.
#include <gtest/gtest.h>

#include <cstdint>

#include "cuda/tap_tile.h"

namespace tconv3d::cuda {
namespace {

TEST(TapTile, FitsTheStagingBufferAndCoversEveryTapAndChannelOnce) {
  const int64_t taps_list[] = {1, 2, 3, 8, 9, 27, 32, 33, 64, 105, 125, 343};
  const int64_t channels_list[] = {1, 3, 8, 16, 31, 32, 33, 64, 100, 256, 512, 4096, 65536};
  const int64_t rows_list[] = {1, 3, 64, 512, 4096};
  for (int64_t taps : taps_list) {
    for (int64_t channels : channels_list) {
      for (int64_t rows : rows_list) {
        const TapTile t = tap_tile(taps, channels, rows);
        const int64_t tap_count = int64_t(1) << t.log_taps;
        const int64_t channel_count = int64_t(1) << t.log_channels;
        SCOPED_TRACE(testing::Message() << "taps " << taps << " channels " << channels << " rows "
                                        << rows);
        EXPECT_LE(tap_count, 32);
        EXPECT_LE(tap_count * channel_count, int64_t(1) << kLogTapTileElements);
        EXPECT_LE(channel_count * (tap_count + 1), int64_t(2) << kLogTapTileElements);
        EXPECT_GE(t.log_channels, 3);  // 32-byte runs of fp32 partials: whole sectors
        // The tiles cover the taps and channels, none wholly past the end.
        EXPECT_GE(t.tap_tiles * tap_count, taps);
        EXPECT_LT((t.tap_tiles - 1) * tap_count, taps);
        EXPECT_GE(t.channel_tiles * channel_count, channels);
        EXPECT_LT((t.channel_tiles - 1) * channel_count, channels);
        // Narrower than the widest tile only to reach kCombineBlocks blocks.
        const TapTile widest = tap_tile(taps, channels, int64_t(1) << 40);
        if (t.log_channels < widest.log_channels || t.log_taps < widest.log_taps) {
          EXPECT_LE(rows * widest.channel_tiles * widest.tap_tiles, kCombineBlocks);
        }
      }
    }
  }
}

TEST(TapTile, TakesAllOfARowsTapsUpTo32AndNoWiderTileThanTheChannels) {
  const int64_t many = 4096;  // input channels enough for kCombineBlocks blocks of any tile
  EXPECT_EQ(tap_tile(27, 512, many).log_taps, 5);  // 3×3×3: one tap tile
  EXPECT_EQ(tap_tile(27, 512, many).log_channels, 6);
  EXPECT_EQ(tap_tile(27, 512, many).tap_tiles, 1);
  EXPECT_EQ(tap_tile(8, 64, many).log_taps, 3);  // k2s2: 8 taps, the 64 channels in one tile
  EXPECT_EQ(tap_tile(8, 64, many).log_channels, 6);
  EXPECT_EQ(tap_tile(8, 64, many).channel_tiles, 1);
  EXPECT_EQ(tap_tile(1, 4096, many).log_channels, 11);  // 1×1×1: all 2^11 elements along the channels
  EXPECT_EQ(tap_tile(125, 16, many).tap_tiles, 4);  // 5×5×5: four tap tiles
  EXPECT_EQ(tap_tile(125, 16, many).log_channels, 5);
}

TEST(TapTile, NarrowsChannelsThenTapsForFewInputChannels) {
  // The 512 -> 256 bottleneck: 512 × 4 tiles already.
  EXPECT_EQ(tap_tile(27, 256, 512).log_channels, 6);
  EXPECT_EQ(tap_tile(27, 256, 512).log_taps, 5);
  // U-Net k2s2 64 -> 32: 64 tiles of 8 × 32, 256 of 8 × 8, then 512 of 4 × 8.
  const TapTile unet = tap_tile(8, 32, 64);
  EXPECT_EQ(unet.log_channels, 3);
  EXPECT_EQ(unet.log_taps, 2);
  EXPECT_EQ(64 * unet.channel_tiles * unet.tap_tiles, 512);
  // 128 -> 64: 128 tiles of 8 × 64, then 512 of 8 × 16.
  EXPECT_EQ(tap_tile(8, 64, 128).log_channels, 4);
  EXPECT_EQ(tap_tile(8, 64, 128).log_taps, 3);
  // 64 -> 3, k3: channels at their narrowest, then 7 tiles of 4 taps.
  const TapTile rgb = tap_tile(27, 3, 64);
  EXPECT_EQ(rgb.log_channels, 3);
  EXPECT_EQ(rgb.log_taps, 2);
  EXPECT_EQ(rgb.tap_tiles, 7);
}

TEST(CombineLanes, LeaveEachLaneAtLeastFourPlanesUpToABlock) {
  const int64_t few = 1;  // items: lanes limited by the planes alone
  EXPECT_EQ(combine_log_lanes(1, few), 0);
  EXPECT_EQ(combine_log_lanes(7, few), 0);
  EXPECT_EQ(combine_log_lanes(8, few), 1);
  EXPECT_EQ(combine_log_lanes(35, few), 3);    // 8 lanes of 4-5 planes
  EXPECT_EQ(combine_log_lanes(512, few), 7);   // four warps, their sums through shared memory
  EXPECT_EQ(combine_log_lanes(65535, few), kLogMaxCombineLanes);
  for (int64_t splits = 1; splits < 5000; ++splits) {
    const int64_t lanes = int64_t(1) << combine_log_lanes(splits, few);
    EXPECT_TRUE(lanes == 1 || 4 * lanes <= splits) << splits;
    EXPECT_TRUE(lanes == (int64_t(1) << kLogMaxCombineLanes) || 8 * lanes > splits) << splits;
  }
  // combine_partials_kernel's cap: a warp keeps 32 consecutive elements of a plane.
  EXPECT_EQ(combine_log_lanes(38, few, kLogMaxPartialLanes), 3);
  EXPECT_EQ(combine_log_lanes(12, few, kLogMaxPartialLanes), 1);
  EXPECT_EQ(combine_log_lanes(65535, few, kLogMaxPartialLanes), kLogMaxPartialLanes);
}

TEST(CombineLanes, StopAtTheThreadsTheGpuNeeds) {
  // U-Net k2s2 64 -> 32, bf16 Hopper grad-weight: 132 planes of 4096 vectors: 32 lanes.
  EXPECT_EQ(combine_log_lanes(132, 4096), 5);
  // Its NCDHW tap blocks: 132 planes of 16384 elements, at most 8 lanes.
  EXPECT_EQ(combine_log_lanes(132, 16384, kLogMaxPartialLanes), 3);
  // The 256-channel U-Net tap blocks: 17 and 9 planes of 262144 and 524288 elements: one lane.
  EXPECT_EQ(combine_log_lanes(17, 262144, kLogMaxPartialLanes), 0);
  EXPECT_EQ(combine_log_lanes(9, 524288, kLogMaxPartialLanes), 0);
  for (int64_t items : {int64_t(1), int64_t(5184), int64_t(65536), int64_t(1) << 20}) {
    for (int64_t splits : {int64_t(8), int64_t(132), int64_t(4096)}) {
      const int log_lanes = combine_log_lanes(splits, items);
      EXPECT_TRUE(log_lanes == 0 || (items << (log_lanes - 1)) < kCombineThreads)
          << items << " " << splits;
    }
  }
}

}  // namespace
}  // namespace tconv3d::cuda
