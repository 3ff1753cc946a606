// The row tiles of the Hopper GEMM's TMA loader (tensor_core_gemm_sm90.cu): a
// tile's 2^log_rows GEMM rows are one box of a phase's output grid, d × h × w
// positions of one sample, loaded by one tensor-map copy per tap.  Host-only
// and free of CUDA headers, so the C++ tests check it without a GPU.
#pragma once

#include <cstdint>

namespace tconv3d::cuda {

struct RowBoxes {
  int log_box[3];     // box side per axis (d, h, w), as a power of two
  int64_t boxes[3];   // boxes per axis covering the grid
};

// Of the power-of-two splits of 2^log_rows rows into d × h × w whose every
// side, times its element stride (positions a row step moves in the
// source), plus the axis's tap reach, stays within TMA's 256 per box
// dimension: the one that pads a grid of rows[a] positions per axis least.
// Among equals, with a reach, the smallest halo (the box grown by the reach:
// what the halo loader keeps in shared memory and reads once per tile); then
// the widest w, then the widest h (longer contiguous runs).  False when no
// split fits.  descriptor_blocks: only boxes 8 wide along w and at least 8
// along h, so that every 64 rows of a tile are 8 lines of 8 positions in one
// d-plane — 8-row groups one source line apart, which one wgmma shared-memory
// descriptor addresses (the halo loader reads each tap's A so).
inline bool choose_row_boxes(const int64_t (&rows)[3], const int64_t (&element_stride)[3],
                             int log_rows, RowBoxes& out, const int64_t (&reach)[3] = {0, 0, 0},
                             bool descriptor_blocks = false) {
  bool found = false;
  int64_t best = 0, best_halo = 0;
  for (int lw = log_rows; lw >= 0; --lw) {
    for (int lh = log_rows - lw; lh >= 0; --lh) {
      if (descriptor_blocks && (lw != 3 || lh < 3)) continue;
      const int log_box[3] = {log_rows - lw - lh, lh, lw};
      int64_t padded = 1, halo = 1, boxes[3];
      bool fits = true;
      for (int a = 0; a < 3; ++a) {
        const int64_t box = int64_t(1) << log_box[a];
        fits = fits && box * element_stride[a] + reach[a] <= 256;
        boxes[a] = (rows[a] + box - 1) / box;
        padded *= boxes[a] * box;
        halo *= box * element_stride[a] + reach[a];
      }
      if (fits && (!found || padded < best || (padded == best && halo < best_halo))) {
        found = true;
        best = padded;
        best_halo = halo;
        for (int a = 0; a < 3; ++a) {
          out.log_box[a] = log_box[a];
          out.boxes[a] = boxes[a];
        }
      }
    }
  }
  return found;
}

// Rows the boxes cover, padding included.
inline int64_t padded_rows(const RowBoxes& b) {
  int64_t n = 1;
  for (int a = 0; a < 3; ++a) n *= b.boxes[a] << b.log_box[a];
  return n;
}

}  // namespace tconv3d::cuda
