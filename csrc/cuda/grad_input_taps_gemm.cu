// Grad-input of layers with few output channels a group (the RGB output of a
// volume VAE decoder: 64 → 3 channels, 4³ taps), on tensor cores with the
// taps folded into the GEMM's K:
//
//     gx[r, ci] = Σ_(t, d) A[r, (t, d)] · B[(t, d), ci],
//     A[r, (t, d)] = gy[n, i·s − p + t·dil, g·D + d]   (0 outside gy, d < D ≤ 4)
//     B[(t, d), ci] = w[g·S + ci, d, t]
//
// r over input positions (n, id, ih, iw).  The phase GEMM (tensor_core_gemm*
// .cu) pads each tap's D = 3 channels to a whole 16- or 32-byte k-step: 5x
// the MMAs and shared-memory traffic the layer needs.  Here gy's groups are
// padded to kTapChannels once (taps_gy_source, shared with the taps-folded
// grad-weight), so a (row, tap) of A is one 8- or 16-byte cp.async, and a
// stage's 128 bytes of K hold 16 taps (fp16/bf16) or 8 (TF32).
//
// Block: 128 rows × 64 input channels of one group, 8 warps of 32 × 32, a
// 3-stage cp.async ring over the taps; fragments by ldmatrix (mma_k_step)
// from rows of 144 bytes (an odd number of 16-byte pieces: conflict-free).
// The rows' gy offsets and the taps' offsets are tabulated once a block.
// Each gx element is written once by one thread: deterministic, no workspace.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../scalar_convert.h"
#include "dispatch.cuh"
#include "implicit_gemm_walk.cuh"
#include "mma_sm80.cuh"
#include "tensor_core_gemm.h"

namespace tconv3d::cuda {
namespace taps_dgrad {

constexpr int kBM = 128, kBN = 64, kThreads = 256;
constexpr int kWarpsM = 4, kWarpM = 32, kWarpN = 32, kMI = kWarpM / 16, kNI = kWarpN / 8;
constexpr int kStageK = 128;              // bytes of K a stage
constexpr int kPitch = kStageK + 16;      // nine 16-byte pieces a row
constexpr int kStages = 3;
constexpr int kStageBytes = (kBM + kBN) * kPitch;
constexpr int kSmem = kStages * kStageBytes;  // 81 KB: two blocks an SM

template <typename scalar_t>
struct Layout {
  static constexpr int ES = int(sizeof(scalar_t));
  static constexpr int PIECE = kTapChannels * ES;        // a (row, tap) of A: 8 or 16 bytes
  static constexpr int TAPS = kStageK / PIECE;           // a stage's taps: 16 or 8
  static constexpr int A_LOADS = kBM * TAPS / kThreads;  // 8 or 4 a thread
  static constexpr int A_THREADS_PER_ROW = TAPS / A_LOADS;
  static constexpr int B_LOADS = kBN * (kStageK / 16) / kThreads;
  static_assert(A_LOADS * kThreads == kBM * TAPS && B_LOADS * kThreads == kBN * kStageK / 16,
                "pieces a stage");
  static_assert(kThreads / A_THREADS_PER_ROW == kBM, "a thread's row");
};

struct Args {
  ConvTranspose3dParams p;
  TapsGradInputOperands ops;
  int64_t rows;      // N·D·H·W input positions
  int64_t n_tiles;   // ⌈S / kBN⌉
  int taps;          // kD·kH·kW
  int stages;        // ⌈taps / TAPS⌉
};

template <typename scalar_t, typename index_t, Fp32Mma kMath>
__global__ void __launch_bounds__(kThreads, 2) grad_input_taps_kernel(const Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using L = Layout<scalar_t>;
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ index_t row_gy[kBM], row_gx[kBM];
  __shared__ int row_o[3][kBM];
  __shared__ index_t tap_off[kTapsGradInputMaxTaps];
  __shared__ int tap_o[3][kTapsGradInputMaxTaps];

  const ConvTranspose3dParams& p = a.p;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp % kWarpsM, wn = warp / kWarpsM;
  const int64_t g = blockIdx.y;
  const int64_t m0 = int64_t(blockIdx.x / a.n_tiles) * kBM;
  const int n0 = int(blockIdx.x % a.n_tiles) * kBN;
  const int64_t S = p.in_per_group;
  const scalar_t* gy =
      static_cast<const scalar_t*>(a.ops.grad_output) + index_t(g * kTapChannels);
  const scalar_t* wts = static_cast<const scalar_t*>(a.ops.packed_weight) +
                        index_t((g * S + n0) * a.ops.packed_taps * kTapChannels);
  const int64_t w_rows_here = std::min<int64_t>(S - n0, kBN);
  const index_t w_row = index_t(a.ops.packed_taps * kTapChannels);

  if (tid < kBM) {  // the rows: gy's offset at o = i·s − p, gx's at i
    const int64_t r = m0 + tid;
    index_t go = 0, xo = 0;
    int o[3] = {-(1 << 29), 0, 0};  // any tap's position stays negative: zeros
    if (r < a.rows) {
      int64_t i[3];
      const int64_t n = unflatten_input_position(p.axis, r, i);
      for (int ax = 0; ax < 3; ++ax) o[ax] = int(i[ax] * p.axis[ax].stride - p.axis[ax].padding);
      go = index_t(n * a.ops.grad_output_n + o[0] * a.ops.grad_output_d +
                   o[1] * a.ops.grad_output_h + o[2] * a.ops.grad_output_w);
      xo = index_t(n * p.input.n + i[0] * p.input.d + i[1] * p.input.h + i[2] * p.input.w);
    }
    row_gy[tid] = go;
    row_gx[tid] = xo;
    for (int ax = 0; ax < 3; ++ax) row_o[ax][tid] = o[ax];
  }
  for (int t = tid; t < a.taps; t += kThreads) {  // the taps: their offsets from a row's o
    const int kh = int(p.axis[1].kernel), kw = int(p.axis[2].kernel);
    const int td = t / (kh * kw), th = t / kw % kh, tw = t % kw;
    tap_o[0][t] = td * int(p.axis[0].dilation);
    tap_o[1][t] = th * int(p.axis[1].dilation);
    tap_o[2][t] = tw * int(p.axis[2].dilation);
    tap_off[t] = index_t(tap_o[0][t] * a.ops.grad_output_d + tap_o[1][t] * a.ops.grad_output_h +
                         tap_o[2][t] * a.ops.grad_output_w);
  }
  __syncthreads();

  // This thread's row of A and its first tap of a stage; its pieces of B.
  const int my_row = tid / L::A_THREADS_PER_ROW;
  const int my_tap = tid % L::A_THREADS_PER_ROW * L::A_LOADS;
  const int o0 = row_o[0][my_row], o1 = row_o[1][my_row], o2 = row_o[2][my_row];
  const index_t g0 = row_gy[my_row];
  const int out0 = int(p.axis[0].out), out1 = int(p.axis[1].out), out2 = int(p.axis[2].out);
  auto load_stage = [&](int st) {
    const uint32_t sa = smem_addr(smem + (st % kStages) * kStageBytes), sb = sa + kBM * kPitch;
    const uint32_t dst = sa + my_row * kPitch + my_tap * L::PIECE;
#pragma unroll
    for (int j = 0; j < L::A_LOADS; ++j) {
      const int t = st * L::TAPS + my_tap + j;
      const bool ok = t < a.taps && unsigned(o0 + tap_o[0][t]) < unsigned(out0) &&
                      unsigned(o1 + tap_o[1][t]) < unsigned(out1) &&
                      unsigned(o2 + tap_o[2][t]) < unsigned(out2);
      // Zero-fill reads no bytes, but its address stays inside gy all the same.
      const scalar_t* src = ok ? gy + g0 + tap_off[t] : gy;
      if constexpr (L::PIECE == 16) {
        cp_async16(dst + j * L::PIECE, src, ok);
      } else {
        cp_async8(dst + j * L::PIECE, src, ok);
      }
    }
#pragma unroll
    for (int q = 0; q < L::B_LOADS; ++q) {  // packed taps are whole stages: no tap bound
      const int idx = tid + q * kThreads;
      const int row = idx / (kStageK / 16), piece = idx % (kStageK / 16);
      const bool ok = row < w_rows_here;
      const scalar_t* src =
          ok ? wts + index_t(row) * w_row + index_t(st) * (kStageK / L::ES) + piece * (16 / L::ES)
             : wts;
      cp_async16(sb + row * kPitch + piece * 16, src, ok);
    }
  };

  float acc[kMI][kNI][4];
  zero_accumulators(acc);
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < a.stages) load_stage(s);
    cp_async_commit();
  }
  const uint32_t a_lane = (wm * kWarpM + lane % 16) * kPitch + (lane / 16) * 16;
  const uint32_t b_lane =
      kBM * kPitch + (wn * kWarpN + lane % 8 + 8 * (lane / 16)) * kPitch + ((lane / 8) % 2) * 16;
  for (int st = 0; st < a.stages; ++st) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // stage st visible to all; the stage refilled next was consumed
    if (st + kStages - 1 < a.stages) load_stage(st + kStages - 1);
    cp_async_commit();
    const uint32_t base = smem_addr(smem + (st % kStages) * kStageBytes);
#pragma unroll
    for (int kb = 0; kb < kStageK; kb += 32) {
      mma_k_step<scalar_t, kMI, kNI, kMath>(acc, base + a_lane + kb, base + b_lane + kb, kPitch);
    }
  }
  cp_async_wait<0>();

  scalar_t* gx = static_cast<scalar_t*>(a.ops.grad_input);
  const int gq = lane / 4, tq = lane % 4;
#pragma unroll
  for (int i = 0; i < kMI; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {  // rows gq, gq + 8; columns 2tq, 2tq + 1 of the m16n8 piece
      const int row = wm * kWarpM + i * 16 + gq + 8 * (e / 2);
      if (m0 + row >= a.rows) continue;
      scalar_t* xr = gx + row_gx[row];
#pragma unroll
      for (int j = 0; j < kNI; ++j) {
        const int64_t ci = n0 + wn * kWarpN + j * 8 + 2 * tq + e % 2;
        if (ci < S) xr[index_t((g * S + ci) * p.input.c)] = from_acc<scalar_t>(acc[i][j][e]);
      }
    }
#else
  __trap();  // never launched: grad_input_taps_gemm_supports requires sm_80 code
#endif
}

template <typename scalar_t, typename index_t, Fp32Mma kMath>
cudaError_t launch_typed(const Args& a, cudaStream_t stream) {
  constexpr auto kernel = grad_input_taps_kernel<scalar_t, index_t, kMath>;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(kSmem);
  if (err != cudaSuccess) return err;
  const int64_t m_tiles = (a.rows + kBM - 1) / kBM;
  const dim3 grid(static_cast<unsigned int>(m_tiles * a.n_tiles),
                  static_cast<unsigned int>(a.p.groups));
  kernel<<<grid, kThreads, kSmem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace taps_dgrad

int64_t grad_input_taps_gemm_packed_taps(const ConvTranspose3dParams& p, ScalarKind dtype) {
  const int64_t taps = p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel;
  const int64_t stage_taps = taps_dgrad::kStageK / (kTapChannels * element_bytes(dtype));
  return (taps + stage_taps - 1) / stage_taps * stage_taps;
}

bool grad_input_taps_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                   bool allow_tf32) {
  if (!tensor_core_dtype(dtype, allow_tf32)) return false;
  if (p.in_per_group < 1 || p.out_per_group < 1 || p.out_per_group > kTapChannels ||
      p.groups > 65535) {
    return false;
  }
  if (p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel > kTapsGradInputMaxTaps) return false;
  // Output positions and the taps' offsets are ints.
  for (const Axis& a : p.axis) {
    if (a.out > INT_MAX / 2 || a.kernel * a.dilation + a.in * a.stride > INT_MAX / 2) return false;
  }
  const int64_t rows = input_positions(p.batch, p.axis);
  const int64_t n_tiles = (p.in_per_group + taps_dgrad::kBN - 1) / taps_dgrad::kBN;
  if ((rows + taps_dgrad::kBM - 1) / taps_dgrad::kBM * n_tiles > int64_t(INT_MAX)) return false;
  using taps_dgrad::grad_input_taps_kernel;
  return sm80_kernel_runs_here<grad_input_taps_kernel<__half, int32_t, Fp32Mma::Tf32>>();
}

cudaError_t launch_grad_input_taps_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                        const TapsGradInputOperands& ops) {
  using namespace taps_dgrad;
  // Every gy piece and weight piece whole and aligned (the op layer's operands).
  const int64_t es = element_bytes(cfg.dtype);
  const int64_t gy_strides[4] = {ops.grad_output_n, ops.grad_output_d, ops.grad_output_h,
                                 ops.grad_output_w};
  for (int64_t s : gy_strides) {
    if (s % kTapChannels != 0) return cudaErrorInvalidValue;
  }
  if (reinterpret_cast<uintptr_t>(ops.grad_output) % (kTapChannels * es) != 0 ||
      reinterpret_cast<uintptr_t>(ops.packed_weight) % 16 != 0 ||
      ops.packed_taps != grad_input_taps_gemm_packed_taps(p, cfg.dtype)) {
    return cudaErrorInvalidValue;
  }
  Args a{};
  a.p = p;
  a.ops = ops;
  a.rows = input_positions(p.batch, p.axis);
  a.n_tiles = (p.in_per_group + kBN - 1) / kBN;
  a.taps = int(p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel);
  a.stages = int(ops.packed_taps * kTapChannels * es / kStageK);
  if (a.rows == 0 || p.in_per_group == 0) return cudaSuccess;
  cudaError_t err = cudaErrorInvalidValue;
  igemm::dispatch_gemm_types(cfg, [&](auto scalar, auto index) {
    using S = decltype(scalar);
    err = launch_fp32_mma<S>(ops.fp32_mma, [&](auto math) {
      return launch_typed<S, decltype(index), decltype(math)::value>(a, cfg.stream);
    });
  });
  return err;
}

}  // namespace tconv3d::cuda
