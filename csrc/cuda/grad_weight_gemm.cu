// Grad-weight as split-reduction GEMMs on tensor cores (DESIGN.md §3):
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
// each tap's rows into contiguous ranges.  One tap per block (rather than all
// taps of a (ci, co) tile in one block) keeps the accumulators at one BM × BN
// tile — 27 taps × 64 × 64 fp32 would not fit in registers — and the taps of
// one (split, ci-tile) are adjacent in the grid, so the x rows they all read
// are served from L2.
//
// Tiling: BM ∈ {32, 64} input channels × BN ∈ {32, 64} output channels per
// block, BK = 32 rows per chunk; 128 threads = 4 warps in 2 × 2, each warp
// (BM/2) × (BN/2) of 16 × 16 WMMA fragments (16×16×16 fp16/bf16, 16×16×8
// TF32), fp32 accumulation.  Both operands are staged in shared memory
// "K-major": A as [BM][BK + pad] (row-major m × k), B as [BN][BK + pad]
// (column-major k × n).  Global loads: per chunk, 32 threads decode the
// chunk's rows into x / gy offset tables (double-buffered); loaders read
// elements (row, channel) with lanes along rows when the tensor's W stride is
// the smaller one (NCDHW: coalesced along W) or along channels otherwise
// (NDHWC: coalesced along C).  The next chunk is loaded into registers while
// the tensor cores consume the current one.  Out-of-range rows and channels
// load zero; nothing outside the tensors is read.
//
// Epilogue: accumulators → shared memory → one thread per element writes the
// partial (fp32) to workspace[split · numel + ((ci · Cout/G + co) · taps + tap)]
// (the dense logical order of gw), or, when S == 1, rounds once into gw at
// p.weight strides.  combine_partials_kernel then adds the S partials in split
// order and rounds once.  No atomics: bitwise reproducible.
#include "grad_weight_gemm.h"

#include <climits>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "../direct_gather.h"
#include "../scalar_convert.h"
#include "deterministic_reduce.cuh"
#include "dispatch.cuh"
#include "grad_weight_launch.cuh"

namespace tconv3d::cuda {
namespace gw_gemm {

// Raw storage moved through registers / shared memory (no conversions on the
// load path); the WMMA element type the fragments read.
template <typename scalar_t>
struct Cfg;
template <>
struct Cfg<__half> {
  using bits_t = uint16_t;
  static constexpr int KSTEP = 16;
  static constexpr int PAD = 8;  // ld multiple of 8 elements (16 bytes)
};
template <>
struct Cfg<__nv_bfloat16> {
  using bits_t = uint16_t;
  static constexpr int KSTEP = 16;
  static constexpr int PAD = 8;
};
template <>
struct Cfg<float> {
  using bits_t = uint32_t;
  static constexpr int KSTEP = 8;
  static constexpr int PAD = 4;  // ld multiple of 4 elements (16 bytes)
};

// 32 or 64 channels a side; splits of at least 2048 rows, up to 2048 blocks.
inline Plan plan(const ConvTranspose3dParams& p) {
  return make_plan(p, p.in_per_group <= 32 ? 32 : 64, p.out_per_group <= 32 ? 32 : 64,
                   SplitPolicy{2048, 2048});
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
template <typename scalar_t>
struct Frag {
  using elem_t = scalar_t;
};
template <>
struct Frag<float> {
  using elem_t = nvcuda::wmma::precision::tf32;
};
#endif

template <typename scalar_t, typename index_t, int BM, int BN>
struct Smem {
  using bits_t = typename Cfg<scalar_t>::bits_t;
  static constexpr int LD = kBK + Cfg<scalar_t>::PAD;
  static constexpr int LDC = BN + 4;
  static constexpr size_t kOperands = size_t(BM + BN) * LD * sizeof(bits_t);
  static constexpr size_t kC = size_t(BM) * LDC * sizeof(float);
  static constexpr size_t kUnion = kOperands > kC ? kOperands : kC;
};

template <typename scalar_t, typename index_t, int BM, int BN>
__global__ void __launch_bounds__(kBlockThreads, sizeof(index_t) == 4 ? 3 : 1)
    grad_weight_gemm_kernel(const ConvTranspose3dParams p, const Plan pl,
                            const scalar_t* __restrict__ x, const scalar_t* __restrict__ gy,
                            scalar_t* __restrict__ gw, float* __restrict__ partial,
                            bool x_rows_fast, bool g_rows_fast) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using S = Smem<scalar_t, index_t, BM, BN>;
  using bits_t = typename S::bits_t;
  using elem_t = typename Frag<scalar_t>::elem_t;
  constexpr int LD = S::LD, LDC = S::LDC;
  constexpr int KSTEP = Cfg<scalar_t>::KSTEP;
  constexpr int FM = BM / 32, FN = BN / 32;  // fragments per warp along m / n
  constexpr int A_PER_THREAD = BM * kBK / kBlockThreads;
  constexpr int B_PER_THREAD = BN * kBK / kBlockThreads;
  static_assert(A_PER_THREAD * kBlockThreads == BM * kBK && B_PER_THREAD * kBlockThreads == BN * kBK, "");

  __shared__ __align__(128) unsigned char smem_raw[S::kUnion];
  __shared__ index_t x_off[2][kBK];
  __shared__ index_t g_off[2][kBK];
  bits_t* As = reinterpret_cast<bits_t*>(smem_raw);  // [BM][LD]
  bits_t* Bs = As + BM * LD;                         // [BN][LD]
  float* Cs = reinterpret_cast<float*>(smem_raw);    // [BM][LDC], after the main loop

  const int tid = threadIdx.x, warp = tid / 32;
  const int warp_m = warp / 2, warp_n = warp % 2;

  const BlockWork b = decode_block(pl, p, blockIdx.x);
  const TapRows rows = tap_rows(p, b.kd, b.kh, b.kw);
  int64_t begin64, end64;
  split_range(rows.count, b.split, pl.splits, &begin64, &end64);
  const index_t begin = index_t(begin64), len = index_t(end64 - begin64);
  const index_t nchunks = (len + kBK - 1) / kBK;

  const index_t m0 = index_t(b.tm) * BM, n0 = index_t(b.tn) * BN;  // within the group
  const index_t m_lim = index_t(p.in_per_group) - m0;               // valid m < m_lim
  const index_t n_lim = index_t(p.out_per_group) - n0;
  const index_t ci0 = index_t(b.g) * index_t(p.in_per_group) + m0;
  const index_t co0 = index_t(b.g) * index_t(p.out_per_group) + n0;
  const Strides5 xs = p.input, gs = p.output;
  const index_t xs_c = index_t(xs.c), gs_c = index_t(gs.c);
  const bits_t* xb = reinterpret_cast<const bits_t*>(x) + ci0 * xs_c;
  const bits_t* gb = reinterpret_cast<const bits_t*>(gy) + co0 * gs_c;

  // Rows of chunk c → offsets (threads 0 … BK−1).  Rows past the split are
  // left stale; the loaders mask them by index.
  auto decode = [&](index_t c, int buf) {
    if (tid < kBK) {
      const index_t rr = c * kBK + tid;
      if (rr < len) {
        const RowPos<index_t> q = row_position<index_t>(rows, begin + rr);
        x_off[buf][tid] = q.n * index_t(xs.n) + q.id * index_t(xs.d) + q.ih * index_t(xs.h) +
                          q.iw * index_t(xs.w);
        g_off[buf][tid] = q.n * index_t(gs.n) + q.od * index_t(gs.d) + q.oh * index_t(gs.h) +
                          q.ow * index_t(gs.w);
      }
    }
  };

  // Loader geometry.  Rows-fast: a thread owns row rr = tid % BK and channels
  // tid / BK + j · (threads / BK).  Channels-fast: a thread owns channel
  // tid % CH and rows tid / CH + j · (threads / CH).
  constexpr int R_STEP = kBlockThreads / kBK;  // channel step, rows-fast
  constexpr int A_STEP = kBlockThreads / BM;   // row step, channels-fast
  constexpr int B_STEP = kBlockThreads / BN;
  const int a_fix = x_rows_fast ? tid % kBK : tid % BM;  // fixed row / channel
  const int a_var = x_rows_fast ? tid / kBK : tid / BM;  // first channel / row
  const int b_fix = g_rows_fast ? tid % kBK : tid % BN;
  const int b_var = g_rows_fast ? tid / kBK : tid / BN;
  // Channel-fixed base pointers (channels-fast) and channel strides (rows-fast).
  const bits_t* xb_fix = xb + (x_rows_fast ? index_t(0) : index_t(a_fix) * xs_c);
  const bits_t* gb_fix = gb + (g_rows_fast ? index_t(0) : index_t(b_fix) * gs_c);
  const index_t xs_step = index_t(R_STEP) * xs_c, gs_step = index_t(R_STEP) * gs_c;
  const bool a_fix_ok = x_rows_fast || a_fix < m_lim;
  const bool b_fix_ok = g_rows_fast || b_fix < n_lim;

  bits_t ra[A_PER_THREAD], rb[B_PER_THREAD];
  auto load = [&](index_t c, int buf) {
    const index_t valid_rows = len - c * kBK;  // rows rr < valid_rows exist
    if (x_rows_fast) {
      const bool row_ok = a_fix < valid_rows;
      const bits_t* src = xb + (row_ok ? x_off[buf][a_fix] : index_t(0)) + index_t(a_var) * xs_c;
#pragma unroll
      for (int j = 0; j < A_PER_THREAD; ++j) {
        ra[j] = (row_ok && a_var + j * R_STEP < m_lim) ? *src : bits_t(0);
        src += xs_step;
      }
    } else {
#pragma unroll
      for (int j = 0; j < A_PER_THREAD; ++j) {
        const int rr = a_var + j * A_STEP;
        ra[j] = (a_fix_ok && rr < valid_rows) ? xb_fix[x_off[buf][rr]] : bits_t(0);
      }
    }
    if (g_rows_fast) {
      const bool row_ok = b_fix < valid_rows;
      const bits_t* src = gb + (row_ok ? g_off[buf][b_fix] : index_t(0)) + index_t(b_var) * gs_c;
#pragma unroll
      for (int j = 0; j < B_PER_THREAD; ++j) {
        rb[j] = (row_ok && b_var + j * R_STEP < n_lim) ? *src : bits_t(0);
        src += gs_step;
      }
    } else {
#pragma unroll
      for (int j = 0; j < B_PER_THREAD; ++j) {
        const int rr = b_var + j * B_STEP;
        rb[j] = (b_fix_ok && rr < valid_rows) ? gb_fix[g_off[buf][rr]] : bits_t(0);
      }
    }
  };
  auto store = [&]() {
#pragma unroll
    for (int j = 0; j < A_PER_THREAD; ++j) {
      const int rr = x_rows_fast ? a_fix : a_var + j * A_STEP;
      const int m = x_rows_fast ? a_var + j * R_STEP : a_fix;
      As[m * LD + rr] = ra[j];
    }
#pragma unroll
    for (int j = 0; j < B_PER_THREAD; ++j) {
      const int rr = g_rows_fast ? b_fix : b_var + j * B_STEP;
      const int n = g_rows_fast ? b_var + j * R_STEP : b_fix;
      Bs[n * LD + rr] = rb[j];
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, KSTEP, float> acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  if (nchunks > 0) {
    decode(0, 0);
    __syncthreads();
    load(0, 0);
  }
  for (index_t c = 0; c < nchunks; ++c) {
    // As/Bs were last read by the MMAs of chunk c−1 (barrier below); offset
    // buffer (c+1)&1 was last read by load(c−1), before two barriers.
    store();
    if (c + 1 < nchunks) decode(c + 1, int((c + 1) & 1));
    __syncthreads();
    if (c + 1 < nchunks) load(c + 1, int((c + 1) & 1));  // in flight during the MMAs
#pragma unroll
    for (int kk = 0; kk < kBK; kk += KSTEP) {
      wmma::fragment<wmma::matrix_a, 16, 16, KSTEP, elem_t, wmma::row_major> fa[FM];
      wmma::fragment<wmma::matrix_b, 16, 16, KSTEP, elem_t, wmma::col_major> fb[FN];
#pragma unroll
      for (int i = 0; i < FM; ++i) {
        const bits_t* src = As + (warp_m * (BM / 2) + i * 16) * LD + kk;
        if constexpr (std::is_same_v<scalar_t, float>) {
          wmma::load_matrix_sync(fa[i], reinterpret_cast<const float*>(src), LD);
#pragma unroll
          for (int t = 0; t < fa[i].num_elements; ++t) fa[i].x[t] = wmma::__float_to_tf32(fa[i].x[t]);
        } else {
          wmma::load_matrix_sync(fa[i], reinterpret_cast<const scalar_t*>(src), LD);
        }
      }
#pragma unroll
      for (int j = 0; j < FN; ++j) {
        const bits_t* src = Bs + (warp_n * (BN / 2) + j * 16) * LD + kk;
        if constexpr (std::is_same_v<scalar_t, float>) {
          wmma::load_matrix_sync(fb[j], reinterpret_cast<const float*>(src), LD);
#pragma unroll
          for (int t = 0; t < fb[j].num_elements; ++t) fb[j].x[t] = wmma::__float_to_tf32(fb[j].x[t]);
        } else {
          wmma::load_matrix_sync(fb[j], reinterpret_cast<const scalar_t*>(src), LD);
        }
      }
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }

  // Epilogue.  Cs aliases As/Bs: the loop ended with a barrier (or never ran).
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j)
      wmma::store_matrix_sync(Cs + (warp_m * (BM / 2) + i * 16) * LDC + warp_n * (BN / 2) + j * 16,
                              acc[i][j], LDC, wmma::mem_row_major);
  __syncthreads();

  const int64_t taps = pl.taps, cog = p.out_per_group;
  const int64_t ci_base = int64_t(ci0), co_local0 = int64_t(n0);
  for (int e = tid; e < BM * BN; e += kBlockThreads) {
    const int m = e / BN, n = e % BN;
    if (m >= m_lim || n >= n_lim) continue;
    const float v = Cs[m * LDC + n];
    const int64_t ci = ci_base + m, co = co_local0 + n;
    if (pl.splits == 1) {
      const Strides5 ws = p.weight;
      const int64_t off = ci * ws.n + co * ws.c + b.kd * ws.d + b.kh * ws.h + b.kw * ws.w;
      gw[off] = from_acc<scalar_t>(v);
    } else {
      partial[b.split * pl.numel + (ci * cog + co) * taps + b.tap] = v;
    }
  }
#else
  __trap();  // never launched: grad_weight_gemm_supports requires sm_80 code
#endif
}

template <typename scalar_t, typename index_t, int BM, int BN>
void launch_one(const ConvTranspose3dParams& p, const Plan& pl, cudaStream_t stream,
                const void* input, const void* grad_output, void* grad_weight, float* workspace) {
  // Lanes along rows when W is the denser axis (NCDHW), along channels otherwise.
  const auto abs64 = [](int64_t v) { return v < 0 ? -v : v; };
  const bool x_rows_fast = !(p.input.c == 1 && abs64(p.input.w) != 1);
  const bool g_rows_fast = !(p.output.c == 1 && abs64(p.output.w) != 1);
  grad_weight_gemm_kernel<scalar_t, index_t, BM, BN>
      <<<static_cast<unsigned int>(pl.blocks), kBlockThreads, 0, stream>>>(
          p, pl, static_cast<const scalar_t*>(input), static_cast<const scalar_t*>(grad_output),
          static_cast<scalar_t*>(grad_weight), workspace, x_rows_fast, g_rows_fast);
}

template <typename scalar_t, typename index_t>
void launch_tiles(const ConvTranspose3dParams& p, const Plan& pl, cudaStream_t stream,
                  const void* input, const void* grad_output, void* grad_weight,
                  float* workspace) {
  if (pl.bm == 64 && pl.bn == 64) {
    launch_one<scalar_t, index_t, 64, 64>(p, pl, stream, input, grad_output, grad_weight, workspace);
  } else if (pl.bm == 64) {
    launch_one<scalar_t, index_t, 64, 32>(p, pl, stream, input, grad_output, grad_weight, workspace);
  } else if (pl.bn == 64) {
    launch_one<scalar_t, index_t, 32, 64>(p, pl, stream, input, grad_output, grad_weight, workspace);
  } else {
    launch_one<scalar_t, index_t, 32, 32>(p, pl, stream, input, grad_output, grad_weight, workspace);
  }
}

// Grid fits one dimension; per-tap row counts fit the 32-bit row bookkeeping
// of the narrow kernels (they do whenever x fits int32 offsets, but the op
// layer picks wide_index from all tensors, so check here too).
inline bool problem_fits(const ConvTranspose3dParams& p) {
  const Plan pl = plan(p);
  if (pl.blocks > int64_t(INT_MAX)) return false;
  return true;
}

}  // namespace gw_gemm

bool grad_weight_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype, bool allow_tf32) {
  const bool dtype_ok = tensor_core_dtype(dtype, allow_tf32);
  if (!dtype_ok) return false;
  if (p.in_per_group < 1 || p.out_per_group < 1) return false;
  if (!gw_gemm::problem_fits(p)) return false;
  return sm80_kernel_runs_here<gw_gemm::grad_weight_gemm_kernel<__half, int32_t, 64, 64>>();
}

int64_t grad_weight_gemm_workspace_elems(const ConvTranspose3dParams& p) {
  return gw_gemm::workspace_elems(gw_gemm::plan(p));
}

cudaError_t launch_grad_weight_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                    const void* input, const void* grad_output, void* grad_weight,
                                    float* workspace) {
  const gw_gemm::Plan pl = gw_gemm::plan(p);
  return gw_gemm::run_split_gemm(p, cfg, pl, workspace, grad_weight, [&](auto scalar, auto index) {
    gw_gemm::launch_tiles<decltype(scalar), decltype(index)>(p, pl, cfg.stream, input,
                                                             grad_output, grad_weight, workspace);
    return cudaGetLastError();
  });
}

}  // namespace tconv3d::cuda
