#include <ATen/Dispatch.h>

#include "cpu_passes.h"
#include "tap_gemm.h"

namespace tconv3d::cpu {

// An ordinary strided convolution of grad_output (grad_input_axis): one GEMM.
void grad_input(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                const at::Tensor& weight, const at::Tensor& grad_input) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "tconv3d_grad_input_cpu", [&] {
    const std::vector<TapGemm> gemm{make_tap_gemm(grad_input_axis(p.axis[0]),
                                                  grad_input_axis(p.axis[1]),
                                                  grad_input_axis(p.axis[2]))};
    const std::vector<at::Tensor> wm{weight_matrix(p, weight.const_data_ptr<scalar_t>(), gemm[0],
                                                   /*dest_is_output=*/false)};
    run_tap_gemms(gemm, wm, p.batch, p.groups, grad_output.const_data_ptr<scalar_t>(), p.output,
                  p.out_per_group, grad_input.mutable_data_ptr<scalar_t>(), p.input,
                  p.in_per_group, static_cast<const scalar_t*>(nullptr), 0);
  });
}

}  // namespace tconv3d::cpu
