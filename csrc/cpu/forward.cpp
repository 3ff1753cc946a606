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
    const int64_t D = p.axis[0].out, H = p.axis[1].out, W = p.axis[2].out;
    const int64_t positions = p.batch * D * H * W;
    // One task per output position, looping over channels: taps found once.
    at::parallel_for(0, positions, 16, [&](int64_t begin, int64_t end) {
      for (int64_t linear = begin; linear < end; ++linear) {
        Index5 o = unflatten<int64_t>(linear, 1, D, H, W);
        const Taps3 taps = forward_taps3(p, o);
        for (o.c = 0; o.c < p.out_channels; ++o.c) {
          acc_t<scalar_t> acc = forward_sum<scalar_t, int64_t>(p, x, w, o, taps);
          if (b != nullptr) acc += to_acc(b[o.c * p.bias_stride]);
          y[offset_of<int64_t>(p.output, o)] = from_acc<scalar_t>(acc);
        }
      }
    });
  });
}

}  // namespace tconv3d::cpu
