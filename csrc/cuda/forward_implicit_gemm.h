// Forward pass as a stride-phase-decomposed implicit GEMM on tensor cores
// (WMMA: fp16/bf16 with fp32 accumulation, TF32 for float32).  See
// forward_implicit_gemm.cu for the decomposition.
#pragma once

#include <cuda_runtime_api.h>

#include "../params.h"
#include "launch.h"

namespace tconv3d::cuda {

// True when launch_forward_implicit_gemm handles this problem: dtype fp16/bf16,
// or fp32 with allow_tf32; sizes within the
// kernel's 32-bit tile bookkeeping; and the current device (and the compiled
// kernel) is sm_80 or newer.
bool forward_implicit_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                    bool allow_tf32);

// Same contract as launch_forward_gather: any input/weight strides, y dense
// (NCDHW or NDHWC, strides in p.output).  float32 runs in TF32 (it is only
// called when allow_tf32 is true).  No workspace; one launch.
cudaError_t launch_forward_implicit_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const void* input, const void* weight, const void* bias,
                                         void* output);

}  // namespace tconv3d::cuda
