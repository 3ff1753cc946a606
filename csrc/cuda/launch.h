// Kernel launchers: plain C++ signatures over raw pointers, so the .cu files
// need no ATen headers and the op layer needs no CUDA compiler.  Each returns
// the launch's error code; the caller checks it.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "../params.h"

namespace tconv3d::cuda {

struct LaunchConfig {
  ScalarKind dtype;
  bool wide_index;  // 64-bit offsets: some tensor spans more than 2^31 - 1 elements
  cudaStream_t stream;
};

// Any strides for every tensor, results included (strides in p).
cudaError_t launch_forward_gather(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                  const void* input, const void* weight, const void* bias,
                                  void* output);

cudaError_t launch_grad_input_gather(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                     const void* grad_output, const void* weight,
                                     void* grad_input);

// Depthwise grad-weight over channels-last operands (channel stride 1), a
// thread per (channels, tap, split); splits × numel floats of workspace when
// splits > 1.  Not fp64.
bool depthwise_grad_weight_supports(const ConvTranspose3dParams& p, ScalarKind dtype);
int64_t depthwise_grad_weight_splits(const ConvTranspose3dParams& p);
cudaError_t launch_depthwise_grad_weight(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const void* input, const void* grad_output,
                                         void* grad_weight, float* workspace);

// Grad-weight of groups with at most 4 channels of x and 16 of grad_output,
// over channels-last operands: a block per (group, tap, split); splits ×
// numel floats of workspace when splits > 1.  Not fp64.
bool narrow_grad_weight_supports(const ConvTranspose3dParams& p, ScalarKind dtype);
int64_t narrow_grad_weight_splits(const ConvTranspose3dParams& p);
cudaError_t launch_narrow_grad_weight(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                      const void* input, const void* grad_output,
                                      void* grad_weight, float* workspace);

// Reductions split into a fixed number of partial sums per result element,
// chosen from the shape alone, and combined in a fixed order: bitwise
// reproducible on any GPU.  The workspace holds splits × numel accumulators
// (float, or double for float64); it is unused when splits == 1.
constexpr int64_t kMaxPartials = int64_t(1) << 24;  // the grad-weight kernels': 64 MiB of fp32

// `wanted` splits of a reduction over `positions` into `numel` results,
// within the workspace bound and a grid dimension, none without a position.
inline int64_t bounded_splits(int64_t wanted, int64_t positions, int64_t numel) {
  if (numel <= 0) return 1;
  int64_t splits = wanted;
  if (splits > positions) splits = positions;
  if (splits > kMaxPartials / numel) splits = kMaxPartials / numel;
  if (splits > 65535) splits = 65535;
  return splits < 1 ? 1 : splits;
}

int64_t grad_weight_splits(const ConvTranspose3dParams& p);
cudaError_t launch_grad_weight_reduce(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                      const void* input, const void* grad_output,
                                      void* grad_weight, void* workspace);

// grad_output's layout and address decide the grad-bias kernel (and so its splits).
int64_t grad_bias_splits(const ConvTranspose3dParams& p, ScalarKind dtype, const void* grad_output);
cudaError_t launch_grad_bias_reduce(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                    const void* grad_output, void* grad_bias,
                                    int64_t grad_bias_stride, void* workspace);
// grad_bias[c · stride] = the fixed-order sum of partial[r · channels + c]
// over r < rows (fp32 partials: fp32, fp16, bf16 only).
cudaError_t launch_combine_channel_sums(ScalarKind dtype, const float* partial, int64_t rows,
                                        int channels, void* grad_bias, int64_t grad_bias_stride,
                                        cudaStream_t stream);

}  // namespace tconv3d::cuda
