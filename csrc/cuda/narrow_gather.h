// Forward and grad-input of layers with narrow groups (depthwise, RGB-like,
// a few channels a group) on CUDA cores: narrow_gather.cu.  Any strides.
#pragma once

#include <cuda_runtime_api.h>

#include "../params.h"
#include "launch.h"

namespace tconv3d::cuda {

// Whether the kernel takes the shape at all (its tables and a channel's
// weights fit a block); which layers it pays on is the caller's choice.
bool narrow_gather_supports(const ConvTranspose3dParams& p, ScalarKind dtype, bool forward);

cudaError_t launch_narrow_forward(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                  const void* input, const void* weight, const void* bias,
                                  void* output);
cudaError_t launch_narrow_grad_input(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                     const void* grad_output, const void* weight,
                                     void* grad_input);

}  // namespace tconv3d::cuda
