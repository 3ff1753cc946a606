// The decomposition of the K-major TF32 Hopper grad-weight GEMM
// (grad_weight_kmajor_sm90.cu): its position boxes, splits, row and channel
// tiles, the walk from box to box and where a unit's grad_output copies sit.
// Host and device; free of CUDA headers, so the C++ tests check it without a
// GPU.
#pragma once

#include <cstdint>

#include "../index_math.h"
#include "../params.h"
#include "kmajor_layout.h"

namespace tconv3d::cuda::gwk {

// Positions a stage: four k8 steps of TF32 wgmma.
constexpr int kStagePositions = 32;
// A row tile: 256 (tap, co) rows, four copies of 64 output channels of one
// tap (out_per_group % 64 == 0, so a copy never straddles two taps), two m64
// blocks for each of the two consumer warpgroups.
constexpr int kCopyRows = 64;
constexpr int kCopies = 4;
constexpr int kRowTile = kCopies * kCopyRows;
// Units aimed at: two per SM of a 132-SM GPU.  A constant, not the device's
// SM count: the splits, and so the sums' order, depend on the shape alone.
constexpr int64_t kTargetUnits = 2 * 132;
constexpr int64_t kMinBoxesPerSplit = 8;
constexpr int64_t kMaxPartials = int64_t(1) << 24;  // launch.h's bound: 64 MiB of fp32

// A box of 32 positions: bw along w (the K-major rows' width: 8 or 32 floats,
// a 32- or 128-byte swizzle), bh along h, bd along d.
struct BoxShape {
  int w, h, d;
};

// 32 wide where W tiles into 32 (one slab holds all four k8 steps, no
// padded positions along w), else 8; then as much of the rest along h as H
// holds a power of two of, the remainder along d.  box_w: 8 or 32 forces the
// width (a test hook), 0 = by shape.
inline BoxShape box_shape(const ConvTranspose3dParams& p, int box_w = 0) {
  BoxShape b{};
  b.w = box_w == 8 || box_w == 32 ? box_w : p.axis[2].in % 32 == 0 ? 32 : 8;
  int h = 1;
  while (2 * h <= kStagePositions / b.w && 2 * h <= p.axis[1].in) h *= 2;
  b.h = h;
  b.d = kStagePositions / b.w / b.h;
  return b;
}

// Everything a unit's decoding and the issuing thread need, fixed per launch.
struct Geometry {
  int64_t groups, splits, tiles_ci, tiles_row, taps;  // tiles_row over taps × Cout/G rows
  int64_t boxes;                 // B: boxes of the grid, all samples
  int boxes_axis[3], box[3];     // per axis (d, h, w): box counts and sides
  int bc;                        // input channels a tile: 128 or 64
  int in_per_group, out_per_group;
  int phases;                    // s_d · s_h · s_w: gy_k's phase grids a sample
  int64_t in_channels, numel;
  ConvTranspose3dParams shape;   // what tap_phase reads (axes only)
  float* workspace;              // splits × numel partial sums, tap-major
};

// Work unit u: row tiles fastest (units running together read the same x
// boxes from L2), then ci-tile, split, group.  Split s of S covers boxes
// [B·s/S, B·(s+1)/S).
struct Unit {
  int group, tc, tr;
  int64_t split, box0, box1;
};

TCONV3D_HOST_DEVICE int64_t unit_count(const Geometry& g) {
  return g.groups * g.splits * g.tiles_ci * g.tiles_row;
}

TCONV3D_HOST_DEVICE Unit decode_unit(const Geometry& g, int64_t u) {
  Unit w;
  w.tr = int(u % g.tiles_row);
  u /= g.tiles_row;
  w.tc = int(u % g.tiles_ci);
  u /= g.tiles_ci;
  w.split = u % g.splits;
  w.group = int(u / g.splits);
  w.box0 = g.boxes * w.split / g.splits;
  w.box1 = g.boxes * (w.split + 1) / g.splits;
  return w;
}

// Copy c (0-3) of row tile tr: its tap (≥ taps past the group's last row:
// the copy is then loaded out of range, as zeros, and its rows not stored)
// and its first output channel within the group.
struct CopyRows {
  int tap, co;
};
TCONV3D_HOST_DEVICE CopyRows copy_rows(const Geometry& g, int tr, int c) {
  const int row = tr * kRowTile + c * kCopyRows;
  return {row / g.out_per_group, row % g.out_per_group};
}

// Where copy c of unit w reads grad_output (gy_k, kmajor_layout.h), as the
// issuing thread offsets a box's origin (d, h, w) and sample: its tap's
// shift in the phase grid per axis, its channel, and its phase's index among
// the sample's grids.  A copy past the last tap reads 2^30 grids out of
// range, so it lands zeros (their bytes still count toward the stage's
// barrier) and the epilogue skips its rows.
struct CopySource {
  int shift[3];
  int co;             // the channel coordinate: group · Cout/G + co
  int sample_offset;  // grid coordinate = sample · phases + sample_offset
};
TCONV3D_HOST_DEVICE CopySource copy_source(const Geometry& g, const Unit& w, int c) {
  const CopyRows r = copy_rows(g, w.tr, c);
  const bool real = r.tap < g.taps;
  const TapPhase t = tap_phase(g.shape, real ? r.tap : 0);
  CopySource s;
  for (int a = 0; a < 3; ++a) s.shift[a] = int(t.shift[a]);
  s.co = w.group * g.out_per_group + r.co;
  s.sample_offset = int(t.phase) + (real ? 0 : 1 << 30);
  return s;
}

// Box b of the grid, (sample, d, h, w) with w fastest.  seek() divides once;
// next() carries, so the issuing thread spends no division a stage.
struct BoxCursor {
  int box[3], sample;
  TCONV3D_HOST_DEVICE void seek(const Geometry& g, int64_t b) {
    for (int a = 2; a >= 0; --a) {
      box[a] = int(b % g.boxes_axis[a]);
      b /= g.boxes_axis[a];
    }
    sample = int(b);
  }
  // The box's first input position along axis a.
  TCONV3D_HOST_DEVICE int origin(const Geometry& g, int a) const { return box[a] * g.box[a]; }
  TCONV3D_HOST_DEVICE void next(const Geometry& g) {
    if (++box[2] == g.boxes_axis[2]) {
      box[2] = 0;
      if (++box[1] == g.boxes_axis[1]) {
        box[1] = 0;
        if (++box[0] == g.boxes_axis[0]) {
          box[0] = 0;
          ++sample;
        }
      }
    }
  }
};

// Input channels a tile: 128 where the group's count allows, else 64.
inline int tile_ci(int64_t in_per_group) { return in_per_group % 128 == 0 ? 128 : 64; }

// Whether the groups' channels fit the tiles: multiples of 64 on both sides.
inline bool channels_fit(const ConvTranspose3dParams& p) {
  return p.in_per_group > 0 && p.out_per_group > 0 && p.in_per_group % 64 == 0 &&
         p.out_per_group % kCopyRows == 0;
}

// The decomposition, from the shape (and the box-width hook) alone, for
// groups whose channels fit (channels_fit: the caller checks).  False where
// the grid is empty, where coordinates or extents would pass TMA's or int32's
// range, or where even one split's partials would pass kMaxPartials (the
// kernel always writes partials).  workspace is left null.
inline bool plan_geometry(const ConvTranspose3dParams& p, Geometry& g, int box_w = 0) {
  g = Geometry{};
  if (p.batch <= 0) return false;
  const KmajorLayout l = kmajor_layout(p);
  constexpr int64_t kIntLimit = int64_t(1) << 30;  // coordinates stay int32 with 2^30 added
  for (int a = 0; a < 3; ++a) {
    if (p.axis[a].in <= 0 || p.axis[a].in >= kIntLimit || l.phase_extent[a] <= 0 ||
        l.phase_extent[a] >= kIntLimit) {
      return false;
    }
  }
  if (p.batch * l.phases >= kIntLimit || p.in_channels >= kIntLimit || p.out_channels >= kIntLimit) {
    return false;
  }
  // TMA's strides: under 2^40 bytes (the outermost, a sample's, is the largest).
  const int64_t x_sample_bytes = 4 * p.in_channels * p.axis[0].in * p.axis[1].in * l.x_row;
  const int64_t gy_grid_bytes = 4 * p.out_channels * l.phase_extent[0] * l.phase_extent[1] * l.gy_row;
  if (x_sample_bytes >= (int64_t(1) << 40) || gy_grid_bytes >= (int64_t(1) << 40)) return false;

  const BoxShape b = box_shape(p, box_w);
  const int side[3] = {b.d, b.h, b.w};
  g.groups = p.groups;
  g.taps = p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel;
  g.bc = tile_ci(p.in_per_group);
  g.tiles_ci = p.in_per_group / g.bc;
  g.tiles_row = (g.taps * p.out_per_group + kRowTile - 1) / kRowTile;
  g.boxes = p.batch;
  for (int a = 0; a < 3; ++a) {
    g.box[a] = side[a];
    g.boxes_axis[a] = int((p.axis[a].in + side[a] - 1) / side[a]);
    g.boxes *= g.boxes_axis[a];
  }
  g.in_per_group = int(p.in_per_group);
  g.out_per_group = int(p.out_per_group);
  g.phases = int(l.phases);
  g.in_channels = p.in_channels;
  g.numel = p.in_channels * p.out_per_group * g.taps;
  g.shape = p;
  if (g.numel <= 0 || g.numel > kMaxPartials) return false;
  const int64_t base = g.groups * g.tiles_ci * g.tiles_row;
  int64_t splits = base >= kTargetUnits ? 1 : kTargetUnits / base;
  const int64_t by_boxes = g.boxes / kMinBoxesPerSplit;
  if (splits > by_boxes) splits = by_boxes;
  if (splits > kMaxPartials / g.numel) splits = kMaxPartials / g.numel;  // ≥ 1
  g.splits = splits < 1 ? 1 : splits;
  return unit_count(g) <= int64_t(INT32_MAX);
}

// The shape's side of the kernel's supports (dtype, address alignment and the
// device are the caller's).
inline bool supports_shape(const ConvTranspose3dParams& p, int box_w = 0) {
  Geometry g;
  return channels_fit(p) && plan_geometry(p, g, box_w);
}

// fp32 partial sums the kernel writes: every split's, one split too.
inline int64_t workspace_elems(const ConvTranspose3dParams& p, int box_w = 0) {
  Geometry g;
  return channels_fit(p) && plan_geometry(p, g, box_w) ? g.splits * g.numel : 0;
}

}  // namespace tconv3d::cuda::gwk
