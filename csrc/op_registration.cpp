// The four passes as torch operators (torch.ops.tconv3d.*): schemas, the
// CPU/CUDA kernels of ops.h, and autograd kernels written in C++.
//
// Autograd lives here rather than in Python because a layer that replaces
// nn.ConvTranspose3d must not cost more host time per call than torch's own:
// a Python autograd.Function around a Python custom op spent ~4x cuDNN's whole
// host path per training step.  Each backward is written with the other ops
// (called through the dispatcher, so they record graph under create_graph):
// derivatives of any order stay inside tconv3d.
//
//   y  = forward(x, w, b)       gx = grad_input(gy, w)    gw = grad_weight(gy, x)
//   d gx: gy <- forward(ggx, w),  w <- grad_weight(gy, ggx)
//   d gw: gy <- forward(x, ggw),  x <- grad_input(gy, ggw)
//   d gb: gy <- ggb broadcast
//
// grad_weight_and_bias gives (gw, gb) from one pass over gy where a kernel
// fuses them, and backward (gx, gw, gb) sharing gy's channels-last copy;
// ForwardFunction's backward takes them when those gradients are wanted.
// Under grad mode (create_graph) their autograd kernels call the separate
// differentiable ops instead, so higher derivatives keep their formulas.
//
// Autocast is here too (forward_autocast), so the operator itself, not only
// the Python wrapper, follows torch.autocast as aten's convolutions do.
//
// Fake (meta) implementations for torch.compile are in python/tconv3d/_ops.py.
#include <initializer_list>
#include <optional>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops.h"

namespace tconv3d {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using at::IntArrayRef;
using c10::SymIntArrayRef;

// ---------------------------------------------------------------- dispatcher calls
at::Tensor call_forward(const at::Tensor& input, const at::Tensor& weight,
                        const std::optional<at::Tensor>& bias, IntArrayRef stride,
                        IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
                        IntArrayRef dilation) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tconv3d::forward", "")
                             .typed<decltype(forward)>();
  return op.call(input, weight, bias, stride, padding, output_padding, groups, dilation);
}

using SizedPass = at::Tensor(const at::Tensor&, const at::Tensor&, SymIntArrayRef, IntArrayRef,
                             IntArrayRef, IntArrayRef, int64_t, IntArrayRef);

at::Tensor call_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                           SymIntArrayRef input_size, IntArrayRef stride, IntArrayRef padding,
                           IntArrayRef output_padding, int64_t groups, IntArrayRef dilation) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tconv3d::grad_input", "")
                             .typed<SizedPass>();
  return op.call(grad_output, weight, input_size, stride, padding, output_padding, groups,
                 dilation);
}

at::Tensor call_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                            SymIntArrayRef weight_size, IntArrayRef stride, IntArrayRef padding,
                            IntArrayRef output_padding, int64_t groups, IntArrayRef dilation) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tconv3d::grad_weight", "")
                             .typed<SizedPass>();
  return op.call(grad_output, input, weight_size, stride, padding, output_padding, groups,
                 dilation);
}

using FusedPass = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                      SymIntArrayRef, IntArrayRef, IntArrayRef,
                                                      IntArrayRef, int64_t, IntArrayRef);

std::tuple<at::Tensor, at::Tensor> call_grad_weight_and_bias(
    const at::Tensor& grad_output, const at::Tensor& input, SymIntArrayRef weight_size,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
    IntArrayRef dilation) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tconv3d::grad_weight_and_bias", "")
                             .typed<FusedPass>();
  return op.call(grad_output, input, weight_size, stride, padding, output_padding, groups,
                 dilation);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> call_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
    IntArrayRef dilation, bool bias) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tconv3d::backward", "")
                             .typed<decltype(backward)>();
  return op.call(grad_output, input, weight, stride, padding, output_padding, groups, dilation,
                 bias);
}

at::Tensor call_grad_bias(const at::Tensor& grad_output) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tconv3d::grad_bias", "")
                             .typed<decltype(grad_bias)>();
  return op.call(grad_output);
}

// ---------------------------------------------------------------- backend kernels
// The sizes arrive as SymInts (the schema must take them so for symbolic
// tracing); real kernels only ever see concrete ones.
at::Tensor grad_input_kernel(const at::Tensor& grad_output, const at::Tensor& weight,
                             SymIntArrayRef input_size, IntArrayRef stride, IntArrayRef padding,
                             IntArrayRef output_padding, int64_t groups, IntArrayRef dilation) {
  return grad_input(grad_output, weight, C10_AS_INTARRAYREF_SLOW(input_size), stride, padding,
                    output_padding, groups, dilation);
}

at::Tensor grad_weight_kernel(const at::Tensor& grad_output, const at::Tensor& input,
                              SymIntArrayRef weight_size, IntArrayRef stride, IntArrayRef padding,
                              IntArrayRef output_padding, int64_t groups, IntArrayRef dilation) {
  return grad_weight(grad_output, input, C10_AS_INTARRAYREF_SLOW(weight_size), stride, padding,
                     output_padding, groups, dilation);
}

std::tuple<at::Tensor, at::Tensor> grad_weight_and_bias_kernel(
    const at::Tensor& grad_output, const at::Tensor& input, SymIntArrayRef weight_size,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
    IntArrayRef dilation) {
  return grad_weight_and_bias(grad_output, input, C10_AS_INTARRAYREF_SLOW(weight_size), stride,
                              padding, output_padding, groups, dilation);
}

// ---------------------------------------------------------------- autograd
// (stride, padding, output_padding, groups, dilation), saved with the context.
struct Geometry {
  std::vector<int64_t> stride, padding, output_padding, dilation;
  int64_t groups;
};

// One saved entry, not five: each is a string-keyed map insertion on every
// forward call and a lookup in every backward.
void save_geometry(AutogradContext* ctx, IntArrayRef stride, IntArrayRef padding,
                   IntArrayRef output_padding, int64_t groups, IntArrayRef dilation) {
  std::vector<int64_t> packed;
  packed.reserve((stride.size() + 1) * 4 + 1);
  for (IntArrayRef values : {stride, padding, output_padding, dilation}) {
    packed.push_back(static_cast<int64_t>(values.size()));
    packed.insert(packed.end(), values.begin(), values.end());
  }
  packed.push_back(groups);
  ctx->saved_data["geometry"] = std::move(packed);
}

Geometry geometry_of(AutogradContext* ctx) {
  const std::vector<int64_t> packed = ctx->saved_data["geometry"].toIntVector();
  auto next = packed.begin();
  auto take = [&next] {
    const int64_t count = *next++;
    std::vector<int64_t> values(next, next + count);
    next += count;
    return values;
  };
  Geometry g;
  g.stride = take();
  g.padding = take();
  g.output_padding = take();
  g.dilation = take();
  g.groups = *next;
  return g;
}

#define TCONV3D_GEOMETRY(g) g.stride, g.padding, g.output_padding, g.groups, g.dilation

class ForwardFunction : public torch::autograd::Function<ForwardFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input,
                            const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding,
                            int64_t groups, IntArrayRef dilation) {
    ctx->save_for_backward({input, weight});
    save_geometry(ctx, stride, padding, output_padding, groups, dilation);
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return call_forward(input, weight, bias, stride, padding, output_padding, groups, dilation);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &weight = saved[1];
    const Geometry g = geometry_of(ctx);
    at::Tensor gx, gw, gb;
    const bool bias = ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2);
    const at::Tensor gy = ctx->needs_input_grad(0) || ctx->needs_input_grad(1)
                              ? grad_output_in_results_format(grads[0], input, weight)
                              : grads[0];
    if (ctx->needs_input_grad(0) && ctx->needs_input_grad(1)) {
      std::tie(gx, gw, gb) = call_backward(gy, input, weight, TCONV3D_GEOMETRY(g), bias);
      if (!bias) gb = at::Tensor();
    } else if (ctx->needs_input_grad(0)) {
      gx = call_grad_input(gy, weight, input.sym_sizes(), TCONV3D_GEOMETRY(g));
      if (bias) gb = call_grad_bias(gy);
    } else if (ctx->needs_input_grad(1) && bias) {
      std::tie(gw, gb) = call_grad_weight_and_bias(gy, input, weight.sym_sizes(),
                                                   TCONV3D_GEOMETRY(g));
    } else if (ctx->needs_input_grad(1)) {
      gw = call_grad_weight(gy, input, weight.sym_sizes(), TCONV3D_GEOMETRY(g));
    } else if (bias) {
      gb = call_grad_bias(gy);
    }
    return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class GradInputFunction : public torch::autograd::Function<GradInputFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output,
                            const at::Tensor& weight, SymIntArrayRef input_size,
                            IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding,
                            int64_t groups, IntArrayRef dilation) {
    ctx->save_for_backward({grad_output, weight});
    save_geometry(ctx, stride, padding, output_padding, groups, dilation);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return call_grad_input(grad_output, weight, input_size, stride, padding, output_padding,
                           groups, dilation);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &gy = saved[0], &weight = saved[1], &ggx = grads[0];
    const Geometry g = geometry_of(ctx);
    at::Tensor d_gy, d_weight;
    if (ctx->needs_input_grad(0)) d_gy = call_forward(ggx, weight, std::nullopt, TCONV3D_GEOMETRY(g));
    if (ctx->needs_input_grad(1)) {
      d_weight = call_grad_weight(gy, ggx, weight.sym_sizes(), TCONV3D_GEOMETRY(g));
    }
    return {d_gy, d_weight, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

class GradWeightFunction : public torch::autograd::Function<GradWeightFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output,
                            const at::Tensor& input, SymIntArrayRef weight_size,
                            IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding,
                            int64_t groups, IntArrayRef dilation) {
    ctx->save_for_backward({grad_output, input});
    save_geometry(ctx, stride, padding, output_padding, groups, dilation);
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return call_grad_weight(grad_output, input, weight_size, stride, padding, output_padding,
                            groups, dilation);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &gy = saved[0], &input = saved[1], &ggw = grads[0];
    const Geometry g = geometry_of(ctx);
    at::Tensor d_gy, d_input;
    if (ctx->needs_input_grad(0)) d_gy = call_forward(input, ggw, std::nullopt, TCONV3D_GEOMETRY(g));
    if (ctx->needs_input_grad(1)) {
      d_input = call_grad_input(gy, ggw, input.sym_sizes(), TCONV3D_GEOMETRY(g));
    }
    return {d_gy, d_input, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

class GradBiasFunction : public torch::autograd::Function<GradBiasFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output) {
    ctx->saved_data["shape"] = grad_output.sym_sizes();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return call_grad_bias(grad_output);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::vector<c10::SymInt> shape = ctx->saved_data["shape"].toSymIntVector();
    // Channels are dimension 0 unbatched, 1 batched.
    std::vector<c10::SymInt> view(shape.size(), c10::SymInt(1));
    view[shape.size() == 4 ? 0 : 1] = c10::SymInt(-1);
    return {grads[0].reshape_symint(view).expand_symint(shape)};
  }
};

#undef TCONV3D_GEOMETRY

// Whether an autograd kernel has derivatives to track: a graph to record, or
// a forward-mode tangent (which the Function refuses: not silently dropped).
// Where it has none (inference, no_grad, frozen layers), the kernels below
// call the operator below autograd without their Function, as the Function
// itself would compute: 1.7 µs less host time a call (12.9 against 14.6 µs
// for a whole one-voxel CPU call, A/B on this project's 2-core CPU machine).
bool tracks_derivatives(std::initializer_list<at::Tensor> tensors) {
  const bool recording = at::GradMode::is_enabled();
  for (const at::Tensor& t : tensors) {
    if (t.defined() && ((recording && t.requires_grad()) || t._fw_grad(/*level=*/0).defined())) {
      return true;
    }
  }
  return false;
}

// Function::apply(args...) where an autograd kernel has derivatives to
// track, else call(args...) below autograd: what the Function computes.
template <typename Function, typename Call, typename... Args>
at::Tensor through_autograd(std::initializer_list<at::Tensor> tracked, Call call,
                            const Args&... args) {
  if (tracks_derivatives(tracked)) return Function::apply(args...);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return call(args...);
}

at::Tensor forward_autograd(const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, IntArrayRef stride,
                            IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
                            IntArrayRef dilation) {
  return through_autograd<ForwardFunction>({input, weight, bias.value_or(at::Tensor())},
                                           call_forward, input, weight, bias, stride, padding,
                                           output_padding, groups, dilation);
}

at::Tensor grad_input_autograd(const at::Tensor& grad_output, const at::Tensor& weight,
                               SymIntArrayRef input_size, IntArrayRef stride, IntArrayRef padding,
                               IntArrayRef output_padding, int64_t groups, IntArrayRef dilation) {
  return through_autograd<GradInputFunction>({grad_output, weight}, call_grad_input, grad_output,
                                             weight, input_size, stride, padding, output_padding,
                                             groups, dilation);
}

at::Tensor grad_weight_autograd(const at::Tensor& grad_output, const at::Tensor& input,
                                SymIntArrayRef weight_size, IntArrayRef stride,
                                IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
                                IntArrayRef dilation) {
  return through_autograd<GradWeightFunction>({grad_output, input}, call_grad_weight,
                                              grad_output, input, weight_size, stride, padding,
                                              output_padding, groups, dilation);
}

at::Tensor grad_bias_autograd(const at::Tensor& grad_output) {
  return through_autograd<GradBiasFunction>({grad_output}, call_grad_bias, grad_output);
}

// The pair as the two differentiable ops where derivatives are tracked (a
// forward-mode tangent then raises there, not dropped by the fused kernel);
// otherwise the fused kernel, below autograd.
std::tuple<at::Tensor, at::Tensor> grad_weight_and_bias_autograd(
    const at::Tensor& grad_output, const at::Tensor& input, SymIntArrayRef weight_size,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
    IntArrayRef dilation) {
  if (tracks_derivatives({grad_output, input})) {
    return {grad_weight_autograd(grad_output, input, weight_size, stride, padding, output_padding,
                                 groups, dilation),
            grad_bias_autograd(grad_output)};
  }
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return call_grad_weight_and_bias(grad_output, input, weight_size, stride, padding,
                                   output_padding, groups, dilation);
}

// The three as the separate differentiable ops where derivatives are tracked
// (as grad_weight_and_bias); otherwise one call sharing grad_output's
// channels-last copy.
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_autograd(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
    IntArrayRef dilation, bool bias) {
  if (tracks_derivatives({grad_output, input, weight})) {
    at::Tensor gb = bias ? grad_bias_autograd(grad_output) : grad_output.new_empty({0});
    return {grad_input_autograd(grad_output, weight, input.sym_sizes(), stride, padding,
                                output_padding, groups, dilation),
            grad_weight_autograd(grad_output, input, weight.sym_sizes(), stride, padding,
                                 output_padding, groups, dilation),
            gb};
  }
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return call_backward(grad_output, input, weight, stride, padding, output_padding, groups,
                       dilation, bias);
}

// ---------------------------------------------------------------- autocast
// As for torch's own convolutions: under autocast the forward's floating
// operands (float64 excepted) run in the autocast dtype, weights cast once
// per autocast region (cached_cast), and the cast stays differentiable (this
// key sits above Autograd).  The backward ops are not autocast: they receive
// the forward's dtypes.
template <c10::DeviceType device>
at::Tensor forward_autocast(const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, IntArrayRef stride,
                            IntArrayRef padding, IntArrayRef output_padding, int64_t groups,
                            IntArrayRef dilation) {
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(
      at::autocast::get_autocast_dispatch_key_from_device_type(device));
  const at::ScalarType dtype = at::autocast::get_autocast_dtype(device);
  return call_forward(at::autocast::cached_cast(dtype, input, device),
                      at::autocast::cached_cast(dtype, weight, device),
                      at::autocast::cached_cast(dtype, bias, device), stride, padding,
                      output_padding, groups, dilation);
}

}  // namespace
}  // namespace tconv3d

TORCH_LIBRARY(tconv3d, m) {
  m.def(
      "forward(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, "
      "int[] output_padding, int groups, int[] dilation) -> Tensor");
  m.def(
      "grad_input(Tensor grad_output, Tensor weight, SymInt[] input_size, int[] stride, "
      "int[] padding, int[] output_padding, int groups, int[] dilation) -> Tensor");
  m.def(
      "grad_weight(Tensor grad_output, Tensor input, SymInt[] weight_size, int[] stride, "
      "int[] padding, int[] output_padding, int groups, int[] dilation) -> Tensor");
  m.def("grad_bias(Tensor grad_output) -> Tensor");
  m.def(
      "grad_weight_and_bias(Tensor grad_output, Tensor input, SymInt[] weight_size, "
      "int[] stride, int[] padding, int[] output_padding, int groups, int[] dilation) "
      "-> (Tensor, Tensor)");
  m.def(
      "backward(Tensor grad_output, Tensor input, Tensor weight, int[] stride, int[] padding, "
      "int[] output_padding, int groups, int[] dilation, bool bias) -> (Tensor, Tensor, Tensor)");
}

// ops.h picks the CPU or CUDA kernels by the tensors' device, so both backend
// keys take the same functions.
#define TCONV3D_REGISTER_BACKEND(key)                                      \
  TORCH_LIBRARY_IMPL(tconv3d, key, m) {                                    \
    m.impl("forward", &tconv3d::forward);                                  \
    m.impl("grad_input", &tconv3d::grad_input_kernel);                     \
    m.impl("grad_weight", &tconv3d::grad_weight_kernel);                   \
    m.impl("grad_bias", &tconv3d::grad_bias);                              \
    m.impl("grad_weight_and_bias", &tconv3d::grad_weight_and_bias_kernel); \
    m.impl("backward", &tconv3d::backward);                                \
  }
TCONV3D_REGISTER_BACKEND(CPU)
#ifdef TCONV3D_WITH_CUDA
TCONV3D_REGISTER_BACKEND(CUDA)
#endif
#undef TCONV3D_REGISTER_BACKEND

TORCH_LIBRARY_IMPL(tconv3d, AutocastCPU, m) {
  m.impl("forward", &tconv3d::forward_autocast<c10::DeviceType::CPU>);
}
TORCH_LIBRARY_IMPL(tconv3d, AutocastCUDA, m) {
  m.impl("forward", &tconv3d::forward_autocast<c10::DeviceType::CUDA>);
}

TORCH_LIBRARY_IMPL(tconv3d, Autograd, m) {
  m.impl("forward", &tconv3d::forward_autograd);
  m.impl("grad_input", &tconv3d::grad_input_autograd);
  m.impl("grad_weight", &tconv3d::grad_weight_autograd);
  m.impl("grad_bias", &tconv3d::grad_bias_autograd);
  m.impl("grad_weight_and_bias", &tconv3d::grad_weight_and_bias_autograd);
  m.impl("backward", &tconv3d::backward_autograd);
}
