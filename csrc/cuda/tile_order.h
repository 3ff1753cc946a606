// The order the tensor-core GEMMs of the gather passes take their tiles in
// (implicit_gemm_walk.cuh, decode_tile): a group's tile index as (m-tile,
// phase, n-tile).  Host and device; free of CUDA headers, so the C++ tests
// check it without a GPU.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>

#include "../index_math.h"

namespace tconv3d::cuda {

struct TileInGroup {
  uint32_t mtile;
  int phase, ntile;
};

// n-tile fastest, then phase, so tiles that run together share source rows
// (phases of the same rows read the same input positions) and fill the same
// output sectors.  The phases of an m-tile come rotated by the m-tile: the
// Hopper kernel's persistent CTAs take every gridDim-th tile, and with the
// plain order a grid of a multiple of the phase count kept each CTA on one
// phase — on a k3s2 layer the CTAs of the 8-tap phase did 2.4 times the mean
// work (8 of 27 taps) while those of the 1-tap phase idled, and the phases of
// the same output sectors ran ever further apart in time (RESULTS.md, "Phase
// rotation and merged taps round": that layer's GEMM 1.5-1.8x faster
// rotated).  Rotated, a CTA's tiles cycle through the phases.  32-bit: this
// runs once per tile, and 64-bit divisions here cost as much as a short
// reduction's GEMM.
TCONV3D_HOST_DEVICE TileInGroup tile_in_group(uint32_t within_group, uint32_t ntiles,
                                              uint32_t phases) {
  TileInGroup t;
  t.ntile = int(within_group % ntiles);
  const uint32_t rest = within_group / ntiles;
  t.mtile = rest / phases;
  uint32_t phase = rest - t.mtile * phases + t.mtile % phases;
  if (phase >= phases) phase -= phases;
  t.phase = int(phase);
  return t;
}

// Few waves (the forward's phase GEMMs of at most kFewWaves tiles a CTA):
// there the rotation above still leaves CTAs of unequal shares (VAE-video
// k3s2 256 → 128 at 512 tiles on 132 CTAs: the most-loaded CTA 1.38x the
// mean taps; k5s2 64 → 32 1.48x), and the kernel waits for the most-loaded.
// The tiles are then dealt heaviest phase first, each wave in the opposite
// direction to the one before (a snake), so that the CTAs that took the
// heaviest tiles of one wave take the lightest of the next (1.15x, 1.16x;
// tests/cpp/test_tile_order.cpp).  Measured on the H200 (RESULTS.md, "Few-wave
// deal"): 4-16 % faster at up to 4 tiles a CTA, but 5-25 % slower on VAE k3s2
// 128 → 64 at 6.5 (1.18x → 1.09x): from a few waves on, keeping the phases
// of the same rows together (shared source rows in L2, whole output sectors
// of NCDHW outputs) outweighs the evener share.
constexpr int kFewWaves = 4;
constexpr int kMaxDealtPhases = 64;

struct TileDeal {
  uint32_t grid = 0;  // 0: the rotated order
  uint8_t phase_by_taps[kMaxDealtPhases] = {};  // phases, most taps first
};

// The tile CTA `u % grid` takes in wave `u / grid`: waves alternate direction,
// the last (partial) one within its own length.
TCONV3D_HOST_DEVICE uint32_t snake(uint32_t u, uint32_t grid, uint32_t units) {
  const uint32_t wave = u / grid, first = wave * grid;
  if ((wave & 1) == 0) return u;
  const uint32_t length = units - first < grid ? units - first : grid;
  return first + (length - 1 - (u - first));
}

// The deal of `phases` phases of these tap counts on `grid` CTAs: phases
// most taps first (equal ones in index order).  Grid 0, the rotated order,
// where there is nothing to deal: one phase, phases of equal taps (the
// rotation is even there), or more phases than a deal holds.  Host only.
inline TileDeal heaviest_first_deal(const int64_t* taps, int phases, uint32_t grid) {
  TileDeal deal;
  if (phases < 2 || phases > kMaxDealtPhases) return deal;
  int order[kMaxDealtPhases];
  std::iota(order, order + phases, 0);
  std::stable_sort(order, order + phases, [&](int x, int y) { return taps[x] > taps[y]; });
  if (taps[order[0]] == taps[order[phases - 1]]) return deal;
  for (int q = 0; q < phases; ++q) deal.phase_by_taps[q] = uint8_t(order[q]);
  deal.grid = grid;
  return deal;
}

// Heaviest first: phase rank slowest, then m-tile, then n-tile.
TCONV3D_HOST_DEVICE TileInGroup heavy_first_tile(uint32_t within_group, uint32_t ntiles,
                                                 uint32_t mtiles, const TileDeal& deal) {
  TileInGroup t;
  t.ntile = int(within_group % ntiles);
  const uint32_t rest = within_group / ntiles;
  t.mtile = rest % mtiles;
  t.phase = deal.phase_by_taps[rest / mtiles];
  return t;
}

}  // namespace tconv3d::cuda
