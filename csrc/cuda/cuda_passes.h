// CUDA side of the op layer: same contract as cpu/cpu_passes.h.  Launches on
// the current stream of the tensors' device and checks every launch.
#pragma once

#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "../params.h"
#include "channel_vectors.h"

namespace tconv3d::cuda {

void forward(const ConvTranspose3dParams& p, const at::Tensor& input, const at::Tensor& weight,
             const std::optional<at::Tensor>& bias, const at::Tensor& output);
void grad_input(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                const at::Tensor& weight, const at::Tensor& grad_input);
void grad_weight(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                 const at::Tensor& input, const at::Tensor& grad_weight);
void grad_bias(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
               const at::Tensor& grad_bias);
// grad_weight and grad_bias in one pass over grad_output where a kernel does
// both (kernel == stride layers, NCDHW; fuses_grad_weight_and_bias says
// whether it will); false, nothing launched, elsewhere.
bool fuses_grad_weight_and_bias(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                                const at::Tensor& input);
bool fused_grad_weight_and_bias(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                                const at::Tensor& input, const at::Tensor& grad_weight,
                                const at::Tensor& grad_bias);

// While one lives (on this thread), a tensor the GEMMs would copy into their
// channels-last source layout is copied once and the copy reused: the
// backward's grad-input and grad-weight both read grad_output so (NCDHW
// layers the in-place kernels do not take).  The copies die with it.
// Given grad_bias, the copy of grad_output also sums its channels into it
// where the copy kernel can (bias_summed() says whether it did), sparing the
// bias its own pass over grad_output (the backward gives it only where the
// grad-weight kernel would not fuse the bias anyway).
class SharedPacks {
 public:
  explicit SharedPacks(const at::Tensor& grad_output = {}, const at::Tensor& grad_bias = {});
  ~SharedPacks();
  SharedPacks(const SharedPacks&) = delete;
  SharedPacks& operator=(const SharedPacks&) = delete;

  bool bias_summed() const { return bias_summed_; }

  struct Entry;

 private:
  friend struct SharedPacksAccess;
  bool owner_;
  std::vector<Entry> entries_;
  at::Tensor grad_output_, grad_bias_;
  bool bias_summed_ = false;
};

// Test hooks.  Wide index: 64-bit offsets even where 32 bits suffice.
// Policy: Auto picks per shape; Gather forces the direct-gather fallback;
// TensorCore takes the sm_80 tensor-core kernels (mma.sync) wherever they
// support the shape; Wgmma takes the Hopper GEMM for forward and grad-input
// where it runs (else as TensorCore).
void set_force_wide_index(bool on);
// Test and benchmark hook: whether groups of 16 channels run four at a time
// on the Hopper GEMMs (true, shipped) or one a tile (false).
void set_group_blocks(bool on);
// Test and benchmark hook: whether fp32 where TF32 is not allowed runs the
// mma.sync GEMMs of the three passes on split TF32 (true, shipped;
// channel_vectors.h) or the CUDA-core gather kernels (false).
void set_fp32_split(bool on);
enum class KernelPolicy { Auto, Gather, TensorCore, Wgmma };
void set_kernel_policy(KernelPolicy policy);
// Channels-last copies of GEMM sources made since the library loaded.
int64_t channels_last_copies();
// Kernel family the last CUDA call of a pass launched: 0 forward, 1 grad-input,
// 2 grad-weight, 3 grad-bias (the grad-weight kernel's name where it fused them).
const char* last_kernel(int pass);

}  // namespace tconv3d::cuda
