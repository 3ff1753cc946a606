// Grad-weight: for each weight element, a reduction over batch and the input
// positions its tap connects.  Blocks own (element, split); threads stride over
// the rows of the split; partial sums are combined by a second pass in split
// order.  No atomics, so the result is bitwise reproducible.
#include "../direct_gather.h"
#include "deterministic_reduce.cuh"
#include "launch.h"

namespace tconv3d::cuda {
namespace {

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    grad_weight_reduce_kernel(const ConvTranspose3dParams p, const scalar_t* __restrict__ x,
                              const scalar_t* __restrict__ grad_out,
                              scalar_t* __restrict__ grad_w, acc_t<scalar_t>* __restrict__ partial,
                              int64_t numel, int64_t splits) {
  const int64_t element = blockIdx.x, split = blockIdx.y;
  const Index5 k = unflatten<int64_t>(element, p.out_per_group, p.axis[0].kernel,
                                      p.axis[1].kernel, p.axis[2].kernel);
  const GradWeightRows rows = grad_weight_rows(p, k);
  const int64_t begin = rows.count * split / splits, end = rows.count * (split + 1) / splits;
  acc_t<scalar_t> acc = grad_weight_sum<scalar_t, index_t>(p, x, grad_out, k, rows,
                                                           begin + threadIdx.x, end, blockDim.x);
  acc = block_sum(acc);
  if (threadIdx.x != 0) return;
  if (splits == 1) {
    grad_w[offset_of<int64_t>(p.weight, k)] = from_acc<scalar_t>(acc);
  } else {
    partial[split * numel + element] = acc;
  }
}

int64_t weight_numel(const ConvTranspose3dParams& p) {
  return p.in_channels * p.out_per_group * p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel;
}

}  // namespace

int64_t grad_weight_splits(const ConvTranspose3dParams& p) {
  const int64_t reduction = input_positions(p.batch, p.axis);
  return choose_splits(weight_numel(p), reduction);
}

cudaError_t launch_grad_weight_reduce(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                      const void* input, const void* grad_output,
                                      void* grad_weight, void* workspace) {
  const int64_t numel = weight_numel(p);
  const int64_t splits = grad_weight_splits(p);
  if (numel == 0) return cudaSuccess;
  if (numel > 0x7fffffff) return cudaErrorInvalidConfiguration;
  cudaError_t combined = cudaSuccess;
  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    auto* partial = static_cast<acc_t<scalar_t>*>(workspace);
    dispatch_index(cfg.wide_index, [&](auto index) {
      using index_t = decltype(index);
      const dim3 grid(static_cast<unsigned int>(numel), static_cast<unsigned int>(splits));
      grad_weight_reduce_kernel<scalar_t, index_t><<<grid, kThreads, 0, cfg.stream>>>(
          p, static_cast<const scalar_t*>(input), static_cast<const scalar_t*>(grad_output),
          static_cast<scalar_t*>(grad_weight), partial, numel, splits);
    });
    if (splits > 1) {
      combined = launch_combine_partials<scalar_t>(
          partial, splits, numel, p.out_per_group, p.axis[0].kernel, p.axis[1].kernel,
          p.axis[2].kernel, p.weight, static_cast<scalar_t*>(grad_weight), cfg.stream);
    }
  });
  const cudaError_t launched = cudaGetLastError();
  return launched != cudaSuccess ? launched : combined;
}

}  // namespace tconv3d::cuda
