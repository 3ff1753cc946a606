// The tensor-core GEMMs' tile order (cuda/tile_order.h): a bijection of a
// group's tile indices onto (m-tile, phase, n-tile), and, dealt round-robin
// to a persistent grid, every CTA's share of the taps close to the mean.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda/tile_order.h"

namespace tconv3d::cuda {
namespace {

TEST(TileOrder, EveryTileOnce) {
  for (uint32_t phases : {1u, 2u, 8u, 27u, 64u}) {
    for (uint32_t ntiles : {1u, 2u, 3u}) {
      for (uint32_t mtiles : {1u, 7u, 64u, 65u}) {
        const uint32_t tiles = mtiles * phases * ntiles;
        std::vector<int> seen(tiles, 0);
        for (uint32_t i = 0; i < tiles; ++i) {
          const TileInGroup t = tile_in_group(i, ntiles, phases);
          ASSERT_LT(t.mtile, mtiles);
          ASSERT_GE(t.phase, 0);
          ASSERT_LT(uint32_t(t.phase), phases);
          ASSERT_GE(t.ntile, 0);
          ASSERT_LT(uint32_t(t.ntile), ntiles);
          ++seen[(t.mtile * phases + uint32_t(t.phase)) * ntiles + uint32_t(t.ntile)];
        }
        EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }))
            << phases << " phases, " << ntiles << " column tiles, " << mtiles << " row tiles";
      }
    }
  }
}

// A k3s2p1op1 layer's phase (d, h, w residues, w fastest): its taps, as the
// forward's phase GEMM walks them (1 where a residue is even, 2 where odd).
int k3s2_taps(int phase) {
  const Axis ax = make_axis(32, 64, 3, 2, 1, 1);
  return int(forward_phase_axis(ax, phase >> 2 & 1).taps * forward_phase_axis(ax, phase >> 1 & 1).taps *
             forward_phase_axis(ax, phase & 1).taps);
}

// The most taps any CTA of `grid` walks, over the mean, dealing tile
// blockIdx.x + i·gridDim.x (the Hopper kernel's loop).
double worst_share(uint32_t mtiles, uint32_t ntiles, uint32_t grid) {
  const uint32_t tiles = mtiles * 8 * ntiles;
  std::vector<int64_t> taps(grid, 0);
  int64_t total = 0;
  for (uint32_t t = 0; t < tiles; ++t) {
    const int w = k3s2_taps(tile_in_group(t, ntiles, 8).phase);
    taps[t % grid] += w;
    total += w;
  }
  return double(*std::max_element(taps.begin(), taps.end())) * grid / double(total);
}

TEST(TileOrder, PersistentCtasShareTheTapsEvenly) {
  // The H200's grids (132 SMs, one or two CTAs each) over layers of many
  // tiles; the order without the rotation gives 1.3-2.4.
  for (uint32_t grid : {132u, 264u}) {
    for (uint32_t ntiles : {1u, 2u}) {
      EXPECT_LT(worst_share(4096, ntiles, grid), 1.1) << grid << " CTAs, " << ntiles << " column tiles";
      EXPECT_LT(worst_share(1000, ntiles, grid), 1.1) << grid << " CTAs, " << ntiles << " column tiles";
    }
  }
}

TEST(TileOrder, AGridOfWholePhaseCountsCyclesEachCtaThroughThePhases) {
  const uint32_t phases = 8, grid = 264, mtiles = 1024;
  for (uint32_t cta = 0; cta < grid; ++cta) {
    for (uint32_t first = cta; first + (phases - 1) * grid < mtiles * phases; first += phases * grid) {
      uint32_t mask = 0;
      for (uint32_t i = 0; i < phases; ++i) mask |= 1u << tile_in_group(first + i * grid, 1, phases).phase;
      ASSERT_EQ(mask, 0xffu) << "CTA " << cta << " from tile " << first;
    }
  }
}

TEST(TileOrder, TheSnakeDealsEveryTileOnce) {
  for (uint32_t grid : {1u, 7u, 132u, 264u}) {
    for (uint32_t units : {1u, 6u, 131u, 264u, 265u, 700u, 1057u}) {
      std::vector<int> seen(units, 0);
      for (uint32_t u = 0; u < units; ++u) {
        const uint32_t t = snake(u, grid, units);
        ASSERT_LT(t, units);
        ASSERT_EQ(t / grid, u / grid) << "a tile left its wave";
        ++seen[t];
      }
      EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }))
          << units << " units on " << grid << " CTAs";
    }
  }
}

// The launch's deal of the phases of `taps` (index: phase).
TileDeal heaviest_first(const std::vector<int>& taps, uint32_t grid) {
  const std::vector<int64_t> wide(taps.begin(), taps.end());
  return heaviest_first_deal(wide.data(), int(wide.size()), grid);
}

TEST(TileOrder, OnlyPhasesOfUnequalTapsAreDealt) {
  EXPECT_EQ(heaviest_first({8}, 132).grid, 0u);
  EXPECT_EQ(heaviest_first({12, 12, 12, 12}, 132).grid, 0u);  // k344 s122: the rotation is even
  EXPECT_EQ(heaviest_first(std::vector<int>(kMaxDealtPhases + 1, 1), 132).grid, 0u);
  const TileDeal deal = heaviest_first({1, 2, 2, 4, 2, 4, 4, 8}, 132);
  EXPECT_EQ(deal.grid, 132u);
  const int expected[8] = {7, 3, 5, 6, 1, 2, 4, 0};  // most taps first, ties in index order
  for (int q = 0; q < 8; ++q) EXPECT_EQ(deal.phase_by_taps[q], expected[q]) << q;
}

TEST(TileOrder, HeaviestFirstTakesEveryTileOnceHeaviestPhaseFirst) {
  const std::vector<int> taps = {1, 2, 2, 4, 2, 4, 4, 8};
  const TileDeal deal = heaviest_first(taps, 132);
  for (uint32_t ntiles : {1u, 2u}) {
    const uint32_t mtiles = 9, tiles = mtiles * 8 * ntiles;
    std::vector<int> seen(tiles, 0);
    int last = 1 << 30;
    for (uint32_t i = 0; i < tiles; ++i) {
      const TileInGroup t = heavy_first_tile(i, ntiles, mtiles, deal);
      ASSERT_LT(t.mtile, mtiles);
      ASSERT_LE(taps[t.phase], last);
      last = taps[t.phase];
      ++seen[(t.mtile * 8 + uint32_t(t.phase)) * ntiles + uint32_t(t.ntile)];
    }
    EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
  }
}

// The most taps any CTA walks over the mean, CTA c taking units c + i·grid,
// in the rotated order or dealt heaviest first in a snake.
double worst_share(const std::vector<int>& taps, uint32_t mtiles, uint32_t grid, bool dealt) {
  const uint32_t phases = uint32_t(taps.size()), tiles = mtiles * phases;
  const TileDeal deal = heaviest_first(taps, grid);
  std::vector<int64_t> load(grid, 0);
  int64_t total = 0;
  for (uint32_t u = 0; u < tiles; ++u) {
    const int phase = dealt ? heavy_first_tile(snake(u, grid, tiles), 1, mtiles, deal).phase
                            : tile_in_group(u, 1, phases).phase;
    load[u % grid] += taps[phase];
    total += taps[phase];
  }
  return double(*std::max_element(load.begin(), load.end())) * grid / double(total);
}

TEST(TileOrder, FewWavesDealtHeaviestFirstShareTheTapsMoreEvenly) {
  const std::vector<int> k3s2 = {1, 2, 2, 4, 2, 4, 4, 8};
  const std::vector<int> k5s2 = {27, 18, 18, 12, 18, 12, 12, 8};
  // VAE-video k3s2 256 -> 128 (64 row tiles a phase, 132 CTAs), VAE k3s2
  // 128 -> 64 (216, 264 CTAs: more than kFewWaves tiles a CTA, so not dealt,
  // but the share still evens out), k5s2 64 -> 32 (64, 264 CTAs).
  struct Layer {
    const std::vector<int>& taps;
    uint32_t mtiles, grid;
  } layers[] = {{k3s2, 64, 132}, {k3s2, 216, 264}, {k5s2, 64, 264}};
  for (const Layer& l : layers) {
    const double rotated = worst_share(l.taps, l.mtiles, l.grid, false);
    const double dealt = worst_share(l.taps, l.mtiles, l.grid, true);
    EXPECT_LT(dealt, 1.2) << l.mtiles << " row tiles on " << l.grid << " CTAs";
    EXPECT_LT(dealt, rotated) << l.mtiles << " row tiles on " << l.grid << " CTAs";
  }
}

}  // namespace
}  // namespace tconv3d::cuda
