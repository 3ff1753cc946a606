#include <ATen/Dispatch.h>

#include "cpu_passes.h"
#include "tap_gemm.h"

namespace tconv3d::cpu {

// One GEMM per stride phase (forward_phase_axis): each output is written once,
// by the phase that owns it; a phase no tap reaches gets the bias alone.
void forward(const ConvTranspose3dParams& p, const at::Tensor& input, const at::Tensor& weight,
             const std::optional<at::Tensor>& bias, const at::Tensor& output) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "tconv3d_forward_cpu", [&] {
    std::vector<TapGemm> phases;
    std::vector<at::Tensor> wm;
    for (int64_t rd = 0; rd < p.axis[0].stride; ++rd)
      for (int64_t rh = 0; rh < p.axis[1].stride; ++rh)
        for (int64_t rw = 0; rw < p.axis[2].stride; ++rw) {
          phases.push_back(make_tap_gemm(forward_phase_axis(p.axis[0], rd),
                                         forward_phase_axis(p.axis[1], rh),
                                         forward_phase_axis(p.axis[2], rw)));
          wm.push_back(weight_matrix(p, weight.const_data_ptr<scalar_t>(), phases.back(),
                                     /*dest_is_output=*/true));
        }
    run_tap_gemms(phases, wm, p.batch, p.groups, input.const_data_ptr<scalar_t>(), p.input,
                  p.in_per_group, output.mutable_data_ptr<scalar_t>(), p.output, p.out_per_group,
                  bias.has_value() ? bias->const_data_ptr<scalar_t>() : nullptr, p.bias_stride);
  });
}

}  // namespace tconv3d::cpu
