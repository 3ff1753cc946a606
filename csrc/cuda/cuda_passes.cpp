#include "cuda_passes.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <initializer_list>
#include <limits>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../problem.h"
#include "forward_implicit_gemm.h"
#include "grad_input_implicit_gemm.h"
#include "grad_weight_gemm.h"
#include "launch.h"

namespace tconv3d::cuda {
namespace {

std::atomic<bool> g_force_wide_index{false};
std::atomic<KernelPolicy> g_policy{KernelPolicy::Auto};
constexpr int64_t kMinTensorCoreChannels = 8;

// TF32 follows the switch that governs torch's own convolutions.
bool tf32_allowed() { return at::globalContext().allowTF32CuDNN(); }

// Auto: tensor-core tiles (64 channels wide) pay once a group has a few
// channels on at least one side; depthwise-like layers stay on the gather
// kernels.  TensorCore forces them wherever they support the shape.
bool may_use_tensor_cores(const ConvTranspose3dParams& p) {
  switch (g_policy.load()) {
    case KernelPolicy::Gather:
      return false;
    case KernelPolicy::TensorCore:
      return true;
    default:
      return std::max(p.in_per_group, p.out_per_group) >= kMinTensorCoreChannels;
  }
}

// Largest element offset reachable in t, plus one.
int64_t span(const at::Tensor& t) {
  int64_t s = 1;
  for (int64_t d = 0; d < t.dim(); ++d) s += (t.size(d) - 1) * std::abs(t.stride(d));
  return t.numel() == 0 ? 0 : s;
}

bool needs_wide_index(std::initializer_list<at::Tensor> tensors) {
  if (g_force_wide_index.load()) return true;
  for (const at::Tensor& t : tensors) {
    if (t.defined() && (span(t) > std::numeric_limits<int32_t>::max() ||
                        t.numel() > std::numeric_limits<int32_t>::max())) {
      return true;
    }
  }
  return false;
}

LaunchConfig config_for(const at::Tensor& reference, std::initializer_list<at::Tensor> tensors) {
  return {scalar_kind(reference.scalar_type()), needs_wide_index(tensors),
          c10::cuda::getCurrentCUDAStream(reference.device().index()).stream()};
}

// Workspace for split partial sums; freed when the caller's tensor dies (the
// caching allocator keeps stream order safe).
at::Tensor partials_workspace(int64_t splits, int64_t numel, const at::Tensor& like) {
  if (splits <= 1) return at::Tensor();
  const auto acc_type = like.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return at::empty({splits * numel}, like.options().dtype(acc_type));
}

}  // namespace

void set_force_wide_index(bool on) { g_force_wide_index.store(on); }

void set_kernel_policy(KernelPolicy policy) { g_policy.store(policy); }

void forward(const ConvTranspose3dParams& p, const at::Tensor& input, const at::Tensor& weight,
             const std::optional<at::Tensor>& bias, const at::Tensor& output) {
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor b = bias.value_or(at::Tensor());
  const LaunchConfig cfg = config_for(input, {input, weight, b, output});
  const void* bias_ptr = b.defined() ? b.const_data_ptr() : nullptr;
  if (may_use_tensor_cores(p) && forward_implicit_gemm_supports(p, cfg.dtype, tf32_allowed())) {
    C10_CUDA_CHECK(launch_forward_implicit_gemm(p, cfg, input.const_data_ptr(),
                                                weight.const_data_ptr(), bias_ptr,
                                                output.mutable_data_ptr()));
    return;
  }
  C10_CUDA_CHECK(launch_forward_gather(p, cfg, input.const_data_ptr(), weight.const_data_ptr(),
                                       bias_ptr, output.mutable_data_ptr()));
}

void grad_input(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                const at::Tensor& weight, const at::Tensor& grad_input) {
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const LaunchConfig cfg = config_for(grad_output, {grad_output, weight, grad_input});
  if (may_use_tensor_cores(p) && grad_input_implicit_gemm_supports(p, cfg.dtype, tf32_allowed())) {
    C10_CUDA_CHECK(launch_grad_input_implicit_gemm(p, cfg, grad_output.const_data_ptr(),
                                                   weight.const_data_ptr(),
                                                   grad_input.mutable_data_ptr()));
    return;
  }
  C10_CUDA_CHECK(launch_grad_input_gather(p, cfg, grad_output.const_data_ptr(),
                                          weight.const_data_ptr(), grad_input.mutable_data_ptr()));
}

void grad_weight(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                 const at::Tensor& input, const at::Tensor& grad_weight) {
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const LaunchConfig cfg = config_for(grad_output, {grad_output, input, grad_weight});
  if (may_use_tensor_cores(p) && grad_weight_gemm_supports(p, cfg.dtype, tf32_allowed())) {
    const int64_t elems = grad_weight_gemm_workspace_elems(p);
    const at::Tensor partials =
        elems > 0 ? at::empty({elems}, grad_output.options().dtype(at::kFloat)) : at::Tensor();
    C10_CUDA_CHECK(launch_grad_weight_gemm(
        p, cfg, input.const_data_ptr(), grad_output.const_data_ptr(),
        grad_weight.mutable_data_ptr(), partials.defined() ? partials.data_ptr<float>() : nullptr));
    return;
  }
  const at::Tensor workspace =
      partials_workspace(grad_weight_splits(p), grad_weight.numel(), grad_output);
  C10_CUDA_CHECK(launch_grad_weight_reduce(
      p, cfg, input.const_data_ptr(), grad_output.const_data_ptr(),
      grad_weight.mutable_data_ptr(), workspace.defined() ? workspace.mutable_data_ptr() : nullptr));
}

void grad_bias(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
               const at::Tensor& grad_bias) {
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const LaunchConfig cfg = config_for(grad_output, {grad_output, grad_bias});
  const at::Tensor workspace =
      partials_workspace(grad_bias_splits(p), grad_bias.numel(), grad_output);
  C10_CUDA_CHECK(launch_grad_bias_reduce(
      p, cfg, grad_output.const_data_ptr(), grad_bias.mutable_data_ptr(), grad_bias.stride(0),
      workspace.defined() ? workspace.mutable_data_ptr() : nullptr));
}

}  // namespace tconv3d::cuda
