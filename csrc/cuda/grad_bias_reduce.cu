// Grad-bias: grad_output summed over batch and space per channel, with the
// same fixed-order split reduction as grad-weight.
//
// Two kernels.  When grad_output is dense channels-last, it is a [rows][C]
// matrix (rows = N·D·H·W, channels contiguous): each block sums a contiguous
// range of rows with coalesced 16-byte loads, each thread keeping the sums of
// one fixed group of channels, then adds its threads' sums per channel in
// thread order.  Otherwise one block per (channel, split) walks the rows of
// W elements of that channel (contiguous in NCDHW; the channels-last layout
// would make every load a separate sector, ~10x slower).
#include <cstdint>

#include "../direct_gather.h"
#include "deterministic_reduce.cuh"
#include "launch.h"

namespace tconv3d::cuda {
namespace {

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
  if (threadIdx.x != 0) return;
  if (splits == 1) {
    grad_b[co * grad_b_stride] = from_acc<scalar_t>(acc);
  } else {
    partial[split * p.out_channels + co] = acc;
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
  struct alignas(sizeof(scalar_t) * V) Vec {
    scalar_t v[V];
  };
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
      partial[blockIdx.x * channels + c] = s;
    }
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

// Channels per thread in the rows kernel, or 0 when grad_output is not dense
// channels-last (or too wide for one block's threads).
int rows_vector(const ConvTranspose3dParams& p, ScalarKind dtype, const void* grad_output) {
  const Strides5 s = p.output;
  const int64_t C = p.out_channels, W = p.axis[2].out, H = p.axis[1].out, D = p.axis[0].out;
  const bool dense = s.c == 1 && (W == 1 || s.w == C) && (H == 1 || s.h == W * C) &&
                     (D == 1 || s.d == H * W * C) && (p.batch == 1 || s.n == D * H * W * C);
  if (!dense || C == 0) return 0;
  const int64_t vec = dtype == ScalarKind::Float64 ? 2 : dtype == ScalarKind::Float32 ? 4 : 8;
  if (C % vec == 0 && C / vec <= kThreads && reinterpret_cast<uintptr_t>(grad_output) % 16 == 0) {
    return int(vec);
  }
  return C <= kThreads ? 1 : 0;
}

}  // namespace

int64_t grad_bias_splits(const ConvTranspose3dParams& p, ScalarKind dtype,
                         const void* grad_output) {
  const int64_t reduction = bias_rows(p);
  if (rows_vector(p, dtype, grad_output) > 0) {
    // ~two blocks an SM on large GPUs, at least 512 rows each.
    const int64_t splits = (reduction + 511) / 512;
    return splits < 1 ? 1 : splits > 256 ? 256 : splits;
  }
  return choose_splits(p.out_channels, reduction);
}

cudaError_t launch_grad_bias_reduce(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                    const void* grad_output, void* grad_bias,
                                    int64_t grad_bias_stride, void* workspace) {
  const int64_t splits = grad_bias_splits(p, cfg.dtype, grad_output);
  if (p.out_channels == 0) return cudaSuccess;
  if (splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  const int vec = rows_vector(p, cfg.dtype, grad_output);
  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    auto* partial = static_cast<acc_t<scalar_t>*>(workspace);
    auto* gb = static_cast<scalar_t*>(grad_bias);
    const auto* gy = static_cast<const scalar_t*>(grad_output);
    if (vec > 0) {
      const auto grid = static_cast<unsigned int>(splits);
      const int C = int(p.out_channels);
      constexpr int kVec = int(16 / sizeof(scalar_t));
      if (vec == kVec) {
        grad_bias_rows_kernel<scalar_t, kVec><<<grid, kThreads, 0, cfg.stream>>>(
            gy, bias_rows(p), C, splits, gb, grad_bias_stride, partial);
      } else {
        grad_bias_rows_kernel<scalar_t, 1><<<grid, kThreads, 0, cfg.stream>>>(
            gy, bias_rows(p), C, splits, gb, grad_bias_stride, partial);
      }
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
