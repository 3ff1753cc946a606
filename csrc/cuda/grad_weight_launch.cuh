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
#include "vector_access.cuh"

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

// acc += the kVec floats at `at` (one 16-byte load where kVec is 4).
template <int kVec>
__device__ __forceinline__ void add_plane(const float* __restrict__ at, float (&acc)[kVec]) {
  if constexpr (kVec == 4) {
    const float4 v = *reinterpret_cast<const float4*>(at);
    acc[0] += v.x;
    acc[1] += v.y;
    acc[2] += v.z;
    acc[3] += v.w;
  } else {
    acc[0] += *at;
  }
}

// acc += src[s · numel] for s = first, first + step, … < end, in that order;
// four loads in flight before their adds.
template <int kVec>
__device__ __forceinline__ void add_planes(const float* __restrict__ src, int numel, int first,
                                           int step, int end, float (&acc)[kVec]) {
  int s = first;
  for (; s + 3 * step < end; s += 4 * step) {
    float a[kVec] = {}, b[kVec] = {}, c[kVec] = {}, d[kVec] = {};
    add_plane<kVec>(src + s * numel, a);
    add_plane<kVec>(src + (s + step) * numel, b);
    add_plane<kVec>(src + (s + 2 * step) * numel, c);
    add_plane<kVec>(src + (s + 3 * step) * numel, d);
#pragma unroll
    for (int j = 0; j < kVec; ++j) acc[j] = acc[j] + a[j] + b[j] + c[j] + d[j];
  }
  for (; s < end; s += step) add_plane<kVec>(src + s * numel, acc);
}

// gw[ci, co, kd, kh, kw] = Σ_s partial[s][tap][ci][co], a transpose per ci,
// [tap][co] → [co][tap], through shared memory: a block sums one tile of
// taps × co (co fastest, so the loads coalesce) and writes it taps fastest,
// a contiguous gw's order, having decoded its taps once.  Each element's
// planes are added by 2^log_lanes consecutive threads (combine_log_lanes),
// lane l every lanes-th plane from l in order, then the lanes' sums in a
// fixed tree (xor shuffles within a warp, whose commutative adds leave every
// lane of the tree the same sum; past a warp, the warps' sums in order):
// an order set by the shape alone, so bitwise reproducible.  The threads of
// a tile walk only its live (tap, co) vectors: kVec = 4 loads 16 bytes
// (4 co) where Cout/G is a multiple of 4.  A gw whose co are contiguous
// (channels-last) needs no transpose: the vectors are stored as summed.
template <typename scalar_t, int kVec, bool kCut>
__global__ void __launch_bounds__(kThreads)
    combine_tap_major_kernel(const float* __restrict__ partial, ElementPlanes planes, int numel,
                             int in_channels, int out_per_group, int partial_row, int kh, int kw,
                             int taps, TapTile tile, int log_lanes, Strides5 dst,
                             scalar_t* __restrict__ result) {
  __shared__ float staged[2 << kLogTapTileElements];  // rows padded by one word: at most 2x
  __shared__ float warp_sums[kThreads / 32][kVec];
  __shared__ int64_t tap_offset[32];
  const int tap_count = 1 << tile.log_taps, channel_count = 1 << tile.log_channels;
  const int lanes = 1 << log_lanes, warp_lanes = lanes < 32 ? lanes : 32;
  const int lane = int(threadIdx.x) & (lanes - 1), warp = int(threadIdx.x) / 32;
  const int tap_tiles = int(tile.tap_tiles), channel_tiles = int(tile.channel_tiles);
  const int tiles = in_channels * channel_tiles * tap_tiles, tap_step = in_channels * partial_row;
  // The writes: kThreads is a multiple of tap_count, so a thread keeps its tap.
  const int write_tap = int(threadIdx.x) & (tap_count - 1), write_co = int(threadIdx.x) >> tile.log_taps;
  const int co_step = kThreads >> tile.log_taps;
  // gw's co contiguous (a channels-last weight's gw, [ci][tap][co]): each
  // vector's sums are a run of gw already, stored where they are summed
  // (kVec of them at once); staged and written taps fastest, they were
  // 2-byte stores Cout/G apart (VAE 128 -> 128 bf16: 42.5 -> 58.7 us).
  const bool co_rows = dst.c == 1;
  for (int b = blockIdx.x; b < tiles; b += gridDim.x) {
    const int tap0 = b % tap_tiles * tap_count, rest = b / tap_tiles;
    const int co0 = rest % channel_tiles << tile.log_channels, ci = rest / channel_tiles;
    // The tile's live taps and channels; kVec divides Cout/G and so live_co.
    const int live_taps = min(taps - tap0, tap_count), live_co = min(out_per_group - co0, channel_count);
    const int co_vectors = live_co / kVec, vectors = live_taps * co_vectors;
    if (int(threadIdx.x) < live_taps) {
      const int tap = tap0 + int(threadIdx.x);
      const int w = tap % kw, h = tap / kw % kh, d = tap / (kw * kh);
      tap_offset[threadIdx.x] = d * dst.d + h * dst.h + w * dst.w;
    }
    __syncthreads();
    const int row = kCut ? planes.tile_row(ci) : 0;
    // Group blocks: ci's own group's block of its row of partial_row sums.
    const int co_shift = (ci % partial_row) / out_per_group * out_per_group;
    const float* from = partial + (tap0 * in_channels + ci) * partial_row + co_shift + co0;
    // Block-uniform trip count: every thread reaches the shuffles and barriers.
    for (int base = 0; base < vectors << log_lanes; base += kThreads) {
      const int v = (base + int(threadIdx.x)) >> log_lanes;
      const int tt = v / co_vectors, cc = (v - tt * co_vectors) * kVec;
      float acc[kVec] = {};
      if (v < vectors) {
        // Whole splits: every element has planes.splits.  Cut: one tile a
        // vector, as kVec divides bn.
        const int splits = int(kCut ? planes.of(row, tap0 + tt, co_shift + co0 + cc) : planes.splits);
        add_planes<kVec>(from + tt * tap_step + cc, numel, lane, lanes, splits, acc);
      }
      for (int offset = 1; offset < warp_lanes; offset *= 2) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) acc[j] += __shfl_xor_sync(0xffffffffu, acc[j], offset);
      }
      if (lanes > 32) {
        if (threadIdx.x % 32 == 0) {
#pragma unroll
          for (int j = 0; j < kVec; ++j) warp_sums[warp][j] = acc[j];
        }
        __syncthreads();
        if (lane == 0) {
#pragma unroll
          for (int j = 0; j < kVec; ++j) {
            acc[j] = warp_sums[warp][j];
            for (int w = 1; w < lanes / 32; ++w) acc[j] += warp_sums[warp + w][j];
          }
        }
        __syncthreads();
      }
      if (v < vectors && lane == 0) {
        if (co_rows) {
          Vec<scalar_t, kVec> out;
#pragma unroll
          for (int j = 0; j < kVec; ++j) out.v[j] = from_acc<scalar_t>(acc[j]);
          *reinterpret_cast<Vec<scalar_t, kVec>*>(result + ci * dst.n + tap_offset[tt] + co0 + cc) = out;
        } else {
#pragma unroll
          for (int j = 0; j < kVec; ++j) staged[(cc + j) * (tap_count + 1) + tt] = acc[j];
        }
      }
    }
    __syncthreads();
    if (!co_rows && write_tap < live_taps) {
      scalar_t* to = result + ci * dst.n + (co0 + write_co) * dst.c + tap_offset[write_tap];
      const float* at = staged + write_co * (tap_count + 1) + write_tap;
      for (int cc = write_co; cc < live_co; cc += co_step) {
        *to = from_acc<scalar_t>(*at);
        to += co_step * dst.c;
        at += co_step * (tap_count + 1);
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
        // gw's output channels a group: p's, or under group blocks a quarter.
        const int64_t gw_columns = pl.block != 0 ? pl.block : p.out_per_group;
        const TapTile tile = tap_tile(pl.taps, gw_columns, p.in_channels);
        const int64_t tiles = p.in_channels * tile.channel_tiles * tile.tap_tiles;
        const unsigned blocks = unsigned(tiles < 8192 ? tiles : 8192);
        // 16-byte loads: rows of Cout/G floats from a 16-byte aligned workspace.
        const bool quads = gw_columns % 4 == 0, cut = pl.tile_pieces != nullptr;
        const auto kernel = quads ? (cut ? combine_tap_major_kernel<scalar_t, 4, true>
                                         : combine_tap_major_kernel<scalar_t, 4, false>)
                                  : (cut ? combine_tap_major_kernel<scalar_t, 1, true>
                                         : combine_tap_major_kernel<scalar_t, 1, false>);
        int log_bn = 0;
        while ((2 << log_bn) <= pl.bn) ++log_bn;
        const ElementPlanes planes{pl.splits, pl.tile_pieces, int(p.in_per_group), int(p.out_per_group),
                                   pl.bm, log_bn, int(pl.tiles_m), int(pl.tiles_n)};
        // 32-bit indices: at most kMaxPartials sums (every caller's bound).
        if (pl.splits * pl.numel > int64_t(INT_MAX)) {  // tiles ≤ numel
          err = cudaErrorInvalidConfiguration;
          return;
        }
        kernel<<<blocks, kThreads, 0, cfg.stream>>>(
            workspace, planes, int(pl.numel), int(p.in_channels), int(gw_columns),
            int(p.out_per_group), int(p.axis[1].kernel), int(p.axis[2].kernel), int(pl.taps), tile,
            combine_log_lanes(pl.splits, p.in_channels * gw_columns * pl.taps / (quads ? 4 : 1)),
            p.weight, static_cast<scalar_t*>(grad_weight));
      } else {  // gw's own logical order: the dense walk of combine_partials_kernel
        err = launch_combine_partials<scalar_t>(
            workspace, pl.splits, pl.numel, p.out_per_group, p.axis[0].kernel, p.axis[1].kernel,
            p.axis[2].kernel, p.weight, static_cast<scalar_t*>(grad_weight), cfg.stream);
        if (err != cudaSuccess) return;
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
