// The plan of the taps-folded forward (forward_taps_gemm.cu): the output tile
// and its input box along each axis (index_math.h, forward_box_axis), and
// each tile position's first box row, first tap and tap count
// (forward_box_taps), as the kernel reads them.  Host only and free of CUDA
// headers, so the C++ tests check it without a GPU.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "../index_math.h"
#include "../params.h"

namespace tconv3d::cuda::fwd_taps {

constexpr int kBM = 64;             // box rows an MMA pass multiplies
constexpr int kMaxBoxRows = 256;    // four passes: a thread a row when the box is tabulated
constexpr int kMaxOutputs = 1024;   // a block's tile: four outputs a thread
constexpr int kMaxTile = 32;        // tile positions along an axis

struct Plan {
  ForwardBoxAxis box[3] = {};
  int64_t box_rows = 0, passes = 0;
  int64_t tiles = 0;  // a sample's
  // Output u of the tile along axis a: its first box row and tap, as offsets
  // in the box's rows (D-major) and the flat tap index, and its tap count; the
  // next tap along a is row_step[a] rows and tap_step[a] taps on.
  int first_row[3][kMaxTile] = {}, first_tap[3][kMaxTile] = {}, count[3][kMaxTile] = {};
  int row_step[3] = {}, tap_step[3] = {};
  int max_count = 0;  // the most taps along any axis
};

// Per axis L a power of two times the stride (≤ kMaxTile, no longer than the
// axis needs) and shift 0 or p mod s; the box within max_box_rows (at most
// kMaxBoxRows: what the device's shared memory holds at the layer's K), the
// tile within kMaxOutputs.  The least MMA passes over the whole output, a
// pass and a block's fixed cost (tables, copies, epilogue) counted alike.
// False when no tile fits.
inline bool plan_forward_taps(const ConvTranspose3dParams& p, Plan* plan,
                              int64_t max_box_rows = kMaxBoxRows) {
  if (max_box_rows > kMaxBoxRows) max_box_rows = kMaxBoxRows;
  std::vector<ForwardBoxAxis> options[3];
  for (int ax = 0; ax < 3; ++ax) {
    const Axis& a = p.axis[ax];
    for (const int64_t shift : {int64_t(0), a.padding % a.stride}) {
      const int64_t need = (a.out + shift + a.stride - 1) / a.stride * a.stride;
      for (int64_t L = a.stride; L <= kMaxTile; L *= 2) {
        options[ax].push_back(forward_box_axis(a, L, shift));
        if (L >= need) break;
      }
      if (a.padding % a.stride == 0) break;  // one shift only
    }
  }
  int64_t best_cost = std::numeric_limits<int64_t>::max();
  for (const ForwardBoxAxis& d : options[0])
    for (const ForwardBoxAxis& h : options[1])
      for (const ForwardBoxAxis& w : options[2]) {
        const int64_t rows = d.extent * h.extent * w.extent;
        if (rows > max_box_rows || d.tile * h.tile * w.tile > kMaxOutputs) continue;
        const int64_t tiles = d.tiles * h.tiles * w.tiles;
        const int64_t passes = (rows + kBM - 1) / kBM;
        const int64_t cost = tiles * (passes + 1);
        if (cost < best_cost) {
          best_cost = cost;
          plan->box[0] = d;
          plan->box[1] = h;
          plan->box[2] = w;
          plan->box_rows = rows;
          plan->passes = passes;
          plan->tiles = tiles;
        }
      }
  if (best_cost == std::numeric_limits<int64_t>::max()) return false;

  const int row_stride[3] = {int(plan->box[1].extent * plan->box[2].extent),
                             int(plan->box[2].extent), 1};
  const int tap_stride[3] = {int(p.axis[1].kernel * p.axis[2].kernel), int(p.axis[2].kernel), 1};
  plan->max_count = 0;
  for (int ax = 0; ax < 3; ++ax) {
    plan->row_step[ax] = -int(p.axis[ax].in_step) * row_stride[ax];
    plan->tap_step[ax] = int(p.axis[ax].tap_step) * tap_stride[ax];
    for (int64_t u = 0; u < kMaxTile; ++u) {
      const ForwardBoxTaps t = u < plan->box[ax].tile
                                   ? forward_box_taps(p.axis[ax], plan->box[ax], u)
                                   : ForwardBoxTaps{0, 0, 0};
      plan->first_row[ax][u] = int(t.box) * row_stride[ax];
      plan->first_tap[ax][u] = int(t.tap) * tap_stride[ax];
      plan->count[ax][u] = int(t.count);
      if (t.count > plan->max_count) plan->max_count = int(t.count);
    }
  }
  return true;
}

}  // namespace tconv3d::cuda::fwd_taps
