// Grad-weight of layers with at most 4 input and 16 output channels a group
// (RGB-like inputs, small-channel layers), where a GEMM tile over (ci, co)
// would be mostly padding:
//
//     gw[g·S + i, d, k] = Σ_n Σ_{p valid for k} x[n, g·S + i, p] · gy[n, g·D + d, p·s − pad + k·dil]
//
// with S = Cin/G, D = Cout/G.  A block owns one (group, tap, split of the
// tap's valid positions); its threads take the split's positions in turn,
// each keeping the whole S × D outer product in registers, and the block adds
// its threads' sums in a fixed tree.  (Few *output* channels with many input
// ones — RGB outputs — are grad_weight_taps_gemm.cu's: a thread's 16 × 4
// tile here re-read x once per tap and ran 25x slower than cuDNN.)
// Operands are channels-last (the op layer copies others once), so a thread's
// channels are contiguous and neighbouring threads read neighbouring
// positions.  Splits are fixed by the shape and combined in split order:
// bitwise reproducible.
//
// A position's D channels of gy are read as 8- or 16-byte vectors where they
// are aligned (one element a load, a warp's 16 loads of a 16-channel bf16
// position each spanned 16 L1 lines), and blocks run split-major, so the taps
// reading one stretch of gy run together and find it in L2.  H200, 3 -> 16
// channels, 32 x 32^3 out, channels-last: bf16 0.148 -> 0.060 ms, TF32 0.252
// -> 0.084.  What bounds it now (ncu, bf16): issue, not memory — 0.63 warps
// issued a scheduler a cycle at 24 % occupancy (103 registers: two blocks an
// SM), DRAM 14 %, L2 28 %.  Keeping two or four positions' loads in flight a
// thread was slower (0.064 ms, and spilled).
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../direct_gather.h"
#include "deterministic_reduce.cuh"
#include "dispatch.cuh"
#include "launch.h"
#include "mixed_radix.h"
#include "vector_access.cuh"
#include "channel_vectors.h"

namespace tconv3d::cuda {
namespace {

constexpr int64_t kTargetBlocks = 1024;  // a few waves of a 132-SM GPU
constexpr int kMaxS = 4, kMaxD = 16;     // the largest outer product a thread keeps

struct NarrowGradWeightArgs {
  const void* x;
  const void* grad_output;
  void* grad_weight;
  float* partials;  // splits × numel, gw's logical order; unused when splits == 1
  Strides5 xs, gs, ws;
  Axis axis[3];
  int batch, groups, in_per_group, out_per_group, splits;
  int kernel[3];
};

// Block = (split · groups + group) · taps + tap.  kS = S.  kD: D rounded up to
// 4, 8 or 16 (the FMAs of the columns past D multiply zeros: with one tile of
// 16, an 8-channel layer did twice the arithmetic it needed).  kV: gy's channels a
// load (1, or kD's channels up to 16 bytes where D is a multiple and every
// vector aligned).  Two blocks an SM at least: the 64 sums and the loads of a
// position fit 128 registers.
template <typename scalar_t, int kS, int kD, int kV>
__global__ void __launch_bounds__(kThreads, 2)
    narrow_grad_weight_kernel(const NarrowGradWeightArgs a) {
  static_assert(kD % kV == 0);
  using acc = acc_t<scalar_t>;
  const int kvol = a.kernel[0] * a.kernel[1] * a.kernel[2];
  const int64_t units_per_split = int64_t(a.groups) * kvol;
  const int split = int(blockIdx.x / units_per_split);
  const int64_t unit = blockIdx.x % units_per_split;
  const int tap = int(unit % kvol), group = int(unit / kvol);
  const int kw = tap % a.kernel[2], kh = tap / a.kernel[2] % a.kernel[1];
  const int kd = tap / (a.kernel[2] * a.kernel[1]);
  const Run rd = grad_weight_positions(a.axis[0], kd), rh = grad_weight_positions(a.axis[1], kh),
            rw = grad_weight_positions(a.axis[2], kw);
  const int ci0 = group * a.in_per_group;
  const int D = a.out_per_group;

  acc sum[kS][kD] = {};
  const int64_t positions = int64_t(a.batch) * rd.count * rh.count * rw.count;
  const int64_t first = positions * split / a.splits, last = positions * (split + 1) / a.splits;
  if (first + threadIdx.x < last) {
    const auto* x = static_cast<const scalar_t*>(a.x) + ci0 * a.xs.c + rd.a * a.xs.d +
                    rh.a * a.xs.h + rw.a * a.xs.w;
    const auto* gy = static_cast<const scalar_t*>(a.grad_output) +
                     int64_t(group) * a.out_per_group * a.gs.c + rd.b * a.gs.d + rh.b * a.gs.h +
                     rw.b * a.gs.w;
    const int64_t gy_step[3] = {rd.db * a.gs.d, rh.db * a.gs.h, rw.db * a.gs.w};
    // Digits (w, h, d, n) of the thread's first position, then stepped by blockDim.x.
    const int radix[4] = {int(rw.count), int(rh.count), int(rd.count), a.batch};
    int digit[4], step[4];
    digits_of(first + threadIdx.x, radix, digit);
    digits_of(blockDim.x, radix, step);
    for (int64_t e = first + threadIdx.x; e < last; e += blockDim.x) {
      const scalar_t* xp =
          x + digit[3] * a.xs.n + digit[2] * a.xs.d + digit[1] * a.xs.h + digit[0] * a.xs.w;
      const scalar_t* gp = gy + digit[3] * a.gs.n + digit[2] * gy_step[0] +
                           digit[1] * gy_step[1] + digit[0] * gy_step[2];
      acc xv[kS], gv[kD];
#pragma unroll
      for (int i = 0; i < kS; ++i) xv[i] = to_acc(xp[i * a.xs.c]);
      if constexpr (kV == 1) {
#pragma unroll
        for (int d = 0; d < kD; ++d) gv[d] = d < D ? to_acc(gp[d * a.gs.c]) : acc(0);
      } else {
#pragma unroll
        for (int j = 0; j < kD / kV; ++j) {
          Vec<scalar_t, kV> v{};
          if (j * kV < D) v = *reinterpret_cast<const Vec<scalar_t, kV>*>(gp + j * kV);
#pragma unroll
          for (int t = 0; t < kV; ++t) gv[j * kV + t] = to_acc(v.v[t]);
        }
      }
#pragma unroll
      for (int i = 0; i < kS; ++i) {
#pragma unroll
        for (int d = 0; d < kD; ++d) sum[i][d] += xv[i] * gv[d];
      }
      advance_digits(radix, step, digit);
    }
  }

  // Fixed tree: within each warp by a reduce-scatter, then the warps' sums in order.
  constexpr int kN = kS * kD, kHalvings = halvings(kN), kPerLane = kN >> kHalvings;
  __shared__ acc warp_sums[kThreads / 32][kN];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  acc* v = &sum[0][0];
  reduce_scatter<kN, 16>(v, lane);
  if (lane % (32 >> kHalvings) == 0) {
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      warp_sums[warp][(lane >> (5 - kHalvings)) * kPerLane + j] = v[j];
    }
  }
  __syncthreads();
  const int64_t numel_per_split = int64_t(a.groups) * a.in_per_group * a.out_per_group * kvol;
  for (int e = threadIdx.x; e < kS * D; e += blockDim.x) {
    const int i = e / D, d = e % D;
    acc total = 0;
    for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w][i * kD + d];
    const int ci = ci0 + i;
    if (a.splits == 1) {
      static_cast<scalar_t*>(a.grad_weight)[ci * a.ws.n + d * a.ws.c + kd * a.ws.d +
                                            kh * a.ws.h + kw * a.ws.w] = from_acc<scalar_t>(total);
    } else {
      a.partials[split * numel_per_split + (int64_t(ci) * a.out_per_group + d) * kvol + tap] =
          float(total);
    }
  }
}

}  // namespace

bool narrow_grad_weight_supports(const ConvTranspose3dParams& p, ScalarKind dtype) {
  return dtype != ScalarKind::Float64 && p.in_per_group <= kMaxS && p.out_per_group <= kMaxD &&
         p.batch <= INT32_MAX && p.in_channels <= INT32_MAX;
}

// Splits from the shape alone: about kTargetBlocks blocks, no split without a
// position, at most kMaxPartials partial sums.
int64_t narrow_grad_weight_splits(const ConvTranspose3dParams& p) {
  const int64_t kvol = p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel;
  const int64_t units = p.groups * kvol;
  const int64_t numel = p.in_channels * p.out_per_group * kvol;
  const int64_t positions = input_positions(p.batch, p.axis);
  if (units == 0 || numel == 0) return 1;
  return bounded_splits((kTargetBlocks + units - 1) / units, positions, numel);
}

cudaError_t launch_narrow_grad_weight(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                      const void* input, const void* grad_output,
                                      void* grad_weight, float* workspace) {
  if (p.in_per_group > kMaxS || p.out_per_group > kMaxD) return cudaErrorInvalidConfiguration;
  NarrowGradWeightArgs a{};
  a.x = input;
  a.grad_output = grad_output;
  a.grad_weight = grad_weight;
  a.partials = workspace;
  a.xs = p.input;
  a.gs = p.output;
  a.ws = p.weight;
  a.batch = int(p.batch);
  a.groups = int(p.groups);
  a.in_per_group = int(p.in_per_group);
  a.out_per_group = int(p.out_per_group);
  int64_t kvol = 1;
  for (int i = 0; i < 3; ++i) {
    a.axis[i] = p.axis[i];
    a.kernel[i] = int(p.axis[i].kernel);
    kvol *= p.axis[i].kernel;
  }
  const int64_t splits = narrow_grad_weight_splits(p);
  a.splits = int(splits);
  const int64_t numel = p.in_channels * p.out_per_group * kvol;
  if (numel == 0) return cudaSuccess;
  const int64_t blocks = p.groups * kvol * splits;
  if (blocks > INT32_MAX) return cudaErrorInvalidConfiguration;
  cudaError_t combined = cudaSuccess;
  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    if constexpr (!std::is_same_v<scalar_t, double>) {
      const auto with_s = [&](auto s_tag) {
        constexpr int kS = decltype(s_tag)::value;
        const auto with_d = [&](auto d_tag) {
          constexpr int kD = decltype(d_tag)::value;
          constexpr int kV = std::min(kD, 16 / int(sizeof(scalar_t)));
          const bool vectors =
              p.out_per_group % kV == 0 &&
              vectors_aligned(p.output, reinterpret_cast<uintptr_t>(grad_output), kV,
                              sizeof(scalar_t));
          return vectors ? narrow_grad_weight_kernel<scalar_t, kS, kD, kV>
                         : narrow_grad_weight_kernel<scalar_t, kS, kD, 1>;
        };
        return p.out_per_group <= 4   ? with_d(std::integral_constant<int, 4>{})
               : p.out_per_group <= 8 ? with_d(std::integral_constant<int, 8>{})
                                      : with_d(std::integral_constant<int, kMaxD>{});
      };
      const auto kernel = p.in_per_group == 1   ? with_s(std::integral_constant<int, 1>{})
                          : p.in_per_group == 2 ? with_s(std::integral_constant<int, 2>{})
                          : p.in_per_group == 3 ? with_s(std::integral_constant<int, 3>{})
                                                : with_s(std::integral_constant<int, kMaxS>{});
      kernel<<<unsigned(blocks), kThreads, 0, cfg.stream>>>(a);
      if (splits > 1) {
        combined = launch_combine_partials<scalar_t>(
            workspace, splits, numel, p.out_per_group, p.axis[0].kernel, p.axis[1].kernel,
            p.axis[2].kernel, p.weight, static_cast<scalar_t*>(grad_weight), cfg.stream);
      }
    }
  });
  const cudaError_t launched = cudaGetLastError();
  return launched != cudaSuccess ? launched : combined;
}

}  // namespace tconv3d::cuda
