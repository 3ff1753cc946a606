// CPU kernels: forward, grad-input and grad-weight as tiled implicit GEMMs
// through the CPU BLAS (tap_gemm.h), grad-bias by the per-element sums of
// direct_gather.h; every sum in an order fixed by the shape alone.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

#include "../params.h"

namespace tconv3d::cpu {

// Σ of sum_rows(begin, end) over [0, rows) in chunks of 64 rows, in order: the
// rounding error of the long reductions (grad-weight, grad-bias) grows with
// the chunk length plus the chunk count, not with their product.
template <typename acc_t, typename SumRows>
acc_t chunked_row_sum(int64_t rows, const SumRows& sum_rows) {
  constexpr int64_t kRowsPerChunk = 64;
  acc_t acc = 0;
  for (int64_t begin = 0; begin < rows; begin += kRowsPerChunk) {
    acc += sum_rows(begin, std::min(begin + kRowsPerChunk, rows));
  }
  return acc;
}

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
