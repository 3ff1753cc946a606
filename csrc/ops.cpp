#include "ops.h"

#include <atomic>
#include <limits>

#include <ATen/ATen.h>
#include <c10/util/strides.h>

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

// The memory format of a layer's results, by torch's rule for its cuDNN and
// oneDNN convolutions (cudnn_conv_suggest_memory_format): channels-last where
// either 5-D operand suggests it, but not in float64, which torch computes
// contiguous (the op layer has checked the two share a dtype).  A model
// converted to channels_last_3d then stays channels-last whatever format its
// input comes in.
at::MemoryFormat results_format(const at::Tensor& activation, const at::Tensor& other) {
  constexpr auto channels_last = at::MemoryFormat::ChannelsLast3d;
  if (activation.scalar_type() == at::kDouble) return at::MemoryFormat::Contiguous;
  return activation.suggest_memory_format() == channels_last ||
                 other.suggest_memory_format() == channels_last
             ? channels_last
             : at::MemoryFormat::Contiguous;
}

// A 5-D activation (x or grad_output) as kernels take it: as it is, at any
// strides, where it suggests `format`; otherwise copied into `format`, as
// torch copies it for cuDNN.  So a kernel reads its activations and writes
// its result in one format, the combinations the parity sweep covers, and
// an operator given what this returns derives `format` from it again.
at::Tensor in_format(const at::Tensor& t, at::MemoryFormat format) {
  if (t.suggest_memory_format() == format) return t;
  const at::Tensor dense = t.contiguous(format);
  if (dense.suggest_memory_format() == format) return dense;
  // One channel or one position: dense in both formats, so contiguous() kept
  // strides that suggest the other.  The same elements at format's strides.
  return format == at::MemoryFormat::ChannelsLast3d
             ? dense.as_strided(dense.sizes(), c10::get_channels_last_strides_3d(dense.sizes()))
             : dense.as_strided(dense.sizes(), c10::contiguous_strides(dense.sizes()));
}

at::Tensor new_result_in(at::IntArrayRef shape, const at::Tensor& like, at::MemoryFormat format) {
  return new_result(shape, like.options().memory_format(format));
}

// grad_input's result, batched.
at::Tensor new_grad_input(const ConvTranspose3dProblem& problem, const at::Tensor& gy,
                          at::MemoryFormat format) {
  return new_result_in({problem.batch, problem.in_channels, problem.in_size[0],
                        problem.in_size[1], problem.in_size[2]},
                       gy, format);
}

void check_grad_output(const ConvTranspose3dProblem& problem, const at::Tensor& grad_output) {
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(problem.output_shape()),
              "conv_transpose3d backward: expected grad_output of size ",
              text(problem.output_shape()), ", but got ", text(grad_output.sizes()));
}

}  // namespace

void set_poison_results(bool on) { g_poison_results.store(on); }

at::Tensor grad_output_in_results_format(const at::Tensor& grad_output, const at::Tensor& input,
                                         const at::Tensor& weight) {
  const bool batched = input.dim() == 5;
  const at::Tensor gy = in_format(as_batched(grad_output, batched),
                                  results_format(as_batched(input, batched), weight));
  return batched ? gy : gy.squeeze(0);
}

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
  const at::Tensor x_any = as_batched(input, problem.batched);
  const at::MemoryFormat format = results_format(x_any, weight);
  const at::Tensor x = in_format(x_any, format);
  at::Tensor y = new_result_in({problem.batch, problem.out_channels, problem.out_size[0],
                                problem.out_size[1], problem.out_size[2]},
                               x, format);
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
  const at::Tensor gy_any = as_batched(grad_output, problem.batched);
  const at::MemoryFormat format = results_format(gy_any, weight);
  const at::Tensor gy = in_format(gy_any, format);
  at::Tensor gx = new_grad_input(problem, gy, format);
  const auto params = problem.params(gx, weight, gy);
  TCONV3D_RUN_PASS(gy, grad_input, params, gy, weight, gx);
  return problem.batched ? gx : gx.squeeze(0);
}

namespace {

// What grad_weight and grad_weight_and_bias share: checks, sizes, gw.
struct GradWeightCall {
  ConvTranspose3dProblem problem;
  at::Tensor gy, x;  // in `format`
  at::MemoryFormat format;
  at::Tensor gw;
};

// The results' format is the forward's, results_format(x, weight), where the
// call has the weight (backward, as torch's); otherwise grad_output stands in
// for it, which the layer's autograd gives in the forward's format.
GradWeightCall prepare_grad_weight(const char* op, const at::Tensor& grad_output,
                                   const at::Tensor& input, at::IntArrayRef weight_size,
                                   const at::Tensor* weight, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef output_padding,
                                   int64_t groups, at::IntArrayRef dilation) {
  check_supported_dtype(op, grad_output, "grad_output");
  check_same_dtype_and_device(op, grad_output, "grad_output", input, "input");
  const auto problem = ConvTranspose3dProblem::from_sizes(input.sizes(), weight_size, stride,
                                                          padding, output_padding, groups,
                                                          dilation);
  check_grad_output(problem, grad_output);
  const at::Tensor gy = as_batched(grad_output, problem.batched);
  const at::Tensor x = as_batched(input, problem.batched);
  const at::MemoryFormat format = results_format(x, weight ? *weight : gy);
  return {problem, in_format(gy, format), in_format(x, format), format,
          new_result_in(problem.weight_shape(), x, format)};
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
                                         weight_size, nullptr, stride, padding,
                                         output_padding, groups, dilation);
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
                                         input, weight_size, nullptr, stride, padding,
                                         output_padding, groups, dilation);
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
  GradWeightCall c = prepare_grad_weight(op, grad_output, input, weight.sizes(), &weight, stride,
                                         padding, output_padding, groups, dilation);
  at::Tensor gx = new_grad_input(c.problem, c.gy, c.format);
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
