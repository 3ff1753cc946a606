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
    const int64_t D = p.axis[0].in, H = p.axis[1].in, W = p.axis[2].in;
    const int64_t positions = p.batch * D * H * W;
    at::parallel_for(0, positions, 16, [&](int64_t begin, int64_t end) {
      for (int64_t linear = begin; linear < end; ++linear) {
        Index5 i = unflatten<int64_t>(linear, 1, D, H, W);
        const Taps3 taps = grad_input_taps3(p, i);
        for (i.c = 0; i.c < p.in_channels; ++i.c) {
          gx[offset_of<int64_t>(p.input, i)] =
              from_acc<scalar_t>(grad_input_sum<scalar_t, int64_t>(p, gy, w, i, taps));
        }
      }
    });
  });
}

}  // namespace tconv3d::cpu
