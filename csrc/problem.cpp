#include "problem.h"

#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include <limits>

namespace tconv3d {

std::string text(int64_t v) { return std::to_string(v); }

std::string text(at::IntArrayRef values) {
  std::string s = "[";
  for (size_t i = 0; i < values.size(); ++i) s += (i ? ", " : "") + std::to_string(values[i]);
  return s + "]";
}

namespace {

Triple expand3(at::IntArrayRef v, const char* name) {
  TORCH_CHECK(v.size() == 1 || v.size() == 3, "conv_transpose3d: expected ", name,
              " to be a single integer value or a list of 3 values, but got ", name, "=", text(v));
  return v.size() == 1 ? Triple{v[0], v[0], v[0]} : Triple{v[0], v[1], v[2]};
}

bool all_of(const Triple& t, bool (*pred)(int64_t)) {
  return pred(t[0]) && pred(t[1]) && pred(t[2]);
}

// transposed_output_extent in checked arithmetic: a huge stride, padding or
// dilation must raise, not wrap around to a plausible extent.  Arguments are
// validated (positive sizes, stride and dilation; non-negative paddings).
bool output_extent_overflows(int64_t in, int64_t kernel, int64_t stride, int64_t padding,
                             int64_t dilation, int64_t output_padding) {
  int64_t span = 0, twice_padding = 0, reach = 0, sum = 0;
  return c10::mul_overflows(in - 1, stride, &span) ||
         c10::mul_overflows(int64_t(2), padding, &twice_padding) ||
         c10::mul_overflows(dilation, kernel - 1, &reach) ||
         c10::add_overflows(span, reach, &sum) || c10::add_overflows(sum, output_padding, &sum) ||
         c10::add_overflows(sum, int64_t(1), &sum);
}

}  // namespace

ConvTranspose3dProblem ConvTranspose3dProblem::from_sizes(at::IntArrayRef input_sizes,
                                                          at::IntArrayRef weight_sizes,
                                                          at::IntArrayRef stride,
                                                          at::IntArrayRef padding,
                                                          at::IntArrayRef output_padding,
                                                          int64_t groups,
                                                          at::IntArrayRef dilation) {
  ConvTranspose3dProblem p;
  TORCH_CHECK(input_sizes.size() == 4 || input_sizes.size() == 5,
              "conv_transpose3d: expected 4D (unbatched) or 5D (batched) input, but got input of "
              "size: ",
              text(input_sizes));
  TORCH_CHECK(weight_sizes.size() == 5,
              "conv_transpose3d: expected 5D weight [in_channels, out_channels/groups, kD, kH, "
              "kW], but got weight of size ",
              text(weight_sizes));
  p.stride = expand3(stride, "stride");
  p.padding = expand3(padding, "padding");
  p.output_padding = expand3(output_padding, "output_padding");
  p.dilation = expand3(dilation, "dilation");
  p.groups = groups;
  TORCH_CHECK(all_of(p.stride, [](int64_t v) { return v > 0; }),
              "conv_transpose3d: non-positive stride is not supported, got stride=", text(stride));
  TORCH_CHECK(all_of(p.dilation, [](int64_t v) { return v > 0; }),
              "conv_transpose3d: non-positive dilation is not supported, got dilation=", text(dilation));
  TORCH_CHECK(all_of(p.padding, [](int64_t v) { return v >= 0; }),
              "conv_transpose3d: negative padding is not supported, got padding=", text(padding));
  TORCH_CHECK(all_of(p.output_padding, [](int64_t v) { return v >= 0; }),
              "conv_transpose3d: negative output_padding is not supported, got output_padding=",
              text(output_padding));
  TORCH_CHECK(groups > 0, "conv_transpose3d: non-positive groups is not supported, got groups=",
              text(groups));
  // The kernels' index arithmetic holds a stride or dilation times an extent
  // in 64 bits; torch's own paths fail past 32 bits with unclear messages.
  constexpr int64_t kMaxArgument = std::numeric_limits<int32_t>::max();
  for (const Triple* t : {&p.stride, &p.padding, &p.output_padding, &p.dilation}) {
    TORCH_CHECK(all_of(*t, [](int64_t v) { return v <= kMaxArgument; }),
                "conv_transpose3d: stride, padding, output_padding and dilation above 2^31 - 1 "
                "are not supported, got stride=", text(stride), ", padding=", text(padding),
                ", output_padding=", text(output_padding), ", dilation=", text(dilation));
  }

  p.batched = input_sizes.size() == 5;
  const size_t c_dim = p.batched ? 1 : 0;
  p.batch = p.batched ? input_sizes[0] : 1;
  p.in_channels = input_sizes[c_dim];
  for (int i = 0; i < 3; ++i) p.in_size[i] = input_sizes[c_dim + 1 + i];
  for (int i = 0; i < 3; ++i) p.kernel[i] = weight_sizes[2 + i];

  TORCH_CHECK(weight_sizes[0] > 0 && weight_sizes[1] > 0,
              "conv_transpose3d: expected weight to have non-zero in/out channel dimensions, but "
              "got weight of size ",
              text(weight_sizes));
  TORCH_CHECK(all_of(p.kernel, [](int64_t v) { return v > 0; }),
              "conv_transpose3d: expected a kernel of positive size, but got weight of size ",
              text(weight_sizes));
  TORCH_CHECK(weight_sizes[0] % groups == 0, "conv_transpose3d: given groups=", text(groups),
              ", expected weight to be divisible by ", text(groups),
              " at dimension 0, but got weight of size ", text(weight_sizes));
  TORCH_CHECK(p.in_channels == weight_sizes[0], "conv_transpose3d: given weight of size ",
              text(weight_sizes), ", expected input", text(input_sizes), " to have ",
              text(weight_sizes[0]), " channels, but got ", text(p.in_channels),
              " channels instead");
  TORCH_CHECK(all_of(p.in_size, [](int64_t v) { return v > 0; }),
              "conv_transpose3d: expected input to have non-zero spatial size, but got input of "
              "size ",
              text(input_sizes));
  TORCH_CHECK(p.batch >= 0, "conv_transpose3d: negative batch size");
  for (int i = 0; i < 3; ++i) {
    TORCH_CHECK(p.output_padding[i] < p.stride[i] || p.output_padding[i] < p.dilation[i],
                "conv_transpose3d: output padding must be smaller than either stride or "
                "dilation, but got output_padding=",
                text(output_padding), ", stride=", text(stride), ", dilation=", text(dilation));
  }
  p.out_channels = weight_sizes[1] * groups;
  for (int i = 0; i < 3; ++i) {
    TORCH_CHECK(!output_extent_overflows(p.in_size[i], p.kernel[i], p.stride[i], p.padding[i],
                                         p.dilation[i], p.output_padding[i]),
                "conv_transpose3d: the output size overflows int64: input size per channel ",
                text(p.in_size), ", kernel ", text(p.kernel), ", stride=", text(stride),
                ", padding=", text(padding), ", output_padding=", text(output_padding),
                ", dilation=", text(dilation));
    p.out_size[i] = transposed_output_extent(p.in_size[i], p.kernel[i], p.stride[i],
                                             p.padding[i], p.dilation[i], p.output_padding[i]);
  }
  TORCH_CHECK(all_of(p.out_size, [](int64_t v) { return v > 0; }),
              "conv_transpose3d: given input size per channel: ", text(p.in_size),
              ", calculated output size per channel: ", text(p.out_size),
              ". Output size is too small");
  return p;
}

std::vector<int64_t> ConvTranspose3dProblem::input_shape() const {
  std::vector<int64_t> s{in_channels, in_size[0], in_size[1], in_size[2]};
  if (batched) s.insert(s.begin(), batch);
  return s;
}

std::vector<int64_t> ConvTranspose3dProblem::output_shape() const {
  std::vector<int64_t> s{out_channels, out_size[0], out_size[1], out_size[2]};
  if (batched) s.insert(s.begin(), batch);
  return s;
}

std::vector<int64_t> ConvTranspose3dProblem::weight_shape() const {
  return {in_channels, out_channels / groups, kernel[0], kernel[1], kernel[2]};
}

Strides5 strides_of(const at::Tensor& t) {
  TORCH_INTERNAL_ASSERT(t.dim() == 5);
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3), t.stride(4)};
}

ConvTranspose3dParams ConvTranspose3dProblem::params(const at::Tensor& input_like,
                                                     const at::Tensor& weight_like,
                                                     const at::Tensor& output_like,
                                                     const std::optional<at::Tensor>& bias) const {
  ConvTranspose3dParams p{};
  p.batch = batch;
  p.in_channels = in_channels;
  p.out_channels = out_channels;
  p.groups = groups;
  p.in_per_group = in_channels / groups;
  p.out_per_group = out_channels / groups;
  for (int i = 0; i < 3; ++i) {
    p.axis[i] = make_axis(in_size[i], out_size[i], kernel[i], stride[i], padding[i], dilation[i]);
  }
  if (input_like.defined()) p.input = strides_of(input_like);
  if (weight_like.defined()) p.weight = strides_of(weight_like);
  if (output_like.defined()) p.output = strides_of(output_like);
  p.bias_stride = bias.has_value() && bias->defined() ? bias->stride(0) : 0;
  return p;
}

void check_supported_dtype(const char* op, const at::Tensor& t, const char* name) {
  const auto type = t.scalar_type();
  TORCH_CHECK(type == at::kFloat || type == at::kDouble || type == at::kHalf ||
                  type == at::kBFloat16,
              op, ": unsupported dtype ", type, " for ", name,
              "; expected float32, float64, float16 or bfloat16");
  TORCH_CHECK(t.layout() == at::kStrided, op, ": expected a strided (dense) tensor for ", name,
              ", but got layout ", t.layout());
}

void check_same_dtype_and_device(const char* op, const at::Tensor& reference,
                                 const char* reference_name, const at::Tensor& other,
                                 const char* other_name) {
  TORCH_CHECK(other.scalar_type() == reference.scalar_type(), op, ": ", reference_name,
              " type (", reference.scalar_type(), ") and ", other_name, " type (",
              other.scalar_type(), ") should be the same");
  TORCH_CHECK(other.layout() == at::kStrided, op, ": expected a strided (dense) tensor for ",
              other_name, ", but got layout ", other.layout());
  TORCH_CHECK(other.device() == reference.device(), op, ": expected ", other_name,
              " to be on the same device as ", reference_name, " (", reference.device(),
              "), but got ", other.device());
}

ScalarKind scalar_kind(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return ScalarKind::Float32;
    case at::kDouble:
      return ScalarKind::Float64;
    case at::kHalf:
      return ScalarKind::Float16;
    case at::kBFloat16:
      return ScalarKind::BFloat16;
    default:
      TORCH_CHECK(false, "tconv3d: unsupported dtype ", type);
  }
}

at::Tensor as_batched(const at::Tensor& t, bool batched) {
  return batched ? t : t.unsqueeze(0);
}

}  // namespace tconv3d
