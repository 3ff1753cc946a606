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
#include "tap_tile.h"

namespace tconv3d::cuda::gw_gemm {

// How a kernel lays out one split's partial sums in the workspace: the dense
// logical order of gw ([ci][co][tap]), combined by combine_partials_kernel,
// or tap-major ([tap][ci][co]), where a block's tile is runs of contiguous co
// and its stores coalesce, combined by combine_tap_major_kernel.
enum class PartialOrder { CiCoTap, TapCiCo };

// The planes of partials holding a gw element's sums: `splits`, every one,
// or, under the Hopper kernel's range cut (grad_weight_sm90_plan.h), the
// pieces its tile was cut into, which the GEMM writes to tile_pieces: tiles
// of bm input channels × 2^log_bn (tap, co) columns of a group, columns
// fastest.  tile_row(ci): the tile index of ci's first column, once per
// row; of(): a shift, an add and a load a vector.  Both for the cut only.
struct ElementPlanes {
  int64_t splits;
  const int32_t* tile_pieces;
  int in_per_group, out_per_group, bm, log_bn, tiles_m, tiles_n;
  __device__ __forceinline__ int tile_row(int64_t ci) const {
    return (int(ci / in_per_group) * tiles_m + int(ci % in_per_group) / bm) * tiles_n;
  }
  __device__ __forceinline__ int64_t of(int row, int tap, int64_t co) const {
    return tile_pieces[row + ((tap * out_per_group + int(co)) >> log_bn)];
  }
};

// gw[ci, co, kd, kh, kw] = Σ_s partial[s][tap][ci][co] in split order.  A
// transpose per ci, [tap][co] → [co][tap], through shared memory: a block
// sums one tile of co × taps (co fastest, so the loads coalesce) and writes
// it taps fastest, a contiguous gw's order, having decoded its taps once:
// 21 us for the 512→256 bottleneck's 3.5 M elements (H200), where one thread
// per gw element, decoding its indices in 64-bit divisions, took 39.  Each
// thread's loads wait one at a time (the split loop between them), so the
// bytes in flight bound it: kVec = 4 loads 16 bytes (4 co) at once where
// Cout/G is a multiple of 4.  Each element's sum is the same either way.
template <typename scalar_t, int kVec, bool kCut>
__global__ void __launch_bounds__(kThreads)
    combine_tap_major_kernel(const float* __restrict__ partial, ElementPlanes planes, int64_t numel,
                             int64_t in_channels, int64_t out_per_group, int kh, int kw, int taps,
                             TapTile tile, Strides5 dst, scalar_t* __restrict__ result) {
  __shared__ float staged[2 << kLogTapTileElements];  // rows padded by one word: at most 2x
  __shared__ int64_t tap_offset[32];
  const int tap_count = 1 << tile.log_taps, co_mask = (1 << tile.log_channels) - 1;
  const int count = tap_count << tile.log_channels;
  const int64_t tiles = in_channels * tile.channel_tiles * tile.tap_tiles;
  for (int64_t b = blockIdx.x; b < tiles; b += gridDim.x) {
    const int tap0 = int(b % tile.tap_tiles) * tap_count;
    const int64_t co0 = (b / tile.tap_tiles % tile.channel_tiles) << tile.log_channels;
    const int64_t ci = b / (tile.tap_tiles * tile.channel_tiles);
    if (int(threadIdx.x) < tap_count) {
      const int tap = tap0 + int(threadIdx.x);
      const int w = tap % kw, h = tap / kw % kh, d = tap / (kw * kh);
      tap_offset[threadIdx.x] = d * dst.d + h * dst.h + w * dst.w;
    }
    const int row = kCut ? planes.tile_row(ci) : 0;
    const float* from = partial + (int64_t(tap0) * in_channels + ci) * out_per_group + co0;
    const int64_t tap_step = in_channels * out_per_group;
    for (int i = threadIdx.x; i < count / kVec; i += kThreads) {
      // kVec divides Cout/G and the tile's co: a vector is wholly in or out.
      const int cc = (i * kVec) & co_mask, tt = (i * kVec) >> tile.log_channels;
      if (tap0 + tt < taps && co0 + cc < out_per_group) {
        const float* src = from + tt * tap_step + cc;
        // Whole splits: the loop bound the kernel had before the cut (its
        // codegen unchanged).  Cut: one tile a vector, as kVec divides bn.
        const int64_t splits = kCut ? planes.of(row, tap0 + tt, co0 + cc) : planes.splits;
        float acc[kVec] = {};
        for (int64_t s = 0; s < splits; ++s) {
          if constexpr (kVec == 4) {
            const float4 v = *reinterpret_cast<const float4*>(src + s * numel);
            acc[0] += v.x;
            acc[1] += v.y;
            acc[2] += v.z;
            acc[3] += v.w;
          } else {
            acc[0] += src[s * numel];
          }
        }
#pragma unroll
        for (int j = 0; j < kVec; ++j) staged[(cc + j) * (tap_count + 1) + tt] = acc[j];
      }
    }
    __syncthreads();
    scalar_t* to = result + ci * dst.n + co0 * dst.c;
    for (int i = threadIdx.x; i < count; i += kThreads) {
      const int tt = i & (tap_count - 1), cc = i >> tile.log_taps;
      if (tap0 + tt < taps && co0 + cc < out_per_group) {
        to[cc * dst.c + tap_offset[tt]] = from_acc<scalar_t>(staged[cc * (tap_count + 1) + tt]);
      }
    }
    __syncthreads();
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
  const int64_t max_rows = input_positions(p.batch, p.axis);
  if (!cfg.wide_index && max_rows + kBK > int64_t(INT_MAX)) return cudaErrorInvalidConfiguration;
  cudaError_t err = cudaErrorInvalidValue;  // float64 is not handled here
  auto run = [&](auto scalar) {
    using scalar_t = decltype(scalar);
    dispatch_index(cfg.wide_index, [&](auto index) { err = launch(scalar, index); });
    if (err == cudaSuccess && combine) {
      if (order == PartialOrder::TapCiCo) {  // [kD][kH][kW][Cin][Cout/G]
        const TapTile tile = tap_tile(pl.taps, p.out_per_group);
        const int64_t tiles = p.in_channels * tile.channel_tiles * tile.tap_tiles;
        const unsigned blocks = unsigned(tiles < 8192 ? tiles : 8192);
        // 16-byte loads: rows of Cout/G floats from a 16-byte aligned workspace.
        const bool quads = p.out_per_group % 4 == 0, cut = pl.tile_pieces != nullptr;
        const auto kernel = quads ? (cut ? combine_tap_major_kernel<scalar_t, 4, true>
                                         : combine_tap_major_kernel<scalar_t, 4, false>)
                                  : (cut ? combine_tap_major_kernel<scalar_t, 1, true>
                                         : combine_tap_major_kernel<scalar_t, 1, false>);
        int log_bn = 0;
        while ((2 << log_bn) <= pl.bn) ++log_bn;
        const ElementPlanes planes{pl.splits, pl.tile_pieces, int(p.in_per_group), int(p.out_per_group),
                                   pl.bm, log_bn, int(pl.tiles_m), int(pl.tiles_n)};
        kernel<<<blocks, kThreads, 0, cfg.stream>>>(
            workspace, planes, pl.numel, p.in_channels, p.out_per_group, int(p.axis[1].kernel),
            int(p.axis[2].kernel), int(pl.taps), tile, p.weight, static_cast<scalar_t*>(grad_weight));
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
