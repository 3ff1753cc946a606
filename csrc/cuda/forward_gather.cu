// Forward pass, direct gather: one thread per output element, walking only the
// valid taps of its phase.  The general fallback for every shape and dtype.
#include "../direct_gather.h"
#include "dispatch.cuh"
#include "launch.h"

namespace tconv3d::cuda {
namespace {

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    forward_gather_kernel(const ConvTranspose3dParams p, const scalar_t* __restrict__ x,
                          const scalar_t* __restrict__ w, const scalar_t* __restrict__ bias,
                          scalar_t* __restrict__ y, int64_t total, bool channels_last) {
  const index_t C = p.out_channels, D = p.axis[0].out, H = p.axis[1].out, W = p.axis[2].out;
  for (int64_t linear = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; linear < total;
       linear += int64_t(gridDim.x) * blockDim.x) {
    const Index5 o = unflatten<index_t>(index_t(linear), C, D, H, W, channels_last);
    acc_t<scalar_t> acc = forward_sum<scalar_t, index_t>(p, x, w, o);
    if (bias != nullptr) acc += to_acc(bias[o.c * p.bias_stride]);
    y[offset_of<index_t>(p.output, o)] = from_acc<scalar_t>(acc);
  }
}

}  // namespace

cudaError_t launch_forward_gather(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                  const void* input, const void* weight, const void* bias,
                                  void* output, bool channels_last) {
  const int64_t total = p.batch * p.out_channels * p.axis[0].out * p.axis[1].out * p.axis[2].out;
  if (total == 0) return cudaSuccess;
  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    dispatch_index(cfg.wide_index, [&](auto index) {
      using index_t = decltype(index);
      forward_gather_kernel<scalar_t, index_t><<<grid_for(total), kThreads, 0, cfg.stream>>>(
          p, static_cast<const scalar_t*>(input), static_cast<const scalar_t*>(weight),
          static_cast<const scalar_t*>(bias), static_cast<scalar_t*>(output), total,
          channels_last);
    });
  });
  return cudaGetLastError();
}

}  // namespace tconv3d::cuda
