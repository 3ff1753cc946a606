// Grad-weight of layers with few output channels a group (RGB outputs,
// 64 → 3), on tensor cores with the taps folded into the GEMM's N:
//
//     gw[g·S + ci, d, k] = Σ_r X[r, ci] · B[r, (k, d)],
//     B[r, (k, d)] = gy[n, i·s − p + k·dil, g·D + d]   (0 outside gy)
//
// r over every input position (n, id, ih, iw), S = Cin/G, D = Cout/G.  The
// per-tap GEMM (grad_weight_gemm_channels_last.cu) pads D = 3 to a 16-wide
// tile and reads all of x once per tap (64 times for a 4³ kernel: 4 GB for
// the benchmark's RGB-output layer, 2-5 ms); here the taps · D columns (192)
// fill the tiles and x is read once per 128 columns.
//
// A block owns (group, split of the rows, tile of 64 input channels, tile of
// 128 columns).  A (a position's channels, 16-byte pieces) arrives by
// cp.async.  B is gathered element by element — a thread's column is one
// tap's one channel, a fixed offset from the row's base in gy — into
// registers while the tensor cores work on the previous stage, then stored
// to shared memory.  Both land as [k][m] / [k][n] rows for mma_k_major_stage.
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

constexpr int BM = 64, BN = 128, BK = 32;
constexpr int WARPS_M = 2, WARPS_N = 4, THREADS = 32 * WARPS_M * WARPS_N;
constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N, MI = WM / 16, NI = WN / 8;
constexpr int GATHER = BK * BN / THREADS;  // B elements a thread gathers a stage
constexpr int ROW_STEP = THREADS / BN;     // between a thread's B rows

// Splits of at least 1024 rows, up to 512 blocks (two waves of two blocks an
// SM on a 132-SM GPU), shape-only.
constexpr gw_gemm::SplitPolicy kSplitPolicy{1024, 512};

template <typename scalar_t>
struct Layout {
  static constexpr int ES = int(sizeof(scalar_t));
  static constexpr int VEC = 16 / ES;  // channels a 16-byte piece
  // Row pitch: 16 bytes past a multiple of 32 for ldmatrix, 8 words past a
  // multiple of 32 for TF32's word loads (as grad_weight_gemm_channels_last).
  static constexpr int pitch(int channels) { return ES == 2 ? channels * 2 + 16 : (channels + 8) * 4; }
  static constexpr int PITCH_A = pitch(BM), PITCH_B = pitch(BN);
  static constexpr int OPERAND_A = BK * PITCH_A;
  static constexpr int STAGE = BK * (PITCH_A + PITCH_B);
  static constexpr int SMEM = 2 * STAGE;  // double-buffered
  static constexpr int A_LOADS = BK * (BM / VEC) / THREADS;
  static_assert(A_LOADS * THREADS == BK * (BM / VEC), "A pieces a stage");
};

// The columns' tile first, so the blocks that read a split's rows of x run together.
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

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(THREADS, 2)
    grad_weight_taps_kernel(const ConvTranspose3dParams p, const gw_gemm::Plan pl,
                            const void* __restrict__ x_ptr, const void* __restrict__ gy_ptr,
                            void* __restrict__ gw_ptr, float* __restrict__ partials) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using L = Layout<scalar_t>;
  using bits_t = std::conditional_t<sizeof(scalar_t) == 2, uint16_t, uint32_t>;
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
  const int64_t columns = pl.taps * D;
  const int64_t rows = p.batch * p.axis[0].in * p.axis[1].in * p.axis[2].in;
  const int64_t begin = rows * b.split / pl.splits;
  const index_t len = index_t(rows * (b.split + 1) / pl.splits - begin);
  const int m0 = b.tm * BM, n0 = b.tn * BN;
  const Strides5 xs = p.input, gs = p.output;
  const scalar_t* x = static_cast<const scalar_t*>(x_ptr) + index_t(b.g * S + m0);
  const bits_t* gy = static_cast<const bits_t*>(gy_ptr);

  // This thread's B column: one tap's one channel, at a fixed offset from a row's base.
  const int col = tid % BN;
  const int64_t n = n0 + col;
  const bool col_ok = n < columns;
  const int64_t tap = col_ok ? n / D : 0, d = col_ok ? n % D : 0;
  const int tap_o[3] = {int(tap / (kh * kw) * p.axis[0].dilation),
                        int(tap / kw % kh * p.axis[1].dilation), int(tap % kw * p.axis[2].dilation)};
  const index_t col_off = index_t(tap_o[0] * gs.d + tap_o[1] * gs.h + tap_o[2] * gs.w +
                                  (b.g * D + d) * gs.c);
  const int out0 = int(p.axis[0].out), out1 = int(p.axis[1].out), out2 = int(p.axis[2].out);

  auto decode_rows = [&](index_t slice) {
    if (tid < BK) {
      const index_t rr = slice * BK + tid;
      const int buf = int(slice % 2);
      index_t xo = 0, go = 0;
      int o[3] = {-(1 << 29), 0, 0};  // any tap's position stays negative: gathers zeros
      if (rr < len) {
        int64_t r = begin + rr;
        const int64_t iw = r % p.axis[2].in;
        r /= p.axis[2].in;
        const int64_t ih = r % p.axis[1].in;
        r /= p.axis[1].in;
        const int64_t id = r % p.axis[0].in, nb = r / p.axis[0].in;
        const int64_t i[3] = {id, ih, iw};
        for (int a = 0; a < 3; ++a) o[a] = int(i[a] * p.axis[a].stride - p.axis[a].padding);
        xo = index_t(nb * xs.n + id * xs.d + ih * xs.h + iw * xs.w);
        go = index_t(nb * gs.n + o[0] * gs.d + o[1] * gs.h + o[2] * gs.w);
      }
      row_x[buf][tid] = xo;
      row_g[buf][tid] = go;
      for (int a = 0; a < 3; ++a) row_o[buf][a][tid] = o[a];
    }
  };
  auto load_a = [&](index_t slice) {
    const int buf = int(slice % 2);
    const uint32_t sa = smem_addr(smem + buf * L::STAGE);
#pragma unroll
    for (int q = 0; q < L::A_LOADS; ++q) {
      const int idx = tid + q * THREADS;
      const int row = idx / (BM / L::VEC), piece = idx % (BM / L::VEC);
      const int c = piece * L::VEC;
      cp_async16(sa + row * L::PITCH_A + piece * 16, x + row_x[buf][row] + c,
                 slice * BK + row < len && m0 + c < S);
    }
  };
  auto gather_b = [&](index_t slice, bits_t (&v)[GATHER]) {
    const int buf = int(slice % 2);
#pragma unroll
    for (int j = 0; j < GATHER; ++j) {
      const int r = tid / BN + j * ROW_STEP;
      const int od = row_o[buf][0][r] + tap_o[0], oh = row_o[buf][1][r] + tap_o[1],
                ow = row_o[buf][2][r] + tap_o[2];
      const bool ok = col_ok && unsigned(od) < unsigned(out0) && unsigned(oh) < unsigned(out1) &&
                      unsigned(ow) < unsigned(out2);
      v[j] = ok ? gy[row_g[buf][r] + col_off] : bits_t(0);
    }
  };
  auto store_b = [&](index_t slice, const bits_t (&v)[GATHER]) {
    unsigned char* sb = smem + int(slice % 2) * L::STAGE + L::OPERAND_A;
#pragma unroll
    for (int j = 0; j < GATHER; ++j) {
      const int r = tid / BN + j * ROW_STEP;
      *reinterpret_cast<bits_t*>(sb + r * L::PITCH_B + col * L::ES) = v[j];
    }
  };

  float acc[MI][NI][4];
  zero_accumulators(acc);
  const index_t nslices = (len + BK - 1) / BK;
  bits_t v[GATHER];

  decode_rows(0);
  __syncthreads();
  if (nslices > 0) {
    load_a(0);
    gather_b(0, v);
    store_b(0, v);
  }
  cp_async_commit();
  decode_rows(1);

  for (index_t slice = 0; slice < nslices; ++slice) {
    cp_async_wait<0>();
    __syncthreads();  // stage `slice` and the next rows are visible; the other stage was consumed
    const bool more = slice + 1 < nslices;
    if (more) {
      load_a(slice + 1);
      gather_b(slice + 1, v);  // in flight during the MMAs below
    }
    cp_async_commit();
    decode_rows(slice + 2);
    const unsigned char* stage = smem + int(slice % 2) * L::STAGE;
    mma_k_major_stage<scalar_t, MI, NI, BK, L::PITCH_A, L::PITCH_B>(
        acc, stage, stage + L::OPERAND_A, 0, wm * WM, wn * WN, lane);
    if (more) store_b(slice + 1, v);
  }
  cp_async_wait<0>();

  // Accumulators → partials (tap-major) or, with one split, gw.
  const int gq = lane / 4, t = lane % 4;
  scalar_t* gw = static_cast<scalar_t*>(gw_ptr);
  const Strides5 ws = p.weight;
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {  // rows gq, gq + 8; columns 2t, 2t + 1 of the m16n8 piece
        const int64_t m = m0 + wm * WM + i * 16 + gq + 8 * (e / 2);
        const int64_t nn = n0 + wn * WN + j * 8 + 2 * t + e % 2;
        if (m >= S || nn >= columns) continue;
        const int64_t k = nn / D, dd = nn % D, ci = b.g * S + m;
        if (pl.splits == 1) {
          gw[ci * ws.n + dd * ws.c + k / (kh * kw) * ws.d + k / kw % kh * ws.h + k % kw * ws.w] =
              from_acc<scalar_t>(acc[i][j][e]);
        } else {
          partials[b.split * pl.numel + (k * p.in_channels + ci) * D + dd] = acc[i][j][e];
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
  pl.tiles_n = (pl.taps * p.out_per_group + BN - 1) / BN;
  pl.numel = p.in_channels * p.out_per_group * pl.taps;
  const int64_t base = pl.groups * pl.tiles_m * pl.tiles_n;
  const int64_t rows = p.batch * p.axis[0].in * p.axis[1].in * p.axis[2].in;
  int64_t splits = (rows + kSplitPolicy.min_rows_per_split - 1) / kSplitPolicy.min_rows_per_split;
  if (base > 0) splits = std::min(splits, (kSplitPolicy.target_blocks + base - 1) / base);
  pl.splits = bounded_splits(splits, rows, pl.numel);
  pl.blocks = base * pl.splits;
  return pl;
}

template <typename scalar_t, typename index_t>
cudaError_t launch(const ConvTranspose3dParams& p, const gw_gemm::Plan& pl, cudaStream_t stream,
                   const void* x, const void* gy, void* gw, float* partials) {
  constexpr auto kernel = grad_weight_taps_kernel<scalar_t, index_t>;
  constexpr int smem = Layout<scalar_t>::SMEM;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(smem);
  if (err != cudaSuccess) return err;
  kernel<<<static_cast<unsigned int>(pl.blocks), THREADS, smem, stream>>>(p, pl, x, gy, gw,
                                                                          partials);
  return cudaGetLastError();
}

}  // namespace taps_gemm

bool grad_weight_taps_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                    bool allow_tf32) {
  const bool half = dtype == ScalarKind::Float16 || dtype == ScalarKind::BFloat16;
  if (!half && !(dtype == ScalarKind::Float32 && allow_tf32)) return false;
  // x's groups whole 16-byte pieces.
  if (p.in_per_group % vector_channels(dtype) != 0 || p.out_per_group < 1) return false;
  const gw_gemm::Plan pl = taps_gemm::plan(p);
  // Output positions and the column offsets are ints.
  for (const Axis& a : p.axis) {
    if (a.out > INT_MAX / 2 || a.kernel * a.dilation + a.in * a.stride > INT_MAX / 2) return false;
  }
  if (pl.blocks > int64_t(INT_MAX)) return false;
  return sm80_kernel_runs_here<taps_gemm::grad_weight_taps_kernel<__half, int32_t>>();
}

int64_t grad_weight_taps_gemm_workspace_elems(const ConvTranspose3dParams& p) {
  return gw_gemm::workspace_elems(taps_gemm::plan(p));
}

cudaError_t launch_grad_weight_taps_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const void* input, const void* grad_output,
                                         void* grad_weight, float* workspace) {
  // x's channels contiguous in 16-byte pieces (gy is read element by element, any strides).
  if (!vectors_aligned(p.input, reinterpret_cast<uintptr_t>(input), vector_channels(cfg.dtype),
                       element_bytes(cfg.dtype))) {
    return cudaErrorInvalidValue;
  }
  const gw_gemm::Plan pl = taps_gemm::plan(p);
  return gw_gemm::run_split_gemm<gw_gemm::PartialOrder::TapCiCo>(
      p, cfg, pl, workspace, grad_weight, [&](auto scalar, auto index) {
        return taps_gemm::launch<decltype(scalar), decltype(index)>(
            p, pl, cfg.stream, input, grad_output, grad_weight, workspace);
      });
}

}  // namespace tconv3d::cuda
