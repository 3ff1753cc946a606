// The one place that validates arguments and computes sizes.  Every op entry
// point builds a ConvTranspose3dProblem first, so every bad argument is
// rejected with a TORCH_CHECK before any allocation or launch.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "params.h"

namespace tconv3d {

using Triple = std::array<int64_t, 3>;

struct ConvTranspose3dProblem {
  bool batched = true;  // false for an unbatched (C, D, H, W) input
  int64_t batch = 0;
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t groups = 1;
  Triple in_size{}, out_size{}, kernel{}, stride{}, padding{}, output_padding{}, dilation{};

  // Validates the geometry (shapes and hyper-parameters, not dtypes or devices).
  static ConvTranspose3dProblem from_sizes(at::IntArrayRef input_sizes,
                                           at::IntArrayRef weight_sizes,
                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                           at::IntArrayRef output_padding, int64_t groups,
                                           at::IntArrayRef dilation);

  // Shapes as the caller sees them (4-D when unbatched).
  std::vector<int64_t> input_shape() const;
  std::vector<int64_t> output_shape() const;
  std::vector<int64_t> weight_shape() const;

  // Kernel parameters for tensors already viewed as 5-D; strides are taken
  // from the tensors in each role.
  ConvTranspose3dParams params(const at::Tensor& input_like, const at::Tensor& weight_like,
                               const at::Tensor& output_like,
                               const std::optional<at::Tensor>& bias = std::nullopt) const;
};

// dtype/device agreement of the tensors of one call; `what` names them in messages.
void check_same_dtype_and_device(const char* op, const at::Tensor& reference,
                                 const char* reference_name, const at::Tensor& other,
                                 const char* other_name);
void check_supported_dtype(const char* op, const at::Tensor& t, const char* name);

ScalarKind scalar_kind(at::ScalarType type);

// Numbers for TORCH_CHECK messages, formatted without iostreams: streaming an
// integer crashed the process where the extension was built by a newer GCC
// than the libstdc++ loaded at run time (seen on the GPU test machine).
std::string text(int64_t v);
std::string text(at::IntArrayRef values);

// Element strides of a 5-D tensor in logical (N, C, D, H, W) order.
Strides5 strides_of(const at::Tensor& t);

// Views a (C, D, H, W) tensor as (1, C, D, H, W); 5-D tensors pass through.
at::Tensor as_batched(const at::Tensor& t, bool batched);

}  // namespace tconv3d
