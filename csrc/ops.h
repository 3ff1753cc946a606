// The four passes of 3-D transposed convolution as ATen-level functions: the
// op layer validates (problem.h), allocates results in torch's memory
// format and hands raw pointers to the CPU or CUDA kernels.
#pragma once

#include <optional>
#include <tuple>

#include <ATen/core/Tensor.h>

namespace tconv3d {

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight,
                   const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                   at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                   at::IntArrayRef dilation);

// Gradient with respect to the input, of shape `input_size`.
at::Tensor grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                      at::IntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                      at::IntArrayRef output_padding, int64_t groups, at::IntArrayRef dilation);

// Gradient with respect to the weight, of shape `weight_size`.
at::Tensor grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                       at::IntArrayRef weight_size, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                       at::IntArrayRef dilation);

// Gradient with respect to the bias: grad_output summed over all but the channel dimension.
at::Tensor grad_bias(const at::Tensor& grad_output);

// grad_weight and grad_bias of one grad_output, in one pass over it where a
// kernel does both (kernel == stride layers, NCDHW, on CUDA), else as the two
// ops: the same values either way, within each op's rounding.
std::tuple<at::Tensor, at::Tensor> grad_weight_and_bias(
    const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    int64_t groups, at::IntArrayRef dilation);

// grad_input, grad_weight and (where `bias`) grad_bias of one grad_output in
// one call: on CUDA a channels-last copy of grad_output that both GEMMs need
// is made once, and grad-bias fused where grad_weight_and_bias fuses it.
// Without `bias` the third result is empty (0 elements).
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    int64_t groups, at::IntArrayRef dilation, bool bias);

// Results take torch's memory format for its cuDNN convolutions: channels-last
// where x (grad_output for grad_input) or the weight suggests it, contiguous
// in float64 (ops.cpp, results_format).  The layer's backward gives its ops
// grad_output in the forward's format, as torch does, so its gradients take
// the forward's format whichever grad_output comes: this is that copy, or
// grad_output itself where it is in that format already.
at::Tensor grad_output_in_results_format(const at::Tensor& grad_output, const at::Tensor& input,
                                         const at::Tensor& weight);

// Test hook: fill every result with NaN before its kernel runs, so an element a
// kernel fails to write shows up in the comparison against the reference.
void set_poison_results(bool on);

}  // namespace tconv3d
