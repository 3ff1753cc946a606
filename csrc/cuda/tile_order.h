// The order the tensor-core GEMMs of the gather passes take their tiles in
// (implicit_gemm_walk.cuh, decode_tile): a group's tile index as (m-tile,
// phase, n-tile).  Host and device; free of CUDA headers, so the C++ tests
// check it without a GPU.
#pragma once

#include <cstdint>

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

}  // namespace tconv3d::cuda
