// Grad-input, direct gather: an ordinary strided convolution of grad_output
// with the weight, one thread per grad_input element.
#include "../direct_gather.h"
#include "dispatch.cuh"
#include "launch.h"

namespace tconv3d::cuda {
namespace {

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    grad_input_gather_kernel(const ConvTranspose3dParams p, const scalar_t* __restrict__ grad_out,
                             const scalar_t* __restrict__ w, scalar_t* __restrict__ grad_in,
                             int64_t total, bool channels_last) {
  const index_t C = p.in_channels, D = p.axis[0].in, H = p.axis[1].in, W = p.axis[2].in;
  for (int64_t linear = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; linear < total;
       linear += int64_t(gridDim.x) * blockDim.x) {
    const Index5 i = unflatten<index_t>(index_t(linear), C, D, H, W, channels_last);
    grad_in[offset_of<index_t>(p.input, i)] =
        from_acc<scalar_t>(grad_input_sum<scalar_t, index_t>(p, grad_out, w, i));
  }
}

}  // namespace

cudaError_t launch_grad_input_gather(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                     const void* grad_output, const void* weight,
                                     void* grad_input, bool channels_last) {
  const int64_t total = p.batch * p.in_channels * p.axis[0].in * p.axis[1].in * p.axis[2].in;
  if (total == 0) return cudaSuccess;
  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    dispatch_index(cfg.wide_index, [&](auto index) {
      using index_t = decltype(index);
      grad_input_gather_kernel<scalar_t, index_t><<<grid_for(total), kThreads, 0, cfg.stream>>>(
          p, static_cast<const scalar_t*>(grad_output), static_cast<const scalar_t*>(weight),
          static_cast<scalar_t*>(grad_input), total, channels_last);
    });
  });
  return cudaGetLastError();
}

}  // namespace tconv3d::cuda
