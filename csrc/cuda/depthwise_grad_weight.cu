// Grad-weight of depthwise layers (one input and one output channel per group):
//
//     gw[c, 0, k] = Σ_n Σ_{i valid for k} x[n, c, i] · gy[n, c, i·s − p + k·d],
//
// a reduction per (channel, tap) over the positions grad_weight_positions
// (index_math.h) gives.  The generic reduction kernel gives each weight element
// a block of its own, so every block re-reads x and grad_output across the
// memory's slow axis; here a thread owns one (channels, tap, split) of
// channels-last operands (the op layer copies others once), neighbouring
// threads reading neighbouring channels, 16 bytes of them a load where
// aligned.  Splits are fixed by the shape and combined in split order:
// bitwise reproducible.
#include <cstdint>
#include <type_traits>

#include "../direct_gather.h"
#include "channel_vectors.h"
#include "deterministic_reduce.cuh"
#include "dispatch.cuh"
#include "launch.h"
#include "mixed_radix.h"
#include "vector_access.cuh"

namespace tconv3d::cuda {
namespace {

struct DepthwiseGradWeightArgs {
  const void* x;
  const void* grad_output;
  void* grad_weight;
  float* partials;  // splits × numel, [split][c][tap]; unused when splits == 1
  Strides5 xs, gs, ws;
  Axis axis[3];
  int channels, batch, splits;
  int vectors;  // channel vectors of kVec: units run (vector, tap, split)
  int kernel[3];
};

// A thread per unit (kVec channels, tap, split), units channels fastest.
// Split s of S owns elements [E·s/S, E·(s+1)/S) of the tap's E valid
// (row, w) positions, rows being (n, d, h); the thread sums a row's products
// before they join the total (error grows with rows + row length, not their
// product).
template <typename scalar_t, int kVec>
__global__ void __launch_bounds__(kThreads)
    depthwise_grad_weight_kernel(const DepthwiseGradWeightArgs a, int64_t units) {
  using acc = acc_t<scalar_t>;
  const int64_t unit = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (unit >= units) return;
  const int c = int(unit % a.vectors) * kVec;
  const int64_t tap_split = unit / a.vectors;
  const int kvol = a.kernel[0] * a.kernel[1] * a.kernel[2];
  const int tap = int(tap_split % kvol), split = int(tap_split / kvol);
  const int kw = tap % a.kernel[2], kh = tap / a.kernel[2] % a.kernel[1];
  const int kd = tap / (a.kernel[2] * a.kernel[1]);
  const Run rd = grad_weight_positions(a.axis[0], kd), rh = grad_weight_positions(a.axis[1], kh),
            rw = grad_weight_positions(a.axis[2], kw);

  acc total[kVec] = {};
  const int64_t elements = int64_t(a.batch) * rd.count * rh.count * rw.count;
  const int64_t first = elements * split / a.splits, last = elements * (split + 1) / a.splits;
  if (last > first) {
    const auto* x = static_cast<const scalar_t*>(a.x) + c * a.xs.c + rd.a * a.xs.d +
                    rh.a * a.xs.h + rw.a * a.xs.w;
    const auto* gy = static_cast<const scalar_t*>(a.grad_output) + c * a.gs.c + rd.b * a.gs.d +
                     rh.b * a.gs.h + rw.b * a.gs.w;
    const int64_t gy_step[3] = {rd.db * a.gs.d, rh.db * a.gs.h, rw.db * a.gs.w};
    // Digits (w, h, d, n) of the first element, then stepped one at a time.
    const int radix[4] = {int(rw.count), int(rh.count), int(rd.count), a.batch};
    constexpr int kOne[4] = {1, 0, 0, 0};
    int digit[4];
    digits_of(first, radix, digit);
    acc row[kVec] = {};
    for (int64_t e = first; e < last; ++e) {
      const int64_t xo = digit[3] * a.xs.n + digit[2] * a.xs.d + digit[1] * a.xs.h + digit[0] * a.xs.w;
      const int64_t go = digit[3] * a.gs.n + digit[2] * gy_step[0] + digit[1] * gy_step[1] +
                         digit[0] * gy_step[2];
      const Vec<scalar_t, kVec> xv = load_vec<scalar_t, kVec>(x + xo);
      const Vec<scalar_t, kVec> gv = load_vec<scalar_t, kVec>(gy + go);
#pragma unroll
      for (int j = 0; j < kVec; ++j) row[j] += to_acc(xv.v[j]) * to_acc(gv.v[j]);
      advance_digits(radix, kOne, digit);
      if (digit[0] == 0) {  // a row ended
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          total[j] += row[j];
          row[j] = 0;
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kVec; ++j) total[j] += row[j];
  }
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    if (a.splits == 1) {
      static_cast<scalar_t*>(a.grad_weight)[(c + j) * a.ws.n + kd * a.ws.d + kh * a.ws.h +
                                            kw * a.ws.w] = from_acc<scalar_t>(total[j]);
    } else {
      a.partials[(int64_t(split) * a.channels + c + j) * kvol + tap] = float(total[j]);
    }
  }
}

// Channels a thread reads at once: a 16-byte vector where channels, strides
// and both addresses allow it.
int64_t thread_channels(const ConvTranspose3dParams& p, ScalarKind dtype, const void* x,
                        const void* gy) {
  const int64_t vec = vector_channels(dtype), bytes = element_bytes(dtype);
  return p.in_channels % vec == 0 &&
                 vectors_aligned(p.input, reinterpret_cast<uintptr_t>(x), vec, bytes) &&
                 vectors_aligned(p.output, reinterpret_cast<uintptr_t>(gy), vec, bytes)
             ? vec
             : 1;
}

}  // namespace

bool depthwise_grad_weight_supports(const ConvTranspose3dParams& p, ScalarKind dtype) {
  // fp64 keeps its own accumulator type on the generic kernel's workspace.
  return p.in_per_group == 1 && p.out_per_group == 1 && dtype != ScalarKind::Float64 &&
         p.batch <= INT32_MAX && p.in_channels <= INT32_MAX;
}

// Splits from the shape alone (not from whether the channels make 16-byte
// vectors): 2^20 channel-units of work (2^17 threads of 8-channel vectors),
// no split without a position, at most kMaxPartials partial sums.
int64_t depthwise_grad_weight_splits(const ConvTranspose3dParams& p) {
  const int64_t numel = p.in_channels * p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel;
  if (numel == 0) return 1;  // and no division by it below
  const int64_t target_units = int64_t(1) << 20;
  const int64_t positions = input_positions(p.batch, p.axis);
  return bounded_splits(target_units / numel, positions, numel);
}

cudaError_t launch_depthwise_grad_weight(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const void* input, const void* grad_output,
                                         void* grad_weight, float* workspace) {
  DepthwiseGradWeightArgs a{};
  a.x = input;
  a.grad_output = grad_output;
  a.grad_weight = grad_weight;
  a.partials = workspace;
  a.xs = p.input;
  a.gs = p.output;
  a.ws = p.weight;
  a.channels = int(p.in_channels);
  a.batch = int(p.batch);
  const int64_t splits = depthwise_grad_weight_splits(p);
  a.splits = int(splits);
  int64_t kvol = 1;
  for (int i = 0; i < 3; ++i) {
    a.axis[i] = p.axis[i];
    a.kernel[i] = int(p.axis[i].kernel);
    kvol *= p.axis[i].kernel;
  }
  const int64_t numel = p.in_channels * kvol;
  if (numel == 0) return cudaSuccess;
  const int64_t vec = thread_channels(p, cfg.dtype, input, grad_output);
  a.vectors = int(p.in_channels / vec);
  const int64_t units = a.vectors * kvol * splits;
  const int64_t blocks = (units + kThreads - 1) / kThreads;
  if (blocks > INT32_MAX) return cudaErrorInvalidConfiguration;
  cudaError_t combined = cudaSuccess;
  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    if constexpr (!std::is_same_v<scalar_t, double>) {
      constexpr int kVec = int(16 / sizeof(scalar_t));
      if (vec == kVec) {
        depthwise_grad_weight_kernel<scalar_t, kVec>
            <<<unsigned(blocks), kThreads, 0, cfg.stream>>>(a, units);
      } else {
        depthwise_grad_weight_kernel<scalar_t, 1>
            <<<unsigned(blocks), kThreads, 0, cfg.stream>>>(a, units);
      }
      if (splits > 1) {
        combined = launch_combine_partials<scalar_t>(
            workspace, splits, numel, 1, p.axis[0].kernel, p.axis[1].kernel, p.axis[2].kernel,
            p.weight, static_cast<scalar_t*>(grad_weight), cfg.stream);
      }
    }
  });
  const cudaError_t launched = cudaGetLastError();
  return launched != cudaSuccess ? launched : combined;
}

}  // namespace tconv3d::cuda
