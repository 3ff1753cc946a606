// Grad-weight as split-reduction GEMMs on tensor cores (mma.sync), for
// channels-last operands (DESIGN.md §3):
//
//   gw[ci, co, k] = Σ_n Σ_i x[n, ci, i] · gy[n, co, i·s − p + k·d]
//
// Per group g and tap k = (kd, kh, kw) this is C_k[ci, co] = Σ_r X[r, ci] ·
// GY_k[r, co] with r over (n, md, mh, mw) of the tap's valid box (see
// grad_weight_gemm.h: rows whose output position is cropped are never
// visited, so no masking by position is needed).
//
// Decomposition: one block per (group, split, ci-tile, tap, co-tile); a fixed
// number of splits S chosen from the shape alone (gw_gemm::make_plan) divides
// each tap's rows into contiguous ranges.  The taps of one (split, ci-tile)
// are adjacent in the grid, so the x rows they all read come from L2.
//
// Used when x and grad_output are channels_last_3d with 16-byte-multiple
// channel counts (read in place; grad_weight_gemm.cu, which reads any strides
// element by element, serves the rest).  A reduction row r is one position, and its 64 channels of x (or gy)
// are 16-byte pieces copied by cp.async straight into shared memory as
// [k = r][m = channel] — the "k-major" layout.  Fragments come out of it with
// ldmatrix.trans (fp16/bf16) or plain 32-bit loads (TF32, whose words
// ldmatrix cannot transpose), from rows padded so both are conflict-free.
// Tile 64 ci × 64 co × 32 rows per stage, 4 stages; 4 warps in 2 × 2, each
// 32 × 32 = 2 × 4 mma tiles of m16n8.
//
// Epilogue: accumulators straight from registers to workspace[split · numel +
// ((ci · Cout/G + co) · taps + tap)] (the dense logical order of gw), or, when
// S == 1, rounded once into gw at p.weight strides.  combine_partials_kernel
// then adds the S partials in split order and rounds once.  No atomics:
// bitwise reproducible.
#include <climits>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../scalar_convert.h"
#include "deterministic_reduce.cuh"
#include "dispatch.cuh"
#include "grad_weight_gemm.h"
#include "grad_weight_launch.cuh"
#include "mma_sm80.cuh"

namespace tconv3d::cuda {
namespace gw_gemm {

constexpr int kTile = 64;  // ci and co per block
constexpr int kStages = 4;

template <typename scalar_t>
struct Layout {
  static constexpr int ES = int(sizeof(scalar_t));
  static constexpr int VEC = 16 / ES;             // channels per 16-byte piece
  static constexpr int PIECES = kTile / VEC;      // pieces per row of a tile
  static constexpr int ROW_STEP = kBlockThreads / PIECES;
  static constexpr int ROWS = kBK / ROW_STEP;     // rows a thread loads per stage
  // Row pitch: 16 bytes past a multiple of 128 for ldmatrix (8 rows hit 8
  // distinct 16-byte bank groups); 8 words past a multiple of 32 for TF32's
  // word loads (lanes (t, g) hit bank 8t + g).
  static constexpr int PITCH = ES == 2 ? kTile * 2 + 16 : kTile * 4 + 32;
  static constexpr int OPERAND = kBK * PITCH;     // bytes of one operand per stage
  static constexpr int STAGE = 2 * OPERAND;
  static constexpr int SMEM = kStages * STAGE;
  static_assert(ROWS * ROW_STEP == kBK, "rows per stage");
};

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kBlockThreads, 4)
    grad_weight_mma_kernel(const ConvTranspose3dParams p, const Plan pl,
                            const GradWeightOperands ops) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using L = Layout<scalar_t>;
  constexpr int VEC = L::VEC, PITCH = L::PITCH;
  extern __shared__ __align__(128) unsigned char smem[];

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp % 2, wn = warp / 2;

  const BlockWork b = decode_block(pl, p, blockIdx.x);
  const TapRows rows = tap_rows(p, b.kd, b.kh, b.kw);
  int64_t begin64, end64;
  split_range(rows.count, b.split, pl.splits, &begin64, &end64);
  const index_t begin = index_t(begin64), len = index_t(end64 - begin64);
  const int m0 = int(b.tm) * kTile, n0 = int(b.tn) * kTile;  // within the group

  // This thread's 16-byte piece (same column in x and gy) and rows.
  const int piece = tid % L::PIECES, row0 = tid / L::PIECES;
  const bool a_col_ok = m0 + piece * VEC < ops.input_channels;
  const bool b_col_ok = n0 + piece * VEC < ops.grad_output_channels;
  const scalar_t* xs = static_cast<const scalar_t*>(ops.input) +
                       index_t(b.g * ops.input_channels + m0 + piece * VEC);
  const scalar_t* gs = static_cast<const scalar_t*>(ops.grad_output) +
                       index_t(b.g * ops.grad_output_channels + n0 + piece * VEC);
  const uint32_t smem0 = smem_addr(smem);

  auto load_stage = [&](index_t slice, int stage) {
    const uint32_t sa = smem0 + stage * L::STAGE, sb = sa + L::OPERAND;
#pragma unroll
    for (int q = 0; q < L::ROWS; ++q) {
      const int row = row0 + q * L::ROW_STEP;
      const index_t rr = slice * kBK + row;
      index_t xo = 0, go = 0;
      const bool row_ok = rr < len;
      if (row_ok) {
        const RowPos<index_t> at = row_position<index_t>(rows, begin + rr);
        xo = at.n * index_t(ops.input_n) + at.id * index_t(ops.input_d) +
             at.ih * index_t(ops.input_h) + at.iw * index_t(ops.input_w);
        go = at.n * index_t(ops.grad_output_n) + at.od * index_t(ops.grad_output_d) +
             at.oh * index_t(ops.grad_output_h) + at.ow * index_t(ops.grad_output_w);
      }
      const uint32_t dst = row * PITCH + piece * 16;
      cp_async16(sa + dst, xs + xo, row_ok && a_col_ok);
      cp_async16(sb + dst, gs + go, row_ok && b_col_ok);
    }
  };

  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

  const index_t nslices = (len + kBK - 1) / kBK;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < nslices) load_stage(s, s);
    cp_async_commit();
  }
  for (index_t slice = 0; slice < nslices; ++slice) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // slice's stage is visible; the stage refilled below was consumed
    if (slice + kStages - 1 < nslices) {
      load_stage(slice + kStages - 1, int((slice + kStages - 1) % kStages));
    }
    cp_async_commit();

    const int stage = int(slice % kStages);
    if constexpr (std::is_same_v<scalar_t, float>) {
      // TF32: fragments word by word from [k][m] (k8 steps).
      const float* fa = reinterpret_cast<const float*>(smem + stage * L::STAGE);
      const float* fb = reinterpret_cast<const float*>(smem + stage * L::STAGE + L::OPERAND);
      constexpr int P = PITCH / 4;
      const int g = lane / 4, t = lane % 4;
#pragma unroll
      for (int ks = 0; ks < kBK / 8; ++ks) {
        const int k0 = ks * 8 + t;
        uint32_t af[2][4], bf[4][2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const int m = wm * 32 + i * 16 + g;
          af[i][0] = to_tf32(__float_as_uint(fa[k0 * P + m]));
          af[i][1] = to_tf32(__float_as_uint(fa[k0 * P + m + 8]));
          af[i][2] = to_tf32(__float_as_uint(fa[(k0 + 4) * P + m]));
          af[i][3] = to_tf32(__float_as_uint(fa[(k0 + 4) * P + m + 8]));
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int n = wn * 32 + j * 8 + g;
          bf[j][0] = to_tf32(__float_as_uint(fb[k0 * P + n]));
          bf[j][1] = to_tf32(__float_as_uint(fb[(k0 + 4) * P + n]));
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) mma<scalar_t>(acc[i][j], af[i], bf[j]);
      }
    } else {
      // fp16/bf16: ldmatrix.trans from [k][m] (k16 steps).  Lane l addresses
      // row l % 8 of matrix l / 8.
      const uint32_t sa = smem0 + stage * L::STAGE, sb = sa + L::OPERAND;
      const int mat = lane / 8, r8 = lane % 8;
#pragma unroll
      for (int ks = 0; ks < kBK / 16; ++ks) {
        uint32_t af[2][4], bf[4][2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {  // matrices (m block, k block) = (mat % 2, mat / 2)
          const int k = ks * 16 + (mat / 2) * 8 + r8;
          const int m = wm * 32 + i * 16 + (mat % 2) * 8;
          ldmatrix_x4_trans(af[i], sa + k * PITCH + m * 2);
        }
#pragma unroll
        for (int jj = 0; jj < 2; ++jj) {  // matrices (n block, k block) = (mat / 2, mat % 2)
          const int k = ks * 16 + (mat % 2) * 8 + r8;
          const int n = wn * 32 + jj * 16 + (mat / 2) * 8;
          uint32_t t4[4];
          ldmatrix_x4_trans(t4, sb + k * PITCH + n * 2);
          bf[2 * jj][0] = t4[0];
          bf[2 * jj][1] = t4[1];
          bf[2 * jj + 1][0] = t4[2];
          bf[2 * jj + 1][1] = t4[3];
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) mma<scalar_t>(acc[i][j], af[i], bf[j]);
      }
    }
  }
  cp_async_wait<0>();

  // Accumulators → partials (or gw), straight from registers.
  const int64_t taps = pl.taps, cig = p.in_per_group, cog = p.out_per_group;
  const int g = lane / 4, t = lane % 4;
  scalar_t* gw = static_cast<scalar_t*>(ops.grad_weight);
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t ci = m0 + wm * 32 + i * 16 + g + (e >= 2 ? 8 : 0);
        const int64_t co = n0 + wn * 32 + j * 8 + 2 * t + (e & 1);
        if (ci >= cig || co >= cog) continue;
        const int64_t ci_global = b.g * cig + ci;
        if (pl.splits == 1) {
          const Strides5 ws = p.weight;
          gw[ci_global * ws.n + co * ws.c + b.kd * ws.d + b.kh * ws.h + b.kw * ws.w] =
              from_acc<scalar_t>(acc[i][j][e]);
        } else {
          ops.workspace[b.split * pl.numel + (ci_global * cog + co) * taps + b.tap] = acc[i][j][e];
        }
      }
#else
  __trap();  // never launched: grad_weight_gemm_channels_last_supports requires sm_80 code
#endif
}

template <typename scalar_t, typename index_t>
cudaError_t launch_mma(const ConvTranspose3dParams& p, const Plan& pl, cudaStream_t stream,
                         const GradWeightOperands& ops) {
  constexpr int smem = Layout<scalar_t>::SMEM;
  const cudaError_t err = opt_in_dynamic_smem<grad_weight_mma_kernel<scalar_t, index_t>>(smem);
  if (err != cudaSuccess) return err;
  grad_weight_mma_kernel<scalar_t, index_t>
      <<<static_cast<unsigned int>(pl.blocks), kBlockThreads, smem, stream>>>(p, pl, ops);
  return cudaGetLastError();
}

}  // namespace gw_gemm

bool grad_weight_gemm_channels_last_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                             bool allow_tf32) {
  const bool dtype_ok = dtype == ScalarKind::Float16 || dtype == ScalarKind::BFloat16 ||
                        (dtype == ScalarKind::Float32 && allow_tf32);
  if (!dtype_ok || p.in_per_group < 1 || p.out_per_group < 1) return false;
  if (gw_gemm::make_plan(p, gw_gemm::kTile).blocks > int64_t(INT_MAX)) return false;
  return sm80_kernel_runs_here<gw_gemm::grad_weight_mma_kernel<__half, int32_t>>();
}

int64_t grad_weight_gemm_channels_last_workspace_elems(const ConvTranspose3dParams& p) {
  return gw_gemm::workspace_elems(gw_gemm::make_plan(p, gw_gemm::kTile));
}

cudaError_t launch_grad_weight_gemm_channels_last(const ConvTranspose3dParams& p,
                                                  const LaunchConfig& cfg,
                                                  const GradWeightOperands& ops) {
  const gw_gemm::Plan pl = gw_gemm::make_plan(p, gw_gemm::kTile);
  return gw_gemm::run_split_gemm(p, cfg, pl, ops.workspace, ops.grad_weight,
                                 [&](auto scalar, auto index) {
                                   return gw_gemm::launch_mma<decltype(scalar), decltype(index)>(
                                       p, pl, cfg.stream, ops);
                                 });
}

}  // namespace tconv3d::cuda
