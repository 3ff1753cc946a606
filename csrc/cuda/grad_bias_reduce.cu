// Grad-bias: grad_output summed over batch and space per channel, with the
// same fixed-order split reduction as grad-weight.
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

}  // namespace

int64_t grad_bias_splits(const ConvTranspose3dParams& p) {
  const int64_t reduction = p.batch * p.axis[0].out * p.axis[1].out * p.axis[2].out;
  return choose_splits(p.out_channels, reduction);
}

cudaError_t launch_grad_bias_reduce(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                    const void* grad_output, void* grad_bias,
                                    int64_t grad_bias_stride, void* workspace) {
  const int64_t splits = grad_bias_splits(p);
  if (p.out_channels == 0) return cudaSuccess;
  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    auto* partial = static_cast<acc_t<scalar_t>*>(workspace);
    dispatch_index(cfg.wide_index, [&](auto index) {
      using index_t = decltype(index);
      const dim3 grid(static_cast<unsigned int>(p.out_channels), static_cast<unsigned int>(splits));
      grad_bias_reduce_kernel<scalar_t, index_t><<<grid, kThreads, 0, cfg.stream>>>(
          p, static_cast<const scalar_t*>(grad_output), static_cast<scalar_t*>(grad_bias),
          grad_bias_stride, partial, splits);
    });
    if (splits > 1) {
      const Strides5 dst{0, grad_bias_stride, 0, 0, 0};
      combine_partials_kernel<scalar_t><<<grid_for(p.out_channels), kThreads, 0, cfg.stream>>>(
          partial, splits, p.out_channels, p.out_channels, 1, 1, 1, dst,
          static_cast<scalar_t*>(grad_bias));
    }
  });
  return cudaGetLastError();
}

}  // namespace tconv3d::cuda
