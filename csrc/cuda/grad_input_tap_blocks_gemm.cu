// Grad-input when every output position takes exactly one tap (kernel ==
// stride, no dilation or padding, every axis; stride 2 along W: 3-D U-Net
// decoders), reading an NCDHW grad_output as it is.  Input position i then
// receives from the s³ block of grad_output at i·s alone, and per group
//
//   GX[i, ci] = Σ_(co, kd, kh, kw) GY[co, i·s + (kd, kh, kw)] · W[ci, (co, kd, kh, kw)]
//
// is one GEMM whose K runs in the weight's own order: each input channel's
// weight row is B's K, read in place (no pack).  A's K walks q = (co, kd, kh)
// and kw; for one q, a tile's 128 rows (input positions along W lines) read
// grad_output at 2·iw + kw, kw = 0, 1: runs of contiguous elements, so A lands
// q-major ([q][row][kw]) straight from the planes by 16-byte copies, and the
// fragments are 32-bit words of it: a bf16 pair (k, k + 1) is (kw 0, 1) of one
// row, a TF32 element one word (rows padded so both are conflict-free).
// The phase GEMM (tensor_core_gemm*.cu) needs a channels-last copy of
// grad_output: written and read again, as large as grad_output itself (U-Net
// 64 → 32 TF32: 64 MB beside 16 MB of grad_input).
//
// Tile: 128 rows × 64 or 128 input channels, 8 warps, K in stages of two
// 32-byte k-steps, four stages of cp.async in flight.  Epilogue through
// shared memory, [channel][row]: a channel's rows are contiguous in an NCDHW
// grad_input, written by 16-byte stores where the planes allow.  Each element
// is summed by one thread in a fixed order: deterministic, no workspace.
#include "tensor_core_gemm.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <c10/macros/Macros.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../scalar_convert.h"
#include "dispatch.cuh"
#include "implicit_gemm_walk.cuh"
#include "mma_sm80.cuh"
#include "tap_blocks.h"
#include "vector_access.cuh"

namespace tconv3d::cuda {
namespace tapblk {

constexpr int kBM = 128, kThreads = 256, kStages = 4;
constexpr int kStageKBytes = 64;            // of a weight row: two 32-byte k-steps
constexpr int kBPitch = kStageKBytes + 16;  // ldmatrix rows an odd number of pieces apart
// A q-row: the tile's rows' (kw 0, 1) pairs, 16 elements more: 136 words
// (bf16) and 272 (TF32) put a fragment load's 32 lanes in 32 banks.
constexpr int kARowElements = 2 * kBM + 16;
constexpr int kOutPitch = kBM + 4;  // floats: fragment writes conflict-free

template <typename scalar_t>
constexpr int kQ = kStageKBytes / int(sizeof(scalar_t)) / 2;  // q-rows a stage: 8 TF32, 16 bf16
template <typename scalar_t>
constexpr int kABytes = kQ<scalar_t> * kARowElements * int(sizeof(scalar_t));
template <typename scalar_t, int kBN>
constexpr int kStageBytes = kABytes<scalar_t> + kBN * kBPitch;
template <typename scalar_t, int kBN>
constexpr int kSmem = std::max(kStages * kStageBytes<scalar_t, kBN>, kBN * kOutPitch * 4);

struct Args {
  ConvTranspose3dParams p;
  const void* grad_output;
  const void* weight;
  void* grad_input;
  int64_t weight_row;  // elements between input channels' weight rows
  int64_t rows;        // N·D·H·W input positions
  int64_t m_tiles, n_tiles;
  int q_count;  // Cout/G · kD · kH
  int k_count;  // 2 · q_count: a weight row
  at::cuda::detail::IntDivider<unsigned> kh_div, kd_div;
  bool vector_store;  // grad_input's planes contiguous, in whole 16-byte pieces
};

template <typename scalar_t, typename index_t, int kBN>
__global__ void __launch_bounds__(kThreads, 2) grad_input_tap_blocks_kernel(const Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int ES = sizeof(scalar_t), VEC = 16 / ES, QC = kQ<scalar_t>;
  constexpr int kWarpsN = kBN / 32, kWarpsM = 8 / kWarpsN, kWarpM = kBM / kWarpsM;
  constexpr int MI = kWarpM / 16, NI = 4;
  constexpr int kAPieceRows = VEC / 2;        // rows a 16-byte piece of a q-row holds
  constexpr int kAPiecesRow = 2 * kBM / VEC;  // pieces a q-row
  constexpr int kAPerThread = QC * kAPiecesRow / kThreads;
  constexpr int kBPiecesRow = kStageKBytes / 16;
  constexpr int kBPerThread = kBN * kBPiecesRow / kThreads;
  constexpr int kStage = kStageBytes<scalar_t, kBN>;
  static_assert(kAPerThread * kThreads == QC * kAPiecesRow, "A pieces spread evenly");
  static_assert(kBPerThread * kThreads == kBN * kBPiecesRow, "B pieces spread evenly");
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ index_t s_xrow[kBM], s_yrow[kBM];

  const ConvTranspose3dParams& p = a.p;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp % kWarpsM, wn = warp / kWarpsM;
  const int64_t g = blockIdx.y;
  const int64_t m0 = int64_t(blockIdx.x / a.n_tiles) * kBM;
  const int n0 = int(blockIdx.x % a.n_tiles) * kBN;
  const int cig = int(p.in_per_group), cog = int(p.out_per_group);
  const scalar_t* gy = static_cast<const scalar_t*>(a.grad_output);
  const scalar_t* w = static_cast<const scalar_t*>(a.weight) + (g * cig + n0) * a.weight_row;
  scalar_t* gx = static_cast<scalar_t*>(a.grad_input);
  const uint32_t sbase = smem_addr(smem);

  if (tid < kBM) {  // the rows' offsets in grad_input and grad_output (channel 0 of the group)
    const int64_t r = m0 + tid;
    index_t xo = 0, yo = 0;
    if (r < a.rows) {
      int64_t i[3];
      const int64_t n = unflatten_input_position(p.axis, r, i);
      xo = index_t(n * p.input.n + i[0] * p.input.d + i[1] * p.input.h + i[2] * p.input.w +
                   g * cig * p.input.c);
      yo = index_t(n * p.output.n + i[0] * p.axis[0].stride * p.output.d +
                   i[1] * p.axis[1].stride * p.output.h + 2 * i[2] + g * cog * p.output.c);
    }
    s_xrow[tid] = xo;
    s_yrow[tid] = yo;
  }
  __syncthreads();

  // A thread's pieces keep their q-row within a stage and their rows for the
  // whole loop: the rows' offsets once, the q part each stage.
  index_t a_row[kAPerThread];
  int a_q[kAPerThread];
  uint32_t a_dst[kAPerThread];
#pragma unroll
  for (int e = 0; e < kAPerThread; ++e) {
    const int piece = tid + e * kThreads, ql = piece / kAPiecesRow, mp = piece % kAPiecesRow;
    const int m = mp * kAPieceRows;
    a_q[e] = m0 + m < a.rows ? ql : -1;
    a_row[e] = s_yrow[m];
    a_dst[e] = uint32_t(ql * kARowElements * ES + mp * 16);
  }
  auto load_stage = [&](int kt, int slot) {
    const uint32_t base = sbase + uint32_t(slot * kStage);
#pragma unroll
    for (int e = 0; e < kAPerThread; ++e) {
      const int q = kt * QC + a_q[e];
      const bool valid = a_q[e] >= 0 && q < a.q_count;
      const scalar_t* src = gy;
      if (valid) {
        const auto kh = a.kh_div.divmod(unsigned(q));   // (co, kd) and kh
        const auto kd = a.kd_div.divmod(kh.div);         // co and kd
        src = gy + (a_row[e] + index_t(kd.div * p.output.c + kd.mod * p.output.d +
                                       kh.mod * p.output.h));
      }
      cp_async16(base + a_dst[e], src, valid);
    }
#pragma unroll
    for (int e = 0; e < kBPerThread; ++e) {
      const int piece = tid + e * kThreads, n = piece / kBPiecesRow, kp = piece % kBPiecesRow;
      const int k = kt * 2 * QC + kp * VEC;
      const bool valid = n0 + n < cig && k < a.k_count;
      cp_async16(base + kABytes<scalar_t> + n * kBPitch + kp * 16,
                 valid ? w + (int64_t(n) * a.weight_row + k) : w, valid);
    }
  };

  float acc[MI][NI][4];
  zero_accumulators(acc);
  const int k_tiles = (a.q_count + QC - 1) / QC;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_stage(s, s);
    cp_async_commit();
  }
  const uint32_t b_lane =
      (wn * 32 + lane % 8 + 8 * (lane / 16)) * kBPitch + ((lane / 8) % 2) * 16;
  const int grp = lane / 4, t = lane % 4;
  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    const int next = kt + kStages - 1;
    if (next < k_tiles) load_stage(next, next % kStages);
    cp_async_commit();
    const int slot = kt % kStages;
    const uint32_t* as = reinterpret_cast<const uint32_t*>(smem + slot * kStage);
    const uint32_t sb = sbase + uint32_t(slot * kStage + kABytes<scalar_t>);
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      uint32_t af[MI][4], bf[NI][2];
#pragma unroll
      for (int i = 0; i < MI; ++i) {
        const int m = wm * kWarpM + i * 16 + grp;
        if constexpr (std::is_same_v<scalar_t, float>) {
          // k = t and t + 4 of the step: q-rows kk·4 + t/2 and two on, kw = t % 2.
          constexpr int PA = kARowElements;
          const int q = kk * 4 + t / 2, kw = t % 2;
          af[i][0] = as[q * PA + 2 * m + kw];
          af[i][1] = as[q * PA + 2 * (m + 8) + kw];
          af[i][2] = as[(q + 2) * PA + 2 * m + kw];
          af[i][3] = as[(q + 2) * PA + 2 * (m + 8) + kw];
        } else {
          // k = 2t, 2t + 1 (and 8 on): q-row kk·8 + t, its (kw 0, 1) pair one word.
          constexpr int PA = kARowElements / 2;
          const int q = kk * 8 + t;
          af[i][0] = as[q * PA + m];
          af[i][1] = as[q * PA + m + 8];
          af[i][2] = as[(q + 4) * PA + m];
          af[i][3] = as[(q + 4) * PA + m + 8];
        }
      }
      load_b_fragments(bf, sb + b_lane + kk * 32, kBPitch);
      multiply_fragments<scalar_t>(acc, af, bf);
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  float* out = reinterpret_cast<float*>(smem);  // [channel][row]
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j) {
      const int m = wm * kWarpM + i * 16 + grp, c = wn * 32 + j * 8 + 2 * t;
      out[c * kOutPitch + m] = acc[i][j][0];
      out[(c + 1) * kOutPitch + m] = acc[i][j][1];
      out[c * kOutPitch + m + 8] = acc[i][j][2];
      out[(c + 1) * kOutPitch + m + 8] = acc[i][j][3];
    }
  __syncthreads();
  const int64_t c_stride = p.input.c;
  if (a.vector_store) {  // VEC rows of one channel: contiguous, one sample (launch checks)
    constexpr int kPieces = kBN * kBM / VEC;
    for (int piece = tid; piece < kPieces; piece += kThreads) {
      const int c = piece / (kBM / VEC), m = piece % (kBM / VEC) * VEC;
      if (n0 + c >= cig || m0 + m >= a.rows) continue;
      Vec<scalar_t, VEC> v;
#pragma unroll
      for (int e = 0; e < VEC; ++e) v.v[e] = from_acc<scalar_t>(out[c * kOutPitch + m + e]);
      *reinterpret_cast<Vec<scalar_t, VEC>*>(gx + (s_xrow[m] + index_t((n0 + c) * c_stride))) = v;
    }
  } else {
    for (int e = tid; e < kBN * kBM; e += kThreads) {
      const int c = e / kBM, m = e % kBM;
      if (n0 + c >= cig || m0 + m >= a.rows) continue;
      gx[s_xrow[m] + index_t((n0 + c) * c_stride)] = from_acc<scalar_t>(out[c * kOutPitch + m]);
    }
  }
#endif
}

template <typename scalar_t, typename index_t, int kBN>
cudaError_t launch_tile(const Args& a, cudaStream_t stream) {
  constexpr auto kernel = grad_input_tap_blocks_kernel<scalar_t, index_t, kBN>;
  constexpr int smem = kSmem<scalar_t, kBN>;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(smem);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned int>(a.m_tiles * a.n_tiles),
                  static_cast<unsigned int>(a.p.groups));
  kernel<<<grid, kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace tapblk

bool grad_input_tap_blocks_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                         bool allow_tf32, const void* grad_output,
                                         const void* weight) {
  if (!tensor_core_dtype(dtype, allow_tf32) || !tap_blocks_read_grad_output(p, dtype, grad_output)) {
    return false;
  }
  const int64_t vec = tensor_core_channel_multiple(dtype);
  const Strides5 w = p.weight;
  const int64_t taps = p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel;
  const int64_t k_count = p.out_per_group * taps;
  // Weight rows in 16-byte pieces, K in their order.
  const bool w_ok = w.w == 1 && w.h == p.axis[2].kernel &&
                    w.d == p.axis[1].kernel * p.axis[2].kernel && w.c == taps &&
                    k_count % vec == 0 && w.n % vec == 0 &&
                    reinterpret_cast<uintptr_t>(weight) % 16 == 0;
  if (!w_ok || p.groups > 65535 || k_count / 2 > std::numeric_limits<int>::max()) {
    return false;
  }
  const int64_t n_tiles = (p.in_per_group + 63) / 64;  // at most, either width
  if ((input_positions(p.batch, p.axis) + tapblk::kBM - 1) / tapblk::kBM * n_tiles >
      std::numeric_limits<int32_t>::max()) {
    return false;
  }
  return sm80_kernel_runs_here<tapblk::grad_input_tap_blocks_kernel<__half, int32_t, 64>>();
}

// One block sums a tile's whole K; the phase GEMM splits long ones.  At
// 256 q-rows and less the in-place read won everywhere measured: U-Net
// 128 → 64 NCDHW TF32/bf16 0.081/0.045 ms against the phase GEMM's
// 0.123/0.075, 64 → 32 0.035/0.025 against 0.075/0.049, the big U-Net
// 0.86/0.51 against 1.95/1.18.  At 512 and 1024 it lost or tied, in
// 128- or 64-column tiles: 256 → 128 0.049-0.051/0.028-0.029 against
// 0.044/0.029, 256 → 256 b1 0.070-0.094/0.039-0.050 against 0.052/0.030
// (H200, graph replays; RESULTS.md "Merged branches and in-place grad-input
// round").
bool grad_input_tap_blocks_gemm_pays(const ConvTranspose3dParams& p) {
  return p.out_per_group * p.axis[0].kernel * p.axis[1].kernel <= 256;
}

cudaError_t launch_grad_input_tap_blocks_gemm(const ConvTranspose3dParams& p,
                                              const LaunchConfig& cfg,
                                              const TapBlocksGradInputOperands& ops) {
  using namespace tapblk;
  Args a{};
  a.p = p;
  a.grad_output = ops.grad_output;
  a.weight = ops.weight;
  a.grad_input = ops.grad_input;
  a.weight_row = p.weight.n;
  a.rows = input_positions(p.batch, p.axis);
  a.q_count = int(p.out_per_group * p.axis[0].kernel * p.axis[1].kernel);
  a.k_count = 2 * a.q_count;
  if (a.rows == 0 || p.in_per_group == 0) return cudaSuccess;
  a.kh_div = at::cuda::detail::IntDivider<unsigned>(unsigned(p.axis[1].kernel));
  a.kd_div = at::cuda::detail::IntDivider<unsigned>(unsigned(p.axis[0].kernel));
  a.m_tiles = (a.rows + kBM - 1) / kBM;
  const int64_t vec = tensor_core_channel_multiple(cfg.dtype);
  const Strides5 x = p.input;
  const int64_t plane = input_positions(1, p.axis);
  a.vector_store = x.w == 1 && x.h == p.axis[2].in && x.d == p.axis[1].in * p.axis[2].in &&
                   plane % vec == 0 && x.n % vec == 0 && x.c % vec == 0 &&
                   reinterpret_cast<uintptr_t>(ops.grad_input) % 16 == 0;
  // 128 columns where the group has more than 64 input channels (U-Net
  // 128 → 64: 0.081/0.045 ms against 0.100/0.055 in 64-column tiles, whose
  // blocks read their rows of grad_output twice).
  const bool wide = p.in_per_group > 64;
  a.n_tiles = (p.in_per_group + (wide ? 127 : 63)) / (wide ? 128 : 64);
  cudaError_t err = cudaErrorInvalidValue;
  igemm::dispatch_gemm_types(cfg, [&](auto scalar, auto index) {
    using scalar_t = decltype(scalar);
    using index_t = decltype(index);
    err = wide ? launch_tile<scalar_t, index_t, 128>(a, cfg.stream)
               : launch_tile<scalar_t, index_t, 64>(a, cfg.stream);
  });
  return err;
}

}  // namespace tconv3d::cuda
