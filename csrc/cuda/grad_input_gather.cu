// Grad-input, direct gather: an ordinary strided convolution of grad_output
// with the weight.
#include "../direct_gather.h"
#include "dispatch.cuh"
#include "launch.h"

namespace tconv3d::cuda {
namespace {

// One thread per input position (n, id, ih, iw), looping over all input channels.
template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    grad_input_gather_kernel(const ConvTranspose3dParams p, const scalar_t* __restrict__ grad_out,
                             const scalar_t* __restrict__ w, scalar_t* __restrict__ grad_in,
                             int64_t positions) {
  const index_t D = p.axis[0].in, H = p.axis[1].in, W = p.axis[2].in;
  for (int64_t linear = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; linear < positions;
       linear += int64_t(gridDim.x) * blockDim.x) {
    Index5 i = unflatten<index_t>(index_t(linear), 1, D, H, W);
    const Taps3 taps = grad_input_taps3(p, i);
    for (index_t ci = 0; ci < index_t(p.in_channels); ++ci) {
      i.c = ci;
      grad_in[offset_of<index_t>(p.input, i)] =
          from_acc<scalar_t>(grad_input_sum<scalar_t, index_t>(p, grad_out, w, i, taps));
    }
  }
}

}  // namespace

cudaError_t launch_grad_input_gather(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                     const void* grad_output, const void* weight,
                                     void* grad_input) {
  const int64_t positions = input_positions(p.batch, p.axis);
  if (positions == 0 || p.in_channels == 0) return cudaSuccess;
  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    dispatch_index(cfg.wide_index, [&](auto index) {
      using index_t = decltype(index);
      grad_input_gather_kernel<scalar_t, index_t><<<grid_for(positions), kThreads, 0, cfg.stream>>>(
          p, static_cast<const scalar_t*>(grad_output), static_cast<const scalar_t*>(weight),
          static_cast<scalar_t*>(grad_input), positions);
    });
  });
  return cudaGetLastError();
}

}  // namespace tconv3d::cuda
