// Grad-weight when every output position takes exactly one tap (kernel ==
// stride, no dilation or padding, every axis; stride 2 along W: 3-D U-Net
// decoders), reading NCDHW x and grad_output as they are.  Input position i
// then feeds the s³ block of grad_output at i·s alone, and per group
//
//   GW[ci, (co, kd, kh, kw)] = Σ_i X[ci, i] · GY[co, i·s + (kd, kh, kw)]
//
// is one GEMM whose columns run in the weight's own order and whose K runs
// over the input positions.  A (x) is each channel's plane: K-contiguous rows
// straight from memory.  B (grad_output), for one q = (co, kd, kh), reads
// 2·iw + kw, kw = 0, 1, for a stage's positions: runs along W lines, landing
// as [q][position][kw]; one 64-bit word of it gives a lane its (kw 0, kw 1)
// fragments, which go to two n8 pieces of the tile (kw 0 and kw 1 of the
// same eight q), bf16 pairs regrouped by a byte permute.
// The channels-last GEMMs (grad_weight_gemm*.cu) need both operands copied
// channels-last: on U-Net 128 → 64 TF32, 168 MB written and read again
// beside the 168 MB the GEMM itself reads.
//
// Tile: 64 or 128 input channels × 64 q (128 columns), 8 warps (2 × 4),
// K in stages of 32 positions of one sample.  K is split over blocks so the
// grid fills the GPU; each split's sums go to the workspace as
// [split][ci][column] (gw's dense order) and are added in split order by
// combine_partials_kernel: deterministic, no atomics.
//
// Grad-bias rides along where asked: the blocks of the first channel tile sum
// each stage's B rows (grad_output, already in shared memory) on the CUDA
// cores in fp32, so grad_output is read once for both gradients instead of
// again by grad_bias_reduce (as many bytes as the GEMM's largest operand).
#include "grad_weight_gemm.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include <c10/macros/Macros.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../scalar_convert.h"
#include "dispatch.cuh"
#include "grad_weight_launch.cuh"
#include "mma_sm80.cuh"
#include "tap_blocks.h"
#include "vector_access.cuh"

namespace tconv3d::cuda {
namespace gw_tapblk {

constexpr int kThreads = 256, kQRows = 64, kPositions = 32;
// Two blocks an SM (TF32: 36 KB a stage); one more stage where they are smaller.
template <typename scalar_t>
constexpr int kStages = sizeof(scalar_t) == 4 ? 3 : 4;
// A rows 16 bytes longer than a stage's positions: TF32 word loads (4 words
// past 32) and bf16 ldmatrix rows (an odd number of 16-byte pieces) are
// conflict-free.  B rows 8 words past a multiple of 32: a half-warp's 64-bit
// fragment loads land in 32 banks.
template <typename scalar_t>
constexpr int kAPitch = kPositions * int(sizeof(scalar_t)) + 16;
template <typename scalar_t>
constexpr int kBPitch = 2 * kPositions * int(sizeof(scalar_t)) + 32;
template <typename scalar_t, int kBM>
constexpr int kABytes = kBM * kAPitch<scalar_t>;
template <typename scalar_t, int kBM>
constexpr int kStageBytes = kABytes<scalar_t, kBM> + kQRows * kBPitch<scalar_t>;
template <typename scalar_t, int kBM>
constexpr int kSmem = kStages<scalar_t> * kStageBytes<scalar_t, kBM>;

// Shape-only split of K (the same sums on every GPU): blocks enough for two
// on each of 132 SMs, at least kMinChunks stages a split, the workspace
// within kMaxPartials.  Over the 12 U-Net NCDHW grad-weight rows (H200,
// graph replays) targets of 132 / 264 / 528 blocks gave 1.87 / 2.35 / 2.18x
// cuDNN, at least 8 / 16 / 32 stages 2.13 / 2.35 / 2.17x (RESULTS.md
// "In-place grad-weight and fused grad-bias round").
constexpr int64_t kTargetBlocks = 264, kMinChunks = 16;

struct Args {
  ConvTranspose3dParams p;
  const void* input;
  const void* grad_output;
  float* partials;
  float* bias_partials;       // [split][G·q_count], or null: no grad-bias
  int64_t plane;              // D·H·W input positions a sample
  int64_t chunks_per_sample;  // stages of kPositions positions
  int64_t chunks, splits, m_tiles, n_tiles;
  int64_t numel;    // Cin · columns: one split's partials
  int64_t columns;  // Cout/G · kD · kH · 2: a gw row
  int q_count;      // Cout/G · kD · kH
  at::cuda::detail::IntDivider<unsigned> w_div, h_div, kh_div, kd_div;
};

struct Plan {
  int bm;
  int64_t plane;  // D·H·W input positions a sample
  int64_t m_tiles, n_tiles, splits, chunks_per_sample, chunks, numel;
  int64_t bias_numel;  // G · q_count: one split's grad-bias partials
};

inline Plan plan(const ConvTranspose3dParams& p) {
  Plan pl{};
  pl.bm = p.in_per_group > 64 ? 128 : 64;
  pl.m_tiles = (p.in_per_group + pl.bm - 1) / pl.bm;
  const int64_t q_count = p.out_per_group * p.axis[0].kernel * p.axis[1].kernel;
  pl.n_tiles = (q_count + kQRows - 1) / kQRows;
  pl.plane = input_positions(1, p.axis);
  pl.chunks_per_sample = (pl.plane + kPositions - 1) / kPositions;
  pl.chunks = p.batch * pl.chunks_per_sample;
  pl.numel = p.in_channels * q_count * 2;
  pl.bias_numel = p.groups * q_count;
  const int64_t tiles = p.groups * pl.m_tiles * pl.n_tiles;
  int64_t splits = std::min((pl.chunks + kMinChunks - 1) / kMinChunks,
                            tiles > 0 ? (kTargetBlocks + tiles - 1) / tiles : int64_t(1));
  if (pl.numel > 0) splits = std::min(splits, kMaxPartials / pl.numel);
  pl.splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535));
  return pl;
}

template <typename scalar_t, typename index_t, int kBM>
__global__ void __launch_bounds__(kThreads, 2) grad_weight_tap_blocks_kernel(const Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int ES = sizeof(scalar_t), VEC = 16 / ES;
  constexpr int kWarpM = kBM / 2, MI = kWarpM / 16, NI = 4;  // a warp: 16 q × (kw 0, 1)
  constexpr int kAPiecesRow = kPositions / VEC, kBPiecesRow = 2 * kPositions / VEC;
  constexpr int kAPerThread = kBM * kAPiecesRow / kThreads;
  constexpr int kBPerThread = kQRows * kBPiecesRow / kThreads;
  constexpr int kAPitchB = kAPitch<scalar_t>, kBPitchB = kBPitch<scalar_t>;
  constexpr int kStage = kStageBytes<scalar_t, kBM>, kA = kABytes<scalar_t, kBM>;
  static_assert(kAPerThread * kThreads == kBM * kAPiecesRow, "A pieces spread evenly");
  static_assert(kBPerThread * kThreads == kQRows * kBPiecesRow, "B pieces spread evenly");
  extern __shared__ __align__(128) unsigned char smem[];

  const ConvTranspose3dParams& p = a.p;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp % 2, wn = warp / 2, grp = lane / 4, t = lane % 4;
  const int64_t g = blockIdx.y;
  int64_t b = blockIdx.x;
  const int q0 = int(b % a.n_tiles) * kQRows;
  b /= a.n_tiles;
  const int m0 = int(b % a.m_tiles) * kBM;
  const int64_t split = b / a.m_tiles;
  const int64_t c_begin = a.chunks * split / a.splits, c_end = a.chunks * (split + 1) / a.splits;
  const int cig = int(p.in_per_group), cog = int(p.out_per_group);
  const scalar_t* x = static_cast<const scalar_t*>(a.input);
  const scalar_t* gy = static_cast<const scalar_t*>(a.grad_output);
  const uint32_t sbase = smem_addr(smem);

  // A thread keeps its pieces' column (positions) for the whole loop, and
  // its rows (channels, q) with their offsets; a stage adds the chunk's.
  const int a_col = (tid % kAPiecesRow) * VEC;
  index_t a_row[kAPerThread];
  bool a_ok[kAPerThread];
#pragma unroll
  for (int e = 0; e < kAPerThread; ++e) {
    const int r = tid / kAPiecesRow + e * (kThreads / kAPiecesRow);
    a_ok[e] = m0 + r < cig;
    a_row[e] = index_t((g * cig + m0 + r) * p.input.c + a_col);
  }
  const int b_piece = tid % kBPiecesRow, b_pos = b_piece * (VEC / 2);
  index_t b_row[kBPerThread];
  bool b_ok[kBPerThread];
#pragma unroll
  for (int e = 0; e < kBPerThread; ++e) {
    const int q = q0 + tid / kBPiecesRow + e * (kThreads / kBPiecesRow);
    b_ok[e] = q < a.q_count;
    const auto kh = a.kh_div.divmod(unsigned(b_ok[e] ? q : 0));  // (co, kd) and kh
    const auto kd = a.kd_div.divmod(kh.div);                       // co and kd
    b_row[e] = index_t((g * cog + kd.div) * p.output.c + kd.mod * p.output.d +
                       kh.mod * p.output.h);
  }

  auto load_stage = [&](int64_t chunk, int slot) {
    const int64_t n = chunk / a.chunks_per_sample;
    const int64_t f0 = (chunk - n * a.chunks_per_sample) * kPositions;
    const uint32_t base = sbase + uint32_t(slot * kStage);
    const bool a_in = f0 + a_col < a.plane;
    const index_t a_at = index_t(n * p.input.n + f0);
#pragma unroll
    for (int e = 0; e < kAPerThread; ++e) {
      const int r = tid / kAPiecesRow + e * (kThreads / kAPiecesRow);
      const bool valid = a_in && a_ok[e];
      cp_async16(base + r * kAPitchB + a_col * ES, valid ? x + (a_at + a_row[e]) : x, valid);
    }
    // A piece holds VEC / 2 positions of one W line (W a multiple of it).
    const int64_t f = f0 + b_pos;
    const bool b_in = f < a.plane;
    index_t b_at = 0;
    if (b_in) {
      const auto w = a.w_div.divmod(unsigned(f));
      const auto h = a.h_div.divmod(w.div);
      b_at = index_t(n * p.output.n + int64_t(h.div) * p.axis[0].stride * p.output.d +
                     int64_t(h.mod) * p.axis[1].stride * p.output.h + 2 * int64_t(w.mod));
    }
#pragma unroll
    for (int e = 0; e < kBPerThread; ++e) {
      const int r = tid / kBPiecesRow + e * (kThreads / kBPiecesRow);
      const bool valid = b_in && b_ok[e];
      cp_async16(base + kA + r * kBPitchB + b_piece * 16, valid ? gy + (b_at + b_row[e]) : gy,
                 valid);
    }
  };

  // Grad-bias: 8 threads a B row, each on every 8th 16-byte piece (a
  // quarter-warp reads 128 contiguous bytes), rows r and r + 32.
  constexpr int kBiasRows = kThreads / 8;
  const bool bias = a.bias_partials != nullptr && m0 == 0;
  float bias_sum[kQRows / kBiasRows] = {};

  float acc[MI][NI][4];
  zero_accumulators(acc);
  const int64_t count = c_end - c_begin;
  constexpr int S = kStages<scalar_t>;
#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    if (s < count) load_stage(c_begin + s, s);
    cp_async_commit();
  }
  for (int64_t kt = 0; kt < count; ++kt) {
    cp_async_wait<S - 2>();
    __syncthreads();
    if (kt + S - 1 < count) load_stage(c_begin + kt + S - 1, int((kt + S - 1) % S));
    cp_async_commit();
    const int slot = int(kt % S);
    const unsigned char* as = smem + slot * kStage;
    const unsigned char* bs = as + kA;
    if (bias) {
#pragma unroll
      for (int h = 0; h < kQRows / kBiasRows; ++h)
#pragma unroll
        for (int u = tid % 8; u < kBPiecesRow; u += 8) {
          const Vec<scalar_t, VEC> v = *reinterpret_cast<const Vec<scalar_t, VEC>*>(
              bs + (tid / 8 + h * kBiasRows) * kBPitchB + u * 16);
#pragma unroll
          for (int e = 0; e < VEC; ++e) bias_sum[h] += to_acc(v.v[e]);
        }
    }
    if constexpr (std::is_same_v<scalar_t, float>) {
      constexpr int PB = kBPitchB / 4;
      const uint32_t sa = smem_addr(as);
#pragma unroll
      for (int ks = 0; ks < kPositions / 8; ++ks) {
        uint32_t af[MI][4], bf[NI][2];
        const int k = ks * 8 + t;
#pragma unroll
        for (int i = 0; i < MI; ++i) {  // 8 × 4-word matrices: a lane gets (row l / 4, word l % 4)
          const int m = wm * kWarpM + i * 16 + lane % 16;
          ldmatrix_x4(af[i], sa + m * kAPitchB + ks * 32 + (lane / 16) * 16);
        }
#pragma unroll
        for (int jj = 0; jj < NI / 2; ++jj) {  // (kw 0, kw 1) of position k, and of k + 4
          const int q = wn * 16 + jj * 8 + grp;
          const uint2 lo = *reinterpret_cast<const uint2*>(bs + (q * PB + 2 * k) * 4);
          const uint2 hi = *reinterpret_cast<const uint2*>(bs + (q * PB + 2 * (k + 4)) * 4);
          bf[2 * jj][0] = lo.x;
          bf[2 * jj + 1][0] = lo.y;
          bf[2 * jj][1] = hi.x;
          bf[2 * jj + 1][1] = hi.y;
        }
        multiply_fragments<scalar_t>(acc, af, bf);
      }
    } else {
      constexpr int PB = kBPitchB / 4;
      const uint32_t sa = smem_addr(as);
#pragma unroll
      for (int ks = 0; ks < kPositions / 16; ++ks) {
        uint32_t af[MI][4], bf[NI][2];
#pragma unroll
        for (int i = 0; i < MI; ++i) {  // matrices (m block, k block) = (lane / 8 % 2, lane / 16)
          const int m = wm * kWarpM + i * 16 + lane % 16;
          ldmatrix_x4(af[i], sa + m * kAPitchB + (ks * 16 + (lane / 16) * 8) * ES);
        }
#pragma unroll
        for (int jj = 0; jj < NI / 2; ++jj) {
          // Words of positions 2t, 2t + 1 (and 8 on), each (kw 0, kw 1): the
          // kw 0 halves make one fragment register, the kw 1 halves another.
          const int q = wn * 16 + jj * 8 + grp;
          const uint32_t* row = reinterpret_cast<const uint32_t*>(bs) + q * PB + ks * 16 + 2 * t;
          const uint2 lo = *reinterpret_cast<const uint2*>(row);
          const uint2 hi = *reinterpret_cast<const uint2*>(row + 8);
          bf[2 * jj][0] = __byte_perm(lo.x, lo.y, 0x5410);
          bf[2 * jj + 1][0] = __byte_perm(lo.x, lo.y, 0x7632);
          bf[2 * jj][1] = __byte_perm(hi.x, hi.y, 0x5410);
          bf[2 * jj + 1][1] = __byte_perm(hi.x, hi.y, 0x7632);
        }
        multiply_fragments<scalar_t>(acc, af, bf);
      }
    }
  }
  cp_async_wait<0>();

  if (bias) {  // a row's 8 sums in a fixed tree, then its q's partial
#pragma unroll
    for (int h = 0; h < kQRows / kBiasRows; ++h) {
      float v = bias_sum[h];
#pragma unroll
      for (int offset = 4; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
      const int q = q0 + tid / 8 + h * kBiasRows;
      if (tid % 8 == 0 && q < a.q_count) {
        a.bias_partials[(split * p.groups + g) * a.q_count + q] = v;
      }
    }
  }

  // Pieces 2jj and 2jj + 1 hold kw 0 and kw 1 of the same q: a lane's
  // (q, q + 1) × (kw 0, 1) are four consecutive columns of a gw row.
  float* out = a.partials + split * a.numel;
  const bool whole = a.columns % 4 == 0;
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int jj = 0; jj < NI / 2; ++jj)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int ci = m0 + wm * kWarpM + i * 16 + grp + 8 * h;
        const int q = q0 + wn * 16 + jj * 8 + 2 * t;
        if (ci >= cig || q >= a.q_count) continue;
        float* to = out + (g * cig + ci) * a.columns + 2 * q;
        const float4 v{acc[i][2 * jj][2 * h], acc[i][2 * jj + 1][2 * h],
                       acc[i][2 * jj][2 * h + 1], acc[i][2 * jj + 1][2 * h + 1]};
        if (whole) {
          *reinterpret_cast<float4*>(to) = v;  // q even, Cout/G·kD·kH even: q + 1 in range
        } else {
          *reinterpret_cast<float2*>(to) = make_float2(v.x, v.y);
          if (q + 1 < a.q_count) *reinterpret_cast<float2*>(to + 2) = make_float2(v.z, v.w);
        }
      }
#endif
}

// gb[c] = Σ over (split, (kd, kh)) of partial[split][c][kd][kh]: a warp a
// channel, lane l adding entries l, l + 32, … in order, then the lanes' sums
// in a fixed tree.  (One thread a channel walked up to 528 entries in a
// dependent chain: 30 us of U-Net 64 → 32's step.)
constexpr int kBiasChannelsPerBlock = kThreads / 32;

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    combine_bias_kernel(const float* __restrict__ partial, int64_t splits, int64_t channels,
                        int taps, scalar_t* __restrict__ grad_bias, int64_t bias_stride) {
  const int64_t c = blockIdx.x * int64_t(kBiasChannelsPerBlock) + threadIdx.x / 32;
  if (c >= channels) return;  // whole warps
  const int lane = threadIdx.x % 32;
  float acc = 0.f;
  for (int64_t k = lane; k < splits * taps; k += 32) {
    const int64_t s = k / taps;
    acc += partial[(s * channels + c) * taps + (k - s * taps)];
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
  if (lane == 0) grad_bias[c * bias_stride] = from_acc<scalar_t>(acc);
}

template <typename scalar_t, typename index_t, int kBM>
cudaError_t launch_tile(const Args& a, cudaStream_t stream) {
  constexpr auto kernel = grad_weight_tap_blocks_kernel<scalar_t, index_t, kBM>;
  constexpr int smem = kSmem<scalar_t, kBM>;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(smem);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned int>(a.splits * a.m_tiles * a.n_tiles),
                  static_cast<unsigned int>(a.p.groups));
  kernel<<<grid, kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace gw_tapblk

bool grad_weight_tap_blocks_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                          bool allow_tf32, const void* input,
                                          const void* grad_output, bool with_bias) {
  if (!tensor_core_dtype(dtype, allow_tf32) || p.in_per_group < 1 || p.out_per_group < 1 ||
      !tap_blocks_read_grad_output(p, dtype, grad_output)) {
    return false;
  }
  // The bias sums what the taps read: every output row, only without output
  // padding beyond the input's s-blocks.
  if (with_bias) {
    for (const Axis& ax : p.axis) {
      if (ax.out != ax.in * ax.stride) return false;
    }
  }
  const int64_t vec = vector_channels(dtype);
  const Strides5 x = p.input;
  const int64_t plane = input_positions(1, p.axis);
  // x: planes contiguous in whole 16-byte pieces.
  const bool x_ok = x.w == 1 && x.h == p.axis[2].in && x.d == p.axis[1].in * p.axis[2].in &&
                    plane % vec == 0 && x.c % vec == 0 && x.n % vec == 0 &&
                    reinterpret_cast<uintptr_t>(input) % 16 == 0;
  if (!x_ok || p.batch < 1 || plane < 1 || plane > int64_t(INT_MAX) || p.groups > 65535) {
    return false;
  }
  const gw_tapblk::Plan pl = gw_tapblk::plan(p);
  if (pl.splits * pl.m_tiles * pl.n_tiles > int64_t(INT_MAX) ||
      pl.n_tiles * gw_tapblk::kQRows > int64_t(INT_MAX)) {
    return false;
  }
  // 108 KB at TF32's 128-channel tiles: past sm_86/89's 99 KB.
  using gw_tapblk::kSmem;
  const int smem = element_bytes(dtype) == 2
                       ? (pl.bm == 128 ? kSmem<__half, 128> : kSmem<__half, 64>)
                       : (pl.bm == 128 ? kSmem<float, 128> : kSmem<float, 64>);
  if (!block_smem_fits(smem)) return false;
  return sm80_kernel_runs_here<gw_tapblk::grad_weight_tap_blocks_kernel<__half, int32_t, 64>>();
}

int64_t grad_weight_tap_blocks_gemm_workspace_elems(const ConvTranspose3dParams& p,
                                                    bool with_bias) {
  const gw_tapblk::Plan pl = gw_tapblk::plan(p);
  return pl.splits * (pl.numel + (with_bias ? pl.bias_numel : 0));
}

cudaError_t launch_grad_weight_tap_blocks_gemm(const ConvTranspose3dParams& p,
                                               const LaunchConfig& cfg,
                                               const TapBlocksGradWeightOperands& ops) {
  using namespace gw_tapblk;
  const Plan pl = plan(p);
  Args a{};
  a.p = p;
  a.input = ops.input;
  a.grad_output = ops.grad_output;
  a.partials = ops.workspace;
  a.bias_partials = ops.grad_bias != nullptr ? ops.workspace + pl.splits * pl.numel : nullptr;
  a.plane = pl.plane;
  a.chunks_per_sample = pl.chunks_per_sample;
  a.chunks = pl.chunks;
  a.splits = pl.splits;
  a.m_tiles = pl.m_tiles;
  a.n_tiles = pl.n_tiles;
  a.numel = pl.numel;
  a.q_count = int(p.out_per_group * p.axis[0].kernel * p.axis[1].kernel);
  a.columns = 2 * int64_t(a.q_count);
  a.w_div = at::cuda::detail::IntDivider<unsigned>(unsigned(std::max<int64_t>(p.axis[2].in, 1)));
  a.h_div = at::cuda::detail::IntDivider<unsigned>(unsigned(std::max<int64_t>(p.axis[1].in, 1)));
  a.kh_div = at::cuda::detail::IntDivider<unsigned>(unsigned(p.axis[1].kernel));
  a.kd_div = at::cuda::detail::IntDivider<unsigned>(unsigned(p.axis[0].kernel));
  // The combine of the generic GEMMs: gw's dense order, in split order.
  gw_gemm::Plan combine{};
  combine.numel = pl.numel;
  combine.splits = pl.splits;
  combine.blocks = pl.splits * pl.m_tiles * pl.n_tiles;
  return gw_gemm::run_split_gemm<gw_gemm::PartialOrder::CiCoTap, true>(
      p, cfg, combine, ops.workspace, ops.grad_weight, [&](auto scalar, auto index) {
        using scalar_t = decltype(scalar);
        using index_t = decltype(index);
        cudaError_t err = pl.bm == 128 ? launch_tile<scalar_t, index_t, 128>(a, cfg.stream)
                                       : launch_tile<scalar_t, index_t, 64>(a, cfg.stream);
        if (err != cudaSuccess || a.bias_partials == nullptr) return err;
        const int64_t channels = p.groups * p.out_per_group;
        const unsigned blocks =
            unsigned((channels + kBiasChannelsPerBlock - 1) / kBiasChannelsPerBlock);
        combine_bias_kernel<scalar_t><<<blocks, gw_tapblk::kThreads, 0, cfg.stream>>>(
            a.bias_partials, pl.splits, channels, int(p.axis[0].kernel * p.axis[1].kernel),
            static_cast<scalar_t*>(ops.grad_bias), ops.grad_bias_stride);
        return cudaGetLastError();
      });
}

}  // namespace tconv3d::cuda
