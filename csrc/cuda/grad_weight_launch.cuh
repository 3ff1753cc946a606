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
// logical order of gw ([ci][co][tap]), or tap-major ([tap][ci][co]), where a
// block's tile is runs of contiguous co and its stores coalesce.  Either is
// combined by combine_partials_kernel, which sees it as a permutation of gw.
enum class PartialOrder { CiCoTap, TapCiCo };

// launch(scalar_t{}, index_t{}) launches the GEMM kernel and returns its error.
template <PartialOrder order = PartialOrder::CiCoTap, typename Launch>
cudaError_t run_split_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg, const Plan& pl,
                           float* workspace, void* grad_weight, Launch&& launch) {
  if (pl.numel == 0) return cudaSuccess;
  if (pl.blocks > int64_t(INT_MAX)) return cudaErrorInvalidConfiguration;
  if (pl.splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  // Rows of one tap must fit index_t: guaranteed for int32 when x has < 2^31
  // elements (rows ≤ N·D·H·W ≤ numel(x)); refuse otherwise.
  const int64_t max_rows = p.batch * p.axis[0].in * p.axis[1].in * p.axis[2].in;
  if (!cfg.wide_index && max_rows + kBK > int64_t(INT_MAX)) return cudaErrorInvalidConfiguration;
  cudaError_t err = cudaErrorInvalidValue;  // float64 is not handled here
  auto run = [&](auto scalar) {
    using scalar_t = decltype(scalar);
    dispatch_index(cfg.wide_index, [&](auto index) { err = launch(scalar, index); });
    if (err == cudaSuccess && pl.splits > 1) {
      // The combine walks the partials' dense order as 5-D (outermost first)
      // and writes each sum at the strides of the same dimensions of gw.
      const Strides5 w = p.weight;
      const bool tap_major = order == PartialOrder::TapCiCo;  // [kD][kH][kW][Cin][Cout/G]
      const int64_t sizes[4] = {tap_major ? p.axis[1].kernel : p.out_per_group,
                                tap_major ? p.axis[2].kernel : p.axis[0].kernel,
                                tap_major ? p.in_channels : p.axis[1].kernel,
                                tap_major ? p.out_per_group : p.axis[2].kernel};
      const Strides5 dst = tap_major ? Strides5{w.d, w.h, w.w, w.n, w.c} : w;
      combine_partials_kernel<scalar_t><<<grid_for(pl.numel), kThreads, 0, cfg.stream>>>(
          workspace, pl.splits, pl.numel, sizes[0], sizes[1], sizes[2], sizes[3], dst,
          static_cast<scalar_t*>(grad_weight));
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
