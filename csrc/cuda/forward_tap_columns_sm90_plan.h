// The launch of the Hopper tap-columns forward (forward_tap_columns_sm90.cu):
// which operands it takes, its tiles, shared memory and grid.
// Host only; free of CUDA headers, so the C++ tests check it without a GPU.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "../index_math.h"
#include "../params.h"
#include "channel_vectors.h"

namespace tconv3d::cuda::tapcol90 {

constexpr int kBM = 128;            // a CTA's rows
constexpr int kChunkBytes = 128;      // K in 128-byte swizzled rows
constexpr int kChunkABytes = kBM * kChunkBytes;
constexpr int kConsumers = 2;         // warpgroups, on alternate column tiles
constexpr int kThreads = 128 * kConsumers + 32;  // and the producer warp
constexpr int kAlignSlack = 1024;     // the 128-byte swizzle's 1024-byte period
// Static shared memory (barriers, column tables) and the 1 KB the driver
// reserves a CTA, rounded up (at 32 and 64 columns; 128-column tiles run one
// CTA an SM whatever it is).
constexpr int kCtaOverhead = 3 * 1024;

// A consumer's tile is kBM rows × `cols` columns: 64, or 128 by the test
// hook in fp16/bf16 — half the wgmma issues and a quarter less shared-memory
// operand traffic a FLOP, but two tiles in flight where 64 columns have four
// (the same bytes).  128 by shape from 384 bytes of K measured a wash: U-Net
// 256 → 128 1.12× slower, 256 → 256 b1 0.87-0.90× (bf16, fp16; H200, same
// machine, cuDNN's drift taken out; RESULTS.md, "Tap-columns TF32 round"),
// so 64 ships until an A/B in one process decides.
//
// 32, by the hook, leaves room for K to 1 KB (TF32 256 channels, fp16/bf16
// 512): x's resident 128 KB beside three 32 KB stages.  The 64- and
// 128-column tiles take K to 512 bytes (their stages hold 128 KB at four
// chunks).  Not shipped until measured: TF32 U-Net 256 → 128 and 256 → 256 b1
// run the phase GEMM at 0.91-0.94× cuDNN.
constexpr int stages(int cols) { return cols == 128 ? 2 : cols == 64 ? 4 : 3; }
constexpr int max_chunks(int cols) { return cols == 32 ? 8 : 4; }
constexpr int chunk_b_bytes(int cols) { return cols * kChunkBytes; }
constexpr int smem_bytes(int chunks, int cols) {
  return chunks * (kChunkABytes + stages(cols) * chunk_b_bytes(cols)) + kAlignSlack;
}

// What the launch needs of the operands (TensorCoreGemmOperands, pass Forward).
struct Operands {
  int element_bytes;  // 2: fp16/bf16; 4: fp32 as TF32
  int64_t channels;   // the source's channels a group, padded to 16-byte pieces
  int64_t columns;    // Cout/G
  int64_t source_n, source_d, source_h, source_w, source_c;  // element strides
  bool aligned;  // source, packed weight and output addresses 16-byte aligned
};

struct Plan {
  int64_t rows;     // N·D·H·W input positions
  int64_t m_tiles;  // of kBM rows
  int64_t col_count;
  int cols;  // a consumer's tile: 32, 64 or 128 columns
  int col_tiles, chunks, smem, ctas_per_sm, tiles_per_block;
  int64_t column_chunks;  // CTAs along a row tile's columns
};

// Column tiles a CTA: the split of a row tile's columns over CTAs of fewest
// waves × (tiles a CTA + 2: its load of x and its last epilogue, which no
// other tile of the CTA hides), at least two a CTA where there are two (one
// a consumer).
inline int tiles_per_block(int64_t row_tiles, int col_tiles, int64_t slots) {
  int best = col_tiles;
  int64_t best_cost = std::numeric_limits<int64_t>::max();
  for (int per = col_tiles; per >= std::min(2, col_tiles); --per) {
    const int64_t ctas = row_tiles * ((col_tiles + per - 1) / per);
    const int64_t cost = (ctas + slots - 1) / slots * (per + 2);
    if (cost < best_cost) best = per, best_cost = cost;
  }
  return best;
}

// False where this kernel does not take the layer: not one tap per output
// position (kernel == stride, no padding, dilation or output padding), not
// fp16/bf16 or TF32, x's positions not one flat run of rows (a row tile must
// be one box), more than 512 bytes of channels a group (1 KB on 32-column
// tiles), the output not
// channels-last in whole 16-byte pieces, Cout/G not in whole 8-channel
// pieces (so that no piece of a column table straddles two taps), beyond
// 32-bit box coordinates or the grid's limits.  `columns`: the test hook's
// tile width, 32, 64 or 128 (fp16/bf16 only), 0 = shipped (64).
inline bool plan(const ConvTranspose3dParams& p, const Operands& ops, int sms, int smem_per_sm,
                 int columns, Plan& pl) {
  if (!one_tap_per_output(p.axis) || (ops.element_bytes != 2 && ops.element_bytes != 4) ||
      ops.source_c != 1 || !ops.aligned) {
    return false;
  }
  const int64_t vec = 16 / ops.element_bytes;
  const bool flat = ops.source_h == p.axis[2].in * ops.source_w &&
                    ops.source_d == p.axis[1].in * ops.source_h &&
                    (p.batch == 1 || ops.source_n == p.axis[0].in * ops.source_d);
  const bool pieces =
      ops.columns % 8 == 0 && vectors_aligned(p.output, 0, vec, ops.element_bytes);
  const bool wide = ops.element_bytes == 2 && columns == 128;
  pl.cols = wide ? 128 : columns == 32 ? 32 : 64;
  if (!flat || !pieces || ops.channels % vec != 0 || ops.source_w % vec != 0 ||
      ops.channels * ops.element_bytes > max_chunks(pl.cols) * kChunkBytes ||
      p.groups > 65535) {
    return false;
  }
  pl.rows = input_positions(p.batch, p.axis);
  pl.col_count = p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel * ops.columns;
  pl.chunks = int((ops.channels * ops.element_bytes + kChunkBytes - 1) / kChunkBytes);
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  if (pl.rows + kBM > kInt32Max || p.groups * pl.col_count + pl.cols > kInt32Max) return false;
  pl.m_tiles = (pl.rows + kBM - 1) / kBM;
  pl.col_tiles = int((pl.col_count + pl.cols - 1) / pl.cols);
  pl.smem = smem_bytes(pl.chunks, pl.cols);
  // 128-column tiles hold 128 accumulators a thread: one CTA's registers.
  pl.ctas_per_sm = wide ? 1 : std::clamp(smem_per_sm / (pl.smem + kCtaOverhead), 1, 2);
  pl.tiles_per_block = pl.col_tiles == 0
                           ? 1
                           : tiles_per_block(pl.m_tiles * p.groups, pl.col_tiles,
                                             int64_t(sms) * pl.ctas_per_sm);
  pl.column_chunks = (pl.col_tiles + pl.tiles_per_block - 1) / pl.tiles_per_block;
  return pl.m_tiles * pl.column_chunks <= kInt32Max;
}

}  // namespace tconv3d::cuda::tapcol90
