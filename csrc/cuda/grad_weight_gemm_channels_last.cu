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
// number of splits S chosen from the shape alone divides each tap's rows into
// contiguous ranges.  The taps of one (split, ci-tile) are adjacent in the
// grid, so the x rows they all read come from L2.
//
// Used when x and grad_output are channels_last_3d with 8-byte-multiple
// channel counts (read in place) or NCDHW (packed first into channels-last,
// each group's channels zero-padded to 16-byte pieces: channels_last_pack.h);
// grad_weight_gemm.cu, which reads any strides element by element, serves
// the rest.  A reduction row r is one position,
// and its channels of x (or gy) are 16-byte pieces (8-byte ones when a group's
// channels are not whole 16-byte pieces: 4 input channels in bf16, say)
// copied by cp.async straight into shared memory as [k = r][m = channel] —
// the "k-major" layout.
// Fragments come out of it with ldmatrix.trans (fp16/bf16) or plain 32-bit
// loads (TF32, whose words ldmatrix cannot transpose), from rows padded so
// both are conflict-free.  The rows' offsets are decoded once per row (not
// once per 16-byte piece) into a small table one stage ahead.
//
// Tiles follow the channel counts (Tile below): 128 × 128, 128 × 64, 64 × 128
// and 64 × 64 split the tile among warps; 32 × 32 and 16 × 16 (narrow and
// grouped layers, where a 64-wide tile would be 4-16× empty) give each of
// four warps the whole tile over a quarter of each stage's rows and add the
// four accumulators in a fixed order at the end.
//
// Epilogue: accumulators straight from registers, pairs of adjacent co as one
// 8-byte store, to workspace[split · numel + (tap · Cin + ci) · Cout/G + co]
// (tap-major: a tile is runs of contiguous co), or, when S == 1, rounded once
// into gw at p.weight strides.  combine_partials_kernel then adds
// the S partials in split order and rounds once.  No atomics: bitwise
// reproducible.
//
// fp32 where TF32 is not allowed runs here too, on split TF32 (kMath,
// GradWeightOperands::fp32_mma; mma_sm80.cuh's multiply_fragments).
#include <atomic>
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

// A block's tile: BM input channels × BN output channels, BK rows a stage;
// warps WARPS_M × WARPS_N over the tile, WARPS_K over each stage's rows.
template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int WARPS_K_, int BK_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  static constexpr int WARPS_M = WARPS_M_, WARPS_N = WARPS_N_, WARPS_K = WARPS_K_;
  static constexpr int THREADS = 32 * WARPS_M * WARPS_N * WARPS_K;
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // a warp's tile
  static constexpr int MI = WM / 16, NI = WN / 8;             // its m16 × n8 pieces
  static constexpr int KW = BK / WARPS_K;                     // a warp's rows per stage
  static constexpr int MIN_BLOCKS = THREADS == 256 ? 2 : 4;   // 128 registers a thread
  static_assert(MI >= 1 && NI >= 2 && NI % 2 == 0 && KW % 16 == 0, "warp tile");
};

// The 8-warp tiles take 64 rows a stage in 16-bit types (4 k16 steps between
// barriers, not 2: 9-19 % faster on the U-Net and VAE layers, H200), 32 in
// TF32 (whose stages are twice the bytes).
template <typename scalar_t>
constexpr int kWideBK = sizeof(scalar_t) == 2 ? 64 : 32;
template <typename scalar_t>
using Tile128x128 = Tile<128, 128, 2, 4, 1, kWideBK<scalar_t>>;
template <typename scalar_t>
using Tile128x64 = Tile<128, 64, 4, 2, 1, kWideBK<scalar_t>>;
template <typename scalar_t>
using Tile64x128 = Tile<64, 128, 2, 4, 1, kWideBK<scalar_t>>;
using Tile64x64 = Tile<64, 64, 2, 2, 1, 32>;
using Tile32x32 = Tile<32, 32, 1, 1, 4, 64>;
using Tile16x16 = Tile<16, 16, 1, 1, 4, 64>;

// Splits of at least 512 rows, up to about two waves of 16 warps per SM on
// a 132-SM GPU.  Swept against 256-2048 rows and 2048-8192 warps on the H200
// (benchmarks/sweep_grad_weight.py, RESULTS.md): no other pair wins across
// the benchmark layers.
constexpr int64_t kMinRowsPerSplit = 512;
constexpr int64_t kTargetWarps = 4096;

template <typename scalar_t, typename T, int PIECE>
struct Layout {
  static constexpr int ES = int(sizeof(scalar_t));
  static constexpr int VEC = PIECE / ES;                   // channels per piece
  static constexpr int PIECES_A = T::BM / VEC, PIECES_B = T::BN / VEC;
  static constexpr int PIECES = PIECES_A + PIECES_B;       // pieces per row, x then gy
  static constexpr int LOADS = T::BK * PIECES / T::THREADS;  // pieces a thread copies per stage
  static_assert(LOADS * T::THREADS == T::BK * PIECES, "pieces per stage");
  // Row pitch: 16 bytes past a multiple of 32 for ldmatrix (8 rows hit 8
  // distinct 16-byte bank groups); 8 words past a multiple of 32 for TF32's
  // word loads (lanes (t, g) hit bank 8t + g).
  static constexpr int pitch(int channels) { return ES == 2 ? channels * 2 + 16 : (channels + 8) * 4; }
  static constexpr int PITCH_A = pitch(T::BM), PITCH_B = pitch(T::BN);
  static constexpr int OPERAND_A = T::BK * PITCH_A;
  static constexpr int STAGE = T::BK * (PITCH_A + PITCH_B);
  // Up to 4 stages in 16-bit types, 3 in TF32, within ~108 KB: two blocks an SM.
  static constexpr int STAGES = ES == 2 ? (4 * STAGE <= 110592 ? 4 : 3) : 3;
  static constexpr int RING = STAGES * STAGE;
  static constexpr int REDUCE = (T::WARPS_K - 1) * T::BM * T::BN * 4;  // reuses the ring
  static_assert(REDUCE <= RING, "the k-split reduction fits in the ring");
};

template <typename scalar_t, typename index_t, typename T, int PIECE, Fp32Mma kMath>
__global__ void __launch_bounds__(T::THREADS, T::MIN_BLOCKS)
    grad_weight_mma_kernel(const ConvTranspose3dParams p, const Plan pl,
                           const GradWeightOperands ops) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using L = Layout<scalar_t, T, PIECE>;
  constexpr int VEC = L::VEC, BK = T::BK, STAGES = L::STAGES;
  extern __shared__ __align__(128) unsigned char smem[];
  // Row offsets of x and gy for two stages' rows, decoded one stage ahead.
  __shared__ index_t row_x[2][BK], row_g[2][BK];

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp % T::WARPS_M, wn = (warp / T::WARPS_M) % T::WARPS_N;
  const int wk = warp / (T::WARPS_M * T::WARPS_N);

  const BlockWork b = decode_block(pl, p, blockIdx.x);
  const TapRows rows = tap_rows(p, b.kd, b.kh, b.kw);
  int64_t begin64, end64;
  split_range(rows.count, b.split, pl.splits, &begin64, &end64);
  const index_t begin = index_t(begin64), len = index_t(end64 - begin64);
  const int m0 = int(b.tm) * T::BM, n0 = int(b.tn) * T::BN;  // within the group
  const scalar_t* xs = static_cast<const scalar_t*>(ops.input) +
                       index_t(b.g * ops.input_channels + m0);
  const scalar_t* gs = static_cast<const scalar_t*>(ops.grad_output) +
                       index_t(b.g * ops.grad_output_channels + n0);
  const uint32_t smem0 = smem_addr(smem);
  const index_t nslices = (len + BK - 1) / BK;

  auto decode_rows = [&](index_t slice) {
    if (tid < BK) {
      const index_t rr = slice * BK + tid;
      index_t xo = 0, go = 0;
      if (rr < len) {
        const RowPos<index_t> at = row_position<index_t>(rows, begin + rr);
        xo = at.n * index_t(ops.input_n) + at.id * index_t(ops.input_d) +
             at.ih * index_t(ops.input_h) + at.iw * index_t(ops.input_w);
        go = at.n * index_t(ops.grad_output_n) + at.od * index_t(ops.grad_output_d) +
             at.oh * index_t(ops.grad_output_h) + at.ow * index_t(ops.grad_output_w);
      }
      row_x[slice % 2][tid] = xo;
      row_g[slice % 2][tid] = go;
    }
  };
  auto copy = [](uint32_t dst, const scalar_t* src, bool valid) {
    if constexpr (PIECE == 16) {
      cp_async16(dst, src, valid);
    } else {
      cp_async8(dst, src, valid);
    }
  };
  auto load_stage = [&](index_t slice) {
    const uint32_t sa = smem0 + int(slice % STAGES) * L::STAGE, sb = sa + L::OPERAND_A;
#pragma unroll
    for (int q = 0; q < L::LOADS; ++q) {
      const int idx = tid + q * T::THREADS;
      const int row = idx / L::PIECES, piece = idx % L::PIECES;
      const bool row_ok = slice * BK + row < len;
      if (piece < L::PIECES_A) {
        const int c = piece * VEC;
        copy(sa + row * L::PITCH_A + piece * PIECE, xs + row_x[slice % 2][row] + c,
             row_ok && m0 + c < ops.input_channels);
      } else {
        const int c = (piece - L::PIECES_A) * VEC;
        copy(sb + row * L::PITCH_B + (piece - L::PIECES_A) * PIECE,
             gs + row_g[slice % 2][row] + c, row_ok && n0 + c < ops.grad_output_channels);
      }
    }
  };

  float acc[T::MI][T::NI][4];
  zero_accumulators(acc);

  run_slice_ring<STAGES>(nslices, decode_rows, load_stage, [&](int slot) {
    const unsigned char* stage = smem + slot * L::STAGE;
    mma_k_major_stage<scalar_t, T::MI, T::NI, T::KW, L::PITCH_A, L::PITCH_B, kMath>(
        acc, stage, stage + L::OPERAND_A, wk * T::KW, wm * T::WM, wn * T::WN, lane);
  });

  if constexpr (T::WARPS_K > 1) {
    // Warps 1 … WARPS_K-1 hand their sums to warp 0 through the (idle) ring;
    // warp 0 adds them in warp order, so the sum does not depend on timing.
    constexpr int PER_THREAD = T::MI * T::NI * 4, PER_WARP = PER_THREAD * 32;
    float* const mine = &acc[0][0][0];
    float* const red = reinterpret_cast<float*>(smem);
    __syncthreads();  // every warp is done reading the ring
    if (wk > 0) {
#pragma unroll
      for (int q = 0; q < PER_THREAD; ++q) red[(wk - 1) * PER_WARP + q * 32 + lane] = mine[q];
    }
    __syncthreads();
    if (wk > 0) return;
#pragma unroll
    for (int w = 0; w < T::WARPS_K - 1; ++w)
#pragma unroll
      for (int q = 0; q < PER_THREAD; ++q) mine[q] += red[w * PER_WARP + q * 32 + lane];
  }

  // Accumulators → partials (or gw), straight from registers.
  const int64_t cig = p.in_per_group, cog = p.out_per_group;
  const int g = lane / 4, t = lane % 4;
  scalar_t* gw = static_cast<scalar_t*>(ops.grad_weight);
  float* ws = ops.workspace + b.split * pl.numel + b.tap * p.in_channels * cog;
#pragma unroll
  for (int i = 0; i < T::MI; ++i)
#pragma unroll
    for (int j = 0; j < T::NI; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // rows g and g + 8 of the m16 piece
        const int64_t ci = m0 + wm * T::WM + i * 16 + g + 8 * h;
        const int64_t co = n0 + wn * T::WN + j * 8 + 2 * t;  // even
        if (ci >= cig || co >= cog) continue;
        const int64_t ci_global = b.g * cig + ci;
        const float v0 = acc[i][j][2 * h], v1 = acc[i][j][2 * h + 1];
        // Odd Cout/G (grad_output packed with padding): column co + 1 may
        // be padding, and the pair is not 8-byte aligned in the partials.
        const bool pair = co + 1 < cog;
        if (pl.splits == 1) {
          const Strides5 s = p.weight;
          scalar_t* at = gw + ci_global * s.n + co * s.c + b.kd * s.d + b.kh * s.h + b.kw * s.w;
          at[0] = from_acc<scalar_t>(v0);
          if (pair) at[s.c] = from_acc<scalar_t>(v1);
        } else if (cog % 2 == 0) {
          *reinterpret_cast<float2*>(ws + ci_global * cog + co) = make_float2(v0, v1);
        } else {
          ws[ci_global * cog + co] = v0;
          if (pair) ws[ci_global * cog + co + 1] = v1;
        }
      }
#else
  __trap();  // never launched: grad_weight_gemm_channels_last_supports requires sm_80 code
#endif
}

template <typename scalar_t, typename index_t, typename T, int PIECE, Fp32Mma kMath>
cudaError_t launch_tile_math(const ConvTranspose3dParams& p, const Plan& pl,
                             cudaStream_t stream, const GradWeightOperands& ops) {
  constexpr auto kernel = grad_weight_mma_kernel<scalar_t, index_t, T, PIECE, kMath>;
  constexpr int smem = Layout<scalar_t, T, PIECE>::RING;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(smem);
  if (err != cudaSuccess) return err;
  kernel<<<static_cast<unsigned int>(pl.blocks), T::THREADS, smem, stream>>>(p, pl, ops);
  return cudaGetLastError();
}

template <typename scalar_t, typename index_t, typename T, int PIECE>
cudaError_t launch_tile_pieces(const ConvTranspose3dParams& p, const Plan& pl,
                               cudaStream_t stream, const GradWeightOperands& ops) {
  return launch_fp32_mma<scalar_t>(ops.fp32_mma, [&](auto math) {
    return launch_tile_math<scalar_t, index_t, T, PIECE, decltype(math)::value>(p, pl, stream, ops);
  });
}

template <typename scalar_t, typename index_t, typename T>
cudaError_t launch_tile(const ConvTranspose3dParams& p, const Plan& pl, cudaStream_t stream,
                        const GradWeightOperands& ops) {
  if (ops.piece_bytes == 16) return launch_tile_pieces<scalar_t, index_t, T, 16>(p, pl, stream, ops);
  if (ops.piece_bytes == 8) return launch_tile_pieces<scalar_t, index_t, T, 8>(p, pl, stream, ops);
  return cudaErrorInvalidValue;
}

std::atomic<int> g_forced_bm{0}, g_forced_bn{0};
std::atomic<int64_t> g_forced_split_rows{0}, g_forced_target_warps{0};

bool is_tile(int bm, int bn) {
  return (bm == bn && (bm == 16 || bm == 32 || bm == 64 || bm == 128)) ||
         (bm == 128 && bn == 64) || (bm == 64 && bn == 128);
}

// Each side's tile is the smallest of 16, 32, 64, 128 holding its channels;
// up to 32 a side the tile is square, beyond it each side at least 64.
Plan plan(const ConvTranspose3dParams& p) {
  auto side = [](int64_t c) { return c <= 16 ? 16 : c <= 32 ? 32 : c <= 64 ? 64 : 128; };
  int bm = side(p.in_per_group), bn = side(p.out_per_group);
  if (bm <= 32 && bn <= 32) {
    bm = bn = bm > bn ? bm : bn;
  } else {
    bm = bm < 64 ? 64 : bm;
    bn = bn < 64 ? 64 : bn;
  }
  if (g_forced_bm.load()) {
    bm = g_forced_bm.load();
    bn = g_forced_bn.load();
  }
  const int warps = bm * bn >= 128 * 64 ? 8 : 4;
  const int64_t rows = g_forced_split_rows.load() ? g_forced_split_rows.load() : kMinRowsPerSplit;
  const int64_t target = g_forced_target_warps.load() ? g_forced_target_warps.load() : kTargetWarps;
  return make_plan(p, bm, bn, SplitPolicy{rows, target / warps});
}

// f(Tile{}) with the plan's tile type; `none` where the plan names none.
template <typename scalar_t, typename R, typename F>
R with_tile(const Plan& pl, R none, F&& f) {
  switch (pl.bm * 1000 + pl.bn) {
    case 128128: return f(Tile128x128<scalar_t>{});
    case 128064: return f(Tile128x64<scalar_t>{});
    case 64128: return f(Tile64x128<scalar_t>{});
    case 64064: return f(Tile64x64{});
    case 32032: return f(Tile32x32{});
    case 16016: return f(Tile16x16{});
    default: return none;
  }
}

// The shared memory a plan's tile takes (its piece size does not change it).
template <typename scalar_t>
int ring_bytes(const Plan& pl) {
  return with_tile<scalar_t>(pl, INT_MAX, [](auto tile) {
    return int(Layout<scalar_t, decltype(tile), 16>::RING);
  });
}

template <typename scalar_t, typename index_t>
cudaError_t launch_mma(const ConvTranspose3dParams& p, const Plan& pl, cudaStream_t stream,
                       const GradWeightOperands& ops) {
  return with_tile<scalar_t>(pl, cudaErrorInvalidConfiguration, [&](auto tile) {
    return launch_tile<scalar_t, index_t, decltype(tile)>(p, pl, stream, ops);
  });
}

}  // namespace gw_gemm

bool grad_weight_gemm_channels_last_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                             bool allow_tf32) {
  const bool dtype_ok = tensor_core_dtype(dtype, allow_tf32);
  if (!dtype_ok || p.in_per_group < 1 || p.out_per_group < 1) return false;
  const gw_gemm::Plan pl = gw_gemm::plan(p);
  if (pl.blocks > int64_t(INT_MAX)) return false;
  // Up to 108 KB (TF32 128 x 128): past sm_86/89's 99 KB.
  const int ring = element_bytes(dtype) == 2 ? gw_gemm::ring_bytes<__half>(pl)
                                             : gw_gemm::ring_bytes<float>(pl);
  if (!block_smem_fits(ring)) return false;
  return sm80_kernel_runs_here<
      gw_gemm::grad_weight_mma_kernel<__half, int32_t, gw_gemm::Tile64x64, 16, Fp32Mma::Tf32>>();
}

int64_t grad_weight_gemm_channels_last_workspace_elems(const ConvTranspose3dParams& p) {
  return gw_gemm::workspace_elems(gw_gemm::plan(p));
}

cudaError_t launch_grad_weight_gemm_channels_last(const ConvTranspose3dParams& p,
                                                  const LaunchConfig& cfg,
                                                  const GradWeightOperands& ops) {
  const gw_gemm::Plan pl = gw_gemm::plan(p);
  return gw_gemm::run_split_gemm<gw_gemm::PartialOrder::TapCiCo>(
      p, cfg, pl, ops.workspace, ops.grad_weight, [&](auto scalar, auto index) {
        return gw_gemm::launch_mma<decltype(scalar), decltype(index)>(p, pl, cfg.stream, ops);
      });
}

void set_grad_weight_tile(int bm, int bn) {
  gw_gemm::g_forced_bm.store(bm);
  gw_gemm::g_forced_bn.store(bn);
}

bool grad_weight_tile_exists(int bm, int bn) { return gw_gemm::is_tile(bm, bn); }

void set_grad_weight_split_policy(int64_t min_rows_per_split, int64_t target_warps) {
  gw_gemm::g_forced_split_rows.store(min_rows_per_split);
  gw_gemm::g_forced_target_warps.store(target_warps);
}

}  // namespace tconv3d::cuda
