// What both grad-weight GEMMs do around their kernel: the plan's checks, the
// dtype and index-width dispatch, and the fixed-order combine of the split
// partials.
#pragma once

#include <climits>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "deterministic_reduce.cuh"
#include "dispatch.cuh"
#include "grad_weight_gemm.h"

namespace tconv3d::cuda::gw_gemm {

// How a kernel lays out one split's partial sums in the workspace: the dense
// logical order of gw ([ci][co][tap]), combined by combine_partials_kernel,
// or tap-major ([tap][ci][co]), where a block's tile is runs of contiguous co
// and its stores coalesce, combined by combine_tap_major_kernel.
enum class PartialOrder { CiCoTap, TapCiCo };

// gw[ci, co, kd, kh, kw] = Σ_s partial[s][tap][ci][co] in split order, one
// thread per element of gw in its logical order [ci][co][kd][kh][kw] — a
// contiguous gw's memory order, so the stores coalesce.  The loads stride by
// Cin·Cout/G floats, but the 8 co of each 32-byte sector are read by nearby
// threads of the same block, which L1 serves.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    combine_tap_major_kernel(const float* __restrict__ partial, int64_t splits, int64_t numel,
                             int64_t in_channels, int64_t out_per_group, int64_t kh, int64_t kw,
                             int64_t taps, Strides5 dst, scalar_t* __restrict__ result) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < numel;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t tap = e % taps, co = (e / taps) % out_per_group, ci = e / (taps * out_per_group);
    const float* src = partial + (tap * in_channels + ci) * out_per_group + co;
    float acc = 0.f;
    for (int64_t s = 0; s < splits; ++s) acc += src[s * numel];
    const int64_t w = tap % kw, h = (tap / kw) % kh, d = tap / (kw * kh);
    result[ci * dst.n + co * dst.c + d * dst.d + h * dst.h + w * dst.w] = from_acc<scalar_t>(acc);
  }
}

// launch(scalar_t{}, index_t{}) launches the GEMM kernel and returns its error.
// always_partials: the kernel writes partials even with one split (they are
// then combined as any others).
template <PartialOrder order = PartialOrder::CiCoTap, bool always_partials = false,
          typename Launch>
cudaError_t run_split_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg, const Plan& pl,
                           float* workspace, void* grad_weight, Launch&& launch) {
  if (pl.numel == 0) return cudaSuccess;
  if (pl.blocks > int64_t(INT_MAX)) return cudaErrorInvalidConfiguration;
  const bool combine = always_partials || pl.splits > 1;
  if (combine && workspace == nullptr) return cudaErrorInvalidValue;
  // Rows of one tap must fit index_t: guaranteed for int32 when x has < 2^31
  // elements (rows ≤ N·D·H·W ≤ numel(x)); refuse otherwise.
  const int64_t max_rows = p.batch * p.axis[0].in * p.axis[1].in * p.axis[2].in;
  if (!cfg.wide_index && max_rows + kBK > int64_t(INT_MAX)) return cudaErrorInvalidConfiguration;
  cudaError_t err = cudaErrorInvalidValue;  // float64 is not handled here
  auto run = [&](auto scalar) {
    using scalar_t = decltype(scalar);
    dispatch_index(cfg.wide_index, [&](auto index) { err = launch(scalar, index); });
    if (err == cudaSuccess && combine) {
      if (order == PartialOrder::TapCiCo) {  // [kD][kH][kW][Cin][Cout/G]
        combine_tap_major_kernel<scalar_t><<<grid_for(pl.numel), kThreads, 0, cfg.stream>>>(
            workspace, pl.splits, pl.numel, p.in_channels, p.out_per_group, p.axis[1].kernel,
            p.axis[2].kernel, pl.taps, p.weight, static_cast<scalar_t*>(grad_weight));
      } else {  // gw's own logical order: the dense walk of combine_partials_kernel
        combine_partials_kernel<scalar_t><<<grid_for(pl.numel), kThreads, 0, cfg.stream>>>(
            workspace, pl.splits, pl.numel, p.out_per_group, p.axis[0].kernel, p.axis[1].kernel,
            p.axis[2].kernel, p.weight, static_cast<scalar_t*>(grad_weight));
      }
      err = cudaGetLastError();
    }
  };
  switch (cfg.dtype) {
    case ScalarKind::Float16:
      run(__half{});
      break;
    case ScalarKind::BFloat16:
      run(__nv_bfloat16{});
      break;
    case ScalarKind::Float32:
      run(float{});
      break;
    default:
      break;
  }
  return err;
}

}  // namespace tconv3d::cuda::gw_gemm
