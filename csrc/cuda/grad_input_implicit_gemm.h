// Grad-input as an implicit GEMM on tensor cores (WMMA: fp16/bf16 with fp32
// accumulation, TF32 for float32).  See grad_input_implicit_gemm.cu for the
// decomposition.
#pragma once

#include <cuda_runtime_api.h>

#include "../params.h"
#include "launch.h"

namespace tconv3d::cuda {

// True when launch_grad_input_implicit_gemm handles this problem: fp16/bf16,
// or fp32 with TF32 allowed; sizes within the
// kernel's 32-bit tile bookkeeping; and the current device (and the compiled
// kernel) is sm_80 or newer.
bool grad_input_implicit_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                       bool allow_tf32);

// Same contract as launch_grad_input_gather: gy and w of any strides; gx dense
// (NCDHW or NDHWC, strides in p.input).  float32 runs in TF32 (it is only
// called when TF32 is allowed).  No workspace, no atomics; one launch.
cudaError_t launch_grad_input_implicit_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                            const void* grad_output, const void* weight,
                                            void* grad_input);

}  // namespace tconv3d::cuda
