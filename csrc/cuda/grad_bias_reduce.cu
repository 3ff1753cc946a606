// Grad-bias: grad_output summed over batch and space per channel, with the
// same fixed-order split reduction as grad-weight.
//
// Three kernels, by grad_output's layout:
// - dense channels-last, a [rows][C] matrix (rows = N·D·H·W): each block sums
//   a contiguous range of rows with coalesced 16-byte loads, each thread
//   keeping the sums of one fixed group of channels, then adds its threads'
//   sums per channel in thread order;
// - contiguous D·H·W planes (NCDHW): one block per (channel, range of the
//   plane) sums that range of every batch's plane with 16-byte loads;
// - anything else: one block per (channel, split) walks rows of W elements.
// The first two took 220 and 170 us for a 64 MB bf16 grad_output on the
// H200 with the third (a separate sector per load in channels-last, one W
// row per thread in NCDHW); the split partials are then added per channel in
// a fixed order.
#include <cstdint>

#include "../direct_gather.h"
#include "deterministic_reduce.cuh"
#include "launch.h"

namespace tconv3d::cuda {
namespace {

// V elements moved as one aligned load.
template <typename scalar_t, int V>
struct alignas(sizeof(scalar_t) * V) Elements {
  scalar_t v[V];
};

// A channel's sum: the result itself when there is one split, else that
// split's partial (partial[split · C + c], combined per channel afterwards).
template <typename scalar_t>
__device__ __forceinline__ void store_channel_sum(acc_t<scalar_t> sum, int64_t c, int64_t split,
                                                  int64_t splits, int64_t channels,
                                                  scalar_t* grad_b, int64_t grad_b_stride,
                                                  acc_t<scalar_t>* partial) {
  if (splits == 1) {
    grad_b[c * grad_b_stride] = from_acc<scalar_t>(sum);
  } else {
    partial[split * channels + c] = sum;
  }
}

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    grad_bias_reduce_kernel(const ConvTranspose3dParams p, const scalar_t* __restrict__ grad_out,
                            scalar_t* __restrict__ grad_b, int64_t grad_b_stride,
                            acc_t<scalar_t>* __restrict__ partial, int64_t splits) {
  const int64_t co = blockIdx.x, split = blockIdx.y;
  const int64_t rows = p.batch * p.axis[0].out * p.axis[1].out;
  const int64_t begin = rows * split / splits, end = rows * (split + 1) / splits;
  acc_t<scalar_t> acc =
      grad_bias_sum<scalar_t, index_t>(p, grad_out, co, begin + threadIdx.x, end, blockDim.x);
  acc = block_sum(acc);
  if (threadIdx.x == 0) {
    store_channel_sum(acc, co, split, splits, p.out_channels, grad_b, grad_b_stride, partial);
  }
}

// Channels-last rows.  V channels per thread (16 bytes when C allows it);
// C / V ≤ kThreads.  Thread t owns vector column t % (C/V) of the rows
// r ≡ t / (C/V) (mod step) of the block's range.
template <typename scalar_t, int V>
__global__ void __launch_bounds__(kThreads)
    grad_bias_rows_kernel(const scalar_t* __restrict__ grad_out, int64_t rows, int channels,
                          int64_t splits, scalar_t* __restrict__ grad_b, int64_t grad_b_stride,
                          acc_t<scalar_t>* __restrict__ partial) {
  using acc_type = acc_t<scalar_t>;
  using Vec = Elements<scalar_t, V>;
  __shared__ acc_type sums[kThreads * V];
  const int cols = channels / V, step = kThreads / cols;
  const int t = threadIdx.x, col = t % cols, r0 = t / cols;
  const int64_t begin = rows * blockIdx.x / splits, end = rows * (blockIdx.x + 1) / splits;
  acc_type acc[V];
#pragma unroll
  for (int v = 0; v < V; ++v) acc[v] = 0;
  if (r0 < step) {
    const Vec* src = reinterpret_cast<const Vec*>(grad_out) + col;
#pragma unroll 4
    for (int64_t r = begin + r0; r < end; r += step) {
      const Vec x = src[r * cols];
#pragma unroll
      for (int v = 0; v < V; ++v) acc[v] += to_acc(x.v[v]);
    }
#pragma unroll
    for (int v = 0; v < V; ++v) sums[r0 * channels + col * V + v] = acc[v];
  }
  __syncthreads();
  for (int c = t; c < channels; c += kThreads) {
    acc_type s = 0;
    for (int r = 0; r < step; ++r) s += sums[r * channels + c];
    if (splits == 1) {
      grad_b[c * grad_b_stride] = from_acc<scalar_t>(s);
    } else {
      partial[blockIdx.x * channels + c] = s;  // store_channel_sum's layout, 32-bit index
    }
  }
}

// Contiguous planes: block (c, split) sums elements [split·chunk, …+chunk) of
// the D·H·W plane of channel c in every batch, V elements per load.
template <typename scalar_t, int V>
__global__ void __launch_bounds__(kThreads)
    grad_bias_planes_kernel(const scalar_t* __restrict__ grad_out, int64_t batch,
                            int64_t batch_stride, int64_t channel_stride, int64_t plane,
                            int64_t chunk, int64_t splits, scalar_t* __restrict__ grad_b,
                            int64_t grad_b_stride, acc_t<scalar_t>* __restrict__ partial) {
  using acc_type = acc_t<scalar_t>;
  using Vec = Elements<scalar_t, V>;
  const int64_t c = blockIdx.x, split = blockIdx.y;
  const int64_t begin = split * chunk, end = begin + chunk < plane ? begin + chunk : plane;
  acc_type acc = 0;
  for (int64_t n = 0; n < batch; ++n) {
    const Vec* src = reinterpret_cast<const Vec*>(grad_out + n * batch_stride + c * channel_stride);
#pragma unroll 4
    for (int64_t i = begin / V + threadIdx.x; i < end / V; i += kThreads) {
      const Vec x = src[i];
#pragma unroll
      for (int v = 0; v < V; ++v) acc += to_acc(x.v[v]);
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) {
    store_channel_sum(acc, c, split, splits, gridDim.x, grad_b, grad_b_stride, partial);
  }
}

// grad_b[c] = fixed-order sum of partial[s · C + c] over s: one block per
// channel, each thread a strided share of the splits, then the block's tree.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    combine_channel_partials_kernel(const acc_t<scalar_t>* __restrict__ partial, int64_t splits,
                                    int channels, scalar_t* __restrict__ grad_b,
                                    int64_t grad_b_stride) {
  const int c = blockIdx.x;
  acc_t<scalar_t> acc = 0;
  for (int64_t s = threadIdx.x; s < splits; s += kThreads) acc += partial[s * channels + c];
  acc = block_sum(acc);
  if (threadIdx.x == 0) grad_b[c * grad_b_stride] = from_acc<scalar_t>(acc);
}

int64_t bias_rows(const ConvTranspose3dParams& p) {
  return p.batch * p.axis[0].out * p.axis[1].out * p.axis[2].out;
}

enum class BiasKernel { Rows, Planes, Strided };

struct BiasPlan {
  BiasKernel kernel;
  int vec;               // elements per load (Rows, Planes)
  int64_t splits;
  int64_t chunk;         // Planes: elements of a plane per split
};

// Shape, strides and address only, so the op layer sizes the workspace with
// the same answer the launch uses.
BiasPlan bias_plan(const ConvTranspose3dParams& p, ScalarKind dtype, const void* grad_output) {
  const Strides5 s = p.output;
  const int64_t C = p.out_channels, W = p.axis[2].out, H = p.axis[1].out, D = p.axis[0].out;
  const int64_t vec = dtype == ScalarKind::Float64 ? 2 : dtype == ScalarKind::Float32 ? 4 : 8;
  const bool aligned = reinterpret_cast<uintptr_t>(grad_output) % 16 == 0;
  const int64_t rows = bias_rows(p), plane = D * H * W;
  const bool rows_dense = s.c == 1 && (W == 1 || s.w == C) && (H == 1 || s.h == W * C) &&
                          (D == 1 || s.d == H * W * C) && (p.batch == 1 || s.n == D * H * W * C);
  if (rows_dense && C > 0 && C <= kThreads * vec) {
    // ~two blocks an SM on large GPUs, at least 512 rows each.
    int64_t splits = (rows + 511) / 512;
    splits = splits < 1 ? 1 : splits > 256 ? 256 : splits;
    if (C % vec == 0 && C / vec <= kThreads && aligned) return {BiasKernel::Rows, int(vec), splits, 0};
    if (C <= kThreads) return {BiasKernel::Rows, 1, splits, 0};
  }
  const bool planes = (W == 1 || s.w == 1) && (H == 1 || s.h == W) && (D == 1 || s.d == H * W);
  if (planes && C > 0 && plane > 0) {
    const bool vectors = aligned && plane % vec == 0 && (C == 1 || s.c % vec == 0) &&
                         (p.batch == 1 || s.n % vec == 0);
    const int v = vectors ? int(vec) : 1;
    // Chunks of at least 8192 elements, up to ~2048 blocks in all.
    int64_t splits = (plane + 8191) / 8192;
    const int64_t for_occupancy = (2048 + C - 1) / C;
    splits = splits > for_occupancy ? for_occupancy : splits;
    splits = splits < 1 ? 1 : splits > 65535 ? 65535 : splits;
    int64_t chunk = (plane + splits - 1) / splits;
    chunk = (chunk + v - 1) / v * v;
    splits = (plane + chunk - 1) / chunk;
    return {BiasKernel::Planes, v, splits, chunk};
  }
  return {BiasKernel::Strided, 1, choose_splits(C, rows), 0};
}

}  // namespace

int64_t grad_bias_splits(const ConvTranspose3dParams& p, ScalarKind dtype,
                         const void* grad_output) {
  return bias_plan(p, dtype, grad_output).splits;
}

cudaError_t launch_grad_bias_reduce(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                    const void* grad_output, void* grad_bias,
                                    int64_t grad_bias_stride, void* workspace) {
  const BiasPlan bp = bias_plan(p, cfg.dtype, grad_output);
  const int64_t splits = bp.splits;
  if (p.out_channels == 0) return cudaSuccess;
  if (splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    auto* partial = static_cast<acc_t<scalar_t>*>(workspace);
    auto* gb = static_cast<scalar_t*>(grad_bias);
    const auto* gy = static_cast<const scalar_t*>(grad_output);
    constexpr int kVec = int(16 / sizeof(scalar_t));
    const int C = int(p.out_channels);
    if (bp.kernel == BiasKernel::Rows) {
      const auto grid = static_cast<unsigned int>(splits);
      if (bp.vec == kVec) {
        grad_bias_rows_kernel<scalar_t, kVec><<<grid, kThreads, 0, cfg.stream>>>(
            gy, bias_rows(p), C, splits, gb, grad_bias_stride, partial);
      } else {
        grad_bias_rows_kernel<scalar_t, 1><<<grid, kThreads, 0, cfg.stream>>>(
            gy, bias_rows(p), C, splits, gb, grad_bias_stride, partial);
      }
    } else if (bp.kernel == BiasKernel::Planes) {
      const dim3 grid(static_cast<unsigned int>(C), static_cast<unsigned int>(splits));
      const int64_t plane = p.axis[0].out * p.axis[1].out * p.axis[2].out;
      if (bp.vec == kVec) {
        grad_bias_planes_kernel<scalar_t, kVec><<<grid, kThreads, 0, cfg.stream>>>(
            gy, p.batch, p.output.n, p.output.c, plane, bp.chunk, splits, gb, grad_bias_stride,
            partial);
      } else {
        grad_bias_planes_kernel<scalar_t, 1><<<grid, kThreads, 0, cfg.stream>>>(
            gy, p.batch, p.output.n, p.output.c, plane, bp.chunk, splits, gb, grad_bias_stride,
            partial);
      }
    }
    if (bp.kernel != BiasKernel::Strided) {
      if (splits > 1) {
        combine_channel_partials_kernel<scalar_t>
            <<<static_cast<unsigned int>(C), kThreads, 0, cfg.stream>>>(partial, splits, C, gb,
                                                                        grad_bias_stride);
      }
      return;
    }
    dispatch_index(cfg.wide_index, [&](auto index) {
      using index_t = decltype(index);
      const dim3 grid(static_cast<unsigned int>(p.out_channels), static_cast<unsigned int>(splits));
      grad_bias_reduce_kernel<scalar_t, index_t><<<grid, kThreads, 0, cfg.stream>>>(
          p, gy, gb, grad_bias_stride, partial, splits);
    });
    if (splits > 1) {
      const Strides5 dst{0, grad_bias_stride, 0, 0, 0};
      combine_partials_kernel<scalar_t><<<grid_for(p.out_channels), kThreads, 0, cfg.stream>>>(
          partial, splits, p.out_channels, p.out_channels, 1, 1, 1, dst, gb);
    }
  });
  return cudaGetLastError();
}

}  // namespace tconv3d::cuda
