// Grad-weight on Hopper's warpgroup MMAs (wgmma, sm_90a) fed by TMA, for
// operands laid out channels-last (read in place, or packed from NCDHW by the
// op layer): fp16/bf16 whose groups hold whole multiples of 32 channels on
// both sides, and fp32 read as TF32 (where allowed) whose groups hold
// multiples of 64 input and 32 output channels:
//
//   C_k[ci, co] = Σ_i x[n, i, ci] · gy[n, i·s − p + k·d, co]   (group g, tap k)
//
// The mma.sync kernel (grad_weight_gemm_channels_last.cu) spends its SM
// copying 16-byte pieces and transposing them through ldmatrix; here one
// thread moves every byte with tensor-map copies and wgmma reads the
// operands as they land.
//
// Rows (the GEMM's K) are the input positions of the whole grid, cut into
// boxes of 64 (d × h × w powers of two, row_boxes.h).  Columns are (tap, co)
// pairs, co fastest, so a 128-wide tile of a 64-channel group spans two taps
// (of a 32-channel group four) that share each x box.  A stage holds one box
// of x, BM channels (copies of 64 positions × 64 channels, or one of 32
// channels where BM is 32), and per CO columns (a group's channels in copies
// of 64, else of 32) the box of gy their tap reaches from it: every s-th
// output position from i0·s − p + k·d (TMA's element strides).  Output
// positions outside gy — and input positions past the grid's end — arrive as
// zeros, which is exactly the masking the sum needs, so no row is decoded or
// bounds-checked.  Both operands land as [position][128 or 64 bytes of
// channels] in the swizzle of that width: K rows of M (or N) elements, the
// MN-major layout wgmma reads with its transpose bits (mn_major_desc), the
// boxes of consecutive columns side by side so that one descriptor spans
// them (its leading byte offset: a 32-channel group's 64 columns are two
// taps' boxes).  Where BM is 32 the product is turned around, D[(tap, co),
// ci]: an MMA's 64 rows are (tap, co) columns, its 32 columns the input
// channels, since wgmma's M is 64.
//
// Work units are (group, split, ci-tile, column tile), columns fastest so
// units running together read the same x boxes from L2; split `s` of S
// covers boxes [B·s/S, B·(s+1)/S) of the grid's B.  S is chosen from the
// shape alone (results do not depend on the GPU): about two units per SM of
// a 132-SM part, so one consumer's epilogue overlaps the other's main loop.
// Where TF32's units (one consumer an SM) would leave a last wave mostly
// empty, the tiles × boxes are instead cut into 132 equal ranges
// (range_cut.h), a range's piece of a tile being a unit whose sums go to
// the tile's next plane of partials (grad_weight_sm90_plan.h).
//
// Persistent CTAs, one per SM, as the forward GEMM (tensor_core_gemm_sm90.cu):
// a producer warpgroup (one thread issues the copies into a 6-stage ring, 4
// or 3 in TF32) and two consumer warpgroups taking units in turn (ping-pong;
// in TF32 one, the other rewriting grad_output, below), each computing a
// whole BM × BN tile: per stage and 16-row k-step, one
// m64nBNk16 per 64 rows of ci (turned: one m64n32k16 per 64 columns; TF32:
// one m64n64k8 per 8-row step).  Epilogue from registers: fp32 partials
// [plane][tap][ci][co] (pairs of co as one 8-byte store; turned, a store
// writes 8 consecutive co, one 32-byte sector, in each of 4 ci rows), even
// for a tile of one piece where gw keeps its taps innermost (a contiguous
// weight's): stores straight into it would be 2-byte writes kD·kH·kW
// elements apart (the 512→256 bottleneck spent most of its 70 us on them).
// A tile's first piece also writes how many it has.  combine_tap_major_kernel
// then adds each element's planes in order, rounds once and writes gw in its
// own order.  Where one unit sums each element and gw's co are contiguous
// (a channels-last weight's gw, [ci][tap][co]), the epilogue rounds and
// stores into gw itself (writes_grad_weight): 8 co a lane after a transpose
// across each quad of lanes where gw keeps them in whole 16-byte pieces
// (gw_vectors, fp16/bf16: a kernel instance of its own), else pairs.  No
// atomics: bitwise
// reproducible.
//
// TF32: wgmma reads 32-bit operands from shared memory K-major only (its
// transpose bits are for 16-bit types), and both boxes land MN-major.  So x
// (A) goes through the consumers' registers — word loads from the box,
// rounded, wgmma with A in registers, in two commit groups a stage as the
// forward's TF32 stage (tf32_register_a_stage) — and grad_output (B) is
// rewritten K-major in shared memory by seven warps — the producer
// warpgroup's three idle ones and the third warpgroup, so one consumer
// warpgroup (transpose_gy) — rounded to TF32 on the way (wgmma would
// truncate it), and handed to the consumer through a `ready` barrier a
// stage.  Tiles of 64 columns × 128 input channels where the group holds a
// multiple of 128 (two m64 blocks over one rewrite: half the transposers'
// work a MAC, 1.1-1.55x mma.sync where 64-channel tiles lost to it), else
// 64 (one m64); the A fragments of one block at a time, 32 registers; copies
// of 32 fp32 channels (128-byte rows).  Stages of x 16 or 32 KB +
// grad_output 16 KB + its K-major rewrite 16 KB: four, or three.
#include "grad_weight_gemm.h"

#include <cstdint>
#include <type_traits>

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../scalar_convert.h"
#include "dispatch.cuh"
#include "grad_weight_launch.cuh"
#include "grad_weight_sm90_plan.h"
#include "implicit_gemm_walk.cuh"
#include "mma_sm80.cuh"
#include "quad_transpose.h"
#include "sm90_primitives.cuh"
#include "tensor_map_encoder.h"
#include "vector_access.cuh"

namespace tconv3d::cuda {
namespace gw90 {

using namespace sm90;

// The producer warpgroup and two more: consumers in 16-bit types; in TF32
// one consumer, the other transposing (below).
constexpr int kMaxConsumers = 2;
constexpr int kThreads = 128 * (1 + kMaxConsumers);
constexpr int kLaunchRegs = 65536 / kThreads / 8 * 8;  // 168
constexpr int kProducerRegs = 64, kConsumerRegs = 216;
static_assert(128 * (kLaunchRegs - kProducerRegs) >= 128 * kMaxConsumers * (kConsumerRegs - kLaunchRegs),
              "consumers would wait forever for registers");
// TF32: warps 1-3 of the producer warpgroup and the whole third warpgroup
// rewrite grad_output K-major.  With three warps (and two consumer
// warpgroups taking units in turn) the consumer waited on them: 28 % of
// its stall samples at the ready barrier, VAE 64 -> 64 at 716f30e.
constexpr int kTransposeWarps = 7;
static_assert(32 * (1 + kTransposeWarps) == 2 * 128, "the issuing thread's warp and the transposers");
// A stage: x's BM channels in copies of XC (one 128-byte row: 64 fp16/bf16
// or 32 fp32 channels; 32 fp16/bf16 where BM is 32), then grad_output's BN
// columns in copies of CO channels, each copy kBoxRows positions of XC (CO)
// elements in the swizzle of that width.  Every copy is a multiple of 4 KB,
// so each starts on its swizzle's period.  TF32 then holds grad_output
// K-major (transpose_gy): per half of the stage's positions, one 128-byte
// row of 32 positions per column.
template <typename scalar_t, int BM, int BN, int CO>
struct Layout {
  static constexpr int kElementBytes = int(sizeof(scalar_t));
  static constexpr bool kTf32 = kElementBytes == 4;
  static constexpr int kRowChannels = 128 / kElementBytes;
  static constexpr int XC = BM < kRowChannels ? BM : kRowChannels;
  static constexpr int kXRowBytes = kElementBytes * XC, kXBoxBytes = kBoxRows * kXRowBytes;
  static constexpr int kGyRowBytes = kElementBytes * CO, kGyBoxBytes = kBoxRows * kGyRowBytes;
  static constexpr int kABytes = BM / XC * kXBoxBytes;
  static constexpr int kLoadBytes = kABytes + BN / CO * kGyBoxBytes;  // what the copies land
  static constexpr int kGyTHalfBytes = kTf32 ? BN * 128 : 0;          // K-major, 32 positions
  static constexpr int kStageBytes = kLoadBytes + kBoxRows / 32 * kGyTHalfBytes;
  // Six 2-byte stages (16-32 KB); four TF32 ones of 64 input channels (48
  // KB) fit, three of 128 (64 KB).
  static constexpr int kStages = !kTf32 ? 6 : BM == 128 ? 3 : 4;
  static constexpr int kSmemBytes = kStages * kStageBytes + kSwizzleAtomBytes;
  // Turned around (BM = 32): the MMAs' rows are the BN columns.
  static constexpr bool kTurned = BM == kNarrowChunk;
  static constexpr int kConsumers = kTf32 ? 1 : kMaxConsumers;
  static_assert(kXBoxBytes % 4096 == 0 && kGyBoxBytes % 4096 == 0, "swizzle periods");
  static_assert(!kTf32 || ((BM == 64 || BM == 128) && kXRowBytes == 128 && kGyRowBytes == 128 &&
                            kBoxRows == 64),
                "the TF32 tiles: one or two m64s, 128-byte rows, two 32-position halves");
};

template <int kStages>
struct SharedState {
  uint64_t full[kStages], empty[kStages];
  uint64_t mainloop_done[kMaxConsumers];
};
// TF32: ready[s] completes once stage s's grad_output is rewritten K-major.
template <int kStages>
struct Tf32SharedState : SharedState<kStages> {
  uint64_t ready[kStages];
};
template <typename L>
using StateOf = std::conditional_t<L::kTf32, Tf32SharedState<L::kStages>, SharedState<L::kStages>>;

template <typename scalar_t, int BM, int BN, int CO>
__device__ __forceinline__ void produce(const Geometry& g, const CUtensorMap& x_map,
                                        const CUtensorMap& gy_map,
                                        const SharedState<Layout<scalar_t, BM, BN, CO>::kStages>& st,
                                        uint32_t smem0) {
  using L = Layout<scalar_t, BM, BN, CO>;
  constexpr int kStages = L::kStages;
  constexpr int kGyBoxes = BN / CO;
  if (threadIdx.x != 0) return;
  const uint32_t full0 = smem_addr(st.full), empty0 = smem_addr(st.empty);
  uint32_t seq = 0;
  for_each_unit(g, blockIdx.x, gridDim.x, [&](const Unit& w) {
    // Per grad_output copy: its channel and the tap's offset from o = i·s (a
    // copy past the last tap reads outside the tensor: zeros).
    int shift[kGyBoxes][3], co[kGyBoxes], sample_offset[kGyBoxes];
#pragma unroll
    for (int j = 0; j < kGyBoxes; ++j) {
      const ColumnBlock c = column_block(g, w.tn, j, BN);
      const int k[3] = {c.tap / (g.kernel[1] * g.kernel[2]), (c.tap / g.kernel[2]) % g.kernel[1],
                        c.tap % g.kernel[2]};
#pragma unroll
      for (int a = 0; a < 3; ++a) shift[j][a] = g.shift0[a] + k[a] * g.dilation[a];
      co[j] = w.group * g.out_per_group + c.co;
      sample_offset[j] = c.tap < g.taps ? 0 : 1 << 30;
    }
    const int ci0 = w.group * g.in_per_group + w.tm * BM;
    BoxCursor cursor;
    cursor.seek(g, w.box0);
    for (int64_t b = w.box0; b < w.box1; ++b, ++seq) {
      const int i0[3] = {cursor.origin(g, 0), cursor.origin(g, 1), cursor.origin(g, 2)};
      const int sample = cursor.sample;
      cursor.next(g);
      const uint32_t s = seq % kStages, full = full0 + 8 * s;
      if (seq >= kStages) mbarrier_wait(empty0 + 8 * s, ((seq / kStages) - 1) & 1);
      const uint32_t sa = smem0 + s * L::kStageBytes, sb = sa + L::kABytes;
      mbarrier_arrive_expect_tx(full, L::kLoadBytes);
#pragma unroll
      for (int j = 0; j < BM / L::XC; ++j) {
        tma_load_5d(sa + j * L::kXBoxBytes, &x_map, full, ci0 + j * L::XC, i0[2], i0[1], i0[0], sample);
      }
#pragma unroll
      for (int j = 0; j < kGyBoxes; ++j) {
        tma_load_5d(sb + j * L::kGyBoxBytes, &gy_map, full, co[j], i0[2] * g.stride[2] + shift[j][2],
                    i0[1] * g.stride[1] + shift[j][1], i0[0] * g.stride[0] + shift[j][0],
                    sample + sample_offset[j]);
      }
    }
  });
}

// One stage's MMAs: four k16 steps of its 64 positions.  x's copies are
// one 64-row block each (BM ≥ 64: an m64 per block, n = BN over the
// grad_output copies side by side); turned, grad_output's 64-column blocks
// are the m64s and x's 32 channels the n32.
template <typename scalar_t, int BM, int BN, int CO, int kBlocks, int kAccs>
__device__ __forceinline__ void stage_mmas(float (&acc)[kBlocks][kAccs], uint32_t a, uint32_t b) {
  using L = Layout<scalar_t, BM, BN, CO>;
  constexpr int kCols = 2 * kAccs;
#pragma unroll
  for (int ks = 0; ks < kBoxRows / 16; ++ks) {
    const uint32_t xk = a + 16 * L::kXRowBytes * ks, gyk = b + 16 * L::kGyRowBytes * ks;
    if constexpr (L::kTurned) {
      const uint64_t x_desc = mn_major_desc(xk, L::kXRowBytes, L::kXBoxBytes);
#pragma unroll
      for (int h = 0; h < kBlocks; ++h) {
        const uint32_t rows = gyk + h * (64 / CO) * L::kGyBoxBytes;  // block h's first copy
        WgmmaMnMajor<scalar_t, kCols>::run(acc[h], mn_major_desc(rows, L::kGyRowBytes, L::kGyBoxBytes),
                                           x_desc);
      }
    } else {
      const uint64_t gy_desc = mn_major_desc(gyk, L::kGyRowBytes, L::kGyBoxBytes);
#pragma unroll
      for (int h = 0; h < kBlocks; ++h) {
        WgmmaMnMajor<scalar_t, kCols>::run(
            acc[h], mn_major_desc(xk + h * L::kXBoxBytes, L::kXRowBytes, L::kXBoxBytes), gy_desc);
      }
    }
  }
}

// TF32's K order.  Inside a k8 step the order of K is free as long as A and
// B agree, and the step's eight positions are taken as 0, 2, 4, 6, 1, 3, 5,
// 7 (logical k is position 2·(k % 4) + k / 4): a consumer lane's A words,
// logical k = lane % 4 (+4), then lie at positions 2·(lane % 4) (+1), whose
// swizzle phases differ in bits 1-2 where the lane's channel pieces differ in
// bit 0, so each word load of x spreads a warp over all 32 banks (in
// position order, lanes 16 apart would collide: 2-way conflicts).
// Logical k 4·piece .. 4·piece + 3 of a 32-position half: positions
// 8·(piece / 2) + piece % 2 + 2e, e = 0 .. 3.
__device__ __forceinline__ uint32_t tf32_piece_position(uint32_t piece, uint32_t e) {
  return 8 * (piece / 2) + piece % 2 + 2 * e;
}

// TF32: warps 1-3 of the producer warpgroup rewrite each stage's grad_output
// copies K-major, rounded to TF32, once the stage has landed, and hand it on
// through ready[s]: per 32-position half h, row n (the tile's column n) of
// 128 bytes holds the half's logical k in 16-byte pieces (piece p at p ^
// (n % 8): the 128-byte swizzle wgmma's K-major descriptor reads).  An item
// is one (copy, half, piece): lane c, column CO·copy + c, loads its channel
// at the piece's four positions (each load one position row: 32 channels in
// 32 banks by the box's swizzle) and stores one 16-byte piece (each 8 lanes
// 8 rows whose pieces the swizzle puts in 8 distinct bank quads): both
// conflict-free.  32 items a stage over the seven warps.  They read the raw
// copies before they arrive on ready, and the consumers release the stage
// only after ready, so the copies are read before the producer refills them.
template <int BM, int BN, int CO>
__device__ __forceinline__ void transpose_gy(const Geometry& g,
                                             const Tf32SharedState<Layout<float, BM, BN, CO>::kStages>& st,
                                             uint32_t smem0) {
  using L = Layout<float, BM, BN, CO>;
  constexpr int kStages = L::kStages;
  constexpr uint32_t kHalves = kBoxRows / 32, kPieces = 8;
  constexpr uint32_t kItems = BN / CO * kHalves * kPieces;
  constexpr uint32_t kBatch = 4;  // items a warp has in flight: 16 loads before their stores
  // Unsigned throughout: an item's parts are then shifts and masks.  Warps
  // 1-3 and 8-11 of the CTA are transposers 0-2 and 3-6.
  const uint32_t warp = threadIdx.x < 128 ? threadIdx.x / 32 - 1 : threadIdx.x / 32 - 5;
  const uint32_t lane = threadIdx.x % 32;
  const uint32_t full0 = smem_addr(st.full), ready0 = smem_addr(st.ready);
  // This lane's channel of a copy: its 16-byte piece of a position row and
  // its word in the piece.
  const uint32_t channel_piece = lane / 4, channel_word = 4 * (lane % 4);
  uint32_t seq = 0;
  for_each_unit(g, blockIdx.x, gridDim.x, [&](const Unit& w) {
    for (int64_t b = w.box0; b < w.box1; ++b, ++seq) {
      const uint32_t s = seq % kStages;
      mbarrier_wait(full0 + 8 * s, (seq / kStages) & 1);
      const uint32_t gy = smem0 + s * L::kStageBytes + L::kABytes;
      const uint32_t gy_kmajor = smem0 + s * L::kStageBytes + L::kLoadBytes;
      for (uint32_t first = warp; first < kItems; first += kTransposeWarps * kBatch) {
        uint32_t v[kBatch][4];  // rounded only in the second loop: no load waits on another's
        // Item t of the batch: (copy, half, piece).
        const auto item_of = [&](uint32_t t) { return first + kTransposeWarps * t; };
        const auto copy_of = [](uint32_t item) { return item / (kHalves * kPieces); };
        const auto half_of = [](uint32_t item) { return item / kPieces % kHalves; };
#pragma unroll
        for (uint32_t t = 0; t < kBatch; ++t) {
          const uint32_t item = item_of(t), copy = copy_of(item);
          const uint32_t half = half_of(item), piece = item % kPieces;
          if (item < kItems) {
#pragma unroll
            for (uint32_t e = 0; e < 4; ++e) {
              const uint32_t position = 32 * half + tf32_piece_position(piece, e);
              v[t][e] = lds32(gy + copy * L::kGyBoxBytes + position * L::kGyRowBytes +
                              ((channel_piece ^ (position % 8)) << 4) + channel_word);
            }
          }
        }
#pragma unroll
        for (uint32_t t = 0; t < kBatch; ++t) {
          const uint32_t item = item_of(t), half = half_of(item), piece = item % kPieces;
          const uint32_t column = CO * copy_of(item) + lane;
          if (item < kItems) {
#pragma unroll
            for (uint32_t e = 0; e < 4; ++e) v[t][e] = to_tf32(v[t][e]);
            sts128(gy_kmajor + half * L::kGyTHalfBytes + column * 128 + ((piece ^ (column % 8)) << 4), v[t]);
          }
        }
      }
      // Each thread's own rewrite, visible to the MMAs' descriptor reads once
      // the consumers' wait on its arrival completes.
      fence_proxy_async_shared();
      mbarrier_arrive(ready0 + 8 * s);
    }
  });
}

// A consumer warpgroup takes every other unit (TF32: every unit) and
// computes its whole tile.  It starts a unit's main loop only once the other
// warpgroup has finished the previous unit's: then every stage before this
// unit has been filled, so a barrier it waits on is never more than one
// phase behind.
template <typename scalar_t, int BM, int BN, int CO, bool kGwVectors, typename State>
__device__ __forceinline__ void consume(const Geometry& g, const State& st, uint32_t smem0) {
  using L = Layout<scalar_t, BM, BN, CO>;
  constexpr int kStages = L::kStages, kConsumers = L::kConsumers;
  // Accumulator blocks of 64 rows, each kCols wide.
  constexpr int kBlocks = (L::kTurned ? BN : BM) / 64, kCols = L::kTurned ? BM : BN;
  const int wg = (threadIdx.x - 128) / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const uint32_t full0 = smem_addr(st.full), empty0 = smem_addr(st.empty);
  const uint32_t done0 = smem_addr(st.mainloop_done);
  auto release = [&](uint32_t seq) {
    __syncwarp();
    if (lane == 0) mbarrier_arrive(empty0 + 8 * (seq % kStages));
  };

  float acc[kBlocks][kCols / 2];
  constexpr int kHalf = kBoxRows / 8 / 2;  // TF32: k8 steps a commit group
  uint32_t frag[2][kHalf][4];              // TF32: A through registers, both groups' fragments
  // TF32: thread (warp, lane) holds A's rows (input channels) 16·warp +
  // lane/4 (+8), all in x copy warp / 2, at logical k lane % 4 (+4) of each
  // k8 step: positions 2·(lane % 4) (+1) (tf32_piece_position).  a_word[i]:
  // the byte offset of a[i] in a stage's first step, a[0..3] = (row, k),
  // (row + 8, k), (row, k + 4), (row + 8, k + 4); a step is 8 rows further.
  uint32_t a_word[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int channel = 16 * (warp % 2) + lane / 4 + 8 * (i % 2), position = 2 * (lane % 4) + i / 2;
    a_word[i] = uint32_t((warp / 2) * L::kXBoxBytes + position * L::kXRowBytes +
                         (((channel / 4) ^ position) << 4) + 4 * (channel % 4));
  }
  uint32_t seq = 0;
  int turn = 0;
  for_each_unit(g, blockIdx.x, gridDim.x, [&](const Unit& w) {
    const int stages = int(w.box1 - w.box0);
    const int i = turn++;
    if (i % kConsumers != wg) {
      seq += uint32_t(stages);
      return;
    }
    if (kConsumers > 1 && i > 0) mbarrier_wait(done0 + 8 * (1 - wg), uint32_t((i - 1) / kConsumers) & 1);
#pragma unroll
    for (int h = 0; h < kBlocks; ++h) {
#pragma unroll
      for (int e = 0; e < kCols / 2; ++e) acc[h][e] = 0.f;
      fence_accumulators(acc[h]);
    }
    for (int stage = 0; stage < stages; ++stage, ++seq) {
      const uint32_t s = seq % kStages;
      mbarrier_wait(full0 + 8 * s, (seq / kStages) & 1);
      const uint32_t a = smem0 + s * L::kStageBytes;
      if constexpr (L::kTf32) {
        mbarrier_wait(smem_addr(st.ready) + 8 * s, (seq / kStages) & 1);  // B rewritten K-major
        // B's halves start 1024-byte aligned: a k-step inside a row is an OR.
        constexpr int kStepsPerRow = 128 / 32;
        const uint64_t b_desc = smem_desc(a + L::kLoadBytes, kmajor_swizzle_desc_bits(128));
        // Each m64 block of input channels over the same rewritten B: the
        // rewrite, the transposers' work, serves BM / 64 blocks.  A block's
        // two commit groups retire the fragments the next block reloads.
#pragma unroll
        for (int block = 0; block < kBlocks; ++block) {
          const uint32_t a_block = a + block * (64 / L::XC) * L::kXBoxBytes;
          tf32_register_a_stage<BN>(
              acc[block], frag,
              [&](uint32_t(&f)[4], int ks) {
#pragma unroll
                for (int i = 0; i < 4; ++i) f[i] = lds32(a_block + a_word[i] + ks * 8 * L::kXRowBytes);
              },
              [&](int ks) {
                return desc_plus(b_desc + (ks / kStepsPerRow) * (L::kGyTHalfBytes / 16), 32 * (ks % kStepsPerRow));
              },
              [&] {
                if (block == 0 && stage > 0) release(seq - 1);  // its last group just retired
              });
        }
      } else {
        wgmma_fence();
        stage_mmas<scalar_t, BM, BN, CO>(acc, a, a + L::kABytes);
        wgmma_commit();
        wgmma_wait<1>();  // the previous stage's MMAs are done with their operands
        if (stage > 0) release(seq - 1);
      }
    }
    __syncwarp();
    if (kConsumers > 1 && lane == 0) mbarrier_arrive(done0 + 8 * wg);  // the other warpgroup's turn
    wgmma_wait<0>();
#pragma unroll
    for (int h = 0; h < kBlocks; ++h) fence_accumulators(acc[h]);
    if (stages > 0) release(seq - 1);

    // Thread (warp, lane) holds rows 64·block + 16·warp + lane/4 (+8) and
    // columns 8j + 2·(lane%4) (+1) of each accumulator block.
    const int64_t ci_base = int64_t(w.group) * g.in_per_group + int64_t(w.tm) * BM;
    float* const partials = g.workspace + w.split * g.numel;
    if (g.cut.workers != 0 && w.split == 0 && threadIdx.x % 128 == 0) {
      g.tile_pieces[w.tile] = int32_t(g.cut.pieces(w.tile));
    }
    if constexpr (L::kTurned) {
      // Rows are (tap, co) columns, columns input channels: each store
      // writes 8 consecutive co (a 32-byte sector) in each of 4 ci rows.
#pragma unroll
      for (int block = 0; block < kBlocks; ++block) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const ColumnBlock c = column_at(g, w.tn * BN + block * 64 + warp * 16 + lane / 4 + 8 * h);
          if (c.tap >= g.taps) continue;
          float* const dst = partials + (int64_t(c.tap) * g.in_channels + ci_base) * g.out_per_group + c.co;
#pragma unroll
          for (int j = 0; j < kCols / 8; ++j) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              dst[int64_t(8 * j + 2 * (lane % 4) + e) * g.out_per_group] = acc[block][4 * j + 2 * h + e];
            }
          }
        }
      }
    } else {
      // Pairs of co, one store each: into the unit's plane of fp32 partials
      // ([tap][ci][co]) or, where one plane has gw's co contiguous
      // (writes_grad_weight), into gw itself at its strides, rounded once.
      const auto store_tile = [&](auto* dst, auto ci_stride, auto tap_offset) {
        using T = std::remove_pointer_t<decltype(dst)>;
#pragma unroll
        for (int copy = 0; copy < BN / CO; ++copy) {
          const ColumnBlock c = column_block(g, w.tn, copy, BN);
          if (c.tap >= g.taps) continue;
          T* const tap_base = dst + tap_offset(c.tap) + c.co;
#pragma unroll
          for (int block = 0; block < kBlocks; ++block) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const int64_t ci = ci_base + block * 64 + warp * 16 + lane / 4 + 8 * h;
              // A loop from 0, so that it unrolls and the accumulators stay
              // registers: from copy · CO / 8 it did not at CO = 64, and ptxas
              // serialized the stage loop's wgmmas (C7514).
#pragma unroll
              for (int jj = 0; jj < CO / 8; ++jj) {
                const int j = copy * (CO / 8) + jj, co = 8 * jj + 2 * (lane % 4);
                *reinterpret_cast<Vec<T, 2>*>(tap_base + ci * ci_stride + co) =
                    Vec<T, 2>{{from_acc<T>(acc[block][4 * j + 2 * h]),
                               from_acc<T>(acc[block][4 * j + 2 * h + 1])}};
              }
            }
          }
        }
      };
      const auto gw_tap_offset = [&](int tap) {
        const int kd = tap / (g.kernel[1] * g.kernel[2]), kh = tap / g.kernel[2] % g.kernel[1],
                  kw = tap % g.kernel[2];
        return kd * g.gw_stride[1] + kh * g.gw_stride[2] + kw * g.gw_stride[3];
      };
      if constexpr (kGwVectors) {
        // gw itself, 8 co a lane (gw_vectors): each four blocks of 8 co
        // transposed across the quad (quad_transpose.h), lane l storing block
        // 4q + l % 4 whole (every ci row of the tile is gw's, so every lane
        // stores).
        scalar_t* const gw = static_cast<scalar_t*>(g.grad_weight);
#pragma unroll
        for (int copy = 0; copy < BN / CO; ++copy) {
          const ColumnBlock c = column_block(g, w.tn, copy, BN);
          if (c.tap >= g.taps) continue;
          scalar_t* const tap_base = gw + gw_tap_offset(c.tap) + c.co;
#pragma unroll
          for (int block = 0; block < kBlocks; ++block) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const int64_t ci = ci_base + block * 64 + warp * 16 + lane / 4 + 8 * h;
#pragma unroll
              for (int q = 0; q < CO / 32; ++q) {
                uint32_t packed[4];
#pragma unroll
                for (int b = 0; b < 4; ++b) {
                  const int j = copy * (CO / 8) + 4 * q + b;
                  packed[b] = pack_pair(from_acc<scalar_t>(acc[block][4 * j + 2 * h]),
                                        from_acc<scalar_t>(acc[block][4 * j + 2 * h + 1]));
                }
                quad_transpose(packed, lane % 4, [](uint32_t word, int mask) {
                  return __shfl_xor_sync(0xffffffffu, word, mask);
                });
                store_global_16(tap_base + ci * g.gw_stride[0] + 8 * (4 * q + lane % 4), packed[0],
                                packed[1], packed[2], packed[3]);
              }
            }
          }
        }
      } else if (g.grad_weight != nullptr) {
        store_tile(static_cast<scalar_t*>(g.grad_weight), g.gw_stride[0], gw_tap_offset);
      } else {
        store_tile(partials, g.out_per_group,
                   [&](int tap) { return int64_t(tap) * g.in_channels * g.out_per_group; });
      }
    }
  });
}

// kGwVectors (fp16/bf16, gw_vectors): the epilogue writes gw itself 16
// bytes a lane; an instance of its own, since the transposes in the shared
// kernel grew every fp16/bf16 instance 25-50 % and slowed layers that never
// took them (RESULTS.md, "Row-once and TF32 group blocks round").
template <typename scalar_t, int BM, int BN, int CO, bool kGwVectors = false>
__global__ void __launch_bounds__(kThreads, 1)
    grad_weight_gemm_sm90_kernel(const __grid_constant__ Geometry g,
                                 const __grid_constant__ CUtensorMap x_map,
                                 const __grid_constant__ CUtensorMap gy_map) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using L = Layout<scalar_t, BM, BN, CO>;
  extern __shared__ unsigned char smem_raw[];
  __shared__ StateOf<L> st;
  const uint32_t smem0 = swizzle_aligned(smem_addr(smem_raw));
  const int tid = threadIdx.x;
  if (tid < L::kStages) {
    mbarrier_init(smem_addr(&st.full[tid]), 1);   // the issuing thread's arrive.expect_tx
    mbarrier_init(smem_addr(&st.empty[tid]), 4);  // each warp of the consuming warpgroup
    if constexpr (L::kTf32) mbarrier_init(smem_addr(&st.ready[tid]), 32 * kTransposeWarps);  // each transposer
  }
  if (tid < L::kConsumers) mbarrier_init(smem_addr(&st.mainloop_done[tid]), 4);
  __syncthreads();
  if (tid < 128) {
    release_registers<kProducerRegs>();
    if constexpr (L::kTf32) {
      if (tid >= 32) {
        transpose_gy<BM, BN, CO>(g, st, smem0);
        return;
      }
    }
    produce<scalar_t, BM, BN, CO>(g, x_map, gy_map, st, smem0);
  } else if (L::kConsumers == 1 && tid >= 256) {  // TF32: the third warpgroup transposes too
    release_registers<kProducerRegs>();
    if constexpr (L::kTf32) transpose_gy<BM, BN, CO>(g, st, smem0);
  } else {
    claim_registers<kConsumerRegs>();
    consume<scalar_t, BM, BN, CO, kGwVectors>(g, st, smem0);
  }
#else
  __trap();  // never launched: runs_here requires sm_90a code
#endif
}

static_assert(kMaxPartials == cuda::kMaxPartials, "one workspace bound for both kernels");

// The plan run_split_gemm takes, from the decomposition.
bool plan(const ConvTranspose3dParams& p, int element_bytes, Geometry& g, gw_gemm::Plan& pl) {
  if (!plan_geometry(p, g, element_bytes)) return false;
  pl = gw_gemm::Plan{};
  pl.bm = g.bm;
  pl.bn = g.bn;
  pl.groups = g.groups;
  pl.tiles_m = g.tiles_m;
  pl.tiles_n = g.tiles_n;
  pl.taps = g.taps;
  pl.splits = g.splits;
  pl.numel = g.numel;
  pl.blocks = work_count(g);
  return true;
}

template <typename scalar_t, int BM, int BN, int CO, bool kGwVectors>
cudaError_t launch_instance(const Geometry& g, const CUtensorMap& x_map, const CUtensorMap& gy_map,
                            cudaStream_t stream) {
  constexpr auto kernel = grad_weight_gemm_sm90_kernel<scalar_t, BM, BN, CO, kGwVectors>;
  constexpr int smem = Layout<scalar_t, BM, BN, CO>::kSmemBytes;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(smem);
  if (err != cudaSuccess) return err;
  const int64_t cap = sm_count();
  const int64_t ctas = work_count(g) < cap ? work_count(g) : cap;
  kernel<<<static_cast<unsigned int>(ctas), kThreads, smem, stream>>>(g, x_map, gy_map);
  return cudaGetLastError();
}

template <typename scalar_t, int BM, int BN, int CO>
cudaError_t launch_tile(const Geometry& g, const CUtensorMap& x_map, const CUtensorMap& gy_map,
                        cudaStream_t stream) {
  if constexpr (!std::is_same_v<scalar_t, float>) {
    if (g.gw_vectors) return launch_instance<scalar_t, BM, BN, CO, true>(g, x_map, gy_map, stream);
  }
  return launch_instance<scalar_t, BM, BN, CO, false>(g, x_map, gy_map, stream);
}

// The tiles plan_geometry picks: TF32's one; 32-channel copies of
// grad_output and the turned product (BM 32) only with 128 columns.
template <typename scalar_t>
cudaError_t launch_typed(const Geometry& g, const CUtensorMap& x_map, const CUtensorMap& gy_map,
                         cudaStream_t stream) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    return g.bm == 128 ? launch_tile<float, 128, kTf32TileN, kTf32Chunk>(g, x_map, gy_map, stream)
                       : launch_tile<float, kTf32TileM, kTf32TileN, kTf32Chunk>(g, x_map, gy_map, stream);
  } else {
    constexpr int kNarrow = kNarrowChunk;
    if (g.bm == kNarrow) {
      return g.co_box == kNarrow ? launch_tile<scalar_t, kNarrow, 128, kNarrow>(g, x_map, gy_map, stream)
                                 : launch_tile<scalar_t, kNarrow, 128, kChunk>(g, x_map, gy_map, stream);
    }
    if (g.co_box == kNarrow) {
      return g.bm == 128 ? launch_tile<scalar_t, 128, 128, kNarrow>(g, x_map, gy_map, stream)
                         : launch_tile<scalar_t, 64, 128, kNarrow>(g, x_map, gy_map, stream);
    }
    if (g.bm == 128 && g.bn == 128) return launch_tile<scalar_t, 128, 128, kChunk>(g, x_map, gy_map, stream);
    if (g.bm == 128) return launch_tile<scalar_t, 128, 64, kChunk>(g, x_map, gy_map, stream);
    if (g.bn == 128) return launch_tile<scalar_t, 64, 128, kChunk>(g, x_map, gy_map, stream);
    return launch_tile<scalar_t, 64, 64, kChunk>(g, x_map, gy_map, stream);
  }
}

bool runs_here() {
#if defined(TCONV3D_WITH_SM90A)
  return kernel_runs_here<grad_weight_gemm_sm90_kernel<__nv_bfloat16, 64, 64, kChunk>, ArchNeed::Sm90a>();
#else
  return false;  // built without sm_90a code: the kernel bodies are empty
#endif
}

}  // namespace gw90

bool grad_weight_gemm_sm90_supports(const ConvTranspose3dParams& p, ScalarKind dtype, bool allow_tf32,
                                    const GradWeightOperands& ops) {
  if (!gw90::supports_shape(p, dtype, allow_tf32)) return false;
  // Channels exactly the group's (no padding: a box must not read into the
  // next group's), strides and addresses as TMA needs them (16-byte
  // multiples, under 2^39 bytes).
  if (ops.input_channels != p.in_per_group || ops.grad_output_channels != p.out_per_group) {
    return false;
  }
  const int64_t element = gw90::element_bytes(dtype, allow_tf32);
  const int64_t strides[8] = {ops.input_n,         ops.input_d,         ops.input_h,
                              ops.input_w,         ops.grad_output_n,   ops.grad_output_d,
                              ops.grad_output_h,   ops.grad_output_w};
  for (const int64_t s : strides) {
    if (s <= 0 || s * element % 16 != 0 || s * element >= (int64_t(1) << 39)) return false;
  }
  if (reinterpret_cast<uintptr_t>(ops.input) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(ops.grad_output) % 16 != 0) {
    return false;
  }
  return gw90::runs_here();
}

int64_t grad_weight_gemm_sm90_workspace_elems(const ConvTranspose3dParams& p, ScalarKind dtype,
                                              const GradWeightOperands& ops) {
  return gw90::workspace_elems(p, dtype, ops.group_block, ops.grad_weight);
}

cudaError_t launch_grad_weight_gemm_sm90(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const GradWeightOperands& ops) {
  const int element = cfg.dtype == ScalarKind::Float32 ? 4 : 2;  // fp32 runs in TF32
  gw90::Geometry g;
  gw_gemm::Plan pl;
  if (!gw90::plan(p, element, g, pl)) return cudaErrorInvalidConfiguration;
  if (p.batch == 0 || pl.numel == 0) return cudaSuccess;
  if (gw90::writes_grad_weight(p, g, element, ops.group_block, ops.grad_weight)) {
    g.grad_weight = ops.grad_weight;
    g.gw_stride[0] = p.weight.n;
    g.gw_stride[1] = p.weight.d;
    g.gw_stride[2] = p.weight.h;
    g.gw_stride[3] = p.weight.w;
    g.gw_vectors = gw90::gw_vectors(p, element, ops.grad_weight);
  }
  g.workspace = ops.workspace;
  g.tile_pieces = ops.workspace == nullptr ? nullptr
                                            : reinterpret_cast<int32_t*>(ops.workspace + g.splits * g.numel);
  pl.tile_pieces = g.cut.workers != 0 ? g.tile_pieces : nullptr;  // else every tile: g.splits planes
  pl.block = ops.group_block;
  const int64_t in_extent[3] = {p.axis[0].in, p.axis[1].in, p.axis[2].in};
  const int64_t out_extent[3] = {p.axis[0].out, p.axis[1].out, p.axis[2].out};
  const int64_t x_strides[4] = {ops.input_n, ops.input_d, ops.input_h, ops.input_w};
  const int64_t gy_strides[4] = {ops.grad_output_n, ops.grad_output_d, ops.grad_output_h,
                                 ops.grad_output_w};
  const int64_t unit_stride[3] = {1, 1, 1};
  const int64_t conv_stride[3] = {p.axis[0].stride, p.axis[1].stride, p.axis[2].stride};
  // Copies of one 128-byte row of channels (64 fp16/bf16, 32 fp32), or of 32
  // fp16/bf16 channels (64-byte rows).
  const int row_channels = 128 / element;
  const int x_box = g.bm < row_channels ? g.bm : row_channels;
  CUtensorMap x_map, gy_map;
  if (!encode_channels_last_boxes(x_map, cfg.dtype, ops.input, p.in_channels, p.batch, in_extent,
                                  x_strides, x_box, g.log_box, unit_stride,
                                  swizzle_for_rows(element * x_box)) ||
      !encode_channels_last_boxes(gy_map, cfg.dtype, ops.grad_output, p.out_channels, p.batch,
                                  out_extent, gy_strides, g.co_box, g.log_box, conv_stride,
                                  swizzle_for_rows(element * g.co_box))) {
    return cudaErrorInvalidValue;
  }
  const auto launch = [&](auto scalar, auto) -> cudaError_t {
    return gw90::launch_typed<decltype(scalar)>(g, x_map, gy_map, cfg.stream);
  };
  if (g.grad_weight != nullptr) {
    return gw_gemm::run_split_gemm<gw_gemm::PartialOrder::TapCiCo>(p, cfg, pl, nullptr,
                                                                   ops.grad_weight, launch);
  }
  return gw_gemm::run_split_gemm<gw_gemm::PartialOrder::TapCiCo, /*always_partials=*/true>(
      p, cfg, pl, ops.workspace, ops.grad_weight, launch);
}

}  // namespace tconv3d::cuda
