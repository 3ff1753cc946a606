// Grad-weight as split-reduction GEMMs on tensor cores (WMMA: fp16/bf16 with
// fp32 accumulation, TF32 for float32).  See grad_weight_gemm.cu for the
// kernel; the decomposition (plan, block → work, split ranges, row decoding)
// lives here as __host__ __device__ helpers so a host program can walk it.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "../index_math.h"
#include "../params.h"
#include "channel_vectors.h"
#include "launch.h"

namespace tconv3d::cuda {

// True when the GEMM kernel handles this problem: fp16/bf16, or fp32 with TF32
// allowed; sizes within the kernel's bookkeeping;
// and the current device (and the compiled kernel) is sm_80 or newer.
bool grad_weight_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype, bool allow_tf32);

// Number of fp32 accumulators the workspace must hold (0 if none); the op
// layer allocates it.  = splits · Cin · (Cout/G) · kD · kH · kW when splits > 1,
// bounded by kMaxPartials = 2^24 (64 MiB of fp32, launch.h).
int64_t grad_weight_gemm_workspace_elems(const ConvTranspose3dParams& p);

// Same contract as launch_grad_weight_reduce: any input / grad_output strides,
// grad_weight at p.weight strides, written once (rounded once from fp32).
// float32 runs in TF32 (only called when TF32 is allowed).  `workspace` must
// hold grad_weight_gemm_workspace_elems(p) floats (may be null when that is 0).
// Deterministic: no atomics; partials are combined in split order.
cudaError_t launch_grad_weight_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                    const void* input, const void* grad_output, void* grad_weight,
                                    float* workspace);

// The channels-last variant (grad_weight_gemm_channels_last.cu): channel c
// of group g at element g·channels + c of a position (channels ≥ the group's
// own count; any beyond it hold zeros), strides in elements, all multiples of
// piece_bytes (16, or 8 when some group's channels are not whole 16-byte
// pieces), addresses too.  grad_weight at
// p.weight strides, written once (rounded once from fp32); float32 runs in
// TF32 (only called when TF32 is allowed).  workspace holds
// grad_weight_gemm_channels_last_workspace_elems(p) floats (null when 0).
// Deterministic: no atomics; partials are combined in split order.
struct GradWeightOperands {
  const void* input;
  int64_t input_n, input_d, input_h, input_w, input_channels;
  const void* grad_output;
  int64_t grad_output_n, grad_output_d, grad_output_h, grad_output_w, grad_output_channels;
  void* grad_weight;
  float* workspace;
  int piece_bytes;  // 16 or 8: the cp.async size
  // 0, or (the Hopper kernel) 16 where p's groups are four of the layer's
  // groups of 16 channels each (group blocks): the GEMM computes 64 × 64
  // channels a tap and the combine keeps the four diagonal 16 × 16 blocks,
  // the layer's gw (the others' products are summed apart and dropped, so
  // an infinity in one group's channels reaches no other group's gw).
  int group_block = 0;
  // fp32 where TF32 is not allowed, on the mma.sync channels-last GEMM only
  // (launch_grad_weight_gemm_channels_last): Split (channel_vectors.h).
  // Tf32 elsewhere.
  Fp32Mma fp32_mma = Fp32Mma::Tf32;
};

// fp16/bf16, fp32 only when TF32 is allowed (pass allow_tf32 true for split
// TF32).
bool grad_weight_gemm_channels_last_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                             bool allow_tf32);
int64_t grad_weight_gemm_channels_last_workspace_elems(const ConvTranspose3dParams& p);
cudaError_t launch_grad_weight_gemm_channels_last(const ConvTranspose3dParams& p,
                                                  const LaunchConfig& cfg,
                                                  const GradWeightOperands& ops);

// The taps-folded variant (grad_weight_taps_gemm.cu) for layers with at
// most kTapChannels output channels a group: its columns are (tap, channel)
// pairs.  x as for the channels-last GEMM (channel c of group g at element
// g·input_group + c of a position, 16-byte pieces: strides, input_group and
// address multiples of 16 bytes, channels past the group's own count zeros);
// grad_output likewise but each group's channels padded with zeros to
// kTapChannels (element g·kTapChannels + c; strides and address multiples of
// a group's piece).  grad_weight at p.weight strides, written once (rounded
// once from fp32); float32 runs in TF32.  workspace holds
// grad_weight_taps_gemm_workspace_elems(p) floats (null when 0).
// Deterministic: no atomics; partials are combined in split order.
struct TapsGemmOperands {
  const void* input;
  int64_t input_n, input_d, input_h, input_w, input_group;
  const void* grad_output;
  int64_t grad_output_n, grad_output_d, grad_output_h, grad_output_w;
  void* grad_weight;
  float* workspace;
  // fp32 where TF32 is not allowed: Split (channel_vectors.h).  Tf32 elsewhere.
  Fp32Mma fp32_mma = Fp32Mma::Tf32;
};

bool grad_weight_taps_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                    bool allow_tf32);
int64_t grad_weight_taps_gemm_workspace_elems(const ConvTranspose3dParams& p);
cudaError_t launch_grad_weight_taps_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const TapsGemmOperands& ops);

// The Hopper variant (grad_weight_gemm_sm90.cu: wgmma, TMA loads), same
// contract, for operands read without padding (channels == the group's
// count), 16-byte-aligned addresses and strides, strides at most 8: fp16/bf16
// whose groups hold multiples of 32 channels, and fp32 where TF32 is allowed
// (it then runs in TF32) whose groups hold multiples of 64 input and 32
// output channels; false where it does not apply or this device cannot run
// it.  The workspace holds grad_weight_gemm_sm90_workspace_elems(p, dtype,
// ops) floats: none where the kernel writes gw itself (one split, gw's output
// channels contiguous: a channels-last weight's; grad_weight_sm90_plan.h's
// writes_grad_weight), so ops' grad_weight and group_block are set first.
bool grad_weight_gemm_sm90_supports(const ConvTranspose3dParams& p, ScalarKind dtype, bool allow_tf32,
                                    const GradWeightOperands& ops);
int64_t grad_weight_gemm_sm90_workspace_elems(const ConvTranspose3dParams& p, ScalarKind dtype,
                                              const GradWeightOperands& ops);
cudaError_t launch_grad_weight_gemm_sm90(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const GradWeightOperands& ops);

// The kernel == stride variant (grad_weight_tap_blocks_gemm.cu) for NCDHW
// x and grad_output read in place: every axis with kernel == stride, no
// padding or dilation, stride 2 along W; x's planes contiguous, its strides
// whole 16-byte pieces; grad_output's strides (W's 1) whole pieces and its W
// lines (input W) a multiple of half a piece's elements; both 16-byte
// aligned.  grad_weight at p.weight strides, written once (rounded once from
// fp32); float32 runs in TF32.  grad_bias, where not null, gets the sum of
// grad_output over all but channels in the same pass (element c at
// c·grad_bias_stride, rounded once from fp32 sums, never TF32): supported
// `with_bias` only where every output row is read by a tap.  The
// workspace holds grad_weight_tap_blocks_gemm_workspace_elems(p, grad_bias
// != nullptr) floats (never 0).  Deterministic: partials are combined in
// split order.
struct TapBlocksGradWeightOperands {
  const void* input;
  const void* grad_output;
  void* grad_weight;
  void* grad_bias;
  int64_t grad_bias_stride;
  float* workspace;
};

bool grad_weight_tap_blocks_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                          bool allow_tf32, const void* input,
                                          const void* grad_output, bool with_bias);
int64_t grad_weight_tap_blocks_gemm_workspace_elems(const ConvTranspose3dParams& p,
                                                    bool with_bias);
cudaError_t launch_grad_weight_tap_blocks_gemm(const ConvTranspose3dParams& p,
                                               const LaunchConfig& cfg,
                                               const TapBlocksGradWeightOperands& ops);

// Test hook: force the channels-last kernel's tile (Cin/G × Cout/G channels per
// block), one of those grad_weight_tile_exists accepts; (0, 0) = by shape.
void set_grad_weight_tile(int bm, int bn);
bool grad_weight_tile_exists(int bm, int bn);
// Test / tuning hook: the channels-last kernel's split policy (rows per split
// at least, warps aimed at); 0 = the built-in constant.
void set_grad_weight_split_policy(int64_t min_rows_per_split, int64_t target_warps);

// ---------------------------------------------------------------------------
// Decomposition (shared by the kernel and host-side checks).
//
// Per group g and kernel tap k = (kd, kh, kw):
//   C_k[ci, co] = Σ_r X[r, ci] · GY_k[r, co],
// r running over (n, md, mh, mw) (mw fastest) of the tap's valid box: input
// position i = a + m, output position o = b + m·s per axis, from
// grad_weight_positions (so no masking of out-of-range outputs is needed).
// R_k = N · cd · ch · cw rows.  A block owns (g, split, ci-tile, tap, co-tile);
// split `s` of S covers rows [R_k·s/S, R_k·(s+1)/S) of the tap.
namespace gw_gemm {

constexpr int kBlockThreads = 128;  // the strided kernel: 4 warps, 2 × 2
constexpr int kBK = 32;        // rows of the reduction per chunk (strided kernel)

struct Plan {
  int bm, bn;  // tile sizes: channels of Cin/G (m) and Cout/G (n)
  int64_t groups, tiles_m, tiles_n, taps, splits;
  int64_t numel;   // Cin · Cout/G · taps
  int64_t blocks;  // groups · splits · tiles_m · taps · tiles_n
  // Set by the Hopper kernel where it cuts ranges: its tiles' piece counts
  // (ElementPlanes, grad_weight_launch.cuh), its tiles then bm × bn (tap,
  // co) columns, bn a power of two.
  const int32_t* tile_pieces = nullptr;
  // GradWeightOperands::group_block: gw's output channels a group where the
  // partials hold p's (four times as many), else 0.
  int64_t block = 0;
};

// How far a plan splits each tap's rows: at least min_rows_per_split rows per
// split, no more splits than it takes to reach target_blocks blocks, and at
// most kMaxPartials partial sums.  Shape-only, so results are the same on
// every GPU.
struct SplitPolicy {
  int64_t min_rows_per_split, target_blocks;
};

inline Plan make_plan(const ConvTranspose3dParams& p, int bm, int bn, SplitPolicy policy) {
  Plan pl{};
  pl.bm = bm;
  pl.bn = bn;
  pl.groups = p.groups;
  pl.tiles_m = (p.in_per_group + pl.bm - 1) / pl.bm;
  pl.tiles_n = (p.out_per_group + pl.bn - 1) / pl.bn;
  pl.taps = p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel;
  pl.numel = p.in_channels * p.out_per_group * pl.taps;
  const int64_t base = pl.groups * pl.tiles_m * pl.tiles_n * pl.taps;
  const int64_t rows = input_positions(p.batch, p.axis);
  int64_t splits = (rows + policy.min_rows_per_split - 1) / policy.min_rows_per_split;
  const int64_t for_occupancy = base > 0 ? (policy.target_blocks + base - 1) / base : 1;
  if (splits > for_occupancy) splits = for_occupancy;
  if (pl.numel > 0 && splits > kMaxPartials / pl.numel) splits = kMaxPartials / pl.numel;
  if (splits > 65535) splits = 65535;
  pl.splits = splits < 1 ? 1 : splits;
  pl.blocks = base * pl.splits;
  return pl;
}

inline int64_t workspace_elems(const Plan& pl) { return pl.splits > 1 ? pl.splits * pl.numel : 0; }

struct BlockWork {
  int64_t g, split, tm, tap, tn;
  int64_t kd, kh, kw;
};

// Block order: co-tile fastest, then tap, ci-tile, split, group — blocks that
// run together share the split's rows of x / grad_output in L2.
TCONV3D_HOST_DEVICE BlockWork decode_block(const Plan& pl, const ConvTranspose3dParams& p,
                                           int64_t linear) {
  BlockWork b;
  b.tn = linear % pl.tiles_n;
  linear /= pl.tiles_n;
  b.tap = linear % pl.taps;
  linear /= pl.taps;
  b.tm = linear % pl.tiles_m;
  linear /= pl.tiles_m;
  b.split = linear % pl.splits;
  b.g = linear / pl.splits;
  b.kw = b.tap % p.axis[2].kernel;
  b.kh = (b.tap / p.axis[2].kernel) % p.axis[1].kernel;
  b.kd = b.tap / (p.axis[2].kernel * p.axis[1].kernel);
  return b;
}

struct TapRows {
  Run d, h, w;    // a = input position, b = output position (step s)
  int64_t count;  // N · cd · ch · cw
};

TCONV3D_HOST_DEVICE TapRows tap_rows(const ConvTranspose3dParams& p, int64_t kd, int64_t kh,
                                     int64_t kw) {
  TapRows t;
  t.d = grad_weight_positions(p.axis[0], kd);
  t.h = grad_weight_positions(p.axis[1], kh);
  t.w = grad_weight_positions(p.axis[2], kw);
  t.count = p.batch * t.d.count * t.h.count * t.w.count;
  return t;
}

// Rows [begin, end) of the tap's reduction owned by split `split` of `splits`.
TCONV3D_HOST_DEVICE void split_range(int64_t count, int64_t split, int64_t splits,
                                     int64_t* begin, int64_t* end) {
  *begin = count * split / splits;
  *end = count * (split + 1) / splits;
}

template <typename index_t>
struct RowPos {
  index_t n, id, ih, iw, od, oh, ow;
};

// Row r (0 ≤ r < count) of the tap's box → batch, input and output positions.
// cd, ch, cw: the box's counts; the Runs give the starts and output steps.
template <typename index_t>
TCONV3D_HOST_DEVICE RowPos<index_t> row_position(const TapRows& t, index_t r) {
  const index_t cw = index_t(t.w.count), ch = index_t(t.h.count), cd = index_t(t.d.count);
  RowPos<index_t> q;
  const index_t mw = r % cw;
  r /= cw;
  const index_t mh = r % ch;
  r /= ch;
  const index_t md = r % cd;
  q.n = r / cd;
  q.id = index_t(t.d.a) + md;
  q.ih = index_t(t.h.a) + mh;
  q.iw = index_t(t.w.a) + mw;
  q.od = index_t(t.d.b) + md * index_t(t.d.db);
  q.oh = index_t(t.h.b) + mh * index_t(t.h.db);
  q.ow = index_t(t.w.b) + mw * index_t(t.w.db);
  return q;
}

}  // namespace gw_gemm
}  // namespace tconv3d::cuda
