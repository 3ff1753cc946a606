#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "../direct_gather.h"
#include "cpu_passes.h"

namespace tconv3d::cpu {

// One task per weight element, each summing its whole reduction in a fixed
// order: deterministic whatever the thread count.
void grad_weight(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                 const at::Tensor& input, const at::Tensor& grad_weight) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "tconv3d_grad_weight_cpu", [&] {
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    const scalar_t* gy = grad_output.const_data_ptr<scalar_t>();
    scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();
    const int64_t Co = p.out_per_group;
    const int64_t kD = p.axis[0].kernel, kH = p.axis[1].kernel, kW = p.axis[2].kernel;
    at::parallel_for(0, grad_weight.numel(), 1, [&](int64_t begin, int64_t end) {
      for (int64_t linear = begin; linear < end; ++linear) {
        // Weight-shaped: (Cin, Cout/G, kD, kH, kW) unflattens like (N, C, D, H, W).
        const Index5 k = unflatten<int64_t>(linear, Co, kD, kH, kW);
        const GradWeightRows rows = grad_weight_rows(p, k);
        const auto acc = chunked_row_sum<acc_t<scalar_t>>(rows.count, [&](int64_t b, int64_t e) {
          return grad_weight_sum<scalar_t, int64_t>(p, x, gy, k, rows, b, e, 1);
        });
        gw[offset_of<int64_t>(p.weight, k)] = from_acc<scalar_t>(acc);
      }
    });
  });
}

}  // namespace tconv3d::cpu
