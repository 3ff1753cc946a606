// Grad-weight of layers with few output channels a group (RGB outputs,
// 64 → 3), on tensor cores with the taps folded into the GEMM's N:
//
//     gw[g·S + ci, d, k] = Σ_r X[r, ci] · B[r, (k, d)],
//     B[r, (k, d)] = gy[n, i·s − p + k·dil, g·D + d]   (0 outside gy)
//
// r over every input position (n, id, ih, iw), S = Cin/G, D = Cout/G ≤ 4.  The
// per-tap GEMM (grad_weight_gemm_channels_last.cu) pads D = 3 to a 16-wide
// tile and reads all of x once per tap (64 times for a 4³ kernel: 4 GB for
// the benchmark's RGB-output layer, 2.7-5.4 ms); here the taps' columns fill
// the tiles and x is read once per 32 taps.
//
// Operands (the op layer's): x channels-last, each group's channels whole
// 16-byte pieces; gy channels-last with each group's D channels padded with
// zeros to kTapChannels, so a (row, tap) of B is one 8- or 16-byte piece.
// Column n of B is (tap n / 4, channel n % 4): a block owns (group, split of
// the rows, tile of 64 input channels, tile of 32 taps), and every piece of a
// stage, x's and gy's, is a cp.async straight into a ring of stages, [k][m] /
// [k][n] rows for mma_k_major_stage.  (A first version gathered gy element
// by element through registers: its 2-byte loads and shared stores held L1
// at 81 % and ran 3-5x slower than the MMAs allow; ncu, RESULTS.md.)
// Splits are fixed by the shape; partials tap-major, added in split order by
// run_split_gemm's combine: bitwise reproducible.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../scalar_convert.h"
#include "channel_vectors.h"
#include "dispatch.cuh"
#include "grad_weight_gemm.h"
#include "grad_weight_launch.cuh"
#include "mma_sm80.cuh"

namespace tconv3d::cuda {
namespace taps_gemm {

constexpr int BM = 64, BN = 32 * kTapChannels, BK = 32;
constexpr int WARPS_M = 2, WARPS_N = 4, THREADS = 32 * WARPS_M * WARPS_N;
constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N, MI = WM / 16, NI = WN / 8;
constexpr int TAPS = BN / kTapChannels;         // a column tile's taps
// A thread copies B_LOADS consecutive taps of one row a stage: the row's
// offsets are read from the table once for all of them.
constexpr int B_LOADS = BK * TAPS / THREADS;
constexpr int B_THREADS_PER_ROW = TAPS / B_LOADS;

// Splits of at least 1024 rows, up to 512 blocks (two waves of two blocks an
// SM on a 132-SM GPU), shape-only.
constexpr gw_gemm::SplitPolicy kSplitPolicy{1024, 512};

template <typename scalar_t>
struct Layout {
  static constexpr int ES = int(sizeof(scalar_t));
  static constexpr int VEC = 16 / ES;                 // channels of an x piece
  static constexpr int B_PIECE = kTapChannels * ES;   // bytes of a gy piece: 8 or 16
  // Row pitch: 16 bytes past a multiple of 32 for ldmatrix, 8 words past a
  // multiple of 32 for TF32's word loads (as grad_weight_gemm_channels_last).
  static constexpr int pitch(int channels) { return ES == 2 ? channels * 2 + 16 : (channels + 8) * 4; }
  static constexpr int PITCH_A = pitch(BM), PITCH_B = pitch(BN);
  static constexpr int OPERAND_A = BK * PITCH_A;
  static constexpr int STAGE = BK * (PITCH_A + PITCH_B);
  static constexpr int STAGES = ES == 2 ? 4 : 3;  // 53 KB, 80 KB: two blocks an SM
  static constexpr int RING = STAGES * STAGE;
  static constexpr int A_LOADS = BK * (BM / VEC) / THREADS;
  static_assert(A_LOADS * THREADS == BK * (BM / VEC) && B_LOADS * THREADS == BK * TAPS,
                "pieces a stage");
};

// The column tile first, so the blocks that read a split's rows of x run together.
struct BlockWork {
  int64_t g, split;
  int tm, tn;
};

TCONV3D_HOST_DEVICE BlockWork decode_block(const gw_gemm::Plan& pl, int64_t linear) {
  BlockWork b;
  b.tn = int(linear % pl.tiles_n);
  linear /= pl.tiles_n;
  b.tm = int(linear % pl.tiles_m);
  linear /= pl.tiles_m;
  b.split = linear % pl.splits;
  b.g = linear / pl.splits;
  return b;
}

template <typename scalar_t, typename index_t, Fp32Mma kMath>
__global__ void __launch_bounds__(THREADS, 2)
    grad_weight_taps_kernel(const ConvTranspose3dParams p, const gw_gemm::Plan pl,
                            const TapsGemmOperands ops) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using L = Layout<scalar_t>;
  constexpr int STAGES = L::STAGES;
  extern __shared__ __align__(128) unsigned char smem[];
  // Two stages' rows, decoded one stage ahead: x and gy offsets, and the
  // row's first output position per axis (i·s − p; far negative past the end).
  __shared__ index_t row_x[2][BK], row_g[2][BK];
  __shared__ int row_o[2][3][BK];

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp % WARPS_M, wn = warp / WARPS_M;
  const BlockWork b = decode_block(pl, blockIdx.x);
  const int64_t S = p.in_per_group, D = p.out_per_group;
  const int64_t kh = p.axis[1].kernel, kw = p.axis[2].kernel;
  const int64_t rows = input_positions(p.batch, p.axis);
  const int64_t begin = rows * b.split / pl.splits;
  const index_t len = index_t(rows * (b.split + 1) / pl.splits - begin);
  const int m0 = b.tm * BM, tap0 = b.tn * TAPS;
  const scalar_t* x = static_cast<const scalar_t*>(ops.input) + index_t(b.g * ops.input_group + m0);
  const scalar_t* gy = static_cast<const scalar_t*>(ops.grad_output) + index_t(b.g * kTapChannels);

  // This thread's row of a stage and its taps of the column tile, each at a
  // fixed offset from a row's base in gy.
  const int my_row = tid / B_THREADS_PER_ROW, my_tap0 = tid % B_THREADS_PER_ROW * B_LOADS;
  int tap_o[B_LOADS][3];
  index_t tap_off[B_LOADS];
  bool tap_ok[B_LOADS];
#pragma unroll
  for (int j = 0; j < B_LOADS; ++j) {
    const int64_t tap = tap0 + my_tap0 + j;
    tap_ok[j] = tap < pl.taps;
    tap_o[j][0] = int(tap / (kh * kw) * p.axis[0].dilation);
    tap_o[j][1] = int(tap / kw % kh * p.axis[1].dilation);
    tap_o[j][2] = int(tap % kw * p.axis[2].dilation);
    tap_off[j] = index_t(tap_o[j][0] * ops.grad_output_d + tap_o[j][1] * ops.grad_output_h +
                         tap_o[j][2] * ops.grad_output_w);
  }
  const int out0 = int(p.axis[0].out), out1 = int(p.axis[1].out), out2 = int(p.axis[2].out);

  auto decode_rows = [&](index_t slice) {
    if (tid < BK) {
      const index_t rr = slice * BK + tid;
      const int buf = int(slice % 2);
      index_t xo = 0, go = 0;
      int o[3] = {-(1 << 29), 0, 0};  // any tap's position stays negative: copies zeros
      if (rr < len) {
        int64_t r = begin + rr;
        const int64_t iw = r % p.axis[2].in;
        r /= p.axis[2].in;
        const int64_t ih = r % p.axis[1].in;
        r /= p.axis[1].in;
        const int64_t id = r % p.axis[0].in, nb = r / p.axis[0].in;
        const int64_t i[3] = {id, ih, iw};
        for (int a = 0; a < 3; ++a) o[a] = int(i[a] * p.axis[a].stride - p.axis[a].padding);
        xo = index_t(nb * ops.input_n + id * ops.input_d + ih * ops.input_h + iw * ops.input_w);
        go = index_t(nb * ops.grad_output_n + o[0] * ops.grad_output_d +
                     o[1] * ops.grad_output_h + o[2] * ops.grad_output_w);
      }
      row_x[buf][tid] = xo;
      row_g[buf][tid] = go;
      for (int a = 0; a < 3; ++a) row_o[buf][a][tid] = o[a];
    }
  };
  auto load_stage = [&](index_t slice) {
    const int buf = int(slice % 2);
    const uint32_t sa = smem_addr(smem + int(slice % STAGES) * L::STAGE), sb = sa + L::OPERAND_A;
#pragma unroll
    for (int q = 0; q < L::A_LOADS; ++q) {
      const int idx = tid + q * THREADS;
      const int row = idx / (BM / L::VEC), piece = idx % (BM / L::VEC);
      const int c = piece * L::VEC;
      cp_async16(sa + row * L::PITCH_A + piece * 16, x + row_x[buf][row] + c,
                 slice * BK + row < len && m0 + c < S);
    }
    const int o0 = row_o[buf][0][my_row], o1 = row_o[buf][1][my_row], o2 = row_o[buf][2][my_row];
    const index_t g0 = row_g[buf][my_row];
    const uint32_t dst0 = sb + my_row * L::PITCH_B + my_tap0 * L::B_PIECE;
#pragma unroll
    for (int j = 0; j < B_LOADS; ++j) {
      const bool ok = tap_ok[j] && unsigned(o0 + tap_o[j][0]) < unsigned(out0) &&
                      unsigned(o1 + tap_o[j][1]) < unsigned(out1) &&
                      unsigned(o2 + tap_o[j][2]) < unsigned(out2);
      // Zero-fill reads no bytes, but its address stays inside gy all the same.
      const scalar_t* src = ok ? gy + g0 + tap_off[j] : gy;
      if constexpr (L::B_PIECE == 16) {
        cp_async16(dst0 + j * L::B_PIECE, src, ok);
      } else {
        cp_async8(dst0 + j * L::B_PIECE, src, ok);
      }
    }
  };

  float acc[MI][NI][4];
  zero_accumulators(acc);
  const index_t nslices = (len + BK - 1) / BK;

  run_slice_ring<STAGES>(nslices, decode_rows, load_stage, [&](int slot) {
    const unsigned char* stage = smem + slot * L::STAGE;
    mma_k_major_stage<scalar_t, MI, NI, BK, L::PITCH_A, L::PITCH_B, kMath>(
        acc, stage, stage + L::OPERAND_A, 0, wm * WM, wn * WN, lane);
  });

  // Accumulators → partials (tap-major) or, with one split, gw; column n is
  // (tap n / 4, channel n % 4), channels past D are gy's padding.
  const int gq = lane / 4, t = lane % 4;
  scalar_t* gw = static_cast<scalar_t*>(ops.grad_weight);
  const Strides5 ws = p.weight;
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {  // rows gq, gq + 8; columns 2t, 2t + 1 of the m16n8 piece
        const int64_t m = m0 + wm * WM + i * 16 + gq + 8 * (e / 2);
        const int n = wn * WN + j * 8 + 2 * t + e % 2;
        const int64_t k = tap0 + n / kTapChannels, dd = n % kTapChannels;
        if (m >= S || k >= pl.taps || dd >= D) continue;
        const int64_t ci = b.g * S + m;
        if (pl.splits == 1) {
          gw[ci * ws.n + dd * ws.c + k / (kh * kw) * ws.d + k / kw % kh * ws.h + k % kw * ws.w] =
              from_acc<scalar_t>(acc[i][j][e]);
        } else {
          ops.workspace[b.split * pl.numel + (k * p.in_channels + ci) * D + dd] = acc[i][j][e];
        }
      }
#else
  __trap();  // never launched: grad_weight_taps_gemm_supports requires sm_80 code
#endif
}

gw_gemm::Plan plan(const ConvTranspose3dParams& p) {
  gw_gemm::Plan pl{};
  pl.bm = BM;
  pl.bn = BN;
  pl.groups = p.groups;
  pl.taps = p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel;
  pl.tiles_m = (p.in_per_group + BM - 1) / BM;
  pl.tiles_n = (pl.taps + TAPS - 1) / TAPS;
  pl.numel = p.in_channels * p.out_per_group * pl.taps;
  const int64_t base = pl.groups * pl.tiles_m * pl.tiles_n;
  const int64_t rows = input_positions(p.batch, p.axis);
  int64_t splits = (rows + kSplitPolicy.min_rows_per_split - 1) / kSplitPolicy.min_rows_per_split;
  if (base > 0) splits = std::min(splits, (kSplitPolicy.target_blocks + base - 1) / base);
  pl.splits = bounded_splits(splits, rows, pl.numel);
  pl.blocks = base * pl.splits;
  return pl;
}

template <typename scalar_t, typename index_t, Fp32Mma kMath>
cudaError_t launch(const ConvTranspose3dParams& p, const gw_gemm::Plan& pl, cudaStream_t stream,
                   const TapsGemmOperands& ops) {
  constexpr auto kernel = grad_weight_taps_kernel<scalar_t, index_t, kMath>;
  constexpr int smem = Layout<scalar_t>::RING;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(smem);
  if (err != cudaSuccess) return err;
  kernel<<<static_cast<unsigned int>(pl.blocks), THREADS, smem, stream>>>(p, pl, ops);
  return cudaGetLastError();
}

}  // namespace taps_gemm

bool grad_weight_taps_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                    bool allow_tf32) {
  if (!tensor_core_dtype(dtype, allow_tf32)) return false;
  if (p.in_per_group < 1 || p.out_per_group < 1 || p.out_per_group > kTapChannels) return false;
  // Output positions and the taps' offsets are ints.
  for (const Axis& a : p.axis) {
    if (a.out > INT_MAX / 2 || a.kernel * a.dilation + a.in * a.stride > INT_MAX / 2) return false;
  }
  if (taps_gemm::plan(p).blocks > int64_t(INT_MAX)) return false;
  constexpr auto probe = taps_gemm::grad_weight_taps_kernel<__half, int32_t, Fp32Mma::Tf32>;
  return sm80_kernel_runs_here<probe>();
}

int64_t grad_weight_taps_gemm_workspace_elems(const ConvTranspose3dParams& p) {
  return gw_gemm::workspace_elems(taps_gemm::plan(p));
}

cudaError_t launch_grad_weight_taps_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const TapsGemmOperands& ops) {
  // Every x piece and gy piece whole and aligned (the op layer's sources).
  const int64_t es = element_bytes(cfg.dtype), vec = vector_channels(cfg.dtype);
  const int64_t x_strides[5] = {ops.input_n, ops.input_d, ops.input_h, ops.input_w, ops.input_group};
  for (int64_t s : x_strides) {
    if (s % vec != 0) return cudaErrorInvalidValue;
  }
  const int64_t gy_strides[4] = {ops.grad_output_n, ops.grad_output_d, ops.grad_output_h,
                                 ops.grad_output_w};
  for (int64_t s : gy_strides) {
    if (s % kTapChannels != 0) return cudaErrorInvalidValue;
  }
  if (reinterpret_cast<uintptr_t>(ops.input) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(ops.grad_output) % (kTapChannels * es) != 0) {
    return cudaErrorInvalidValue;
  }
  const gw_gemm::Plan pl = taps_gemm::plan(p);
  return gw_gemm::run_split_gemm<gw_gemm::PartialOrder::TapCiCo>(
      p, cfg, pl, ops.workspace, ops.grad_weight, [&](auto scalar, auto index) {
        using S = decltype(scalar);
        using I = decltype(index);
        return launch_fp32_mma<S>(ops.fp32_mma, [&](auto math) {
          return taps_gemm::launch<S, I, decltype(math)::value>(p, pl, cfg.stream, ops);
        });
      });
}

}  // namespace tconv3d::cuda
