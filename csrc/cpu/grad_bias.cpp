#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "../direct_gather.h"
#include "cpu_passes.h"

namespace tconv3d::cpu {

void grad_bias(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
               const at::Tensor& grad_bias) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "tconv3d_grad_bias_cpu", [&] {
    const scalar_t* gy = grad_output.const_data_ptr<scalar_t>();
    scalar_t* gb = grad_bias.mutable_data_ptr<scalar_t>();
    const int64_t rows = p.batch * p.axis[0].out * p.axis[1].out;
    at::parallel_for(0, p.out_channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t co = begin; co < end; ++co) {
        const auto acc = chunked_row_sum<acc_t<scalar_t>>(rows, [&](int64_t b, int64_t e) {
          return grad_bias_sum<scalar_t, int64_t>(p, gy, co, b, e, 1);
        });
        gb[co * grad_bias.stride(0)] = from_acc<scalar_t>(acc);
      }
    });
  });
}

}  // namespace tconv3d::cpu
