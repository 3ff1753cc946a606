// Forward and grad-input as one implicit GEMM on Hopper's warpgroup MMAs
// (wgmma, sm_90a): the GEMM of implicit_gemm_walk.cuh, as the mma.sync kernel
// of tensor_core_gemm.cu computes it, rebuilt around what limits that kernel
// (RESULTS.md: 12 warps per SM, mma.sync waiting on ldmatrix, the gather's
// address arithmetic in the same warps as the MMAs, and short reductions
// spending each block in its prologue and epilogue).
//
// Warp-specialised and persistent: one CTA per SM (two at 32 or 64 columns
// under the TMA loaders: kCtasPerSm) walks the tiles (128 rows × 32, 64 or 128
// columns) in decode_tile order (its phases rotated by m-tile, so that each
// CTA's share of the taps is the mean), stride gridDim.x; the GemmAxis of
// every stride phase are derived once per CTA into a table.
//  - Producer warpgroup (threads 0-127, 96 registers): computes each tile's
//    gather addresses and fills a 6-stage ring of shared-memory slices with
//    16-byte zero-filling cp.async, in the 128-byte swizzle wgmma reads (one
//    128-byte row of K per GEMM row and stage).  It runs ahead across tiles,
//    so the next tile's loads overlap this tile's epilogue.  Stages are
//    published by cp.async.mbarrier.arrive as the copies land.
//  - Two consumer warpgroups (threads 128-383; RegisterSplit) share every
//    tile, 64 rows each: per stage, one wgmma m64nBNk16 (k8 in TF32) for each
//    of its four 32-byte k-steps, one stage's MMAs kept in flight, the stage
//    before released (mbarrier, one arrive per warp of both).  They used to
//    take whole tiles in turn (ping-pong: one's epilogue overlapping the
//    other's MMAs), but then one warp a scheduler ran the main loop, and at
//    32-64 columns its chain of ~300 dependent instructions a stage, not the
//    MMAs, set the pace (RESULTS.md, "Halo loader round": ~920 clocks a stage
//    against 128 of MMAs); sharing the tile puts two warps a scheduler in the
//    main loop, each with half the loads and MMAs (measured 6-11 % on the
//    halo at 32 columns; a second CTA an SM then gave 15-30 %: RESULTS.md,
//    "Two CTAs an SM round").  Epilogue straight from the
//    accumulator registers: + bias, one rounding, then, where an fp16/bf16
//    dest is channel-contiguous in whole 16-byte pieces, a transpose across
//    each quad of lanes (quad_transpose.h) so that a lane stores 8 channels
//    at once, else two channels a store (a warp's 16 bytes of each of 8 rows
//    a store: the big U-Net's bf16 channels-last grad-input 0.396 → 0.330
//    ms with the transpose, RESULTS.md "Epilogue stores round").
//  - TF32: wgmma truncates fp32 operands it reads from shared memory, and
//    they must round to nearest (to_tf32, as the mma.sync path and cuDNN).
//    The packed weight (B) comes rounded (weight_pack.h); A goes through the
//    consumers' registers (ldmatrix, to_tf32, wgmma with A in registers).
//    The producer warpgroup used to round A in place before publishing each
//    stage: 32 KB more shared-memory traffic a stage and a serial pass that
//    held TF32 at ~160 TFLOP/s (RESULTS.md, "TF32 A through registers").
//
// The TMA loader (a group's source channels whole 128-byte rows, or exactly
// one row of 64 or 32 bytes): the cp.async gather above delivers about 11
// bytes per clock per SM (RESULTS.md), a third of what the MMAs take.  Where
// the shape allows, a tile's 128 rows are instead a box of the phase grid
// (d × h × w rows of one sample, powers of two chosen to waste the fewest
// rows) and one producer thread loads each stage as two tensor-map copies:
// the source box at the tap's offset (every src_per_row-th position: TMA's
// element strides walk the grad-input's stride; positions outside the tensor
// arrive as zeros, so no bounds arithmetic) and the weight slice, both in the
// swizzle of their row width.  The narrow groups (16 or 32 fp16/bf16
// channels, 8 or 16 fp32) take the 32- or 64-byte swizzle, a row being one
// position's channels of one tap.  A stage holds 128 / row-bytes taps, each
// its own pair of boxes (A's sub-tile, then B's), so that the slot is as full
// as with 128-byte rows and every stage is four k-steps: one tap a stage
// filled a quarter or half of each slot, too few bytes in flight (about
// 0.31 us a stage against about 80 clocks of MMAs at 32 channels).  Packed,
// they are 3-5% faster (bf16, 32 channels: k5s1 forward 0.121 against
// 0.126 ms, k3s1 over 2 × 160³ 3.13 against 3.24 ms), so bytes in flight are
// not what bounds these shapes; more likely the L2 → SM traffic of reading
// the source box again at every tap (about 4.5 TB/s at 160³).  A tile's last
// stage is padded with boxes wholly outside both tensors (zeros, nothing read
// from memory).  The row width is a runtime value of the tiling (more
// template instantiations would cost build time); the consumers branch on it
// once per tile, so each stage's wgmmas stay one straight-line commit group.
// The one issuing thread needs few registers: under the TMA loader the
// producer warpgroup keeps 40 and the consumers take 232, or 96 where two
// CTAs share the SM (RegisterSplit).
//
// The halo loader (a TMA loader variant): the per-tap boxes above read the
// source again at every tap (RESULTS.md: 485 MB of L2 reads for a 16.8 MB
// input, 5.9 TB/s, k3s1 32 → 32).  Where a tile's rows are consecutive
// source positions on every axis (every forward phase; grad-input of stride
// 1) and rows are 128 or 64 bytes, the producer loads per tile and channel
// chunk one halo — the tile's box grown by the taps' reach, tma_tiling
// choosing the box 8 wide and at least 8 high that grows least — into one of
// two halo slots, and per stage only the weight slices of its taps (two, or
// four at 64-byte rows; at 128 columns one or two) into the stage ring; the consumers' wgmmas read each
// tap's A rows from the halo at the tap's offset by descriptor (each
// warpgroup's 64 rows are 8 runs of 8 consecutive halo rows, a halo line
// apart; the swizzle is a function of the shared-memory address).
// Measured (RESULTS.md, "Halo loader round" and "Two CTAs an SM round"): L2
// traffic falls ~10×; the consumers' per-stage instructions then set the
// pace — with A through registers (ldmatrix and per-lane addresses for every
// tap; descriptors since, not yet measured) it won where A is reused most: fp16/bf16 over at least 27 taps (bf16, two CTAs an
// SM: k3s1 over 2 × 160³ 1.91 against 2.96 ms, k5s1 32 → 32 0.087 against
// 0.124).  TF32 once rounded A in the consumers' registers here, at every
// tap (even on k3s1, 7-19 % slower on k5s1 and k5s2 forwards); its halos are
// now rounded in shared memory once each, by the producer warpgroup's idle
// warps (round_halos), and read by descriptor as fp16/bf16 are: 1.10-1.67x
// the per-tap boxes' speed on the 27-tap TF32 layers (RESULTS.md, "Few-wave
// deal and TF32 halo round").  Phases of strided forwards (8 taps or fewer)
// keep the per-tap boxes, in TF32 as in fp16/bf16 (measured both ways).
//
// Split K (grad-input on small grids): a grad-input tile walks all of K
// (taps × Cout/G), so a layer of few tiles left most of the GPU idle (the
// 512→256 k3s2 bottleneck at 8³: 32 tiles on 132 SMs, cuDNN 1.6-3.7x
// faster).  Up to a quarter as many tiles as SMs, the CTAs walk units, each
// a contiguous range of a tile's stages (choose_splits: S ranges, from the
// shape alone), whose fp32 sums go to a plane of partials that
// add_splits_kernel then adds in split order into grad_input: 0.62-1.0x the
// unsplit time on that bottleneck (choose_splits says where it lost).  The
// forward splits the same way where up to a wave of tiles has phases of
// different tap counts (the partials dense channels-last, the bias added in
// the second pass, which transposes into NCDHW outputs: the bottleneck
// 19-21 % faster into channels-last ones).
//
// Merged w taps (grad-input, fp16/bf16, 32 output channels, w of stride 2:
// merged_w_taps): the per-tap boxes' 64-byte rows at element stride 2 give
// way to one box a tap pair of 128-byte rows, each two neighbouring
// grad_output positions (a pair view of the tensor), beside the pair's two
// 64-byte weight boxes; the consumers read A and B at their own row widths.
//
// Group blocks (groups of 16 channels, TensorCoreGemmOperands::
// group_blocks; a kernel instance of their own, kBlocks): the launch's
// groups are four of the layer's, 64 channels, and a 64-column tile's stage
// is one tap's 128-byte rows (TF32: half a tap's); its four k-steps are the
// four groups' channels (TF32: two groups' two each), each one m64n16k16
// (m64n16k8) against the group's 16 × 16 block of the packed weight (the
// diagonal of a 64 × 64 tap) into the group's own accumulators, copied into
// the tile's once its MMAs are done.  One group a tile read 32-byte rows
// (TF32 64-byte) into 32 columns for 16: grouped g4 TF32 grad-input
// 0.0719 → 0.0480 ms NCDHW, 0.0367 → 0.0312 channels-last (H200; RESULTS.md,
// "Row-once and TF32 group blocks round").
//
// Each output element is written once, by one thread, from one sum (or S
// partial sums added in a fixed order) whose order depends only on the
// shape: bitwise reproducible.
#include "tensor_core_gemm.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <type_traits>

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cudaTypedefs.h>

#include "../direct_gather.h"
#include "../index_math.h"
#include "../scalar_convert.h"
#include "channel_vectors.h"
#include "dispatch.cuh"
#include "implicit_gemm_walk.cuh"
#include "mma_sm80.cuh"
#include "quad_transpose.h"
#include "row_boxes.h"
#include "sm90_primitives.cuh"
#include "tensor_map_encoder.h"
#include "vector_access.cuh"

namespace tconv3d::cuda {
namespace tcg90 {

using namespace igemm;
using namespace sm90;

constexpr int kLogBM = 7;
constexpr int kBM = 1 << kLogBM;         // rows per tile: two m64 wgmmas per k-step
constexpr int kConsumers = 2;            // warpgroups sharing each tile, 64 rows each
constexpr int kThreads = 128 * (1 + kConsumers);  // producer warpgroup + consumers
// Registers per thread: every warp starts with the launch cap, then the
// producer gives some back and the consumers take them.  setmaxnreg.inc
// waits until the pool holds enough, so the consumers must not ask for more
// than the producer released: that would hang the CTA.
// The cp.async producer keeps eight rows' gather state (96); the TMA loader's
// one issuing thread needs few, and its consumers take the rest (when a
// warpgroup took whole tiles, TF32 held two groups of A fragments beside 128
// accumulators and at 200 ptxas serialised the wgmmas; sharing tiles halved
// both).
// Two CTAs an SM where the tile is 32 or 64 columns wide under the TMA
// loaders: at 32 columns one CTA's consumers spent ~800 clocks a stage on
// 128 of MMAs, a dependent chain (barrier wait, ldmatrix, masks, wgmma issue
// and wait) that a second CTA's warps hide, its epilogue overlapping the
// other's MMAs too (13-31 % less time: RESULTS.md, "Two CTAs an SM round").
// Their consumers fit in 96 registers beside 16 or 32 accumulators (SASS);
// 128 columns keep one CTA and its registers.  Shared memory may still allow
// only one (a large halo): launch_columns counts what fits.
constexpr int ctas_per_sm(int bn, bool tma) { return tma && bn <= 64 ? 2 : 1; }
template <int BN, bool kTma>
constexpr int kCtasPerSm = ctas_per_sm(BN, kTma);
template <int kCtas>
constexpr int kLaunchRegs = 65536 / (kThreads * kCtas) / 8 * 8;  // 168, or 80 at two CTAs
// TF32's halo loader (kRoundedHalo): produce_halo spilled in its stage loop
// at 40 registers in fp32 (ptxas), and these consumers read A by descriptor
// (no fragments), so registers move from them to the producers.
template <bool kTma, int kCtas, bool kRoundedHalo = false>
struct RegisterSplit {
  static constexpr int kProducer = kRoundedHalo ? 56 : kTma ? 40 : 96;
  static constexpr int kConsumer = kRoundedHalo ? (kCtas == 2 ? 88 : 224)
                                   : kCtas == 2 ? 96 : kTma ? 232 : 200;
  static_assert(128 * (kLaunchRegs<kCtas> - kProducer) >=
                    128 * kConsumers * (kConsumer - kLaunchRegs<kCtas>),
                "consumers would wait forever for registers");
};
constexpr int kSliceBytes = 128;         // K per stage and GEMM row (a 128-byte swizzle row)
constexpr int kPieces = kSliceBytes / 16;  // 16-byte pieces per row and stage
constexpr int kRowStep = 128 / kPieces;  // rows per producer pass
constexpr int kARows = kBM / kRowStep;   // A rows a producer thread loads
constexpr int kMaxStages = 6;
// The stage ring: six, or where two CTAs share an SM's shared memory five at
// 32 columns (5 × 20 KB) and four at 64 (4 × 24 KB).
constexpr int stages_for(int bn) { return bn == 32 ? 5 : bn == 64 ? 4 : kMaxStages; }
// The A-only ring beside a resident weight (Layout::kResidentStages).
constexpr int resident_stages(int64_t bn) { return bn == 128 ? 5 : 4; }
constexpr int kHaloSlots = 2;  // halo loader: source halos in flight (B keeps the stage ring)
// The halo loader's ring of B-only stages (BN × halo_stage_k(BN) bytes each): a
// power of two, so that a stage's slot and phase cost no division in the
// consumers' issue-bound stage loop (five, at 32 columns, cost two
// multiply-shift divisions a stage).
constexpr int kHaloStages = 4;
// K bytes a halo stage holds per row: at 32 and 64 columns twice the per-tap
// boxes' 128 (four taps at 64-byte rows, two at 128), so that the barrier
// wait, the release and the stage bookkeeping (~40 of a consumer warp's ~100
// instructions a stage at two taps, SASS: 153 for four) spread over twice the
// MMAs; A costs no shared memory per stage here, only B (8 KB at 32
// columns).  At 128 columns the MMAs are 4× longer already, and a ring of
// twice the bytes would crowd out the halos.
constexpr int halo_stage_k(int bn) { return bn <= 64 ? 2 * kSliceBytes : kSliceBytes; }
// The halo loader where the fullest phase has this many taps (3 × 3 × 3 at
// stride 1): it won there and lost elsewhere (RESULTS.md, "Halo loader
// round", fp16/bf16).
constexpr int64_t kHaloMinTaps = 27;
constexpr int64_t kSmemPerSm = 233472, kReservedSmemPerCta = 1024;  // sm_90
// Dynamic shared memory a CTA may take (H100/H200: 227 KB, less the static
// SharedState with room to spare).
constexpr int64_t kMaxDynamicSmem = kSmemPerSm - kReservedSmemPerCta - 4096;
static_assert(kMaxDynamicSmem == 232448 - 4096, "sm_90's 227 KB a CTA");
// The halo loader's dynamic shared memory: two halo slots of halo_bytes, then
// the ring of B-only stages (BN rows of halo_stage_k bytes each).
constexpr int64_t halo_smem_bytes(int64_t halo_bytes, int64_t bn) {
  return kHaloSlots * halo_bytes + kHaloStages * bn * halo_stage_k(int(bn)) + kSwizzleAtomBytes;
}

// f(std::integral_constant<int, n>{}) for a runtime n in [1, N]: a halo
// stage's count of live taps, so that each count issues its MMAs as one
// straight-line commit group.
template <int N, typename F>
__device__ __forceinline__ void with_tap_count(int n, F&& f) {
  if constexpr (N == 1) {
    f(std::integral_constant<int, 1>{});
  } else if (n == N) {
    f(std::integral_constant<int, N>{});
  } else {
    with_tap_count<N - 1>(n, f);
  }
}
constexpr int kMaxPhases = 8;  // per axis: the phase geometry table's size

template <int BN>
struct Layout {
  static constexpr int kStages = stages_for(BN);
  static constexpr int kABytes = kBM * kSliceBytes;
  static constexpr int kStageBytes = kABytes + BN * kSliceBytes;  // whole swizzle atoms
  static constexpr int kSmemBytes = kStages * kStageBytes + kSwizzleAtomBytes;
  static constexpr int kBRows = BN / kRowStep;
  static_assert(kStageBytes % kSwizzleAtomBytes == 0 && kBRows >= 1, "swizzle atoms stay aligned");
  // Resident weight (TmaTiling::weight_stages): a ring of A-only slots, then
  // the weight's stages, BN rows of 128 bytes each, for as long as the CTA
  // runs.  Five slots where one CTA holds the SM (80 KB beside eight weight
  // stages of 16 KB), four where two share it.  Five were to lift the U-Net
  // 128 → 64 k2s2 bf16 grad-input by ~25 % (ncu at four: DRAM 43 %, no warp
  // eligible 75 % of cycles, grad_output read at 0.70 of TF32's six-slot
  // rate); they gave 2-3 % (36.6 → 35.4-35.9 µs, RESULTS.md "Resident weight
  // round"), so bytes in flight are not what holds it there.
  static constexpr int kResidentStages = resident_stages(BN);
  static constexpr int kBStageBytes = BN * kSliceBytes;
  static constexpr int kResidentBOffset = kResidentStages * kABytes;
  static_assert(kBStageBytes % kSwizzleAtomBytes == 0 && kResidentStages <= kStages,
                "whole swizzle atoms; the kernel initialises kStages slots' barriers");
};

// Where stage `seq` of a CTA lives: its ring slot (and barriers) and its A
// and B sub-tiles, in the shared ring (A and B of a stage side by side) or,
// with the weight resident, in the A-only ring and the weight's stage j (its
// tile's j-th).  Both divisors are compile-time: the consumers' stage loop is
// issue-bound at narrow tiles (RESULTS.md, "Halo loader round").
template <int BN>
struct StageSlots {
  using L = Layout<BN>;
  uint32_t smem0;
  bool resident;
  __device__ __forceinline__ uint32_t ring() const { return resident ? L::kResidentStages : L::kStages; }
  __device__ __forceinline__ uint32_t slot(uint32_t seq) const {
    return resident ? seq % L::kResidentStages : seq % L::kStages;
  }
  __device__ __forceinline__ uint32_t parity(uint32_t seq) const {
    return (resident ? seq / L::kResidentStages : seq / L::kStages) & 1;
  }
  __device__ __forceinline__ uint32_t a(uint32_t slot) const {
    return smem0 + slot * (resident ? L::kABytes : L::kStageBytes);
  }
  __device__ __forceinline__ uint32_t b(uint32_t slot, uint32_t j) const {
    return resident ? smem0 + L::kResidentBOffset + j * L::kBStageBytes : a(slot) + L::kABytes;
  }
};
// Dynamic shared memory of the resident-weight layout with `stages` stages of weight.
constexpr int64_t resident_smem_bytes(int64_t bn, int64_t stages) {
  return (resident_stages(bn) * int64_t(kBM) + stages * bn) * kSliceBytes + kSwizzleAtomBytes;
}
static_assert(resident_smem_bytes(64, 0) == Layout<64>::kResidentBOffset + kSwizzleAtomBytes, "");

// The GemmAxis of every (axis, residue), derived once per CTA: per tile they
// would cost a chain of 64-bit divisions in front of each tile's first load.
using PhaseTable = GemmAxis[3][kMaxPhases];

struct SharedState {
  uint64_t full[kMaxStages], empty[kMaxStages];
  uint64_t halo_full[kHaloSlots], halo_empty[kHaloSlots];  // halo loader only
  uint64_t halo_rounded[kHaloSlots];  // TF32 halo loader: the halo rounded (round_halos)
  uint32_t halo_count;  // TF32 halo loader: the CTA's halos, once produce_halo knows (round_halos)
  PhaseTable axes;
};

// The TMA loader's tensor maps and row boxes: a tile's rows are box[0] ×
// box[1] × box[2] positions (d, h, w; 2^log_box each, 128 in all) of one
// sample's phase grid, boxes[a] of them per axis over the largest phase.
// A box row is row_bytes of K (32, 64 or 128: the swizzle of both maps and of
// the wgmma descriptors).  K is walked in pieces of one box row, `chunks` per
// tap, `pieces_per_stage` of them per stage (128 / row_bytes: a stage always
// holds 128 bytes of K per GEMM row; chunks is 1 wherever it exceeds 1).
struct TmaTiling {
  CUtensorMap source;  // [N][D][H][W][G·channels], boxes of src_per_row-strided positions
  CUtensorMap weight;  // packed weight [G][taps][columns][channels], boxes of BN × row_bytes
  int log_box[3];
  int boxes[3];
  int row_bytes;
  int chunks;            // channels / (row_bytes / element size)
  int pieces_per_stage;  // 128 / row_bytes
  // One past the end of the source map's sample dimension and of the weight
  // map's tap dimension: a piece loaded there is all zeros (a stage's padding).
  int past_sample, past_tap;
  // Merged w taps (merged_w_taps): a stage is one A box of 128-byte rows,
  // each two consecutive grad_output positions of 64 bytes (the source map
  // views pairs of positions as one, [.][W/2][2 · 32 channels]), and two B
  // boxes of 64-byte rows, the pair's taps.
  bool merged;
  // Resident weight (weight_stages > 0, resident_weight_stages): every tile of
  // the launch walks the same weight slices (one phase, one column tile, one
  // group, K whole), weight_stages stages of them, which fit in shared memory
  // beside a ring of A-only slots (StageSlots).  A CTA loads them with its
  // first tile's stages and never again; later stages carry A alone.  Each
  // tile read the weight again before: 128 KB of B beside 128 KB of A a tile
  // (U-Net k2s2 128 → 64 bf16 grad-input), L2 84 % busy on the big U-Net's
  // (RESULTS.md, "Phase rotation and merged taps round").  Measured
  // (kernel_ab, H200, bf16 channels-last grad-input, streamed → resident):
  // big U-Net 64 → 32 0.487 → 0.394 ms, U-Net 128 → 64 0.0419 → 0.0397,
  // 64 → 32 0.0272 → 0.0258; the rest within noise (RESULTS.md, "Resident
  // weight round").
  int weight_stages;
  // Halo loader (halo[0] > 0): the source map's box is the tile's box grown
  // by each axis's tap reach, (d, h, w) positions, loaded once per tile and
  // channel chunk into one of kHaloSlots slots of halo_bytes (whole swizzle
  // atoms) in front of the B-only stage ring.
  int halo[3];
  int halo_bytes;
};

// What every role derives from a tile index.
struct TileGeometry {
  TileCoord tile;
  GemmAxis ax[3];
  int64_t m0, rows;  // cp.async loader: first row, rows of the phase
  int64_t n;         // TMA loader: the box's sample and first position per axis
  int j0[3];
  bool has_rows;
  int K, nslices;    // reduction length, stages
};

template <typename scalar_t, bool kTma>
__device__ __forceinline__ TileGeometry tile_geometry(const KernelArgs& k, const TmaTiling& tma,
                                                      const PhaseTable& axes, uint32_t t,
                                                      uint32_t tiles_per_group) {
  constexpr int kSlice = kSliceBytes / int(sizeof(scalar_t));
  TileGeometry g;
  if (k.deal.grid != 0) t = snake(t, k.deal.grid, tiles_per_group * uint32_t(k.p.groups));
  g.tile = decode_tile(k, t % tiles_per_group, int(t / tiles_per_group));
  int r[3];
  phase_residues(k, g.tile.phase, r);
#pragma unroll
  for (int a = 0; a < 3; ++a) g.ax[a] = axes[a][r[a]];
  const PhaseSize size = phase_size(k, g.ax);
  g.m0 = g.tile.mtile * kBM;
  g.rows = size.rows;
  if constexpr (kTma) {
    uint32_t m = uint32_t(g.tile.mtile);
    g.has_rows = true;
#pragma unroll
    for (int a = 2; a >= 0; --a) {
      g.j0[a] = int(m % uint32_t(tma.boxes[a])) << tma.log_box[a];
      m /= uint32_t(tma.boxes[a]);
      g.has_rows &= g.j0[a] < g.ax[a].rows;
    }
    g.n = int64_t(m);
  } else {
    g.has_rows = g.m0 < g.rows;
  }
  g.K = size.taps * int(k.ops.channels);
  if constexpr (kTma) {
    // Producer and consumers both count a tile's stages here: the last one
    // may be partly padding.
    g.nslices = (size.taps * tma.chunks + tma.pieces_per_stage - 1) / tma.pieces_per_stage;
  } else {
    g.nslices = (g.K + kSlice - 1) / kSlice;
  }
  return g;
}

// Split K (grad-input on small grids, choose_splits; never under the halo
// loader): the CTAs walk units, each of a tile's `splits` contiguous ranges
// of its stages, a tile's splits consecutive (1: the tiles themselves).
// Producer and consumers derive the same tile and range from a unit; a range
// walks its stages exactly as the whole tile would (same stage → tap and
// channel chunk), so each split sums a fixed run of K in a fixed order.
struct Unit {
  uint32_t tile;
  int split;
};
__device__ __forceinline__ Unit unit_of(uint32_t u, uint32_t splits) {
  return {u / splits, int(u % splits)};
}

// Stages [first, first + count) of a tile's nslices in split `split` of
// `splits`, the first nslices % splits ranges a stage longer: none empty
// where splits ≤ nslices (the host's clamp), and the tile's last stage (the
// TMA loader's padding pieces) in the last range.
struct StageRange {
  int first, count;
};
__device__ __forceinline__ StageRange stage_range(int nslices, int split, int splits) {
  const int q = nslices / splits, r = nslices - q * splits;
  return {split * q + min(split, r), q + (split < r ? 1 : 0)};
}

// A tile's walk over the packed weight's taps (d, h, w order): the first
// tap's index and the index step of a tap along each axis.
struct WeightTaps {
  int first, step[3];
};
__device__ __forceinline__ WeightTaps weight_taps(const KernelArgs& k, const TileGeometry& g) {
  const int stride[3] = {int(k.p.axis[1].kernel * k.p.axis[2].kernel), int(k.p.axis[2].kernel), 1};
  WeightTaps w{0, {0, 0, 0}};
#pragma unroll
  for (int a = 0; a < 3; ++a) {
    w.first += int(g.ax[a].k_origin) * stride[a];
    w.step[a] = int(g.ax[a].k_per_tap) * stride[a];
  }
  return w;
}

// Where, relative to its first tap's, the lowest source position a tile's
// taps read along an axis lies (0, or below it where taps walk backwards):
// the halo loader's halo starts there.
__device__ __forceinline__ int lowest_tap_offset(const GemmAxis& ax) {
  return ax.src_per_tap < 0 ? (int(ax.taps) - 1) * int(ax.src_per_tap) : 0;
}

// The w axis of a grad-input tile walking merged taps (TmaTiling::merged),
// in the units of the source map's pair view: tap pair m of row j reads
// pair j − p/2 + m, its weight taps 2m and 2m + 1.
__device__ __forceinline__ GemmAxis merge_w_taps(GemmAxis ax) {
  ax.taps /= 2;
  ax.src_extent /= 2;
  ax.src_per_row = 1;
  ax.src_origin /= 2;
  ax.k_per_tap = 2;
  return ax;
}

// Steps to the next tap in (d, h, w) order: t1, t2 count the h and w taps,
// and `value` (a weight-tap index, a halo row) moves by the step of the axis
// that advanced, less the steps of the axis below that wrapped.  Counters:
// three runtime divisions a tap held the halo loader's producer to about one
// stage per 700 clocks and doubled its consumers' instructions (RESULTS.md,
// "Halo loader round").
template <typename T>
__device__ __forceinline__ void next_tap(int& t1, int& t2, T& value, const T (&step)[3],
                                         const int (&taps)[3]) {
  value += step[2];
  if (++t2 == taps[2]) {
    t2 = 0;
    value += step[1] - T(taps[2]) * step[2];
    if (++t1 == taps[1]) {
      t1 = 0;
      value += step[0] - T(taps[1]) * step[1];
    }
  }
}

// One thread issues every stage.  K is walked per tap (t0, t1, t2) and
// row_bytes chunk of channels; each such piece is two copies, the source box
// at the tap's offset and the weight slice of (tap, columns), and
// pieces_per_stage consecutive pieces share a stage (A's sub-tiles at the
// front of the slot, B's after all of A, each sub-tile a whole number of
// swizzle atoms).  A unit's pieces are those of its range of stages (split
// K), up to the tile's last piece.  The tile's last stage is filled up with pieces at
// past_sample / past_tap: boxes wholly outside both tensors, which TMA fills
// with zeros (and still counts in full toward the stage's bytes), so they add
// nothing to the sums, not even 0 · inf, and read no memory.  The copies
// publish each stage themselves (the barrier's transaction bytes).
template <typename scalar_t, int BN>
__device__ __forceinline__ void produce_tma(const KernelArgs& k, const TmaTiling& tma,
                                            const SharedState& st, uint32_t smem0,
                                            uint32_t tiles_per_group, uint32_t units) {
  using L = Layout<BN>;
  if (threadIdx.x != 0) return;
  const StageSlots<BN> slots{smem0, tma.weight_stages > 0};
  // Sub-tile sizes: kBM (A) or BN (B) rows of row_bytes.  pieces_per_stage ×
  // row_bytes is 128, so the stage's bytes are always the whole slot's
  // (whole boxes, zeros included, as TMA counts them).
  const uint32_t row_bytes = uint32_t(tma.row_bytes);
  const uint32_t a_piece = kBM * row_bytes, b_piece = BN * row_bytes;
  const int per_stage = tma.pieces_per_stage;
  const int slice = int(row_bytes / sizeof(scalar_t)), chunks = tma.chunks;
  const int C = int(k.ops.channels);
  const uint32_t full0 = smem_addr(st.full), empty0 = smem_addr(st.empty);

  uint32_t seq = 0;   // stages begun so far, over all tiles
  int sub = 0;        // pieces already in stage `seq`
  uint32_t sa = 0, sb = 0, full = 0;  // the current stage's A and B sub-tiles, its barrier
  // Resident weight: the stages from here on carry A alone (the CTA's first
  // tile, whose stage j is seq j, loaded the weight's).
  const uint32_t weight_loaded = slots.resident ? uint32_t(tma.weight_stages) : UINT32_MAX;
  // Piece `sub` of stage `seq`: the source box at (channel c0, w, h, d,
  // sample) and the weight slice at (channel wc0, column col0, tap, group).
  const auto load_piece = [&](int c0, int w, int h, int d, int sample, int wc0, int col0, int tap,
                              int group) {
    const bool with_b = seq < weight_loaded;
    if (sub == 0) {
      const uint32_t s = slots.slot(seq);
      full = full0 + 8 * s;
      if (seq >= slots.ring()) mbarrier_wait(empty0 + 8 * s, slots.parity(seq) ^ 1);
      sa = slots.a(s);
      sb = slots.b(s, seq);
      mbarrier_arrive_expect_tx(full, with_b ? L::kStageBytes : L::kABytes);
    }
    tma_load_5d(sa + uint32_t(sub) * a_piece, &tma.source, full, c0, w, h, d, sample);
    if (with_b && tma.merged) {  // the pair's two weight taps (sub is 0)
      tma_load_4d(sb, &tma.weight, full, wc0, col0, tap, group);
      tma_load_4d(sb + b_piece, &tma.weight, full, wc0, col0, tap + 1, group);
    } else if (with_b) {
      tma_load_4d(sb + uint32_t(sub) * b_piece, &tma.weight, full, wc0, col0, tap, group);
    }
    if (++sub == per_stage) {
      sub = 0;
      ++seq;
    }
  };

  for (uint32_t u = blockIdx.x; u < units; u += gridDim.x) {
    const Unit unit = unit_of(u, uint32_t(k.ops.splits));
    const TileGeometry g = tile_geometry<scalar_t, true>(k, tma, st.axes, unit.tile, tiles_per_group);
    if (!g.has_rows || g.nslices == 0) continue;
    const StageRange range = stage_range(g.nslices, unit.split, k.ops.splits);
    const WeightTaps wt = weight_taps(k, g);
    int pos0[3], step[3], taps[3];
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      pos0[a] = int(g.j0[a] * g.ax[a].src_per_row + g.ax[a].src_origin);
      step[a] = int(g.ax[a].src_per_tap);
      taps[a] = int(g.ax[a].taps);
    }
    const int group = g.tile.group, n = int(g.n), col0 = g.tile.ntile * BN;
    // Pieces in the tile's order, channel chunk fastest, then the taps in
    // (d, h, w) order (next_tap): a range ends on a stage boundary, or where
    // the tile's pieces end.
    int piece = range.first * per_stage;
    const int end = min((range.first + range.count) * per_stage, taps[0] * taps[1] * taps[2] * chunks);
    int chunk = piece % chunks, tap = piece / chunks;
    int t2 = tap % taps[2], t1 = (tap / taps[2]) % taps[1], t0 = tap / (taps[2] * taps[1]);
    int kidx = wt.first + t0 * wt.step[0] + t1 * wt.step[1] + t2 * wt.step[2];
    for (; piece < end; ++piece) {
      load_piece(group * C + chunk * slice, pos0[2] + t2 * step[2], pos0[1] + t1 * step[1],
                 pos0[0] + t0 * step[0], n, chunk * slice, col0, kidx, group);
      if (++chunk == chunks) {
        chunk = 0;
        t0 += t1 + 1 == taps[1] && t2 + 1 == taps[2];  // before next_tap wraps them
        next_tap(t1, t2, kidx, wt.step, taps);
      }
    }
    while (sub != 0) load_piece(group * C, 0, 0, 0, tma.past_sample, 0, col0, tma.past_tap, group);
  }
}

// TF32 under the halo loader: the producer warpgroup's warps 1-3 (warp 0's
// first thread issues the copies) round each halo to TF32 in place once it
// lands, then publish it on halo_rounded, which the consumers wait on instead
// of halo_full.  Per-tap boxes round A in the consumers' registers at every
// tap (tf32_register_a_stage); a halo serves all of a tile's taps (27 at
// k3s1), so rounding it once costs a 27th of that, off the consumers' issue
// slots, and lets them read A by descriptor as fp16/bf16 do.  They take the
// halos in turn until produce_halo, past its last, completes one more phase
// of halo_full with the count of halos in halo_count: walking the tiles here
// as well (tile_geometry) cost the producer warpgroup's 40 registers spills
// in produce_halo's own loop.
constexpr int kRoundingWarps = 3;

__device__ __forceinline__ void round_halos(const TmaTiling& tma, const SharedState& st,
                                            uint32_t smem0) {
  if (threadIdx.x < 32) return;
  const uint32_t thread = threadIdx.x - 32, lane = threadIdx.x % 32;
  const uint32_t hfull0 = smem_addr(st.halo_full), hrounded0 = smem_addr(st.halo_rounded);
  const uint32_t bytes = uint32_t(tma.halo[0] * tma.halo[1] * tma.halo[2] * tma.row_bytes);
  for (uint32_t hseq = 0;; ++hseq) {
    const uint32_t slot = hseq % kHaloSlots;
    mbarrier_wait(hfull0 + 8 * slot, (hseq / kHaloSlots) & 1);
    if (load_shared_u32(smem_addr(&st.halo_count)) == hseq) return;  // past the last
    const uint32_t halo = smem0 + slot * uint32_t(tma.halo_bytes);
#pragma unroll 4
    for (uint32_t at = 16 * thread; at < bytes; at += 16 * 32 * kRoundingWarps) {
      round_tf32_shared_x4(halo + at);
    }
    fence_proxy_async_shared();  // the consumers' wgmmas read it through the async proxy
    __syncwarp();
    if (lane == 0) mbarrier_arrive(hrounded0 + 8 * slot);
  }
}

// The halo loader's one thread: per tile and channel chunk (an item), the
// halo box (the tile's box of the source grown by the taps' reach, every
// position the tile's taps read) into a halo slot, then per tap the weight
// slice alone into the stage ring; taps in the consumers' order (d, h, w),
// chunks outermost.  The next item's halo is issued once kStages of this
// item's slices are: that last one waited for the ring slot of the item
// before's last tap, so the consumers are done with that item and its halo
// slot, and the new halo has the rest of this item's MMAs to land.  The halo
// starts at the lowest
// position any tap reads (src_per_row is 1 here, so a tap moves the box by
// src_per_tap positions).
template <typename scalar_t, int BN>
__device__ __forceinline__ void produce_halo(const KernelArgs& k, const TmaTiling& tma,
                                             const SharedState& st, uint32_t smem0,
                                             uint32_t tiles_per_group, uint32_t tiles) {
  if (threadIdx.x != 0) return;
  constexpr int kStages = kHaloStages;
  constexpr uint32_t kStageK = halo_stage_k(BN), kBBytes = BN * kStageK;
  const int slice = tma.row_bytes / int(sizeof(scalar_t)), C = int(k.ops.channels);
  const uint32_t full0 = smem_addr(st.full), empty0 = smem_addr(st.empty);
  const uint32_t hfull0 = smem_addr(st.halo_full), hempty0 = smem_addr(st.halo_empty);
  const uint32_t row_bytes = uint32_t(tma.row_bytes), per_stage = kStageK / row_bytes;
  const uint32_t halo_tx = uint32_t(tma.halo[0] * tma.halo[1] * tma.halo[2]) * row_bytes;
  const uint32_t b0 = smem0 + kHaloSlots * uint32_t(tma.halo_bytes);
  const auto geometry = [&](uint32_t t) {
    return tile_geometry<scalar_t, true>(k, tma, st.axes, t, tiles_per_group);
  };
  // A tile's halo box: its first channel, (d, h, w) origin and sample.
  // next_tile derives it from the geometry it computes anyway (this one
  // thread's issue rate bounds the CTA, and each tile_geometry is a chain of
  // divisions: three a tile became two).
  struct HaloBox {
    int c0, origin[3], n;
  };
  // The first tile from t on (stride gridDim.x) that has taps, and its halo
  // box; `tiles` if none.
  const auto next_tile = [&](uint32_t t, HaloBox& box) {
    for (; t < tiles; t += gridDim.x) {
      const TileGeometry g = geometry(t);
      if (!g.has_rows || g.nslices == 0) continue;
#pragma unroll
      for (int a = 0; a < 3; ++a) {
        box.origin[a] = int(g.j0[a] + g.ax[a].src_origin) + lowest_tap_offset(g.ax[a]);
      }
      box.c0 = g.tile.group * C;
      box.n = int(g.n);
      break;
    }
    return t;
  };
  uint32_t hseq = 0;
  const auto load_halo = [&](const HaloBox& box, int chunk) {
    const uint32_t slot = hseq % kHaloSlots;
    if (hseq >= kHaloSlots) mbarrier_wait(hempty0 + 8 * slot, ((hseq / kHaloSlots) - 1) & 1);
    mbarrier_arrive_expect_tx(hfull0 + 8 * slot, halo_tx);
    tma_load_5d(smem0 + slot * uint32_t(tma.halo_bytes), &tma.source, hfull0 + 8 * slot,
                box.c0 + chunk * slice, box.origin[2], box.origin[1], box.origin[0], box.n);
    ++hseq;
  };

  uint32_t seq = 0;
  HaloBox box{};
  uint32_t t = next_tile(blockIdx.x, box);
  if (t < tiles) load_halo(box, 0);
  while (t < tiles) {
    const TileGeometry g = geometry(t);
    const WeightTaps wt = weight_taps(k, g);
    const int taps[3] = {int(g.ax[0].taps), int(g.ax[1].taps), int(g.ax[2].taps)};
    const int all_taps = taps[0] * taps[1] * taps[2];
    const int stages = (all_taps + int(per_stage) - 1) / int(per_stage);
    const int group = g.tile.group, col0 = g.tile.ntile * BN;
    HaloBox after_box{};
    const uint32_t after = next_tile(t + gridDim.x, after_box);
    for (int chunk = 0; chunk < tma.chunks; ++chunk) {
      const auto next_halo = [&] {
        if (chunk + 1 < tma.chunks) {
          load_halo(box, chunk + 1);
        } else if (after < tiles) {
          load_halo(after_box, 0);
        }
      };
      // Taps in (d, h, w) order (next_tap); past the last, a box at
      // past_tap (all zeros, read from nowhere).
      int tap = 0, kidx = wt.first, t1 = 0, t2 = 0;
      for (int i = 0; i < stages; ++i, ++seq) {
        const uint32_t s = seq % kStages;
        if (seq >= kStages) mbarrier_wait(empty0 + 8 * s, ((seq / kStages) - 1) & 1);
        mbarrier_arrive_expect_tx(full0 + 8 * s, kBBytes);
        for (uint32_t m = 0; m < per_stage; ++m, ++tap) {
          tma_load_4d(b0 + s * kBBytes + m * BN * row_bytes, &tma.weight, full0 + 8 * s, chunk * slice,
                      col0, tap < all_taps ? kidx : tma.past_tap, group);
          next_tap(t1, t2, kidx, wt.step, taps);
        }
        if (i + 1 == kStages) next_halo();
      }
      if (stages < kStages) next_halo();
    }
    t = after;
    box = after_box;
  }
  if constexpr (std::is_same_v<scalar_t, float>) {  // round_halos stops here
    const uint32_t slot = hseq % kHaloSlots;
    if (hseq >= kHaloSlots) mbarrier_wait(hempty0 + 8 * slot, ((hseq / kHaloSlots) - 1) & 1);
    store_shared_u32(smem_addr(&st.halo_count), hseq);
    mbarrier_arrive(hfull0 + 8 * slot);
  }
}

template <typename scalar_t, typename index_t, int BN>
__device__ __forceinline__ void produce(const KernelArgs& k, const SharedState& st, uint32_t smem0,
                                        uint32_t tiles_per_group, uint32_t units) {
  using L = Layout<BN>;
  constexpr int kStages = L::kStages;
  using uoff_t = std::make_unsigned_t<index_t>;
  constexpr int kVec = 16 / int(sizeof(scalar_t));
  constexpr int kSlice = kSliceBytes / int(sizeof(scalar_t));
  const int tid = threadIdx.x;
  const int piece = tid % kPieces, row0 = tid / kPieces;
  const scalar_t* src = static_cast<const scalar_t*>(k.ops.source);
  const scalar_t* wts = static_cast<const scalar_t*>(k.ops.packed_weight);
  const int C = int(k.ops.channels), columns = int(k.ops.columns);
  const uint32_t full0 = smem_addr(st.full), empty0 = smem_addr(st.empty);

  uint32_t seq = 0;  // stages issued so far, over all tiles
  for (uint32_t u = blockIdx.x; u < units; u += gridDim.x) {
    const Unit unit = unit_of(u, uint32_t(k.ops.splits));
    const TileGeometry g =
        tile_geometry<scalar_t, false>(k, TmaTiling{}, st.axes, unit.tile, tiles_per_group);
    if (!g.has_rows || g.nslices == 0) continue;
    const StageRange range = stage_range(g.nslices, unit.split, k.ops.splits);
    const Walk<index_t> w = make_walk<index_t>(k, g.ax, g.tile.group);
    const RowDecomposer<index_t> decompose(g.ax);
    SourceRow<index_t> rows[kARows];
#pragma unroll
    for (int q = 0; q < kARows; ++q) {
      rows[q] = source_row<index_t>(k, g.ax, decompose, g.m0 + row0 + q * kRowStep, g.rows,
                                    g.tile.group);
    }
    uoff_t b_row[L::kBRows];
    bool b_ok[L::kBRows];
#pragma unroll
    for (int q = 0; q < L::kBRows; ++q) {
      const int col = g.tile.ntile * BN + row0 + q * kRowStep;
      b_ok[q] = col < columns;
      b_row[q] = w.b_origin + uoff_t(index_t(int64_t(col) * C));
    }
    Cursor<index_t> cur{};
    advance(cur, w, range.first * kSlice + piece * kVec);  // the range's first stage

    for (int slice = 0; slice < range.count; ++slice, ++seq) {
      const uint32_t s = seq % kStages;
      if (seq >= kStages) mbarrier_wait(empty0 + 8 * s, ((seq / kStages) - 1) & 1);
      const uint32_t sa = smem0 + s * L::kStageBytes, sb = sa + L::kABytes;
      const bool kok = cur.kk < g.K;
#pragma unroll
      for (int q = 0; q < kARows; ++q) {
        const bool ok = kok && in_bounds(rows[q], cur, w);
        const scalar_t* p = ok ? src + index_t(rows[q].off + cur.a_off) : src;
        cp_async16(sa + sw128_offset(row0 + q * kRowStep, piece), p, ok);
      }
#pragma unroll
      for (int q = 0; q < L::kBRows; ++q) {
        const bool ok = kok && b_ok[q];
        const scalar_t* p = ok ? wts + index_t(b_row[q] + cur.b_off) : wts;
        cp_async16(sb + sw128_offset(row0 + q * kRowStep, piece), p, ok);
      }
      advance(cur, w, kSlice);
      cp_async_arrive_noinc(full0 + 8 * s);  // published as the copies land
    }
  }
}

// Both consumer warpgroups take every tile that has rows, warpgroup wg its
// rows 64·wg to 64·wg + 63.  A stage is refilled only once all eight
// consumer warps released it, so neither warpgroup runs more than the ring
// ahead of the other and a barrier it waits on is never more than one phase
// behind (a parity wait on a barrier two phases behind would pass at once).
template <typename scalar_t, typename index_t, int BN, bool kTma, bool kHalo, bool kBlocks>
__device__ __forceinline__ void consume(const KernelArgs& k, const TmaTiling& tma,
                                        const SharedState& st, uint32_t smem0,
                                        uint32_t tiles_per_group, uint32_t units) {
  using L = Layout<BN>;
  constexpr int kStages = kHalo ? kHaloStages : L::kStages;
  constexpr int kSteps = kSliceBytes / 32;  // wgmma k-steps per 128-byte stage
  constexpr int kHalf = kSteps / 2;         // k-steps per commit group, A through registers
  // The warpgroup index broadcast from lane 0: the compiler then knows it
  // is warp-uniform and keeps what derives from it (the halo loader's
  // descriptors) in uniform registers, instead of moving each to them
  // before its wgmma.
  const int wg = __shfl_sync(0xffffffffu, (threadIdx.x - 128) / 128, 0);
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int columns = int(k.ops.columns);
  const scalar_t* bias = static_cast<const scalar_t*>(k.ops.bias);
  scalar_t* dst = static_cast<scalar_t*>(k.ops.dest);
  const index_t dc = index_t(k.dest.c);
  const uint32_t full0 = smem_addr(st.full), empty0 = smem_addr(st.empty);
  const int splits = kHalo ? 1 : k.ops.splits;
  float* const partials = kHalo ? nullptr : k.ops.partials;
  const StageSlots<BN> slots{smem0, kTma && !kHalo && tma.weight_stages > 0};

  auto release = [&](uint32_t seq) {
    __syncwarp();
    if (lane == 0) mbarrier_arrive(empty0 + 8 * (kHalo ? seq % kStages : slots.slot(seq)));
  };

  float acc[BN / 2];     // this warpgroup's rows of the tile, 64·wg to 64·wg + 63
  uint32_t frag[2][kHalf][4];  // TF32: A through registers, two commit groups' fragments
  uint32_t seq = 0;      // stages so far, over all tiles
  uint32_t hseq = 0;     // halo loads so far (halo loader)
  const uint32_t upper = uint32_t(lane >> 4);  // ldmatrix matrices 2-3: the second 16 bytes

  for (uint32_t u = blockIdx.x; u < units; u += gridDim.x) {
    const Unit unit = unit_of(u, uint32_t(splits));
    const TileGeometry g = tile_geometry<scalar_t, kTma>(k, tma, st.axes, unit.tile, tiles_per_group);
    if (!g.has_rows) continue;
    const int unit_stages = stage_range(g.nslices, unit.split, splits).count;
#pragma unroll
    for (int e = 0; e < BN / 2; ++e) acc[e] = 0.f;
    fence_accumulators(acc);
    // Per stage, kSteps 32-byte k-steps of K: kK of them per row of 32·kK
    // bytes (128, or the TMA loader's 64 or 32) and kSteps / kK such pieces
    // of K, each one sub-tile of A (kBM rows) in the front of the slot and
    // one of B (BN rows) after all of A.  kK is a compile-time count chosen
    // once per tile: a branch between a stage's wgmmas would split their
    // commit group.  Merged w taps: A's rows 128 bytes (kK), B's 64 (kKB).
    const auto main_loop = [&](auto steps, auto b_steps) {
      constexpr int kK = decltype(steps)::value, kKB = decltype(b_steps)::value;
      static_assert(!kBlocks || (BN == 64 && kK == kSteps && kKB == kSteps),
                    "group blocks: four 16-channel groups over 64 columns and 128-byte rows");
      constexpr uint32_t kRow = 32 * kK, kRowB = 32 * kKB;
      constexpr uint64_t kDesc = kmajor_swizzle_desc_bits(kRow);
      constexpr uint64_t kDescB = kmajor_swizzle_desc_bits(kRowB);
      static_assert(kSteps % kK == 0 && kSteps % kKB == 0, "a stage holds whole rows");
      // Group blocks: group j's m64n16k16 a stage (k16; TF32: two m64n16k8
      // of the row's 16 channels), against B's rows 16j to 16j + 15 (2 KB
      // into the sub-tile: whole swizzle periods), into its own
      // accumulators; they are the tile's registers 8j to 8j + 7 (columns
      // 16j to 16j + 15) in wgmma's fragment order, copied there once the
      // tile's MMAs are done.  fp16/bf16: a tap's 64 channels are one stage,
      // group j k-step j.  TF32: they are two stages (channel chunks 0 and
      // 1), the first groups 0 and 1, the second 2 and 3, group 2c + h
      // k-steps 2h and 2h + 1 of chunk c; every tile's stages are whole taps
      // (no split K: tensor_core_gemm_sm90_splits), so a stage's chunk is its
      // parity.
      float block_acc[kBlocks ? 4 : 1][8];
      if constexpr (kBlocks) {
        static_assert(kSteps == 4, "four groups a 128-byte row");
#pragma unroll
        for (int j = 0; j < 4; ++j) {
#pragma unroll
          for (int e = 0; e < 8; ++e) block_acc[j][e] = 0.f;
          fence_accumulators(block_acc[j]);
        }
      }
      if constexpr (std::is_same_v<scalar_t, float>) {
        static_assert(kK == kKB, "TF32 never merges taps");
        // Lane l's ldmatrix row: 8·bit 3 + l%8 of its warp's 16 (matrices
        // 0-3 are a[0..3]).
        const uint32_t lane_row = uint32_t(64 * wg + 16 * warp + 8 * ((lane >> 3) & 1) + (lane & 7)) * kRow;
        const uint32_t swizzle = (lane_row >> 7) & (kRow / 16 - 1);
        // Its address in a piece's sub-tile at each k-step of a row, set
        // once: written inline, the compiler recomputed them every stage (8-10
        // instructions of the 64- and 32-byte rows' loops, SASS) once the
        // producer's split-K walk changed.
        uint32_t lane_at[kK];
#pragma unroll
        for (int at = 0; at < kK; ++at) lane_at[at] = lane_row + (((2 * at + upper) ^ swizzle) << 4);
        if constexpr (kBlocks) {
          // Stage `slice`, channel chunk c: its first commit group (k-steps 0
          // and 1) block 2c into lo, its second block 2c + 1 into hi.
          const auto block_stage = [&](int slice, float(&lo)[8], float(&hi)[8], int c) {
            const uint32_t s = slots.slot(seq);
            mbarrier_wait(full0 + 8 * s, slots.parity(seq));
            const uint32_t a = slots.a(s), b = slots.b(s, uint32_t(slice));
            tf32_register_a_groups(
                frag, [&](uint32_t(&f)[4], int ks) { ldmatrix_x4(f, a + lane_at[ks]); },
                [&](const uint32_t(&f)[4], int ks) {
                  const uint64_t db =
                      smem_desc(b + uint32_t(2 * c + ks / 2) * 16 * kRow + 32 * ks, kDesc);
                  if (ks < 2) {
                    WgmmaBlockRegisterATf32::run(lo, f, db);
                  } else {
                    WgmmaBlockRegisterATf32::run(hi, f, db);
                  }
                },
                [&] {
                  if (slice > 0) release(seq - 1);  // its second group just retired
                });
            ++seq;
          };
          for (int slice = 0; slice < unit_stages; slice += 2) {
            block_stage(slice, block_acc[0], block_acc[1], 0);
            block_stage(slice + 1, block_acc[2], block_acc[3], 1);
          }
        } else {
          for (int slice = 0; slice < unit_stages; ++slice, ++seq) {
            const uint32_t s = slots.slot(seq);
            mbarrier_wait(full0 + 8 * s, slots.parity(seq));
            const uint32_t a = slots.a(s), b = slots.b(s, uint32_t(slice));
            // A from this warpgroup's rows by ldmatrix (K-major, as B).
            tf32_register_a_stage<BN>(
                acc, frag,
                [&](uint32_t(&f)[4], int ks) {
                  const uint32_t piece = ks / kK, at = ks % kK;
                  ldmatrix_x4(f, a + piece * (kBM * kRow) + lane_at[at]);
                },
                [&](int ks) {
                  const uint32_t piece = ks / kK, at = ks % kK;
                  return smem_desc(b + piece * (BN * kRow) + 32 * at, kDesc);
                },
                [&] {
                  if (slice > 0) release(seq - 1);  // its second group just retired
                });
          }
          return;
        }
      } else {
        for (int slice = 0; slice < unit_stages; ++slice, ++seq) {
          const uint32_t s = slots.slot(seq);
          mbarrier_wait(full0 + 8 * s, slots.parity(seq));
          const uint32_t a = slots.a(s) + wg * 64 * kRow, b = slots.b(s, uint32_t(slice));
          // Each sub-tile starts kRow-aligned, so a k-step inside its rows is
          // an OR into the descriptor (desc_plus).
          const uint64_t da = smem_desc(a, kDesc), db = smem_desc(b, kDescB);
          wgmma_fence();
          if constexpr (kBlocks) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              WgmmaBlock<scalar_t>::run(block_acc[j], desc_plus(da, 32 * j),
                                        desc_plus(db + j * kRowB, 32 * j));
            }
          } else {
#pragma unroll
            for (int ks = 0; ks < kSteps; ++ks) {
              const uint32_t piece = ks / kK, at = 32 * (ks % kK);
              const uint32_t b_piece = ks / kKB, b_at = 32 * (ks % kKB);
              Wgmma<scalar_t, BN>::run(acc, desc_plus(da + piece * (kBM * kRow / 16), at),
                                       desc_plus(db + b_piece * (BN * kRowB / 16), b_at));
            }
          }
          wgmma_commit();
          wgmma_wait<1>();  // the previous stage's MMAs are done with their operands
          if (slice > 0) release(seq - 1);
        }
      }
      if constexpr (kBlocks) {
        wgmma_wait<0>();
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          fence_accumulators(block_acc[j]);
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[8 * j + e] = block_acc[j][e];
        }
      }
    };
    const int row_bytes = kTma ? tma.row_bytes : kSliceBytes;
    if constexpr (kBlocks) {
      main_loop(std::integral_constant<int, kSteps>{}, std::integral_constant<int, kSteps>{});
    } else if constexpr (kHalo) {
      // The halo loader: per channel chunk one halo box of the source (the
      // tile's box grown by each axis's tap reach) and per stage the B of
      // halo_stage_k(BN) / row_bytes taps (the last stage's padding taps are
      // skipped); every tap reads its A rows from the halo at the tap's
      // offset, by descriptor.
      // Row r of the tile is position (r >> (3 + lh), (r >> 3) % 2^lh, r % 8)
      // of the box (tma_tiling: 8 wide, at least 8 high), so this
      // warpgroup's 64 rows are 8 lines of 8 positions of one d-plane: 8-row
      // groups of consecutive halo rows, halo_w rows apart (the descriptor's
      // stride byte offset), starting at block_row.  wgmma swizzles by the
      // absolute shared-memory address, as TMA wrote the halo, so a tap may
      // start at any halo row (base offset 0; scripts/wgmma_halo_probe.cu,
      // RESULTS.md "Two CTAs an SM round").  Through registers, a stage
      // cost each consumer warp ~95 instructions, 4 of them ldmatrix and ~40
      // per-lane address and mask arithmetic on their results; by
      // descriptor about as many (SASS), half of them on the uniform
      // datapath, none a shared-memory load in the warp's chain (not yet
      // measured).
      const auto halo_loop = [&](auto row_width) {
        constexpr int kRow = decltype(row_width)::value, kK = kRow / 32;
        constexpr int kStageK = halo_stage_k(BN), kPer = kStageK / kRow;
        constexpr uint64_t kBDesc = kmajor_swizzle_desc_bits(kRow);
        const int lh = tma.log_box[1];
        const int halo_h = tma.halo[1], halo_w = tma.halo[2];
        const int r0 = 64 * wg;
        const uint32_t block_row =
            uint32_t(((r0 >> (3 + lh)) * halo_h + ((r0 >> 3) & ((1 << lh) - 1))) * halo_w);
        const uint64_t a_bits = smem_desc_bits(16, uint32_t(halo_w * kRow), kRow);
        // Tap t of axis a sits at first[a] + t·step[a] positions into the
        // halo (the halo starts at the lowest position any tap reads).
        int first[3], step[3], taps[3];
#pragma unroll
        for (int a = 0; a < 3; ++a) {
          step[a] = int(g.ax[a].src_per_tap);
          taps[a] = int(g.ax[a].taps);
          first[a] = -lowest_tap_offset(g.ax[a]);
        }
        const int all_taps = taps[0] * taps[1] * taps[2];
        // The halo row of each tap in turn (next_tap).
        const uint32_t row_step[3] = {uint32_t(step[0] * halo_h * halo_w), uint32_t(step[1] * halo_w),
                                      uint32_t(step[2])};
        const uint32_t row_first = uint32_t((first[0] * halo_h + first[1]) * halo_w + first[2]);
        const uint32_t b0 = smem0 + kHaloSlots * uint32_t(tma.halo_bytes);
        // TF32 reads each halo once round_halos has rounded it.
        const uint32_t hfull0 = smem_addr(std::is_same_v<scalar_t, float> ? st.halo_rounded : st.halo_full);
        const uint32_t hempty0 = smem_addr(st.halo_empty);
        const int stages = (all_taps + kPer - 1) / kPer;
        int stage = 0;
        for (int chunk = 0; chunk < tma.chunks; ++chunk, ++hseq) {
          const uint32_t slot = hseq % kHaloSlots;
          mbarrier_wait(hfull0 + 8 * slot, (hseq / kHaloSlots) & 1);
          const uint32_t a0 = smem0 + slot * uint32_t(tma.halo_bytes) + block_row * kRow;
          uint32_t row = row_first;  // the next tap's halo row
          int tap = 0, t1 = 0, t2 = 0;
          for (int i = 0; i < stages; ++i, ++stage, ++seq) {
            uint32_t rows[kPer];
            int live = 0;  // taps of this stage that are not padding
#pragma unroll
            for (int m = 0; m < kPer; ++m, ++tap) {
              live += tap < all_taps;
              rows[m] = row;
              next_tap(t1, t2, row, row_step, taps);
            }
            const uint32_t s = seq % kStages;
            mbarrier_wait(full0 + 8 * s, (seq / kStages) & 1);
            const uint32_t b = b0 + s * uint32_t(BN * kStageK);
            // A stage's MMAs, one straight-line commit group a count of live
            // taps (the last stage's padding taps skipped).
            with_tap_count<kPer>(live, [&](auto live_taps) {
              wgmma_fence();
#pragma unroll
              for (int m = 0; m < decltype(live_taps)::value; ++m) {
                const uint64_t da = smem_desc(a0 + rows[m] * kRow, a_bits);
                const uint64_t db = smem_desc(b + m * (BN * kRow), kBDesc);
#pragma unroll
                for (int at = 0; at < kK; ++at) {
                  Wgmma<scalar_t, BN>::run(acc, desc_plus(da, 32 * at), desc_plus(db, 32 * at));
                }
              }
              wgmma_commit();
            });
            wgmma_wait<1>();  // the previous stage's MMAs are done with their operands
            if (stage > 0) release(seq - 1);
          }
          // The slot may be refilled once no MMA reads this halo any more.
          wgmma_wait<0>();
          __syncwarp();
          if (lane == 0) mbarrier_arrive(hempty0 + 8 * slot);
        }
      };
      if (g.nslices > 0) {
        if (row_bytes == kSliceBytes) {
          halo_loop(std::integral_constant<int, kSliceBytes>{});
        } else {
          halo_loop(std::integral_constant<int, 64>{});
        }
      }
    } else if (kTma && tma.merged) {
      if constexpr (!std::is_same_v<scalar_t, float>) {  // TF32 never merges
        main_loop(std::integral_constant<int, kSteps>{}, std::integral_constant<int, 2>{});
      }
    } else if (row_bytes == kSliceBytes) {
      main_loop(std::integral_constant<int, kSteps>{}, std::integral_constant<int, kSteps>{});
    } else if (row_bytes == 64) {
      main_loop(std::integral_constant<int, 2>{}, std::integral_constant<int, 2>{});
    } else {
      main_loop(std::integral_constant<int, 1>{}, std::integral_constant<int, 1>{});
    }
    wgmma_wait<0>();
    fence_accumulators(acc);
    if (unit_stages > 0) release(seq - 1);

    // Epilogue: thread (warp, lane) holds rows 64·wg + 16·warp + lane/4
    // (+8) and columns 8j + 2·(lane%4) (+1); under the TMA loader row r of
    // the tile is position r of the box, w fastest.  Split K writes the fp32
    // sums to the unit's plane of partials instead (dense channels-last, in
    // dest's shape; add_splits_kernel adds the bias).
    const RowDecomposer<index_t> decompose(g.ax);
    const int n0 = g.tile.ntile * BN;
    const int64_t bias_base = int64_t(g.tile.group) * columns;
    const index_t plane =
        partials != nullptr ? index_t(unit.split) * index_t(k.partial.n * k.p.batch) : index_t(0);
    // fp16/bf16 into a dest channel-contiguous in whole 16-byte pieces
    // (columns, strides and address in them): each four blocks of 8 columns
    // transposed across the quad (quad_transpose.h), so a lane stores one
    // block's 8 channels at once.  fp32 stores stay pairs: a warp's 8-byte
    // pairs already fill each row's 32-byte sector, and the transpose of two
    // words a pair cost TF32 layers 5-9 % (RESULTS.md, "Epilogue stores
    // round").
    const bool whole_vectors = sizeof(scalar_t) == 2 && k.vector_store && partials == nullptr;
    if (whole_vectors) {
      if constexpr (sizeof(scalar_t) == 2) {
        const auto xor_lane = [](uint32_t word, int mask) {
          return __shfl_xor_sync(0xffffffffu, word, mask);
        };
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = wg * 64 + warp * 16 + lane / 4 + 8 * h;
          // Every lane shuffles, its row past the tile's or not (the quad's
          // lanes share a row), and stores only within.  The row's offset is
          // computed once, before the shuffles: computed at each of the
          // 16-byte stores (6ffa8b3) it cost the 128-column grad-inputs of
          // K = 512 about 10 % (RESULTS.md, "Epilogue stores round"); held,
          // it spills 8 bytes in the 64-bit-index instances of 64 columns.
          bool in_rows;
          index_t row = 0;
          if constexpr (kTma) {
            const int lw = tma.log_box[2], lh = tma.log_box[1];
            const int j[3] = {g.j0[0] + (r >> (lw + lh)), g.j0[1] + ((r >> lw) & ((1 << lh) - 1)),
                              g.j0[2] + (r & ((1 << lw) - 1))};
            in_rows = j[0] < g.ax[0].rows && j[1] < g.ax[1].rows && j[2] < g.ax[2].rows;
            if (in_rows) row = dest_offset<index_t>(k, g.ax, g.n, j, g.tile.group, k.dest);
          } else {
            const int64_t m = g.m0 + r;
            in_rows = m < g.rows;
            if (in_rows) row = dest_row<index_t>(k, g.ax, decompose, m, g.tile.group, k.dest);
          }
#pragma unroll
          for (int q = 0; q < BN / 32; ++q) {
            uint32_t packed[4];  // the rounded pair of block 4q + b, then of block 4q + lane % 4
#pragma unroll
            for (int b = 0; b < 4; ++b) {
              const int j = 4 * q + b, col = n0 + 8 * j + 2 * (lane % 4);
              float v0 = acc[4 * j + 2 * h], v1 = acc[4 * j + 2 * h + 1];
              if (bias != nullptr && col < columns) {  // columns in 8s: the pair whole
                v0 += to_acc(bias[index_t((bias_base + col) * k.p.bias_stride)]);
                v1 += to_acc(bias[index_t((bias_base + col + 1) * k.p.bias_stride)]);
              }
              packed[b] = pack_pair(from_acc<scalar_t>(v0), from_acc<scalar_t>(v1));
            }
            quad_transpose(packed, lane % 4, xor_lane);
            const int col = n0 + 8 * (4 * q + lane % 4);
            if (in_rows && col < columns) {
              *reinterpret_cast<uint4*>(dst + row + index_t(col)) =
                  make_uint4(packed[0], packed[1], packed[2], packed[3]);
            }
          }
        }
      }
    } else {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = wg * 64 + warp * 16 + lane / 4 + 8 * h;
        index_t row;
        if constexpr (kTma) {
          const int lw = tma.log_box[2], lh = tma.log_box[1];
          const int j[3] = {g.j0[0] + (r >> (lw + lh)), g.j0[1] + ((r >> lw) & ((1 << lh) - 1)),
                            g.j0[2] + (r & ((1 << lw) - 1))};
          if (j[0] >= g.ax[0].rows || j[1] >= g.ax[1].rows || j[2] >= g.ax[2].rows) continue;
          row = partials != nullptr
                    ? plane + dest_offset<index_t>(k, g.ax, g.n, j, g.tile.group, k.partial)
                    : dest_offset<index_t>(k, g.ax, g.n, j, g.tile.group, k.dest);
        } else {
          const int64_t m = g.m0 + r;
          if (m >= g.rows) continue;
          row = partials != nullptr
                    ? plane + dest_row<index_t>(k, g.ax, decompose, m, g.tile.group, k.partial)
                    : dest_row<index_t>(k, g.ax, decompose, m, g.tile.group, k.dest);
        }
        if (partials != nullptr) {
#pragma unroll
          for (int j = 0; j < BN / 8; ++j) {
            const int col = n0 + 8 * j + 2 * (lane % 4);
            if (col >= columns) continue;
            float* const at = partials + row + index_t(col);
            const float v0 = acc[4 * j + 2 * h], v1 = acc[4 * j + 2 * h + 1];
            if ((columns & 1) == 0) {  // every offset even: whole 8-byte pairs
              *reinterpret_cast<float2*>(at) = make_float2(v0, v1);
            } else {
              at[0] = v0;
              if (col + 1 < columns) at[1] = v1;
            }
          }
          continue;
        }
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int col = n0 + 8 * j + 2 * (lane % 4);
          if (col >= columns) continue;
          const bool second = col + 1 < columns;
          float v0 = acc[4 * j + 2 * h], v1 = acc[4 * j + 2 * h + 1];
          if (bias != nullptr) {
            v0 += to_acc(bias[index_t((bias_base + col) * k.p.bias_stride)]);
            if (second) v1 += to_acc(bias[index_t((bias_base + col + 1) * k.p.bias_stride)]);
          }
          if (k.pair_store) {  // columns even: the pair is whole
            struct alignas(2 * sizeof(scalar_t)) Pair {
              scalar_t x, y;
            };
            *reinterpret_cast<Pair*>(dst + row + index_t(col)) =
                Pair{from_acc<scalar_t>(v0), from_acc<scalar_t>(v1)};
          } else {
            dst[row + index_t(col) * dc] = from_acc<scalar_t>(v0);
            if (second) dst[row + index_t(col + 1) * dc] = from_acc<scalar_t>(v1);
          }
        }
      }
    }
  }
}

// kBlocks: group blocks (TensorCoreGemmOperands::group_blocks), an instance
// of their own: beside TF32's other wgmmas (m64n64 with A in registers) the
// blocks' m64n16 made ptxas serialize every wgmma of the kernel (C7511),
// however their operands and accumulators were placed.
template <typename scalar_t, typename index_t, int BN, bool kTma, bool kHalo = false,
          bool kBlocks = false>
__global__ void __launch_bounds__(kThreads, (kCtasPerSm<BN, kTma>))
    tensor_core_gemm_sm90_kernel(const KernelArgs k, const __grid_constant__ TmaTiling tma) {
  static_assert(kTma || !kHalo, "the halo loader is a TMA loader");
  static_assert(!kBlocks || (BN == 64 && kTma && !kHalo),
                "group blocks: 64 columns, the TMA loader's per-tap boxes");
  using Registers =
      RegisterSplit<kTma, kCtasPerSm<BN, kTma>, kHalo && std::is_same_v<scalar_t, float>>;
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  __shared__ SharedState st;
  const uint32_t smem0 = swizzle_aligned(smem_addr(smem_raw));
  const int tid = threadIdx.x;
  if (tid < (kHalo ? kHaloStages : Layout<BN>::kStages)) {
    // Each producer thread's copies once per stage, or under the TMA loader
    // the one thread's arrive.expect_tx, then the copies' bytes.
    mbarrier_init(smem_addr(&st.full[tid]), kTma ? 1 : 128);
    mbarrier_init(smem_addr(&st.empty[tid]), 4 * kConsumers);  // each consumer warp
  }
  if (kHalo && tid < kHaloSlots) {
    mbarrier_init(smem_addr(&st.halo_full[tid]), 1);   // arrive.expect_tx, then the bytes
    mbarrier_init(smem_addr(&st.halo_empty[tid]), 4 * kConsumers);  // each consumer warp
    mbarrier_init(smem_addr(&st.halo_rounded[tid]), kRoundingWarps);  // TF32: each rounding warp
  }
  if (kHalo && tid == 0) st.halo_count = UINT32_MAX;  // not known yet
  if (tid >= 32 && tid < 32 + 3 * kMaxPhases) {
    const int a = (tid - 32) / kMaxPhases, r = (tid - 32) % kMaxPhases;
    if (r < k.phases[a]) {
      const GemmAxis ax = pass_axis(k, a, r);
      st.axes[a][r] = kTma && a == 2 && tma.merged ? merge_w_taps(ax) : ax;
    }
  }
  __syncthreads();
  const uint32_t tiles_per_group =
      uint32_t(k.mtiles) * uint32_t(k.phases[0] * k.phases[1] * k.phases[2]) * uint32_t(k.ntiles);
  const uint32_t tiles = tiles_per_group * uint32_t(k.p.groups);
  const uint32_t units = kHalo ? tiles : tiles * uint32_t(k.ops.splits);  // no split K under the halo
  if (tid < 128) {
    release_registers<Registers::kProducer>();
    if constexpr (kHalo) {
      if constexpr (std::is_same_v<scalar_t, float>) round_halos(tma, st, smem0);
      produce_halo<scalar_t, BN>(k, tma, st, smem0, tiles_per_group, tiles);
    } else if constexpr (kTma) {
      produce_tma<scalar_t, BN>(k, tma, st, smem0, tiles_per_group, units);
    } else {
      produce<scalar_t, index_t, BN>(k, st, smem0, tiles_per_group, units);
    }
  } else {
    claim_registers<Registers::kConsumer>();
    consume<scalar_t, index_t, BN, kTma, kHalo, kBlocks>(k, tma, st, smem0, tiles_per_group, units);
  }
#else
  __trap();  // never launched: tensor_core_gemm_sm90_runs_here requires sm_90a code
#endif
}

std::atomic<int> g_forced_ctas{0};
// Test and benchmark hook: a narrower column tile than choose_columns' (0:
// its own), to measure more, narrower CTAs on small grids.
std::atomic<int> g_forced_columns{0};

// 32, 64 or 128 columns: the narrowest that holds a group's columns in one
// tile, 128 beyond that (wider tiles would cost registers for little reuse).
inline int natural_columns(const ConvTranspose3dParams& p, GatherPass pass) {
  const int64_t c = columns_of(p, pass);
  return c <= 32 ? 32 : c <= 64 ? 64 : 128;
}

// natural_columns, but 64 where tiles of 128 would fill at most half the SMs:
// twice the CTAs on small grids.  Measured (kernel_ab.py, H200, RESULTS.md
// "Pack, combine and small-grid round"): the 512→256 batch-1 bottleneck's
// forward (64 tiles) 1.11-1.22x faster, its grad-input (16 tiles)
// 1.13-1.27x, grad-inputs of 64 tiles 1.02-1.24x; from 128 tiles up it lost
// as much as 0.76x.  The order of each output's sum over K does not depend on
// the column tiling.
inline int choose_columns(const ConvTranspose3dParams& p, GatherPass pass) {
  const int natural = natural_columns(p, pass);
  const int forced = g_forced_columns.load();
  if (forced != 0) return forced < natural ? forced : natural;
  const int64_t tiles = launch_shape(p, pass, kBM, natural).tiles_per_group() * p.groups;
  return natural == 128 && 2 * tiles <= int64_t(sm_count()) ? 64 : natural;
}

// Test and benchmark hook: the fewest taps in the fullest phase at which the
// halo loader is taken (set_tensor_core_gemm_sm90_halo_min_taps).
std::atomic<int64_t> g_halo_min_taps{kHaloMinTaps};

// ---------------------------------------------------------------------------
// The TMA loader, host side.

constexpr int64_t kMaxElementStride = 8;  // TMA's traversal strides

// The TMA loader's box row (K per GEMM row of one box), 0 where the shape
// does not suit it: a group's source channels whole 128-byte rows, or exactly
// one row of 64 or 32 bytes (the narrower swizzles; 16 or 32 fp16/bf16
// channels, 8 or 16 fp32; 4 or 2 taps a stage), so that a box never reads
// into the next group (nor is there padding: the GEMM's channels are the
// group's); grad-input strides within TMA's element strides.  fp16, bf16 or
// fp32 (as TF32: callers allow it).
int64_t tma_row_bytes(const ConvTranspose3dParams& p, GatherPass pass, ScalarKind dtype) {
  const bool fwd = pass == GatherPass::Forward;
  for (const Axis& ax : p.axis) {
    if (!fwd && ax.stride > kMaxElementStride) return 0;
  }
  const int64_t bytes = (fwd ? p.in_per_group : p.out_per_group) * element_bytes(dtype);
  if (bytes % kSliceBytes == 0) return kSliceBytes;
  return bytes == 64 || bytes == 32 ? bytes : 0;
}

// Grad-input's merged w taps (TmaTiling::merged): fp16/bf16 rows of 64
// bytes (32 channels, one group), the w axis of stride 2 with an even
// kernel, padding and output extent, undilated (the U-Net k2s2 and VAE k4s2
// layers of 32 output channels).  Then input position j's taps 2m and 2m + 1
// read grad_output positions j·2 − p + 2m and the one after, a pair the
// source map reads as one 128-byte row.  64-byte rows at element stride 2
// moved half the bytes of 128-byte ones in about the same time a stage (big
// U-Net 64 → 32 bf16 channels-last: 2.3 against TF32's 4.0 TB/s).  Measured
// (H200, RESULTS.md "Merged taps round"): that grad-input 0.60 → 0.54 ms, far
// short of TF32's bytes a second; L2 84 % busy, B's boxes read again for
// every tile (a third of the bytes a stage).
bool merged_w_taps(const ConvTranspose3dParams& p, ScalarKind dtype, int64_t row_bytes) {
  const Axis& w = p.axis[2];
  return dtype != ScalarKind::Float32 && row_bytes == 64 && p.groups == 1 && w.stride == 2 &&
         w.kernel % 2 == 0 && w.padding % 2 == 0 && w.out % 2 == 0 && w.dilation == 1;
}

// Row boxes for the TMA loader where the shape suits it (its tensor maps
// are encode_tma_maps'); on success s counts the box tiles.  Per axis the
// pass's GemmAxis of phase 0 (the largest) gives the grid (rows) and the
// element stride (src_per_row).
bool tma_boxes(const ConvTranspose3dParams& p, GatherPass pass, ScalarKind dtype,
               int64_t halo_min_taps, igemm::LaunchShape& s, TmaTiling& t) {
  const int64_t row_bytes = tma_row_bytes(p, pass, dtype);
  if (row_bytes == 0 || tensor_map_encoder() == nullptr) return false;
  // The halo loader (produce_halo) where a tile's taps overlap: 128- or
  // 64-byte rows, each axis's rows consecutive source positions
  // (forward phases; grad-input of stride 1), at least halo_min_taps taps in
  // the fullest phase, and two halos beside the stage ring in shared memory.
  // reach[a]: how far past the box the taps of the fullest phase read.
  const bool fwd = pass == GatherPass::Forward;
  int64_t rows[3], element_stride[3], reach[3], halo_rows = 1, most_taps = 1;
  bool halo = row_bytes >= 64;
  for (int a = 0; a < 3; ++a) {
    const Axis& ax = p.axis[a];
    const GemmAxis g = fwd ? forward_phase_axis(ax, 0) : grad_input_axis(ax);
    rows[a] = g.rows;
    element_stride[a] = g.src_per_row;
    int64_t taps = fwd ? 0 : ax.kernel;
    for (int64_t r = 0; fwd && r < ax.stride; ++r) taps = std::max(taps, forward_phase_axis(ax, r).taps);
    halo = halo && g.src_per_row == 1;
    reach[a] = (taps - 1) * (g.src_per_tap < 0 ? -g.src_per_tap : g.src_per_tap);
    most_taps *= taps;
  }
  // The halo's box is 8 positions wide along w and at least 8 along h (the
  // consumers address each warpgroup's 64 rows of A by one descriptor),
  // where that pads the grid to at most 5/4 of the per-tap boxes' rows (a
  // guess from the halo's 22-42 % lead on unpadded grids; not measured).
  RowBoxes boxes{}, per_tap{};
  const bool fits = choose_row_boxes(rows, element_stride, kLogBM, per_tap);
  if (halo && most_taps >= halo_min_taps && fits &&
      choose_row_boxes(rows, element_stride, kLogBM, boxes, reach, /*descriptor_blocks=*/true) &&
      4 * padded_rows(boxes) <= 5 * padded_rows(per_tap)) {
    for (int a = 0; a < 3; ++a) halo_rows *= (int64_t(1) << boxes.log_box[a]) + reach[a];
    const int64_t slot = (halo_rows * row_bytes + kSwizzleAtomBytes - 1) / kSwizzleAtomBytes *
                         kSwizzleAtomBytes;
    halo = halo_smem_bytes(slot, s.bn) <= kMaxDynamicSmem;
    t.halo_bytes = int(slot);
  } else {
    halo = false;
  }
  if (!halo) {
    if (!fits) return false;
    boxes = per_tap;
    for (int64_t& r : reach) r = 0;
  }
  igemm::LaunchShape boxed = s;
  boxed.mtiles = p.batch * boxes.boxes[0] * boxes.boxes[1] * boxes.boxes[2];
  if (boxed.tiles_per_group() * p.groups >= INT_MAX) return false;
  for (int a = 0; a < 3; ++a) {
    t.log_box[a] = boxes.log_box[a];
    t.boxes[a] = int(boxes.boxes[a]);
    // The source map's box: the tile's rows (at src_per_row, 1 under the
    // halo loader) grown by the reach.
    t.halo[a] = halo ? int((int64_t(1) << boxes.log_box[a]) + reach[a]) : 0;
  }
  const int64_t channels = padded_channels(fwd ? p.in_per_group : p.out_per_group, dtype);
  t.merged = !fwd && merged_w_taps(p, dtype, row_bytes);
  t.row_bytes = int(row_bytes);
  t.chunks = int(channels * element_bytes(dtype) / row_bytes);
  t.pieces_per_stage = t.merged ? 1 : int(kSliceBytes / row_bytes);
  t.past_sample = int(p.batch);
  t.past_tap = int(p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel);
  s = boxed;
  return true;
}

// The TMA loader's tensor maps for tma_boxes' tiling, where the encoder
// accepts the strides (multiples of 16 bytes below 2^40).  Merged w taps
// need a position's channels dense (pairs of positions one 128-byte row):
// where grad_output's are not, the tiling walks unmerged taps instead (the
// same tiles and stage count).
bool encode_tma_maps(const ConvTranspose3dParams& p, const TensorCoreGemmOperands& ops,
                     ScalarKind dtype, int64_t bn, TmaTiling& t) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  const int64_t element = element_bytes(dtype), slice = t.row_bytes / element;
  if (t.merged && ops.source_w != ops.channels) {
    t.merged = false;
    t.pieces_per_stage = int(kSliceBytes / t.row_bytes);
  }
  const bool fwd = ops.pass == GatherPass::Forward, merged = t.merged;
  int64_t extent[3], element_stride[3], box[3];
  for (int a = 0; a < 3; ++a) {
    const GemmAxis g = fwd ? forward_phase_axis(p.axis[a], 0) : grad_input_axis(p.axis[a]);
    extent[a] = g.src_extent;
    element_stride[a] = g.src_per_row;
    box[a] = t.halo[a] > 0 ? t.halo[a] : (int64_t(1) << t.log_box[a]) * g.src_per_row;
  }
  if (merged) {  // w in pairs of positions, every pair of the box read
    extent[2] /= 2;
    element_stride[2] = 1;
    box[2] = int64_t(1) << t.log_box[2];
  }
  const int64_t taps = t.past_tap;
  const CUtensorMapSwizzle swizzle = swizzle_for_rows(t.row_bytes);
  const int64_t source_strides[4] = {ops.source_n, ops.source_d, ops.source_h,
                                     merged ? 2 * ops.source_w : ops.source_w};
  const cuuint64_t w_dim[4] = {cuuint64_t(ops.channels), cuuint64_t(ops.columns), cuuint64_t(taps),
                               cuuint64_t(p.groups)};
  const cuuint64_t w_stride[3] = {cuuint64_t(ops.channels * element),
                                  cuuint64_t(ops.columns * ops.channels * element),
                                  cuuint64_t(taps * ops.columns * ops.channels * element)};
  const cuuint32_t w_box[4] = {cuuint32_t(slice), cuuint32_t(bn), 1, 1};
  const cuuint32_t w_step[4] = {1, 1, 1, 1};
  const int64_t a_slice = merged ? 2 * slice : slice;
  return encode_channels_last_box(t.source, dtype, ops.source, (merged ? 2 : p.groups) * ops.channels,
                                  p.batch, extent, source_strides, a_slice, box, element_stride,
                                  swizzle_for_rows(a_slice * element)) &&
         encode(&t.weight, tensor_map_type(dtype), 4, const_cast<void*>(ops.packed_weight), w_dim,
                w_stride, w_box, w_step, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// What a launch runs, from the shape (and the hooks) alone: the column tile,
// the tiling and the loader.  The TMA loader's maps are encoded at launch.
struct Plan {
  igemm::LaunchShape s;  // s.bn: the column tile
  TmaTiling tma;
  bool use_tma, use_halo;
};

// group_blocks: TensorCoreGemmOperands' (only the per-tap boxes' and
// cp.async's main loop issues them: no halo).
Plan plan_launch(const ConvTranspose3dParams& p, GatherPass pass, const LaunchConfig& cfg,
                 bool group_blocks) {
  Plan plan{};
  plan.s = igemm::launch_shape(p, pass, kBM, choose_columns(p, pass));
  // The halo loader has only 32-bit offset, 16-bit instances (build time).
  const int64_t halo_min_taps =
      cfg.wide_index || group_blocks ? INT64_MAX : g_halo_min_taps.load();
  plan.use_tma = tma_boxes(p, pass, cfg.dtype, halo_min_taps, plan.s, plan.tma);
  plan.use_halo = plan.use_tma && plan.tma.halo[0] > 0;
  return plan;
}

// Test and benchmark hook: whether a launch may keep its weight resident.
std::atomic<bool> g_resident_weight{true};

// CTAs an SM holds with `smem` bytes of dynamic shared memory each: the
// registers allow `by_registers` (kCtasPerSm), shared memory may not.
int64_t resident_ctas(int64_t by_registers, int64_t smem) {
  const int64_t per_cta = smem + int64_t(sizeof(SharedState)) + kReservedSmemPerCta;
  return std::min<int64_t>(by_registers, kSmemPerSm / per_cta);
}

int64_t ring_smem_bytes(int bn) {
  return bn == 32 ? Layout<32>::kSmemBytes : bn == 64 ? Layout<64>::kSmemBytes : Layout<128>::kSmemBytes;
}

// The stages of a pass's longest tile: K (taps × a group's padded source
// channels) in 128-byte rows, the same count under either loader (the TMA
// loader's narrow rows share a stage); every grad-input tile walks all the
// taps, a forward tile those of its phase, so the fullest phase's here.
int64_t longest_tile_stages(const ConvTranspose3dParams& p, GatherPass pass, ScalarKind dtype) {
  int64_t taps = 1;
  for (const Axis& ax : p.axis) {
    int64_t most = ax.kernel;  // grad-input: every tap
    if (pass == GatherPass::Forward) {
      most = 0;
      for (int64_t r = 0; r < ax.stride; ++r) most = std::max(most, forward_phase_axis(ax, r).taps);
    }
    taps *= most;
  }
  const int64_t channels = pass == GatherPass::Forward ? p.in_per_group : p.out_per_group;
  return ceil_div(taps * padded_channels(channels, dtype) * element_bytes(dtype), int64_t(kSliceBytes));
}

// TmaTiling::weight_stages: a tile's stages where the weight may stay
// resident, else 0.  Per-tap boxes (the halo loader walks its own B ring), K
// whole (splits), every tile on the same weight slices (one phase, column
// tile and group: every tile then walks longest_tile_stages), and the weight
// beside the A-only ring within the shared memory of the CTAs an SM holds
// anyway.
int resident_weight_stages(const ConvTranspose3dParams& p, GatherPass pass, ScalarKind dtype,
                           const Plan& plan, int splits) {
  const igemm::LaunchShape& s = plan.s;
  if (!g_resident_weight.load() || !plan.use_tma || plan.use_halo || splits != 1 || p.groups != 1 ||
      s.ntiles != 1 || s.phases[0] * s.phases[1] * s.phases[2] != 1) {
    return 0;
  }
  const int64_t stages = longest_tile_stages(p, pass, dtype);
  const int64_t smem = resident_smem_bytes(s.bn, stages);
  const int64_t ctas = ctas_per_sm(s.bn, true);
  return smem <= kMaxDynamicSmem && resident_ctas(ctas, smem) == ctas ? int(stages) : 0;
}

// Test and benchmark hook: the gather passes' splits (0: choose_splits' own).
std::atomic<int> g_forced_splits{0};

// Split K for grad-input on small grids.  A tile walks all of K (taps × a
// group's output channels: 6912 for the 512→256 k3s2 bottleneck at 8³), so a
// layer of few tiles leaves SMs idle however long K is (that bottleneck, 32
// tiles on 132 SMs: cuDNN 1.6-3.7x faster).  Split only up to a quarter as many
// tiles as SMs: measured (kernel_ab.py, H200, against the same kernel unsplit;
// RESULTS.md, "Split K and dense pack round") the bottleneck's 32 tiles in 8
// splits took 0.62-1.01x the time, while layers of 64 tiles in 3-4 splits took
// 1.0-1.22x and of 128 tiles in 2 up to 1.44x (the partials' round trip and the
// second kernel, against SMs that were mostly busy already).  Each tile's
// stages are cut into S ranges: tiles × S units, S the most that one wave of
// the CTAs the GPU holds takes (a second, partial wave would cost a whole
// unit's time again; units are equal, as a grad-input tile's stages are), each
// split at least 4 stages (the stage ring's fill and the epilogue spread over
// that many stages of MMAs; not measured), at most 16 (the sum reads S fp32
// partials per element).  Not under the halo loader (a halo per tile and
// channel chunk).  From the shape alone (not the grid hook, nor this GPU's SM
// count: kSplitSms), as the other split reductions (launch.h): the same sums
// on any GPU.  The partials stay within 32-bit offsets.
//
// The forward: the same cut of every tile's stages into S ranges, also where
// the tiles are up to one wave of SMs but their phases' taps differ.  There
// the fullest phase's tiles set the pace alone (the 512→256 k3s2 bottleneck: 128 tiles, its 8-tap phase
// 128 TF32 stages against the 1-tap phase's 16, ~0.35 us a stage; RESULTS.md,
// "Phase rotation and merged taps round"); S ranges cut that path S-fold,
// while the light tiles' ranges are short, or empty where S exceeds their
// stages (such units write zeros).  The bias is added in the second pass.
constexpr int64_t kSplitSms = 132;  // the H100 SXM's and the H200's
inline bool few_tiles(int64_t tiles) { return 4 * tiles <= kSplitSms; }

// Whether a forward's phases hold different tap counts.
bool unequal_phases(const ConvTranspose3dParams& p) {
  for (const Axis& ax : p.axis) {
    for (int64_t r = 1; r < ax.stride; ++r) {
      if (forward_phase_axis(ax, r).taps != forward_phase_axis(ax, 0).taps) return true;
    }
  }
  return false;
}

// Layers whose tiles may be split: grad-input's when few; the forward's up
// to a wave of unequal phases (a forward of equal phases stays whole,
// bitwise the same under either loader, as the halo loader never splits).
// Into NCDHW outputs too since the second pass transposes through shared
// memory (add_splits_planes_kernel): its first version stored each element a
// plane apart, and the split bottleneck took 0.070 against 0.064 ms TF32,
// where channels-last outputs gained 19-21 % (RESULTS.md, "NCDHW planes
// round").
bool may_split(const ConvTranspose3dParams& p, GatherPass pass, int64_t tiles) {
  return pass == GatherPass::Forward ? tiles <= kSplitSms && unequal_phases(p) : few_tiles(tiles);
}

int choose_splits(const ConvTranspose3dParams& p, GatherPass pass, ScalarKind dtype,
                  const Plan& plan) {
  if (plan.use_halo) return 1;
  const int64_t tiles = plan.s.tiles_per_group() * p.groups;
  const int64_t stages = longest_tile_stages(p, pass, dtype);
  const int64_t ctas =
      resident_ctas(ctas_per_sm(plan.s.bn, plan.use_tma), ring_smem_bytes(plan.s.bn)) * kSplitSms;
  const int forced = g_forced_splits.load();
  int64_t splits = forced > 0                 ? forced
                   : may_split(p, pass, tiles) ? std::min({ctas / tiles, stages / 4, int64_t(16)})
                                               : 1;
  const int64_t numel = p.batch * igemm::gather_dest(p, pass).sample_numel();
  splits = std::min({splits, stages, int64_t(INT_MAX) / numel});
  return int(std::max<int64_t>(splits, 1));
}

// The few-wave deal (tile_order.h) for forwards whose phases' taps differ,
// at most kFewWaves tiles a CTA; the rotated order elsewhere.
KernelArgs dealt(KernelArgs args, int64_t units, int64_t ctas) {
  const int phases = args.phases[0] * args.phases[1] * args.phases[2];
  if (args.ops.pass != GatherPass::Forward || args.ops.splits != 1 || phases > kMaxDealtPhases ||
      units > kFewWaves * ctas) {
    return args;
  }
  int64_t taps[kMaxDealtPhases];
  for (int q = 0; q < phases; ++q) {
    int r[3];
    phase_residues(args, q, r);
    taps[q] = 1;
    for (int a = 0; a < 3; ++a) taps[q] *= forward_phase_axis(args.p.axis[a], r[a]).taps;
  }
  args.deal = heaviest_first_deal(taps, phases, uint32_t(ctas));
  return args;
}

template <typename scalar_t, typename index_t, int BN, bool kTma, bool kHalo, bool kBlocks = false>
cudaError_t launch_columns(const KernelArgs& args, const TmaTiling& tma, int64_t units,
                           cudaStream_t stream) {
  using Kernel = decltype(&tensor_core_gemm_sm90_kernel<scalar_t, index_t, BN, kTma, kHalo, kBlocks>);
  constexpr Kernel kernel = &tensor_core_gemm_sm90_kernel<scalar_t, index_t, BN, kTma, kHalo, kBlocks>;
  const int smem = kHalo                  ? int(halo_smem_bytes(tma.halo_bytes, BN))
                   : tma.weight_stages > 0 ? int(resident_smem_bytes(BN, tma.weight_stages))
                                           : Layout<BN>::kSmemBytes;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(smem);
  if (err != cudaSuccess) return err;
  const int64_t resident = resident_ctas(kCtasPerSm<BN, kTma>, smem);
  const int64_t cap = g_forced_ctas.load() > 0 ? g_forced_ctas.load() : resident * sm_count();
  const int64_t ctas = units < cap ? units : cap;
  kernel<<<static_cast<unsigned int>(ctas), kThreads, smem, stream>>>(dealt(args, units, ctas), tma);
  return cudaGetLastError();
}

// Split K's second pass: dest = Σ_s partials[s] in split order (bitwise the
// same run to run) + the forward's bias, over the partials' dense channels-last elements, kVec
// channels a thread (16-byte loads where the channels come in fours), each
// converted once and written at dest's strides (four at once where dest is
// channel-contiguous with the strides and address to match).
constexpr int kAddThreads = 256;

// Dest's offset of channel c at position q of the partials' dense
// (n, d, h, w) order.
template <typename index_t>
__device__ __forceinline__ index_t split_dest_offset(const Strides5& dst, uint32_t q, uint32_t c,
                                                     uint32_t D, uint32_t H, uint32_t W) {
  const uint32_t w = q % W;
  q /= W;
  const uint32_t h = q % H;
  q /= H;
  return offset_of<index_t>(dst, Index5{q / D, c, q % D, h, w});
}

template <typename scalar_t, typename index_t, int kVec>
__global__ void __launch_bounds__(kAddThreads)
    add_splits_kernel(const float* __restrict__ partials, int splits, uint32_t numel, uint32_t C,
                      uint32_t D, uint32_t H, uint32_t W, Strides5 dst, bool vector_store,
                      const scalar_t* __restrict__ bias, int64_t bias_stride,
                      scalar_t* __restrict__ dest) {
  using Load = std::conditional_t<kVec == 4, float4, float>;
  struct alignas(kVec * sizeof(scalar_t)) Store {
    scalar_t v[kVec];
  };
  const uint32_t step = gridDim.x * uint32_t(kAddThreads) * kVec;
  for (uint32_t e = (blockIdx.x * kAddThreads + threadIdx.x) * kVec; e < numel; e += step) {
    float sum[kVec];
    for (int s = 0; s < splits; ++s) {
      const Load q = *reinterpret_cast<const Load*>(partials + uint32_t(s) * numel + e);
      const float* v = reinterpret_cast<const float*>(&q);
#pragma unroll
      for (int i = 0; i < kVec; ++i) sum[i] = s == 0 ? v[i] : sum[i] + v[i];
    }
    const uint32_t pos = e / C, c = e - pos * C;
    if (bias != nullptr) {
#pragma unroll
      for (int i = 0; i < kVec; ++i) sum[i] += to_acc(bias[int64_t(c + i) * bias_stride]);
    }
    const index_t at = split_dest_offset<index_t>(dst, pos, c, D, H, W);
    if (kVec > 1 && vector_store) {
      Store out;
#pragma unroll
      for (int i = 0; i < kVec; ++i) out.v[i] = from_acc<scalar_t>(sum[i]);
      *reinterpret_cast<Store*>(dest + at) = out;
    } else {
#pragma unroll
      for (int i = 0; i < kVec; ++i) dest[at + index_t(i) * index_t(dst.c)] = from_acc<scalar_t>(sum[i]);
    }
  }
}

// The same sums into a dest whose channels are not its innermost axis
// (NCDHW): there add_splits_kernel's warps, a few channels a thread, would
// store each element a plane apart.  A block here sums a tile of 32
// positions × 32 channels, reading the partials' channel rows (128 bytes
// each), and writes each channel's 32 positions, consecutive along dest's w,
// through shared memory.  Each element's sum is add_splits_kernel's, in the
// same order.
template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kAddThreads)
    add_splits_planes_kernel(const float* __restrict__ partials, int splits, uint32_t numel,
                             uint32_t C, uint32_t D, uint32_t H, uint32_t W, Strides5 dst,
                             const scalar_t* __restrict__ bias, int64_t bias_stride,
                             scalar_t* __restrict__ dest) {
  __shared__ float tile[32][33];
  constexpr uint32_t kRows = kAddThreads / 32;
  const uint32_t lane = threadIdx.x % 32, row0 = threadIdx.x / 32;
  const uint32_t positions = numel / C, channel_tiles = (C + 31) / 32;
  const uint32_t tiles = channel_tiles * ((positions + 31) / 32);
  for (uint32_t b = blockIdx.x; b < tiles; b += gridDim.x) {
    const uint32_t c0 = b % channel_tiles * 32, q0 = b / channel_tiles * 32;
    for (uint32_t r = row0; r < 32; r += kRows) {
      const uint32_t q = q0 + r, c = c0 + lane;
      float sum = 0.f;
      if (q < positions && c < C) {
        const uint32_t e = q * C + c;
        sum = partials[e];
        for (int s = 1; s < splits; ++s) sum += partials[uint32_t(s) * numel + e];
      }
      tile[r][lane] = sum;
    }
    __syncthreads();
    for (uint32_t r = row0; r < 32; r += kRows) {
      const uint32_t c = c0 + r, q = q0 + lane;
      if (q < positions && c < C) {
        float v = tile[lane][r];
        if (bias != nullptr) v += to_acc(bias[int64_t(c) * bias_stride]);
        dest[split_dest_offset<index_t>(dst, q, c, D, H, W)] = from_acc<scalar_t>(v);
      }
    }
    __syncthreads();
  }
}

cudaError_t launch_add_splits(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                              const TensorCoreGemmOperands& ops) {
  const Strides5& dst = ops.pass == GatherPass::Forward ? p.output : p.input;
  const igemm::GatherDest g = igemm::gather_dest(p, ops.pass);
  const uint32_t C = uint32_t(g.channels);
  const uint32_t numel = uint32_t(p.batch * g.sample_numel());  // < 2^31: choose_splits
  if (dst.c != 1 && C > 1) {
    igemm::dispatch_gemm_types(cfg, [&](auto scalar, auto index) {
      using scalar_t = decltype(scalar);
      using index_t = decltype(index);
      const int64_t tiles = ceil_div(int64_t(C), int64_t(32)) * ceil_div(int64_t(numel / C), int64_t(32));
      const int64_t blocks = std::min<int64_t>(tiles, 16 * int64_t(sm_count()));
      add_splits_planes_kernel<scalar_t, index_t><<<unsigned(blocks), kAddThreads, 0, cfg.stream>>>(
          ops.partials, ops.splits, numel, C, uint32_t(g.extent[0]), uint32_t(g.extent[1]),
          uint32_t(g.extent[2]), dst, static_cast<const scalar_t*>(ops.bias), p.bias_stride,
          static_cast<scalar_t*>(ops.dest));
    });
    return cudaGetLastError();
  }
  const bool quads = C % 4 == 0;
  const int64_t element = element_bytes(cfg.dtype);
  const bool vector_store = quads && dst.c == 1 && dst.n % 4 == 0 && dst.d % 4 == 0 &&
                            dst.h % 4 == 0 && dst.w % 4 == 0 &&
                            reinterpret_cast<uintptr_t>(ops.dest) % (4 * element) == 0;
  igemm::dispatch_gemm_types(cfg, [&](auto scalar, auto index) {
    using scalar_t = decltype(scalar);
    using index_t = decltype(index);
    const auto run = [&](auto vec) {
      constexpr int kVec = decltype(vec)::value;
      const int64_t blocks =
          std::min<int64_t>(ceil_div(int64_t(numel / kVec), int64_t(kAddThreads)), 8 * int64_t(sm_count()));
      add_splits_kernel<scalar_t, index_t, kVec><<<unsigned(blocks), kAddThreads, 0, cfg.stream>>>(
          ops.partials, ops.splits, numel, C, uint32_t(g.extent[0]), uint32_t(g.extent[1]),
          uint32_t(g.extent[2]), dst, vector_store,
          static_cast<const scalar_t*>(ops.bias), p.bias_stride, static_cast<scalar_t*>(ops.dest));
    };
    if (quads) {
      run(std::integral_constant<int, 4>{});
    } else {
      run(std::integral_constant<int, 1>{});
    }
  });
  return cudaGetLastError();
}

}  // namespace tcg90

bool tensor_core_gemm_sm90_runs_here() {
#if defined(TCONV3D_WITH_SM90A)
  return kernel_runs_here<tcg90::tensor_core_gemm_sm90_kernel<__half, int32_t, 64, false>,
                          ArchNeed::Sm90a>();
#else
  return false;  // built without sm_90a code: the kernel bodies are empty
#endif
}

bool tensor_core_gemm_sm90_handles(const ConvTranspose3dParams& p, GatherPass pass) {
  if (pass == GatherPass::GradInput) return true;
  for (const Axis& ax : p.axis) {
    if (ax.stride > tcg90::kMaxPhases) return false;
  }
  return true;
}

bool tensor_core_gemm_sm90_pays(const ConvTranspose3dParams& p, GatherPass pass,
                                ScalarKind dtype) {
  const int64_t columns = igemm::columns_of(p, pass);
  // fp16/bf16 with the TMA loader: it won at every row width and column
  // count measured.  Whole 128-byte rows from 64 columns and 16 tiles up
  // (0.27-0.95x the mma.sync GEMM's time; RESULTS.md, "TMA loader round") and
  // at 32 columns (U-Net 64→32 k2s2 forward 0.065 vs 0.088 ms); 64- and
  // 32-byte rows (RESULTS.md, narrow-row round; bf16, channels-last, ms, vs
  // mma.sync): 32→32 k3s1 forward 0.0656 vs 0.0906 and grad-input 0.0640 vs
  // 0.0835, k5s1 forward 0.126 vs 0.194, dilated forward 0.0375 vs 0.046;
  // groups of 16 channels (g4) forward 0.0715 vs 0.0875 and grad-input 0.038
  // vs 0.057; U-Net 64→32 grad-input 0.034 vs 0.052 (narrow rows at one tap
  // a stage; several taps a stage are 3-5% faster still).  TF32, with A
  // rounded in the consumers' registers (RESULTS.md, "TF32 A through
  // registers", kernel_ab at 94a3849, ms, CL / NCDHW, vs mma.sync): 128-byte
  // rows won at every column count and phase mix measured — 32→32 k3s1
  // forward 0.087 vs 0.140 / 0.100 vs 0.163 and grad-input 0.085 vs 0.137 /
  // 0.099 vs 0.155, VAE k3s2 128→64 forward (1-tap phases) 0.147 vs 0.184 /
  // 0.175 vs 0.218, dilated forward 0.044 vs 0.058; 64-byte rows (groups of
  // 16) forward 0.083 vs 0.094 / 0.091 vs 0.118, grad-input 0.071 vs 0.075 /
  // 0.085 vs 0.092; 32-byte rows (8 channels) lost (grad-input of 4→8 0.142
  // vs 0.096): they stay on mma.sync.  So does an fp16/bf16 grad-input onto
  // fewer than 8 columns, its tile a few columns of 32 (RGB-like 3→16, bf16,
  // kernel_ab in two sessions, channels-last 0.073 vs 0.063 ms, NCDHW 0.116
  // vs 0.099; TF32's 64-byte rows still won, 0.063 vs 0.076 and 0.133 vs
  // 0.143).
  const bool tf32 = dtype == ScalarKind::Float32;
  const int64_t tma_row = tcg90::tma_row_bytes(p, pass, dtype);
  if (tma_row != 0) {
    return tf32 ? tma_row >= 64 : pass == GatherPass::Forward || columns >= 8;
  }
  if (tf32) return false;
  if (columns <= (pass == GatherPass::GradInput ? 32 : 64)) return false;
  const igemm::LaunchShape s =
      igemm::launch_shape(p, pass, tcg90::kBM, tcg90::natural_columns(p, pass));
  // 128 tiles on the H200's 132 SMs still won (1.3-1.5x), 64 lost (0.9x).
  return 4 * s.tiles_per_group() * p.groups >= 3 * int64_t(sm_count());
}

namespace tcg90 {
// TF32 group blocks take a tap's two stages as a pair (consume): no split
// range may start between them, so they never split K.
bool blocks_pair_stages(bool group_blocks, ScalarKind dtype) {
  return group_blocks && dtype == ScalarKind::Float32;
}

// Group blocks' needs of a launch planned with them (plan_launch's
// group_blocks): 64-channel groups, 64-column tiles, the TMA loader's
// per-tap boxes.
bool group_blocks_fit(const ConvTranspose3dParams& p, const Plan& plan) {
  return p.in_per_group == 64 && p.out_per_group == 64 && plan.use_tma && plan.s.bn == 64;
}
}  // namespace tcg90

bool tensor_core_gemm_sm90_group_blocks_fit(const ConvTranspose3dParams& p, GatherPass pass,
                                             const LaunchConfig& cfg) {
  return tcg90::group_blocks_fit(p, tcg90::plan_launch(p, pass, cfg, true));
}

int tensor_core_gemm_sm90_splits(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                 GatherPass pass, bool group_blocks) {
  if (p.batch == 0 || tcg90::blocks_pair_stages(group_blocks, cfg.dtype)) return 1;
  // Most layers have too many tiles to split, seen without planning the
  // loader a second time on every call (the launch plans it): TMA's boxes
  // only pad the plain tiling, never cut it.
  const igemm::LaunchShape plain =
      igemm::launch_shape(p, pass, tcg90::kBM, tcg90::choose_columns(p, pass));
  if (tcg90::g_forced_splits.load() == 0 &&
      !tcg90::may_split(p, pass, plain.tiles_per_group() * p.groups)) {
    return 1;
  }
  return tcg90::choose_splits(p, pass, cfg.dtype, tcg90::plan_launch(p, pass, cfg, group_blocks));
}

cudaError_t launch_tensor_core_gemm_sm90(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const TensorCoreGemmOperands& ops, Sm90Loader* loader) {
  if (loader != nullptr) *loader = Sm90Loader::CpAsync;
  const bool group_blocks = ops.group_blocks != 0;
  tcg90::Plan plan = tcg90::plan_launch(p, ops.pass, cfg, group_blocks);
  if (p.batch == 0 || plan.s.tiles_per_group() == 0) return cudaSuccess;
  if (group_blocks && (ops.group_blocks != 16 || !tcg90::group_blocks_fit(p, plan))) {
    return cudaErrorInvalidValue;
  }
  if (plan.use_tma && !tcg90::encode_tma_maps(p, ops, cfg.dtype, plan.s.bn, plan.tma)) {
    plan.s = igemm::launch_shape(p, ops.pass, tcg90::kBM, plan.s.bn);
    plan.use_tma = plan.use_halo = false;
  }
  // Without the TMA loader (a map the driver refused) the block-diagonal
  // weight runs as a dense one: the same sums (its zeros times finite
  // values), four times the MACs, and an infinity in one group's channels
  // would make NaNs in the others'.
  TensorCoreGemmOperands run_ops = ops;
  if (!plan.use_tma) run_ops.group_blocks = 0;
  // The splits the caller sized the partials for (tensor_core_gemm_sm90_splits).
  const int splits = ops.splits;
  const bool split = ops.partials != nullptr;
  if (splits < 1 || split != (splits > 1) ||
      (split && (plan.use_halo || splits > tcg90::longest_tile_stages(p, ops.pass, cfg.dtype) ||
                 tcg90::blocks_pair_stages(group_blocks, cfg.dtype)))) {
    return cudaErrorInvalidValue;
  }
  plan.tma.weight_stages = tcg90::resident_weight_stages(p, ops.pass, cfg.dtype, plan, splits);
  const bool use_tma = plan.use_tma, use_halo = plan.use_halo;
  const int bn = plan.s.bn;
  const int64_t units = plan.s.tiles_per_group() * p.groups * splits;
  const igemm::KernelArgs args = igemm::make_kernel_args(p, run_ops, cfg.dtype, plan.s);
  const tcg90::TmaTiling& tma = plan.tma;
  cudaError_t err = cudaErrorInvalidValue;
  igemm::dispatch_gemm_types(cfg, [&](auto scalar, auto index) {
    using scalar_t = decltype(scalar);
    using index_t = decltype(index);
    const auto launch = [&](auto tma_on, auto halo_on) {
      constexpr bool kTma = decltype(tma_on)::value, kHalo = decltype(halo_on)::value;
      err = bn == 32   ? tcg90::launch_columns<scalar_t, index_t, 32, kTma, kHalo>(args, tma, units, cfg.stream)
            : bn == 64 ? tcg90::launch_columns<scalar_t, index_t, 64, kTma, kHalo>(args, tma, units, cfg.stream)
                       : tcg90::launch_columns<scalar_t, index_t, 128, kTma, kHalo>(args, tma, units, cfg.stream);
    };
    if (run_ops.group_blocks != 0) {  // group_blocks_fit: 64 columns, the TMA loader
      err = tcg90::launch_columns<scalar_t, index_t, 64, true, false, true>(args, tma, units,
                                                                           cfg.stream);
      return;
    }
    if constexpr (std::is_same_v<index_t, int32_t>) {
      if (use_halo) {
        launch(std::true_type{}, std::true_type{});
        return;
      }
    }
    if (use_tma) {
      launch(std::true_type{}, std::false_type{});
    } else {
      launch(std::false_type{}, std::false_type{});
    }
  });
  if (err == cudaSuccess && split) err = tcg90::launch_add_splits(p, cfg, ops);
  if (loader != nullptr && err == cudaSuccess) {
    *loader = use_halo                      ? Sm90Loader::Halo
              : plan.tma.weight_stages > 0 ? Sm90Loader::TmaResidentWeight
              : use_tma                  ? Sm90Loader::Tma
                                         : Sm90Loader::CpAsync;
  }
  return err;
}

void set_tensor_core_gemm_sm90_grid(int ctas) { tcg90::g_forced_ctas.store(ctas); }

void set_tensor_core_gemm_sm90_columns(int columns) { tcg90::g_forced_columns.store(columns); }

void set_tensor_core_gemm_sm90_splits(int splits) { tcg90::g_forced_splits.store(splits); }

void set_tensor_core_gemm_sm90_resident_weight(bool resident) {
  tcg90::g_resident_weight.store(resident);
}

void set_tensor_core_gemm_sm90_halo_min_taps(int64_t taps) {
  tcg90::g_halo_min_taps.store(taps == 0 ? tcg90::kHaloMinTaps : taps);
}

}  // namespace tconv3d::cuda
