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

}  // namespace
}  // namespace tconv3d::cuda
