#include "ops.h"

#include <atomic>
#include <limits>

#include <ATen/ATen.h>

#include "cpu/cpu_passes.h"
#include "problem.h"
#ifdef TCONV3D_WITH_CUDA
#include "cuda/cuda_passes.h"
#endif

namespace tconv3d {
namespace {

// Runs the CPU or CUDA implementation of a pass, by the device of `reference`.
#ifdef TCONV3D_WITH_CUDA
#define TCONV3D_RUN_PASS(reference, pass, ...)                                               \
  do {                                                                                       \
    if ((reference).is_cuda()) {                                                             \
      cuda::pass(__VA_ARGS__);                                                               \
    } else {                                                                                 \
      TORCH_CHECK((reference).is_cpu(), "tconv3d: unsupported device ", (reference).device()); \
      cpu::pass(__VA_ARGS__);                                                                \
    }                                                                                        \
  } while (0)
#else
#define TCONV3D_RUN_PASS(reference, pass, ...)                                                  \
  do {                                                                                          \
    TORCH_CHECK((reference).is_cpu(), "tconv3d: built without CUDA, cannot run on ",            \
                (reference).device());                                                          \
    cpu::pass(__VA_ARGS__);                                                                     \
  } while (0)
#endif

std::atomic<bool> g_poison_results{false};

// Every result tensor comes from here, so the poison hook covers every kernel.
at::Tensor new_result(at::IntArrayRef shape, const at::TensorOptions& options) {
  at::Tensor t = at::empty(shape, options);
  if (g_poison_results.load()) t.fill_(std::numeric_limits<double>::quiet_NaN());
  return t;
}

at::Tensor empty_like_format(at::IntArrayRef shape, const at::Tensor& format_source) {
  return new_result(shape, format_source.options().memory_format(
                               format_source.suggest_memory_format()));
}

// grad_input's result, batched, in grad_output's memory format.
at::Tensor new_grad_input(const ConvTranspose3dProblem& problem, const at::Tensor& gy) {
  return empty_like_format({problem.batch, problem.in_channels, problem.in_size[0],
                            problem.in_size[1], problem.in_size[2]},
                           gy);
}

void check_grad_output(const ConvTranspose3dProblem& problem, const at::Tensor& grad_output) {
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(problem.output_shape()),
              "conv_transpose3d backward: expected grad_output of size ",
              text(problem.output_shape()), ", but got ", text(grad_output.sizes()));
}

}  // namespace

void set_poison_results(bool on) { g_poison_results.store(on); }

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight,
                   const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                   at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                   at::IntArrayRef dilation) {
  constexpr const char* op = "conv_transpose3d";
  check_supported_dtype(op, input, "input");
  check_same_dtype_and_device(op, input, "input", weight, "weight");
  const auto problem = ConvTranspose3dProblem::from_sizes(input.sizes(), weight.sizes(), stride,
                                                          padding, output_padding, groups,
                                                          dilation);
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) {
    check_same_dtype_and_device(op, input, "input", *bias, "bias");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == problem.out_channels,
                "conv_transpose3d: given weight of size ", text(weight.sizes()),
                ", expected bias to be 1-dimensional with ", text(problem.out_channels),
                " elements, but got bias of size ", text(bias->sizes()), " instead");
  }
  const at::Tensor x = as_batched(input, problem.batched);
  at::Tensor y = empty_like_format(
      {problem.batch, problem.out_channels, problem.out_size[0], problem.out_size[1],
       problem.out_size[2]},
      x);
  const std::optional<at::Tensor> b = has_bias ? bias : std::nullopt;
  const auto params = problem.params(x, weight, y, b);
  TCONV3D_RUN_PASS(x, forward, params, x, weight, b, y);
  return problem.batched ? y : y.squeeze(0);
}

at::Tensor grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                      at::IntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                      at::IntArrayRef output_padding, int64_t groups, at::IntArrayRef dilation) {
  constexpr const char* op = "conv_transpose3d grad_input";
  check_supported_dtype(op, grad_output, "grad_output");
  check_same_dtype_and_device(op, grad_output, "grad_output", weight, "weight");
  const auto problem = ConvTranspose3dProblem::from_sizes(input_size, weight.sizes(), stride,
                                                          padding, output_padding, groups,
                                                          dilation);
  check_grad_output(problem, grad_output);
  const at::Tensor gy = as_batched(grad_output, problem.batched);
  at::Tensor gx = new_grad_input(problem, gy);
  const auto params = problem.params(gx, weight, gy);
  TCONV3D_RUN_PASS(gy, grad_input, params, gy, weight, gx);
  return problem.batched ? gx : gx.squeeze(0);
}

namespace {

// What grad_weight and grad_weight_and_bias share: checks, sizes, gw.
struct GradWeightCall {
  ConvTranspose3dProblem problem;
  at::Tensor gy, x, gw;
};

GradWeightCall prepare_grad_weight(const char* op, const at::Tensor& grad_output,
                                   const at::Tensor& input, at::IntArrayRef weight_size,
                                   at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef output_padding, int64_t groups,
                                   at::IntArrayRef dilation) {
  check_supported_dtype(op, grad_output, "grad_output");
  check_same_dtype_and_device(op, grad_output, "grad_output", input, "input");
  const auto problem = ConvTranspose3dProblem::from_sizes(input.sizes(), weight_size, stride,
                                                          padding, output_padding, groups,
                                                          dilation);
  check_grad_output(problem, grad_output);
  const at::Tensor gy = as_batched(grad_output, problem.batched);
  const at::Tensor x = as_batched(input, problem.batched);
  // gw in x's memory format, as cuDNN gives a channels-last input's (torch
  // also makes it channels-last for a channels-last weight, which this op
  // does not see); kernels write it at its strides.
  return {problem, gy, x, empty_like_format(problem.weight_shape(), x)};
}

// The bias pass needs only grad_output's sizes and strides (batched).
ConvTranspose3dParams bias_params(const at::Tensor& gy) {
  ConvTranspose3dParams params{};
  params.batch = gy.size(0);
  params.out_channels = gy.size(1);
  for (int i = 0; i < 3; ++i) params.axis[i].out = gy.size(2 + i);
  params.output = strides_of(gy);
  return params;
}

}  // namespace

at::Tensor grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                       at::IntArrayRef weight_size, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                       at::IntArrayRef dilation) {
  GradWeightCall c = prepare_grad_weight("conv_transpose3d grad_weight", grad_output, input,
                                         weight_size, stride, padding, output_padding, groups,
                                         dilation);
  // An empty batch sums nothing, whichever kernel the shape would take (the
  // Hopper grad-weight GEMM returned without writing gw).
  if (c.problem.batch == 0) return c.gw.zero_();
  const auto params = c.problem.params(c.x, c.gw, c.gy);
  TCONV3D_RUN_PASS(c.gy, grad_weight, params, c.gy, c.x, c.gw);
  return c.gw;
}

at::Tensor grad_bias(const at::Tensor& grad_output) {
  constexpr const char* op = "conv_transpose3d grad_bias";
  check_supported_dtype(op, grad_output, "grad_output");
  TORCH_CHECK(grad_output.dim() == 4 || grad_output.dim() == 5, op,
              ": expected 4D (unbatched) or 5D (batched) grad_output, but got size ",
              text(grad_output.sizes()));
  const at::Tensor gy = as_batched(grad_output, grad_output.dim() == 5);
  at::Tensor gb = new_result({gy.size(1)}, gy.options());
  if (gy.size(0) == 0) return gb.zero_();  // an empty sum, as for grad_weight
  TCONV3D_RUN_PASS(gy, grad_bias, bias_params(gy), gy, gb);
  return gb;
}

namespace {

// The backward's scope in which CUDA GEMMs share channels-last copies (and
// the copy of grad_output sums the bias); nothing elsewhere.
#ifdef TCONV3D_WITH_CUDA
using SharedPacksScope = std::optional<cuda::SharedPacks>;
bool bias_summed(const SharedPacksScope& scope) { return scope && scope->bias_summed(); }
#else
struct SharedPacksScope {};
bool bias_summed(const SharedPacksScope&) { return false; }
#endif

// gw (and gb where defined, unless a copy of grad_output summed it already:
// `scope` is given the bias only where no kernel fuses it); batch > 0.
void run_grad_weight_and_bias(const GradWeightCall& c, const at::Tensor& gb,
                              const SharedPacksScope& scope = {}) {
  const auto params = c.problem.params(c.x, c.gw, c.gy);
#ifdef TCONV3D_WITH_CUDA
  if (gb.defined() && c.gy.is_cuda() &&
      cuda::fused_grad_weight_and_bias(params, c.gy, c.x, c.gw, gb)) {
    return;
  }
#endif
  TCONV3D_RUN_PASS(c.gy, grad_weight, params, c.gy, c.x, c.gw);
  if (gb.defined() && !bias_summed(scope)) {
    TCONV3D_RUN_PASS(c.gy, grad_bias, bias_params(c.gy), c.gy, gb);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> grad_weight_and_bias(
    const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    int64_t groups, at::IntArrayRef dilation) {
  GradWeightCall c = prepare_grad_weight("conv_transpose3d grad_weight_and_bias", grad_output,
                                         input, weight_size, stride, padding, output_padding,
                                         groups, dilation);
  at::Tensor gb = new_result({c.problem.out_channels}, c.gy.options());
  if (c.problem.batch == 0) return {c.gw.zero_(), gb.zero_()};
  run_grad_weight_and_bias(c, gb);
  return {c.gw, gb};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    int64_t groups, at::IntArrayRef dilation, bool bias) {
  constexpr const char* op = "conv_transpose3d backward";
  check_same_dtype_and_device(op, grad_output, "grad_output", weight, "weight");
  GradWeightCall c = prepare_grad_weight(op, grad_output, input, weight.sizes(), stride, padding,
                                         output_padding, groups, dilation);
  at::Tensor gx = new_grad_input(c.problem, c.gy);
  at::Tensor gb = new_result({bias ? c.problem.out_channels : 0}, c.gy.options());
  if (c.problem.batch == 0) {
    return {c.problem.batched ? gx : gx.squeeze(0), c.gw.zero_(), gb.zero_()};
  }
  // grad_output copied channels-last once for both GEMMs that read it so,
  // summing the bias on the way unless the grad-weight kernel fuses it.
  SharedPacksScope shared;
#ifdef TCONV3D_WITH_CUDA
  if (c.gy.is_cuda()) {
    const bool fused =
        cuda::fuses_grad_weight_and_bias(c.problem.params(c.x, c.gw, c.gy), c.gy, c.x);
    shared.emplace(c.gy, fused ? at::Tensor() : gb);
  }
#endif
  const auto input_params = c.problem.params(gx, weight, c.gy);
  TCONV3D_RUN_PASS(c.gy, grad_input, input_params, c.gy, weight, gx);
  run_grad_weight_and_bias(c, bias ? gb : at::Tensor(), shared);
  return {c.problem.batched ? gx : gx.squeeze(0), c.gw, gb};
}

}  // namespace tconv3d
