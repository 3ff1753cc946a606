// The TF32 Hopper grad-weight's operands (kmajor_layout.h) from x and
// grad_output at any strides: rounded to TF32, w fastest, grad_output split
// into its stride phases.
#pragma once

#include <cuda_runtime_api.h>

#include "../params.h"

namespace tconv3d::cuda {

// x at p.input strides, grad_output at p.output strides (elements); x_k and
// gy_k hold kmajor_layout(p).x_elems and .gy_elems floats.
cudaError_t launch_kmajor_pack(const ConvTranspose3dParams& p, const float* x, const float* grad_output,
                               float* x_k, float* gy_k, cudaStream_t stream);

}  // namespace tconv3d::cuda
