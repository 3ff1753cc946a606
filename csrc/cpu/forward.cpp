#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "../direct_gather.h"
#include "cpu_passes.h"

namespace tconv3d::cpu {

void forward(const ConvTranspose3dParams& p, const at::Tensor& input, const at::Tensor& weight,
             const std::optional<at::Tensor>& bias, const at::Tensor& output) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "tconv3d_forward_cpu", [&] {
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    const scalar_t* b = bias.has_value() ? bias->const_data_ptr<scalar_t>() : nullptr;
    scalar_t* y = output.mutable_data_ptr<scalar_t>();
    const int64_t C = p.out_channels, D = p.axis[0].out, H = p.axis[1].out, W = p.axis[2].out;
    at::parallel_for(0, output.numel(), 64, [&](int64_t begin, int64_t end) {
      for (int64_t linear = begin; linear < end; ++linear) {
        const Index5 o = unflatten<int64_t>(linear, C, D, H, W, /*channels_last=*/false);
        acc_t<scalar_t> acc = forward_sum<scalar_t, int64_t>(p, x, w, o);
        if (b != nullptr) acc += to_acc(b[o.c * p.bias_stride]);
        y[offset_of<int64_t>(p.output, o)] = from_acc<scalar_t>(acc);
      }
    });
  });
}

}  // namespace tconv3d::cpu
