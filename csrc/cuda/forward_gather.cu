// Forward pass, direct gather: walks only the valid taps of each output's
// phase.  The fallback for every shape and dtype the tensor-core kernels skip.
#include "../direct_gather.h"
#include "dispatch.cuh"
#include "launch.h"

namespace tconv3d::cuda {
namespace {

// One thread per output position (n, od, oh, ow), looping over all output
// channels: the taps are found once per position.
template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    forward_gather_kernel(const ConvTranspose3dParams p, const scalar_t* __restrict__ x,
                          const scalar_t* __restrict__ w, const scalar_t* __restrict__ bias,
                          scalar_t* __restrict__ y, int64_t positions) {
  const index_t D = p.axis[0].out, H = p.axis[1].out, W = p.axis[2].out;
  for (int64_t linear = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; linear < positions;
       linear += int64_t(gridDim.x) * blockDim.x) {
    Index5 o = unflatten<index_t>(index_t(linear), 1, D, H, W);
    const Taps3 taps = forward_taps3(p, o);
    for (index_t co = 0; co < index_t(p.out_channels); ++co) {
      o.c = co;
      acc_t<scalar_t> acc = forward_sum<scalar_t, index_t>(p, x, w, o, taps);
      if (bias != nullptr) acc += to_acc(bias[co * index_t(p.bias_stride)]);
      y[offset_of<index_t>(p.output, o)] = from_acc<scalar_t>(acc);
    }
  }
}

}  // namespace

cudaError_t launch_forward_gather(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                  const void* input, const void* weight, const void* bias,
                                  void* output) {
  const int64_t positions = p.batch * p.axis[0].out * p.axis[1].out * p.axis[2].out;
  if (positions == 0 || p.out_channels == 0) return cudaSuccess;
  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    dispatch_index(cfg.wide_index, [&](auto index) {
      using index_t = decltype(index);
      forward_gather_kernel<scalar_t, index_t><<<grid_for(positions), kThreads, 0, cfg.stream>>>(
          p, static_cast<const scalar_t*>(input), static_cast<const scalar_t*>(weight),
          static_cast<const scalar_t*>(bias), static_cast<scalar_t*>(output), positions);
    });
  });
  return cudaGetLastError();
}

}  // namespace tconv3d::cuda
