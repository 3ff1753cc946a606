// CPU kernels: forward, grad-input and grad-weight as implicit GEMMs through
// the CPU BLAS (tap_gemm.h; the forward's over padded slabs of x, forward.cpp),
// grad-bias as chunked line sums (grad_bias.cpp); every sum in an order fixed
// by the shape alone.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

#include "../params.h"

namespace tconv3d::cpu {

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
