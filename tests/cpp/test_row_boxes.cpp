// choose_row_boxes: the TMA loader's row tiles.  Every answer is checked for
// what the loader needs (128 rows, each box side within TMA's 256 traversal,
// the grid covered), against every other split for the padding it minimises,
// and on grids whose best split follows by hand (comments).
#include <gtest/gtest.h>

#include <cstdint>

#include "cuda/row_boxes.h"

namespace tconv3d::cuda {
namespace {

constexpr int kLogRows = 7;  // the Hopper GEMM's 128-row tiles

int64_t padded_volume(const int64_t (&rows)[3], const int (&log_box)[3]) {
  int64_t v = 1;
  for (int a = 0; a < 3; ++a) {
    const int64_t box = int64_t(1) << log_box[a];
    v *= (rows[a] + box - 1) / box * box;
  }
  return v;
}

TEST(RowBoxes, EveryAnswerFitsTheLoaderAndPadsNoMoreThanAnyOtherSplit) {
  const int64_t sizes[] = {1, 2, 3, 5, 7, 8, 12, 17, 24, 31, 32, 33, 64, 100, 129, 300};
  const int64_t strides[] = {1, 2, 3, 8};
  for (int64_t d : sizes) {
    for (int64_t h : sizes) {
      for (int64_t w : sizes) {
        for (int64_t s : strides) {
          const int64_t rows[3] = {d, h, w};
          const int64_t step[3] = {s, 1, s};
          RowBoxes b{};
          ASSERT_TRUE(choose_row_boxes(rows, step, kLogRows, b));
          EXPECT_EQ(b.log_box[0] + b.log_box[1] + b.log_box[2], kLogRows);
          for (int a = 0; a < 3; ++a) {
            const int64_t box = int64_t(1) << b.log_box[a];
            EXPECT_LE(box * step[a], 256);
            EXPECT_GE(b.boxes[a] * box, rows[a]);
            EXPECT_LT((b.boxes[a] - 1) * box, rows[a]);
          }
          const int64_t chosen = padded_volume(rows, b.log_box);
          for (int ld = 0; ld <= kLogRows; ++ld) {
            for (int lh = 0; ld + lh <= kLogRows; ++lh) {
              const int other[3] = {ld, lh, kLogRows - ld - lh};
              bool fits = true;
              for (int a = 0; a < 3; ++a) fits = fits && (int64_t(1) << other[a]) * step[a] <= 256;
              if (fits) {
                EXPECT_LE(chosen, padded_volume(rows, other));
              }
            }
          }
        }
      }
    }
  }
}

TEST(RowBoxes, GridsOfWholeBoxesAreNotPadded) {
  // 24 = 3 · 8 per axis: 8 × 8 × 2 boxes tile 24³ exactly.
  const int64_t rows[3] = {24, 24, 24}, step[3] = {1, 1, 1};
  RowBoxes b{};
  ASSERT_TRUE(choose_row_boxes(rows, step, kLogRows, b));
  EXPECT_EQ(padded_volume(rows, b.log_box), 24 * 24 * 24);
}

TEST(RowBoxes, WidestWThenWidestHAmongEquals) {
  // 32³: w = 32 is the widest side that pads nothing (64 would pad w to 64);
  // the other 4 rows go to h (h = 4, d = 1) before d.
  const int64_t rows[3] = {32, 32, 32}, step[3] = {1, 1, 1};
  RowBoxes b{};
  ASSERT_TRUE(choose_row_boxes(rows, step, kLogRows, b));
  EXPECT_EQ(b.log_box[2], 5);
  EXPECT_EQ(b.log_box[1], 2);
  EXPECT_EQ(b.log_box[0], 0);
  EXPECT_EQ(b.boxes[0], 32);
  EXPECT_EQ(b.boxes[1], 8);
  EXPECT_EQ(b.boxes[2], 1);
}

TEST(RowBoxes, ElementStrideBoundsEachSide) {
  // Stride 8 (grad-input of a stride-8 layer): a side of 32 rows already
  // traverses 256 positions, so no side exceeds 32 even on a long w.
  const int64_t rows[3] = {100, 100, 1000}, step[3] = {8, 8, 8};
  RowBoxes b{};
  ASSERT_TRUE(choose_row_boxes(rows, step, kLogRows, b));
  for (int a = 0; a < 3; ++a) EXPECT_LE(b.log_box[a], 5);
}

TEST(RowBoxes, NoSplitWhenEverySideMustBeOne) {
  // Element stride 200: only sides of 1 stay within 256, and 1 · 1 · 1 is not 128 rows.
  const int64_t rows[3] = {10, 10, 10}, step[3] = {200, 200, 200};
  RowBoxes b{};
  EXPECT_FALSE(choose_row_boxes(rows, step, kLogRows, b));
}

TEST(RowBoxes, WithAReachTheSmallestHaloAmongEquals) {
  // 32³ with a k3 stencil's reach of 2 per axis: every split of 128 into
  // sides up to 32 pads nothing; 4 × 4 × 8 grows least (6 · 6 · 10 = 360
  // positions, against 3 · 6 · 34 = 612 for the widest-w choice).
  const int64_t rows[3] = {32, 32, 32}, step[3] = {1, 1, 1}, reach[3] = {2, 2, 2};
  RowBoxes b{};
  ASSERT_TRUE(choose_row_boxes(rows, step, kLogRows, b, reach));
  EXPECT_EQ(b.log_box[0], 2);
  EXPECT_EQ(b.log_box[1], 2);
  EXPECT_EQ(b.log_box[2], 3);
  // Against every padding-free split, by brute force.
  for (int ld = 0; ld <= kLogRows; ++ld) {
    for (int lh = 0; ld + lh <= kLogRows; ++lh) {
      const int other[3] = {ld, lh, kLogRows - ld - lh};
      int64_t halo = 1, chosen = 1;
      for (int a = 0; a < 3; ++a) {
        halo *= (int64_t(1) << other[a]) + reach[a];
        chosen *= (int64_t(1) << b.log_box[a]) + reach[a];
      }
      if (padded_volume(rows, other) == padded_volume(rows, b.log_box)) {
        EXPECT_LE(chosen, halo);
      }
    }
  }
}

TEST(RowBoxes, DescriptorBlocksAreEightWideAndAtLeastEightHigh) {
  // The halo loader's boxes: every 64 rows 8 lines of 8 positions in one
  // d-plane.  32³ with a k3 reach: 2 × 8 × 8 (halo 4 · 10 · 10 = 400 against
  // 3 · 18 · 10 = 540 for 1 × 16 × 8), where unconstrained 4 × 4 × 8 wins.
  const int64_t rows[3] = {32, 32, 32}, step[3] = {1, 1, 1}, reach[3] = {2, 2, 2};
  RowBoxes b{};
  ASSERT_TRUE(choose_row_boxes(rows, step, kLogRows, b, reach, /*descriptor_blocks=*/true));
  EXPECT_EQ(b.log_box[0], 1);
  EXPECT_EQ(b.log_box[1], 3);
  EXPECT_EQ(b.log_box[2], 3);
  EXPECT_EQ(padded_rows(b), 32 * 32 * 32);
  // A grid 4 wide along w: still 8 wide, padding half the rows; the
  // unconstrained choice pads none (tma_tiling then keeps the per-tap boxes).
  const int64_t narrow[3] = {16, 32, 4};
  RowBoxes free{};
  ASSERT_TRUE(choose_row_boxes(narrow, step, kLogRows, b, reach, true));
  ASSERT_TRUE(choose_row_boxes(narrow, step, kLogRows, free));
  EXPECT_EQ(b.log_box[2], 3);
  EXPECT_GE(b.log_box[1], 3);
  EXPECT_EQ(padded_rows(b), 2 * 16 * 32 * 4);
  EXPECT_EQ(padded_rows(free), 16 * 32 * 4);
}

TEST(RowBoxes, TheReachCountsTowardTheBoxLimit) {
  // w = 128 rows in one line plus a reach of 200 would exceed 256.
  const int64_t rows[3] = {1, 1, 4096}, step[3] = {1, 1, 1}, reach[3] = {0, 0, 200};
  RowBoxes b{};
  ASSERT_TRUE(choose_row_boxes(rows, step, kLogRows, b, reach));
  EXPECT_LE((int64_t(1) << b.log_box[2]) + reach[2], 256);
}

}  // namespace
}  // namespace tconv3d::cuda
