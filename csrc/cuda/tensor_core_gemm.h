// The tensor-core kernel of the two gather passes, forward and grad-input:
// an implicit GEMM over a channels-last source through a pre-packed weight
// (DESIGN.md §3; geometry in index_math.h, forward_phase_axis and
// grad_input_axis).  cuda_passes.cpp prepares the operands with ATen.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "../params.h"
#include "channel_vectors.h"
#include "launch.h"

namespace tconv3d::cuda {

enum class GatherPass { Forward, GradInput };

// What the kernel reads and writes.
//  source: forward x, grad-input grad_output.  Channel c of group g sits at
//    element g·channels + c of a position, contiguous (channel stride 1), with
//    `channels` a multiple of tensor_core_channel_multiple; source_n/d/h/w
//    are element strides, all multiples of it, the pointer 16-byte aligned.
//  packed_weight: [G][kD·kH·kW][columns][channels] contiguous, channels
//    zero-padded: (forward) columns = Cout/G over channels = Cin/G,
//    (grad-input) columns = Cin/G over channels = Cout/G; fp32 rounded to
//    TF32 (weight_pack.h), so the Hopper kernels round only the source —
//    but for fp32_mma's split TF32, below.
//  dest: forward y (strides p.output), grad-input grad_input (p.input).
//  partials, splits: the Hopper grad-input's split K
//    (tensor_core_gemm_sm90_splits): with splits > 1, fp32 workspace of
//    splits × N·D·H·W·Cin floats that each split's sums go to, added into
//    dest in split order afterwards.  nullptr and 1 elsewhere (the mma.sync
//    kernels ignore them).
//  group_blocks: 0, or (the Hopper kernel) 16 where each "group" of the
//    launch is four groups of 16 channels on both sides (p's groups a
//    quarter of the layer's) and packed_weight is block-diagonal in 16 × 16
//    blocks (its zeros never read): a 64-column tile takes all four, one
//    m64n16k16 a group and k-step (TF32: two m64n16k8, a tap two stages) —
//    k-step j of a tap's 128-byte row is group j's channels, its 16 columns
//    the accumulator's registers 8j to 8j + 7 — so only the groups' own
//    products are computed (a dense
//    block-diagonal weight would compute four times as many, and its zeros
//    times an infinity in one group's channels would put NaNs in the others).
struct TensorCoreGemmOperands {
  GatherPass pass;
  const void* source;
  int64_t source_n, source_d, source_h, source_w;
  int64_t channels;
  const void* packed_weight;
  int64_t columns;
  const void* bias;  // forward only; nullptr for none
  void* dest;
  float* partials = nullptr;
  int splits = 1;
  // The source's channel stride: 1 (channels-last) for every kernel but the
  // tap-columns forward, which also reads NCDHW planes in place
  // (reads_planes_in_place, cuda_passes.cpp).
  int64_t source_c = 1;
  int group_blocks = 0;
  // fp32 where TF32 is not allowed, on the mma.sync phase GEMM and the
  // taps-folded forward only: Split (channel_vectors.h), and
  // packed_weight then holds the weight unrounded.  Tf32 elsewhere: fp32 runs
  // as TF32, fp16/bf16 as themselves.
  Fp32Mma fp32_mma = Fp32Mma::Tf32;
};

// Elements per 16 bytes: the source channels and strides must be multiples.
inline int64_t tensor_core_channel_multiple(ScalarKind dtype) { return vector_channels(dtype); }

// A group's channels padded (with zeros) to whole 16-byte pieces: the
// `channels` of a source the GEMMs read.
inline int64_t padded_channels(int64_t channels, ScalarKind dtype) {
  const int64_t vec = tensor_core_channel_multiple(dtype);
  return (channels + vec - 1) / vec * vec;
}

// K in bytes of a GEMM over `channels` (padded_channels) a group, rounded up
// to a whole 32-byte k-step: the mma.sync kernels' K loop.
inline int64_t k_step_bytes(int64_t channels, ScalarKind dtype) {
  return (channels * element_bytes(dtype) + 31) / 32 * 32;
}

// fp16/bf16, fp32 only when TF32 is allowed (or, for the mma.sync kernel,
// runs on split TF32: pass allow_tf32 true then); shapes within the kernel's
// 32-bit position and grid limits; a device of sm_80 or newer.
bool tensor_core_gemm_supports(const ConvTranspose3dParams& p, GatherPass pass, ScalarKind dtype,
                               bool allow_tf32);

// Test hook: force the block tile (rows 64 or 128, columns 32 or 64); 0, 0 =
// the shape-based choice.
void set_tensor_core_tile(int rows, int columns);

cudaError_t launch_tensor_core_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                    const TensorCoreGemmOperands& ops);

// The forward when every output position takes exactly one tap (kernel ==
// stride, no dilation, padding or output padding, every axis: 3-D U-Net
// decoders) as one GEMM per group over input positions × (tap, co) columns
// (forward_tap_columns_gemm.cu): same operands (pass Forward), for groups of
// at most 512 bytes of (padded) input channels.
bool forward_tap_columns_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype);
cudaError_t launch_forward_tap_columns_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                            const TensorCoreGemmOperands& ops);

// The same GEMM on Hopper's warpgroup MMAs (forward_tap_columns_sm90.cu),
// same operands: fp16/bf16 or TF32 from a channels-last source whose
// positions are one flat run of rows (source_c 1), into a channels-last
// output with strides and address in whole 16-byte pieces, Cout/G in whole
// 8-channel pieces; up to 512 bytes of channels a group (1 KB on the hook's
// 32-column tiles).  Returns cudaErrorNotSupported, nothing launched, where
// it does not take the shape (or the device lacks sm_90a code, or the driver
// refuses a tensor map): the caller runs launch_forward_tap_columns_gemm
// instead (past its 512 bytes, launch_tensor_core_gemm).
cudaError_t launch_forward_tap_columns_sm90(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                            const TensorCoreGemmOperands& ops);
// Whether it takes the layer given dense channels-last operands (x, or the
// op layer's padded copy of it), before any is made: the router's question
// where the alternative is not the mma.sync tap-columns version.
bool forward_tap_columns_sm90_may_take(const ConvTranspose3dParams& p, ScalarKind dtype);
// Test and benchmark hooks: whether the Hopper version may run (true,
// shipped); its consumers' tile width, 32, 64 or 128 columns (0, shipped:
// 64; 128 in fp16/bf16 only).
void set_forward_tap_columns_sm90(bool enabled);
void set_forward_tap_columns_sm90_columns(int columns);

// The forward of groups of at most 4 output channels, their taps folded into
// the GEMM's columns (forward_taps_gemm.cu): a block multiplies the box of
// input positions that reaches its tile of outputs by every (tap, co) column
// at once and sums each output's taps from shared memory.  Same operands
// (pass Forward); up to 192 columns (taps · Cout/G) and 512 bytes of (padded)
// input channels a group, while a box of 64 input positions fits the device's
// shared memory beside them (the box shrinks as K grows).  Pays where every
// axis with taps has stride ≥ 2 (a stride-1 axis's halo outgrows what the
// folding saves).
bool forward_taps_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype);
bool forward_taps_gemm_pays(const ConvTranspose3dParams& p);
// Test and benchmark hook: whether auto also takes it with stride-1 axes
// (False, shipped: forward_taps_gemm_pays's rule).
void set_forward_taps_any_stride(bool on);

// Test hook: the mma.sync kernels' shared-memory checks (block_smem_fits,
// the taps-folded forward's box) read this many bytes a block where it is
// below the device's limit, as A100 (166912) or sm_86/89 (101376) would;
// 0 (shipped): the device's.
void set_smem_per_block_limit(int bytes);
cudaError_t launch_forward_taps_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                     const TensorCoreGemmOperands& ops);

// Grad-input of groups of at most kTapChannels output channels, the taps
// folded into K (grad_input_taps_gemm.cu): one GEMM a group over input
// positions × input channels whose K is (tap, channel) pairs.
//  grad_output: channels-last, each group's channels padded with zeros to
//    kTapChannels (element g·kTapChannels + c; strides multiples of it, the
//    address of a group's piece) — the taps-folded grad-weight's gy.
//  packed_weight: [G·Cin/G][packed_taps][kTapChannels] contiguous, 16-byte
//    aligned, zeros past the taps and the group's channels (packed_taps =
//    grad_input_taps_gemm_packed_taps: the taps rounded up to whole stages).
//  grad_input: at p.input strides, written once.
// float32 runs in TF32, or split TF32 (fp32_mma).  At most kTapsGradInputMaxTaps taps.
constexpr int kTapsGradInputMaxTaps = 512;
struct TapsGradInputOperands {
  const void* grad_output;
  int64_t grad_output_n, grad_output_d, grad_output_h, grad_output_w;
  const void* packed_weight;
  int64_t packed_taps;
  void* grad_input;
  Fp32Mma fp32_mma = Fp32Mma::Tf32;
};
bool grad_input_taps_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                   bool allow_tf32);
int64_t grad_input_taps_gemm_packed_taps(const ConvTranspose3dParams& p, ScalarKind dtype);
cudaError_t launch_grad_input_taps_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                        const TapsGradInputOperands& ops);

// Grad-input when every output position takes exactly one tap (kernel ==
// stride, no dilation or padding, every axis; stride 2 along W), grad_output
// NCDHW-planar and read in place (grad_input_tap_blocks_gemm.cu): one GEMM a
// group over input positions × input channels, K = (co, kd, kh, kw) in the
// weight's own order.
//  grad_output: strides p.output, W stride 1, the others and the address in
//    16-byte pieces, input W a multiple of the rows a piece holds.
//  weight: [Cin][Cout/G][kD][kH][kW] at p.weight strides, each input
//    channel's row contiguous, rows and address in 16-byte pieces.
//  grad_input: strides p.input, written once.
// float32 runs in TF32 (only where allowed).
struct TapBlocksGradInputOperands {
  const void* grad_output;
  const void* weight;
  void* grad_input;
};
bool grad_input_tap_blocks_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                         bool allow_tf32, const void* grad_output,
                                         const void* weight);
// Where auto takes it: a K of at most 256 q-rows (Cout/G · kD · kH).
bool grad_input_tap_blocks_gemm_pays(const ConvTranspose3dParams& p);
cudaError_t launch_grad_input_tap_blocks_gemm(const ConvTranspose3dParams& p,
                                              const LaunchConfig& cfg,
                                              const TapBlocksGradInputOperands& ops);

// The same GEMM on Hopper's warpgroup MMAs (tensor_core_gemm_sm90.cu): same
// operands, contract and supported shapes (tensor_core_gemm_supports).  Runs
// on an sm_90 device when the build has sm_90a code (setup.py turns 9.0 in
// TORCH_CUDA_ARCH_LIST into 9.0a).
bool tensor_core_gemm_sm90_runs_here();
// Whether it handles the shape at all: forward strides up to 8 per axis (its
// table of stride phases has 8 entries per axis).
bool tensor_core_gemm_sm90_handles(const ConvTranspose3dParams& p, GatherPass pass);
// Where it beat the mma.sync GEMM on an H200 (benchmarks/kernel_ab.py;
// RESULTS.md): fp16/bf16 wherever the TMA loader fits (source channels per
// group whole 128-byte rows, or exactly one 64- or 32-byte row), whatever the
// column and tile counts; TF32 likewise with 128- or 64-byte rows (its
// 32-byte rows lost; without the TMA loader TF32 stays on mma.sync); else
// fp16/bf16 forward above 64 columns (geomean 1.10-1.12x there, 0.85-1.05x
// narrower), grad-input above 32 columns (1.01-1.25x from 64 columns, 0.8x at
// 32), and 128-row tiles for at least three quarters of the multiprocessors.
bool tensor_core_gemm_sm90_pays(const ConvTranspose3dParams& p, GatherPass pass,
                                ScalarKind dtype);
// Test hook: at most `ctas` CTAs (0 = one per SM), so that small problems
// walk several tiles per CTA.
void set_tensor_core_gemm_sm90_grid(int ctas);
// Test and benchmark hook: column tiles of at most `columns` (32 or 64; 0 =
// by shape), so that wide layers run more, narrower tiles.
void set_tensor_core_gemm_sm90_columns(int columns);
// How many contiguous ranges of its K stages each grad-input tile is summed
// in, from the shape alone (1 for the forward, and for TF32 group blocks):
// TensorCoreGemmOperands' `splits`, whose partials the caller allocates.
int tensor_core_gemm_sm90_splits(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                 GatherPass pass, bool group_blocks = false);
// Whether a launch of 64-channel groups (p, four 16-channel groups each) can
// take group blocks: 64-column tiles (not narrowed by the columns
// hook), the TMA loader's per-tap boxes.
bool tensor_core_gemm_sm90_group_blocks_fit(const ConvTranspose3dParams& p, GatherPass pass,
                                             const LaunchConfig& cfg);
// Test and benchmark hook: grad-input split into `splits` ranges of K stages
// (0 = by shape; clamped to the stages a tile has, and to 1 under the halo
// loader), to test and time split K on any shape.
void set_tensor_core_gemm_sm90_splits(int splits);
// Test and benchmark hook: the fewest taps in the fullest phase at which the
// halo loader is taken where it fits (0: the shipped threshold; 1: wherever
// it fits; more than any kernel has: never, the per-tap boxes instead), to
// compare the two loaders on one shape.
void set_tensor_core_gemm_sm90_halo_min_taps(int64_t taps);
// Test and benchmark hook: whether the TMA loader may keep a launch's weight
// in shared memory where every tile walks the same slices (true, shipped),
// or reads it again with every tile's stages (false), to compare the two.
void set_tensor_core_gemm_sm90_resident_weight(bool resident);
// How the Hopper GEMM loaded its stages: the cp.async gather; tensor-map
// copies of a box per tap (a group's source channels whole 128-byte rows or
// exactly one 64- or 32-byte row, grad-input strides up to 8); or, where
// a tile's taps overlap in the source (fp16/bf16 whose fullest phase has at
// least 27 taps: stride 1 from k = 3, k5s2 forwards; 128- or 64-byte rows;
// the halo fits beside the ring), one halo box per tile and channel chunk
// that every tap reads at its offset; or the tensor-map copies with the
// weight loaded once a CTA and kept in shared memory beside a ring of A-only
// stages (every tile on the same weight slices: one phase, column tile and
// group, K whole; the weight fits).
enum class Sm90Loader { CpAsync, Tma, Halo, TmaResidentWeight };
// *loader (when given) says which loader ran.
cudaError_t launch_tensor_core_gemm_sm90(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const TensorCoreGemmOperands& ops, Sm90Loader* loader);

}  // namespace tconv3d::cuda
