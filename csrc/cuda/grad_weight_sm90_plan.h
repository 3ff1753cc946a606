// The decomposition of the Hopper grad-weight GEMM (grad_weight_gemm_sm90.cu):
// its row boxes, (tap, co) column tiles, the ranges they are cut into and
// the walk from box to box.
// Host and device; free of CUDA headers, so the C++ tests check it without a
// GPU.
#pragma once

#include <cstdint>

#include "../index_math.h"
#include "../params.h"
#include "channel_vectors.h"
#include "range_cut.h"
#include "row_boxes.h"

namespace tconv3d::cuda::gw90 {

constexpr int kLogBoxRows = 6;  // positions per box and stage: 64
constexpr int kBoxRows = 1 << kLogBoxRows;
constexpr int kChunk = 64;      // channels per copy: one 128-byte row of fp16/bf16
constexpr int kNarrowChunk = 32;  // or one 64-byte row, where a group holds 32 (mod 64)
// fp32 read as TF32: tiles of 64 (tap, co) columns and tile_m's input
// channels (128, or 64), in copies of 32 channels (one 128-byte row) on both
// sides; groups of multiples of 64 input and 32 output channels
// (grad_weight_gemm_sm90.cu says why these tiles).
constexpr int kTf32Chunk = 32;
constexpr int kTf32TileM = 64, kTf32TileN = 64;
constexpr int kMaxElementStride = 8;  // TMA's traversal strides
// Units aimed at: two per SM of a 132-SM GPU.  A constant, not the device's
// SM count: the splits, and so the sums' order, depend on the shape alone.
constexpr int64_t kSms = 132;
constexpr int64_t kTargetUnits = 2 * kSms;
constexpr int64_t kMinBoxesPerSplit = 8;
constexpr int64_t kMaxPartials = int64_t(1) << 24;  // as the mma.sync kernel's: 64 MiB of fp32

// Everything a unit's decoding needs, fixed per launch.
struct Geometry {
  int64_t groups, tiles_m, tiles_n, taps;  // tiles_n over taps × Cout/G columns
  int64_t splits;                 // planes of partials: the most pieces a tile is cut into
  RangeCut cut;                   // the tiles' boxes in equal ranges (range_cut.h)
  int64_t boxes;                  // B: boxes of the grid, all samples
  int boxes_axis[3], log_box[3];  // per axis (d, h, w)
  int kernel[3], stride[3], shift0[3], dilation[3];  // o = i·s + shift0 + k·d
  int in_per_group, out_per_group;
  int bm, bn;  // tile: input channels × (tap, co) columns
  int co_box;  // grad_output channels a copy (kChunk, or kNarrowChunk for 32 mod 64 a group)
  int64_t in_channels, numel;
  float* workspace;      // splits × numel partial sums, tap-major, then
  int32_t* tile_pieces;  // each tile's pieces (its planes), for the combine
  // Non-null where the epilogue writes gw itself (writes_grad_weight): gw's
  // strides of ci and of the tap's d, h, w (co's is 1).
  void* grad_weight;
  int64_t gw_stride[4];
  // Where the epilogue writes gw: fp16/bf16 gw in whole 16-byte pieces of co
  // (its strides and address), stored 8 co a lane by the kGwVectors
  // instance (gw_vectors).
  bool gw_vectors;
};

// A unit: boxes [box0, box1) of tile (group, tm, tn), its sums into plane
// `split`.  Tiles in order columns fastest, then ci-tile, then group.
struct Unit {
  int group, tm, tn;
  int64_t tile, split, box0, box1;
};

TCONV3D_HOST_DEVICE Unit unit_in_tile(const Geometry& g, int64_t tile, int64_t split, int64_t box0,
                                      int64_t box1) {
  Unit w;
  w.tn = int(tile % g.tiles_n);
  w.tm = int(tile / g.tiles_n % g.tiles_m);
  w.group = int(tile / (g.tiles_n * g.tiles_m));
  w.tile = tile;
  w.split = split;
  w.box0 = box0;
  w.box1 = box1;
  return w;
}

TCONV3D_HOST_DEVICE int64_t tile_count(const Geometry& g) { return g.groups * g.tiles_m * g.tiles_n; }

// The CTAs' work items: units of whole splits (cut.workers 0), or the cut's
// ranges.
TCONV3D_HOST_DEVICE int64_t work_count(const Geometry& g) {
  return g.cut.workers == 0 ? tile_count(g) * g.splits : g.cut.workers;
}

// f(unit) for each unit of CTA `cta` of `ctas`, in order: its producer,
// transposers and consumers walk the same sequence.  Whole splits: unit u
// is (split, tile) with the tiles fastest, so the units running together
// read the same split's x boxes from L2; split s of S covers boxes
// [B·s/S, B·(s+1)/S).  Cut: each range's pieces (range_cut.h).
template <typename F>
TCONV3D_HOST_DEVICE void for_each_unit(const Geometry& g, int64_t cta, int64_t ctas, F&& f) {
  if (g.cut.workers == 0) {
    const int64_t per_group = g.tiles_m * g.tiles_n;  // groups outermost, then splits
    for (int64_t u = cta; u < g.groups * per_group * g.splits; u += ctas) {
      const int64_t s = u / per_group % g.splits, group = u / (per_group * g.splits);
      f(unit_in_tile(g, group * per_group + u % per_group, s, g.boxes * s / g.splits,
                     g.boxes * (s + 1) / g.splits));
    }
    return;
  }
  for_each_piece(g.cut, cta, ctas, [&](const RangePiece& piece) {
    f(unit_in_tile(g, piece.tile, piece.plane, piece.step0, piece.step1));
  });
}

// A (tap, co) column of the group: its tap and output channel; tap ≥ taps
// past the last column.
struct ColumnBlock {
  int tap, co;
};
TCONV3D_HOST_DEVICE ColumnBlock column_at(const Geometry& g, int column) {
  return {column / g.out_per_group, column % g.out_per_group};
}
// Column block j (g.co_box columns: one copy of grad_output) of column tile
// tn: its first column's tap and output channel.
TCONV3D_HOST_DEVICE ColumnBlock column_block(const Geometry& g, int tn, int j, int bn) {
  return column_at(g, tn * bn + j * g.co_box);
}

// Box b of the grid, (sample, d, h, w) with w fastest.  seek() divides once;
// next() carries, so the one thread issuing the copies spends no division a
// stage.
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
  TCONV3D_HOST_DEVICE int origin(const Geometry& g, int a) const { return box[a] << g.log_box[a]; }
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

// Tiles: 128 input channels where the group's count allows, else 64, else 32
// (the kernel then turns the product around: its MMA rows are the (tap, co)
// columns, its 32 MMA columns the input channels); 128 columns of (tap, co) —
// two taps of a 64-channel group, four of a 32-channel one, share a tile, and
// so the x box they all read — unless a 64-channel group has only 64.
inline int tile_m(int64_t in_per_group) {
  return in_per_group % 128 == 0 ? 128 : in_per_group % 64 == 0 ? 64 : kNarrowChunk;
}
inline int tile_n(int64_t columns, int bm, int co_box) {
  return columns >= 128 || bm == kNarrowChunk || co_box == kNarrowChunk ? 128 : 64;
}

// The decomposition, from the shape and the element size (2: fp16/bf16, 4:
// fp32 as TF32) alone, for groups whose channels fit the tiles
// (channels_fit: the caller checks); false where no row box fits TMA's
// traversal (a stride beyond 8) or where even one split's partials would pass
// kMaxPartials (the kernel always writes partials: those layers stay on the
// mma.sync kernel, which stores gw directly).  workspace is left null.
inline bool plan_geometry(const ConvTranspose3dParams& p, Geometry& g, int element_bytes) {
  int64_t rows[3], element_stride[3];
  for (int a = 0; a < 3; ++a) {
    rows[a] = p.axis[a].in;
    element_stride[a] = p.axis[a].stride;
    if (p.axis[a].stride > kMaxElementStride) return false;
  }
  RowBoxes boxes{};
  if (!choose_row_boxes(rows, element_stride, kLogBoxRows, boxes)) return false;
  g = Geometry{};
  g.groups = p.groups;
  g.taps = p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel;
  const int64_t columns = g.taps * p.out_per_group;
  g.bm = tile_m(p.in_per_group);  // TF32: 128 or 64, its groups hold multiples of 64
  if (element_bytes == 4) {
    g.co_box = kTf32Chunk;
    g.bn = kTf32TileN;
  } else {
    g.co_box = p.out_per_group % kChunk == 0 ? kChunk : kNarrowChunk;
    g.bn = tile_n(columns, g.bm, g.co_box);
  }
  g.tiles_m = p.in_per_group / g.bm;
  g.tiles_n = (columns + g.bn - 1) / g.bn;
  g.boxes = p.batch;
  for (int a = 0; a < 3; ++a) {
    g.boxes_axis[a] = int(boxes.boxes[a]);
    g.log_box[a] = boxes.log_box[a];
    g.boxes *= boxes.boxes[a];
    g.kernel[a] = int(p.axis[a].kernel);
    g.stride[a] = int(p.axis[a].stride);
    g.dilation[a] = int(p.axis[a].dilation);
    g.shift0[a] = -int(p.axis[a].padding);
  }
  g.in_per_group = int(p.in_per_group);
  g.out_per_group = int(p.out_per_group);
  g.in_channels = p.in_channels;
  g.numel = p.in_channels * p.out_per_group * g.taps;
  if (g.numel > kMaxPartials) return false;
  // Whole splits of every tile: about two units an SM.
  const int64_t tiles = g.groups * g.tiles_m * g.tiles_n;
  int64_t splits = tiles >= kTargetUnits ? 1 : kTargetUnits / tiles;
  const int64_t by_rows = g.boxes / kMinBoxesPerSplit;
  if (splits > by_rows) splits = by_rows;
  if (g.numel > 0 && splits > kMaxPartials / g.numel) splits = kMaxPartials / g.numel;  // ≥ 1
  g.splits = splits < 1 ? 1 : splits;
  g.cut = RangeCut{0, tiles, g.boxes};
  // TF32 has one consumer an SM: where those units leave the last wave of
  // 132 less than 85 % full (VAE-video 256→128: 216 units of 64 boxes, two
  // rounds where 1.64 would do), 132 equal ranges of the tiles' boxes
  // instead (range_cut.h), where each can be at least kMinBoxesPerSplit
  // long (fewer ranges than SMs would idle more of them than the last wave
  // did).  Measured
  // (RESULTS.md, "Range cut round"): 9-11 % off that layer's grad-weight;
  // given to every layer, the cut lost 5-12 % in TF32 and up to 2.2x in
  // fp16/bf16 where the units' waves were already full.
  const int64_t units = tiles * g.splits, waves = (units + kSms - 1) / kSms;
  const int64_t items = tiles * g.boxes;
  if (element_bytes == 4 && 20 * units < 17 * waves * kSms && items / kMinBoxesPerSplit >= kSms) {
    const RangeCut cut{kSms, tiles, g.boxes};
    const int64_t planes = cut.most_pieces();
    if (g.numel == 0 || planes <= kMaxPartials / g.numel) {
      g.cut = cut;
      g.splits = planes;
    }
  }
  return tiles <= int64_t(INT32_MAX);
}

// The element size the kernel reads `dtype` at: 2 for fp16/bf16, 4 for fp32
// where TF32 is allowed (the kernel rounds to TF32); 0 where it has no
// instance.
inline int element_bytes(ScalarKind dtype, bool allow_tf32) {
  if (dtype == ScalarKind::Float16 || dtype == ScalarKind::BFloat16) return 2;
  return dtype == ScalarKind::Float32 && allow_tf32 ? 4 : 0;
}

// Whether a group's channels are whole tiles and copies of the element
// size's: multiples of 32 on both sides (fp16/bf16), of 64 input and 32
// output channels (TF32).
inline bool channels_fit(const ConvTranspose3dParams& p, int element_bytes) {
  if (element_bytes == 4) return p.in_per_group % kTf32TileM == 0 && p.out_per_group % kTf32Chunk == 0;
  return p.in_per_group % kNarrowChunk == 0 && p.out_per_group % kNarrowChunk == 0;
}

// The shape's side of the kernel's supports (the operands' strides and
// addresses, and the device, are the caller's): a dtype it has an instance
// for, channels that fit the tiles, a plan.
inline bool supports_shape(const ConvTranspose3dParams& p, ScalarKind dtype, bool allow_tf32) {
  const int bytes = element_bytes(dtype, allow_tf32);
  Geometry g;
  return bytes != 0 && channels_fit(p, bytes) && plan_geometry(p, g, bytes);
}

// Whether the epilogue writes gw itself, rounded once, with no partials and
// no combine: one plane of whole splits (each element summed by one unit),
// the plain tiles (the turned product's stores run along ci), p's own groups
// (not group blocks, whose off-diagonal sums are dropped) and gw's output
// channels contiguous (a channels-last weight's gw: [ci][tap][co]), so each
// pair of co is one aligned store.  A contiguous gw keeps its taps innermost
// and takes partials: its stores would be 2-byte writes kD·kH·kW elements
// apart.  The 512 → 256 bottleneck's one-split combine took 11.9 us beside a
// 14.7 us GEMM (H200; RESULTS.md, "Combine lanes round").
inline bool writes_grad_weight(const ConvTranspose3dParams& p, const Geometry& g, int element_bytes,
                               int group_block, const void* grad_weight) {
  const Strides5& w = p.weight;
  return g.splits == 1 && g.cut.workers == 0 && g.bm != kNarrowChunk && group_block == 0 &&
         w.c == 1 && w.n % 2 == 0 && w.d % 2 == 0 && w.h % 2 == 0 && w.w % 2 == 0 &&
         reinterpret_cast<uintptr_t>(grad_weight) % (2 * element_bytes) == 0;
}

// Where the epilogue writes an fp16/bf16 gw whose strides and address keep
// every 8 co a whole 16-byte piece (vectors_aligned: co contiguous too, as
// writes_grad_weight already asks), a lane stores 8 co at once after a quad
// transpose (quad_transpose.h), not a pair: a warp's store writes 64
// contiguous bytes of each of 8 ci rows, not 16.
inline bool gw_vectors(const ConvTranspose3dParams& p, int element_bytes, const void* grad_weight) {
  return element_bytes == 2 &&
         vectors_aligned(p.weight, reinterpret_cast<uintptr_t>(grad_weight), 8, element_bytes);
}

// The workspace the kernel writes for `dtype` (fp32 read as TF32), in
// 4-byte words: none where it writes gw itself, else its planes of fp32
// partial sums (one too), then each tile's piece count (written where it
// cuts ranges).
inline int64_t workspace_elems(const ConvTranspose3dParams& p, ScalarKind dtype, int group_block,
                               const void* grad_weight) {
  const int bytes = dtype == ScalarKind::Float32 ? 4 : 2;
  Geometry g;
  if (!plan_geometry(p, g, bytes)) return 0;
  return writes_grad_weight(p, g, bytes, group_block, grad_weight) ? 0
                                                                   : g.splits * g.numel + g.cut.tiles;
}

}  // namespace tconv3d::cuda::gw90
