// The Hopper tap-columns forward's launch (cuda/forward_tap_columns_sm90_plan.h):
// which operands it takes, and that its grid covers every column tile once
// with the CTAs an SM and column tiles a CTA its cost rule picks.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "conv_shape.h"
#include "cuda/forward_tap_columns_sm90_plan.h"

namespace tconv3d::cuda::tapcol90 {
namespace {

using plan_tests::params_of;
using plan_tests::Shape;

constexpr int kSms = 132;
constexpr int kSmemPerSm = 228 * 1024;  // an H100/H200 SM

// Kernel == stride, channels-last x and y, fp16/bf16 (or, element_bytes 4,
// TF32) operands as the op layer hands them over: x dense, channels padded to
// 16-byte pieces.
Shape unet(int64_t batch, int64_t cin, int64_t cout, int64_t groups, int64_t side, int64_t k = 2) {
  return {batch, cin, cout, groups, {side, side, side}, {k, k, k}, {k, k, k}, {0, 0, 0}, {1, 1, 1}};
}

Operands operands_of(const ConvTranspose3dParams& p, int element_bytes = 2) {
  const int64_t vec = 16 / element_bytes;
  const int64_t padded = (p.in_per_group + vec - 1) / vec * vec, c = padded * p.groups;
  const int64_t w = c, h = p.axis[2].in * w, d = p.axis[1].in * h, n = p.axis[0].in * d;
  return {element_bytes, padded, p.out_per_group, n, d, h, w, 1, true};
}

TEST(ForwardTapColumnsSm90Plan, UnetAt256ChannelsRunsOneCtaAnSmOfEightColumnTiles) {
  const ConvTranspose3dParams p = params_of(unet(2, 256, 128, 1, 16), true);
  Plan pl{};
  ASSERT_TRUE(plan(p, operands_of(p), kSms, kSmemPerSm, 0, pl));
  EXPECT_EQ(pl.rows, 2 * 16 * 16 * 16);
  EXPECT_EQ(pl.m_tiles, 64);
  EXPECT_EQ(pl.col_count, 8 * 128);
  EXPECT_EQ(pl.chunks, 4);
  EXPECT_EQ(pl.cols, 64);
  EXPECT_EQ(pl.col_tiles, 16);
  EXPECT_EQ(pl.smem, 4 * (kChunkABytes + 4 * 64 * kChunkBytes) + kAlignSlack);
  EXPECT_EQ(pl.ctas_per_sm, 1);
  // 128 CTAs of 8 tiles: one wave; 64 of 16 cost more tiles a CTA, 192 of 6
  // two waves.
  EXPECT_EQ(pl.tiles_per_block, 8);
  EXPECT_EQ(pl.column_chunks, 2);

  // The hook's 128-column tiles: half the tiles, two stages of them, the
  // same shared memory.
  ASSERT_TRUE(plan(p, operands_of(p), kSms, kSmemPerSm, 128, pl));
  EXPECT_EQ(pl.cols, 128);
  EXPECT_EQ(pl.col_tiles, 8);
  EXPECT_EQ(pl.smem, 4 * (kChunkABytes + 2 * 128 * kChunkBytes) + kAlignSlack);
  EXPECT_EQ(pl.ctas_per_sm, 1);
  EXPECT_EQ(pl.tiles_per_block, 4);
  EXPECT_EQ(pl.column_chunks, 2);
}

TEST(ForwardTapColumnsSm90Plan, WideTilesByTheHookInSixteenBitsOnly) {
  Plan pl{};
  const ConvTranspose3dParams two = params_of(unet(2, 128, 64, 1, 8), true);
  ASSERT_TRUE(plan(two, operands_of(two), kSms, kSmemPerSm, 0, pl));
  EXPECT_EQ(pl.chunks, 2);
  EXPECT_EQ(pl.cols, 64);
  EXPECT_EQ(pl.ctas_per_sm, 2);
  ASSERT_TRUE(plan(two, operands_of(two), kSms, kSmemPerSm, 128, pl));
  EXPECT_EQ(pl.cols, 128);
  EXPECT_EQ(pl.ctas_per_sm, 1);  // 128 accumulators a thread: one CTA's registers
  ASSERT_TRUE(plan(two, operands_of(two), kSms, kSmemPerSm, 64, pl));
  EXPECT_EQ(pl.cols, 64);

  // TF32: 128 channels are four chunks, on 64-column tiles whatever the hook.
  const ConvTranspose3dParams tf32 = params_of(unet(2, 128, 64, 1, 8), true);
  for (const int columns : {0, 64, 128}) {
    ASSERT_TRUE(plan(tf32, operands_of(tf32, 4), kSms, kSmemPerSm, columns, pl));
    EXPECT_EQ(pl.chunks, 4);
    EXPECT_EQ(pl.cols, 64);
  }
}

TEST(ForwardTapColumnsSm90Plan, SlimTilesTakeKToOneKilobyte) {
  Plan pl{};
  // TF32 256 channels, fp16/bf16 512: beyond four chunks, so only the hook's
  // 32-column tiles take them.
  const ConvTranspose3dParams tf32 = params_of(unet(2, 256, 128, 1, 16), true);
  const ConvTranspose3dParams bf16 = params_of(unet(1, 512, 256, 1, 8), true);
  for (const int columns : {0, 64, 128}) {
    EXPECT_FALSE(plan(tf32, operands_of(tf32, 4), kSms, kSmemPerSm, columns, pl));
    EXPECT_FALSE(plan(bf16, operands_of(bf16), kSms, kSmemPerSm, columns, pl));
  }
  ASSERT_TRUE(plan(tf32, operands_of(tf32, 4), kSms, kSmemPerSm, 32, pl));
  EXPECT_EQ(pl.cols, 32);
  EXPECT_EQ(pl.chunks, 8);
  EXPECT_EQ(pl.col_tiles, 8 * 128 / 32);
  // x's 128 KB and three stages of 32 KB: within the 227 KB a CTA may take
  // beside its static shared memory (under 1 KB at 32 columns).
  EXPECT_EQ(pl.smem, 8 * (kChunkABytes + 3 * 32 * kChunkBytes) + kAlignSlack);
  EXPECT_LE(pl.smem + 1024, 227 * 1024);
  EXPECT_EQ(pl.ctas_per_sm, 1);
  ASSERT_TRUE(plan(bf16, operands_of(bf16), kSms, kSmemPerSm, 32, pl));
  EXPECT_EQ(pl.chunks, 8);

  const ConvTranspose3dParams tf32_too_wide = params_of(unet(1, 260, 16, 1, 4), true);
  EXPECT_FALSE(plan(tf32_too_wide, operands_of(tf32_too_wide, 4), kSms, kSmemPerSm, 32, pl));
  const ConvTranspose3dParams bf16_too_wide = params_of(unet(1, 520, 16, 1, 4), true);
  EXPECT_FALSE(plan(bf16_too_wide, operands_of(bf16_too_wide), kSms, kSmemPerSm, 32, pl));

  // Few chunks on 32-column tiles: two CTAs an SM where shared memory holds two.
  const ConvTranspose3dParams narrow = params_of(unet(2, 64, 32, 1, 8), true);
  ASSERT_TRUE(plan(narrow, operands_of(narrow), kSms, kSmemPerSm, 32, pl));
  EXPECT_EQ(pl.chunks, 1);
  EXPECT_EQ(pl.ctas_per_sm, 2);
}

TEST(ForwardTapColumnsSm90Plan, UnetAt128ChannelsFitsTwoCtasAnSm) {
  const ConvTranspose3dParams p = params_of(unet(2, 128, 64, 1, 32), true);
  Plan pl{};
  ASSERT_TRUE(plan(p, operands_of(p), kSms, kSmemPerSm, 0, pl));
  EXPECT_EQ(pl.chunks, 2);
  EXPECT_EQ(pl.cols, 64);
  EXPECT_EQ(pl.ctas_per_sm, 2);
  EXPECT_EQ(pl.col_tiles, 8);
  EXPECT_EQ(pl.tiles_per_block, 8);  // 512 row tiles: two waves of 264 slots whole
  EXPECT_EQ(pl.column_chunks, 1);
}

TEST(ForwardTapColumnsSm90Plan, ColumnTilesCoveredOnceAtLeastTwoACta) {
  const std::vector<Shape> shapes = {
      unet(1, 16, 24, 1, 5),  unet(2, 24, 40, 1, 3),     unet(1, 256, 256, 1, 16),
      unet(8, 32, 32, 1, 32), unet(2, 96, 32, 2, 4),     unet(1, 200, 40, 1, 7),
      unet(1, 64, 8, 1, 3),   unet(3, 48, 16, 1, 9, 3),  unet(1, 64, 48, 1, 64)};
  for (const Shape& s : shapes) {
    for (const int element_bytes : {2, 4}) {
      for (const int columns : {0, 128, 32}) {
        const ConvTranspose3dParams p = params_of(s, true);
        const int cols = columns == 32 ? 32 : columns == 128 && element_bytes == 2 ? 128 : 64;
        if (p.in_per_group * element_bytes > max_chunks(cols) * kChunkBytes) continue;
        Plan pl{};
        ASSERT_TRUE(plan(p, operands_of(p, element_bytes), kSms, kSmemPerSm, columns, pl))
            << s.cin << " -> " << s.cout;
        EXPECT_GE(pl.tiles_per_block, std::min(2, pl.col_tiles));
        EXPECT_LE(pl.tiles_per_block, pl.col_tiles);
        // Chunk j walks tiles [j·per, min((j + 1)·per, col_tiles)): none empty,
        // none past the last, every tile in exactly one.
        EXPECT_LT((pl.column_chunks - 1) * pl.tiles_per_block, pl.col_tiles);
        EXPECT_GE(pl.column_chunks * pl.tiles_per_block, pl.col_tiles);
        EXPECT_EQ(pl.cols, cols);
        EXPECT_EQ(pl.col_tiles, (pl.col_count + pl.cols - 1) / pl.cols);
        EXPECT_LE(pl.chunks, max_chunks(pl.cols));
        EXPECT_GE(pl.chunks * kChunkBytes, operands_of(p, element_bytes).channels * element_bytes);
        EXPECT_LE(pl.smem + kCtaOverhead, kSmemPerSm);
      }
    }
  }
}

TEST(ForwardTapColumnsSm90Plan, TilesPerBlockWeighsWavesAgainstTilesACta) {
  EXPECT_EQ(tiles_per_block(64, 16, 132), 8);    // one wave of 128
  EXPECT_EQ(tiles_per_block(1000, 6, 264), 6);   // many row tiles: all columns a CTA
  EXPECT_EQ(tiles_per_block(1, 16, 132), 2);     // one row tile: as many CTAs as tiles allow
  EXPECT_EQ(tiles_per_block(7, 1, 132), 1);      // one column tile
}

TEST(ForwardTapColumnsSm90Plan, DeclinesWhatItDoesNotTake) {
  const ConvTranspose3dParams p = params_of(unet(2, 64, 32, 1, 6), true);
  Plan pl{};
  ASSERT_TRUE(plan(p, operands_of(p), kSms, kSmemPerSm, 0, pl));
  ASSERT_TRUE(plan(p, operands_of(p, 4), kSms, kSmemPerSm, 0, pl));

  Operands fp64 = operands_of(p);
  fp64.element_bytes = 8;
  EXPECT_FALSE(plan(p, fp64, kSms, kSmemPerSm, 0, pl));

  Operands unaligned = operands_of(p);
  unaligned.aligned = false;
  EXPECT_FALSE(plan(p, unaligned, kSms, kSmemPerSm, 0, pl));

  Operands planes = operands_of(p);  // NCDHW planes read in place
  planes.source_c = 2;
  EXPECT_FALSE(plan(p, planes, kSms, kSmemPerSm, 0, pl));

  Operands rows_apart = operands_of(p);  // x's rows not one run: a row tile is no box
  rows_apart.source_h += 8;
  rows_apart.source_d = p.axis[1].in * rows_apart.source_h;
  rows_apart.source_n = p.axis[0].in * rows_apart.source_d;
  EXPECT_FALSE(plan(p, rows_apart, kSms, kSmemPerSm, 0, pl));

  const ConvTranspose3dParams ncdhw_out = params_of(unet(2, 64, 32, 1, 6), false);
  EXPECT_FALSE(plan(ncdhw_out, operands_of(p), kSms, kSmemPerSm, 0, pl));

  const ConvTranspose3dParams odd_columns = params_of(unet(2, 64, 12, 1, 6), true);
  EXPECT_FALSE(plan(odd_columns, operands_of(odd_columns), kSms, kSmemPerSm, 0, pl));

  const ConvTranspose3dParams too_wide = params_of(unet(1, 264, 16, 1, 4), true);
  EXPECT_FALSE(plan(too_wide, operands_of(too_wide), kSms, kSmemPerSm, 0, pl));
  const ConvTranspose3dParams widest = params_of(unet(1, 256, 16, 1, 4), true);
  EXPECT_TRUE(plan(widest, operands_of(widest), kSms, kSmemPerSm, 0, pl));
  const ConvTranspose3dParams tf32_too_wide = params_of(unet(1, 132, 16, 1, 4), true);
  EXPECT_FALSE(plan(tf32_too_wide, operands_of(tf32_too_wide, 4), kSms, kSmemPerSm, 0, pl));
  const ConvTranspose3dParams tf32_widest = params_of(unet(1, 128, 16, 1, 4), true);
  EXPECT_TRUE(plan(tf32_widest, operands_of(tf32_widest, 4), kSms, kSmemPerSm, 0, pl));
}

}  // namespace
}  // namespace tconv3d::cuda::tapcol90
