// CUDA side of the op layer: same contract as cpu/cpu_passes.h.  Launches on
// the current stream of the tensors' device and checks every launch.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

#include "../params.h"

namespace tconv3d::cuda {

void forward(const ConvTranspose3dParams& p, const at::Tensor& input, const at::Tensor& weight,
             const std::optional<at::Tensor>& bias, const at::Tensor& output);
void grad_input(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                const at::Tensor& weight, const at::Tensor& grad_input);
void grad_weight(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                 const at::Tensor& input, const at::Tensor& grad_weight);
void grad_bias(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
               const at::Tensor& grad_bias);

// Test hook: run every kernel with 64-bit offsets even where 32 bits suffice.
void set_force_wide_index(bool on);

}  // namespace tconv3d::cuda
