#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "../direct_gather.h"
#include "cpu_passes.h"

namespace tconv3d::cpu {

void grad_input(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                const at::Tensor& weight, const at::Tensor& grad_input) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "tconv3d_grad_input_cpu", [&] {
    const scalar_t* gy = grad_output.const_data_ptr<scalar_t>();
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    scalar_t* gx = grad_input.mutable_data_ptr<scalar_t>();
    const int64_t C = p.in_channels, D = p.axis[0].in, H = p.axis[1].in, W = p.axis[2].in;
    at::parallel_for(0, grad_input.numel(), 64, [&](int64_t begin, int64_t end) {
      for (int64_t linear = begin; linear < end; ++linear) {
        const Index5 i = unflatten<int64_t>(linear, C, D, H, W, /*channels_last=*/false);
        gx[offset_of<int64_t>(p.input, i)] =
            from_acc<scalar_t>(grad_input_sum<scalar_t, int64_t>(p, gy, w, i));
      }
    });
  });
}

}  // namespace tconv3d::cpu
