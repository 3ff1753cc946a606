// CPU kernels: at::parallel_for over result elements, each computed by the
// shared per-element sums of direct_gather.h in a fixed order.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

#include "../params.h"

namespace tconv3d::cpu {

// Reductions (grad-weight, grad-bias) add rows in chunks of this many.
constexpr int64_t kRowsPerChunk = 64;

// Tensors are 5-D; results are preallocated and fully overwritten.
void forward(const ConvTranspose3dParams& p, const at::Tensor& input, const at::Tensor& weight,
             const std::optional<at::Tensor>& bias, const at::Tensor& output);
void grad_input(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                const at::Tensor& weight, const at::Tensor& grad_input);
void grad_weight(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                 const at::Tensor& input, const at::Tensor& grad_weight);
void grad_bias(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
               const at::Tensor& grad_bias);

}  // namespace tconv3d::cpu
