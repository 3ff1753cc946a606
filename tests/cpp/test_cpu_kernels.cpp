// The CPU kernels through the op entry points (ops.h), against a naive SCATTER
// reference written here: for every input element and every kernel tap, add
// x·w into y at o = i·s − p + k·d when o is inside the output.  The kernels
// gather per output element (index_math.h), so the two formulations share
// nothing but the relation itself.  The backward references come from the
// same scatter loop:  grad_x[i] += gy[o]·w,  grad_w += x·gy[o],  grad_b += gy.
//
// Tolerances are bounds, not guesses: each reference is computed in double,
// together with a magnitude Σ|terms| (the same loop on |x|, |w|), and an
// element may differ from the reference by at most rtol·magnitude, plus, for
// 16-bit types, the one rounding of the result.  Results are poisoned with NaN
// before each kernel runs (set_poison_results), so an element a kernel does
// not write fails the comparison.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include "expect_error.h"
#include "ops.h"
#include "problem.h"

namespace tconv3d {
namespace {

using Sizes = std::vector<int64_t>;
using A3 = std::array<int64_t, 3>;

// ---------------------------------------------------------------------------
// Test cases
// ---------------------------------------------------------------------------

struct Case {
  const char* name;
  int64_t batch, cin, cout, groups;
  A3 in, kernel, stride, padding, output_padding, dilation;
  bool bias;
  bool unbatched;

  A3 out() const {
    A3 o{};
    for (int j = 0; j < 3; ++j) {
      o[j] = (in[j] - 1) * stride[j] - 2 * padding[j] + dilation[j] * (kernel[j] - 1) +
             output_padding[j] + 1;
    }
    return o;
  }
  Sizes x5() const { return {batch, cin, in[0], in[1], in[2]}; }
  Sizes y5() const {
    const A3 o = out();
    return {batch, cout, o[0], o[1], o[2]};
  }
  Sizes w() const { return {cin, cout / groups, kernel[0], kernel[1], kernel[2]}; }
  // Shapes as the caller passes them (4-D when unbatched).
  Sizes x() const { return unbatched ? drop_batch(x5()) : x5(); }
  Sizes y() const { return unbatched ? drop_batch(y5()) : y5(); }
  static Sizes drop_batch(const Sizes& s) { return Sizes(s.begin() + 1, s.end()); }
  Sizes stride_v() const { return {stride[0], stride[1], stride[2]}; }
  Sizes padding_v() const { return {padding[0], padding[1], padding[2]}; }
  Sizes output_padding_v() const {
    return {output_padding[0], output_padding[1], output_padding[2]};
  }
  Sizes dilation_v() const { return {dilation[0], dilation[1], dilation[2]}; }
};

A3 all(int64_t v) { return {v, v, v}; }

// name, N, Cin, Cout, G, input DHW, kernel, stride, padding, output_padding, dilation, bias, unbatched
const Case kCases[] = {
    {"aniso_everything", 2, 3, 5, 1, {3, 4, 5}, {3, 2, 3}, {2, 1, 3}, {1, 0, 2}, {1, 0, 2},
     {1, 2, 1}, true, false},
    {"groups2_dilated", 1, 6, 4, 2, {5, 3, 4}, {2, 3, 3}, {3, 2, 2}, {0, 1, 2}, {2, 0, 1},
     {2, 1, 3}, false, false},
    {"depthwise_multiplier", 3, 4, 8, 4, {4, 4, 3}, all(3), all(1), all(1), all(0), all(1), true,
     false},
    {"gcd_stride_dilation", 2, 2, 3, 1, {3, 5, 4}, {3, 2, 2}, {2, 4, 2}, {0, 1, 3}, {1, 3, 1},
     {2, 2, 4}, true, false},
    {"stride_gt_kernel", 2, 3, 2, 1, {3, 4, 2}, {1, 2, 1}, {3, 3, 2}, all(0), {2, 1, 1}, all(1),
     true, false},
    {"large_padding", 2, 3, 3, 1, {5, 6, 4}, all(5), all(3), all(4), all(2), all(2), true, false},
    {"cropped_below_input", 1, 2, 3, 1, {5, 5, 6}, all(2), all(1), all(2), all(0), all(1), true,
     false},
    {"unbatched", 1, 3, 4, 1, {3, 4, 3}, all(3), all(2), all(1), all(1), all(1), true, true},
    {"groups3_k2s2", 2, 6, 9, 3, {3, 3, 4}, all(2), all(2), all(0), all(0), all(1), false, false},
    {"pointwise_strided", 2, 5, 3, 1, {3, 2, 3}, all(1), {2, 3, 2}, all(0), {1, 2, 0}, all(1),
     true, false},
    // More rows than a task's tile (cpu/tap_gemm.h: 1024) in every pass, a
    // ragged last tile, and 18 row tiles of grad-weight over 16 partials, so
    // that some partial sums two.
    {"row_tiles", 9, 4, 5, 1, {9, 12, 13}, all(3), {1, 2, 1}, all(1), {0, 1, 0}, all(1), true,
     false},
    // The same through the small GEMMs (one channel a group).
    {"depthwise_row_tiles", 2, 3, 3, 3, {11, 10, 12}, all(3), all(2), all(1), all(1), all(1),
     true, false},
    // kernel == stride, anisotropic and 1 along D (the forward's tap columns,
    // cpu/forward.cpp), two groups, over two row tiles (1188 positions a
    // sample), the last ragged.
    {"tap_columns_row_tiles", 2, 8, 6, 2, {9, 12, 11}, {1, 2, 3}, {1, 2, 3}, all(0), all(0),
     all(1), true, false},
};

// ---------------------------------------------------------------------------
// Naive scatter reference, in double
// ---------------------------------------------------------------------------

// Calls visit(x_offset, w_offset, y_offset) for every (input element, tap)
// pair whose output position lies inside the output, offsets into contiguous
// 5-D x, w and y.
void scatter(const Case& c, const std::function<void(int64_t, int64_t, int64_t)>& visit) {
  const A3 O = c.out();
  const A3& I = c.in;
  const A3& K = c.kernel;
  const int64_t cin_g = c.cin / c.groups, cout_g = c.cout / c.groups;
  for (int64_t n = 0; n < c.batch; ++n)
    for (int64_t ci = 0; ci < c.cin; ++ci)
      for (int64_t i0 = 0; i0 < I[0]; ++i0)
        for (int64_t i1 = 0; i1 < I[1]; ++i1)
          for (int64_t i2 = 0; i2 < I[2]; ++i2) {
            const int64_t xo = (((n * c.cin + ci) * I[0] + i0) * I[1] + i1) * I[2] + i2;
            for (int64_t col = 0; col < cout_g; ++col) {
              const int64_t co = (ci / cin_g) * cout_g + col;
              for (int64_t k0 = 0; k0 < K[0]; ++k0)
                for (int64_t k1 = 0; k1 < K[1]; ++k1)
                  for (int64_t k2 = 0; k2 < K[2]; ++k2) {
                    const int64_t o0 = i0 * c.stride[0] - c.padding[0] + k0 * c.dilation[0];
                    const int64_t o1 = i1 * c.stride[1] - c.padding[1] + k1 * c.dilation[1];
                    const int64_t o2 = i2 * c.stride[2] - c.padding[2] + k2 * c.dilation[2];
                    if (o0 < 0 || o0 >= O[0] || o1 < 0 || o1 >= O[1] || o2 < 0 || o2 >= O[2])
                      continue;
                    const int64_t wo = (((ci * cout_g + col) * K[0] + k0) * K[1] + k1) * K[2] + k2;
                    const int64_t yo = (((n * c.cout + co) * O[0] + o0) * O[1] + o1) * O[2] + o2;
                    visit(xo, wo, yo);
                  }
            }
          }
}

// Contiguous 5-D double copy of a tensor (unbatched tensors get their batch dim).
at::Tensor as_ref(const at::Tensor& t, bool unbatched) {
  return (unbatched ? t.unsqueeze(0) : t).to(at::kDouble).contiguous();
}

at::Tensor ref_forward(const Case& c, const at::Tensor& x, const at::Tensor& w,
                       const std::optional<at::Tensor>& b) {
  at::Tensor y = at::zeros(c.y5(), at::kDouble);
  const double* xp = x.const_data_ptr<double>();
  const double* wp = w.const_data_ptr<double>();
  double* yp = y.mutable_data_ptr<double>();
  scatter(c, [&](int64_t xo, int64_t wo, int64_t yo) { yp[yo] += xp[xo] * wp[wo]; });
  if (b.has_value()) y += b->view({1, c.cout, 1, 1, 1});
  return y;
}

at::Tensor ref_grad_input(const Case& c, const at::Tensor& gy, const at::Tensor& w) {
  at::Tensor gx = at::zeros(c.x5(), at::kDouble);
  const double* gyp = gy.const_data_ptr<double>();
  const double* wp = w.const_data_ptr<double>();
  double* gxp = gx.mutable_data_ptr<double>();
  scatter(c, [&](int64_t xo, int64_t wo, int64_t yo) { gxp[xo] += gyp[yo] * wp[wo]; });
  return gx;
}

at::Tensor ref_grad_weight(const Case& c, const at::Tensor& gy, const at::Tensor& x) {
  at::Tensor gw = at::zeros(c.w(), at::kDouble);
  const double* gyp = gy.const_data_ptr<double>();
  const double* xp = x.const_data_ptr<double>();
  double* gwp = gw.mutable_data_ptr<double>();
  scatter(c, [&](int64_t xo, int64_t wo, int64_t yo) { gwp[wo] += xp[xo] * gyp[yo]; });
  return gw;
}

at::Tensor ref_grad_bias(const Case& c, const at::Tensor& gy) {
  at::Tensor gb = at::zeros({c.cout}, at::kDouble);
  const double* gyp = gy.const_data_ptr<double>();
  double* gbp = gb.mutable_data_ptr<double>();
  const int64_t spatial = gy.numel() / (c.batch * c.cout);
  for (int64_t n = 0; n < c.batch; ++n)
    for (int64_t co = 0; co < c.cout; ++co)
      for (int64_t s = 0; s < spatial; ++s) gbp[co] += gyp[(n * c.cout + co) * spatial + s];
  return gb;
}

// ---------------------------------------------------------------------------
// Random tensors in several memory layouts
// ---------------------------------------------------------------------------

enum class Layout { Contiguous, ChannelsLast, Strided, Broadcast };

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Contiguous:
      return "contiguous";
    case Layout::ChannelsLast:
      return "channels_last";
    case Layout::Strided:
      return "strided";
    case Layout::Broadcast:
      return "broadcast";
  }
  return "?";
}

// Standard-normal values (never zeros), drawn in double and rounded once to
// `dtype`, laid out as `layout`:
//   ChannelsLast: channel dimension innermost (channels_last_3d for 5-D);
//   Strided:      dims 0 and 1 transposed and every other element of the last dim;
//   Broadcast:    stride 0 along dim 0 (when it has more than one element), else Strided.
at::Tensor make_tensor(const Sizes& sizes, Layout layout, at::ScalarType dtype,
                       at::Generator& gen) {
  const int64_t dim = static_cast<int64_t>(sizes.size());
  auto fill = [&](const Sizes& s) { return at::randn(s, gen, at::kDouble).to(dtype); };
  switch (layout) {
    case Layout::Contiguous:
      return fill(sizes);
    case Layout::ChannelsLast: {
      const int64_t c = dim == 5 ? 1 : 0;
      std::vector<int64_t> order, inverse(dim);
      for (int64_t d = 0; d < dim; ++d)
        if (d != c) order.push_back(d);
      order.push_back(c);
      Sizes base;
      for (int64_t d : order) base.push_back(sizes[d]);
      for (int64_t j = 0; j < dim; ++j) inverse[order[j]] = j;
      return fill(base).permute(inverse);
    }
    case Layout::Broadcast:
      if (sizes[0] > 1) {
        Sizes one = sizes;
        one[0] = 1;
        return fill(one).expand(sizes);
      }
      [[fallthrough]];
    case Layout::Strided: {
      Sizes base = sizes;
      if (dim >= 2) std::swap(base[0], base[1]);
      base[dim - 1] = 2 * sizes[dim - 1] + 1;
      at::Tensor t = fill(base);
      if (dim >= 2) t = t.transpose(0, 1);
      return t.slice(dim - 1, 1, 2 * sizes[dim - 1] + 1, 2);
    }
  }
  return {};
}

// ---------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------

struct Tolerance {
  double rtol;   // times Σ|terms| of the element
  double round;  // times |ref|: the one rounding of a 16-bit result
  double atol;   // absolute: subnormal spacing of a 16-bit result
  double norm;   // ‖got − ref‖ / ‖ref‖
};

Tolerance tolerance_of(at::ScalarType t) {
  switch (t) {
    case at::kDouble:
      return {1e-10, 0, 0, 1e-10};
    case at::kFloat:
      return {1e-5, 0, 0, 1e-5};
    case at::kHalf:
      return {1e-5, std::ldexp(1.0, -11) * 1.001, std::ldexp(1.0, -25), 5e-3};
    case at::kBFloat16:
      return {1e-5, std::ldexp(1.0, -8) * 1.001, 0, 2e-2};
    default:
      return {0, 0, 0, 0};
  }
}

// `got` must have `shape`; each element within tol of the reference; and the
// norm-wise relative error within tol.norm.
void expect_close(const at::Tensor& got, const Sizes& shape, const at::Tensor& ref,
                  const at::Tensor& magnitude, const Tolerance& tol, const std::string& what) {
  ASSERT_EQ(got.sizes(), at::IntArrayRef(shape)) << what << ": wrong shape";
  const at::Tensor g = got.to(at::kDouble).contiguous().reshape(ref.sizes());
  const double* gp = g.const_data_ptr<double>();
  const double* rp = ref.const_data_ptr<double>();
  const double* mp = magnitude.const_data_ptr<double>();
  int64_t bad = 0;
  double err2 = 0, ref2 = 0;
  std::ostringstream first;
  for (int64_t e = 0; e < ref.numel(); ++e) {
    const double err = std::abs(gp[e] - rp[e]);
    const double allowed = tol.rtol * mp[e] + tol.round * std::abs(rp[e]) + tol.atol;
    err2 += err * err;
    ref2 += rp[e] * rp[e];
    if (!(err <= allowed)) {  // NaN (an unwritten element) fails too
      if (bad < 5) {
        first << "\n  element " << e << ": got " << gp[e] << ", expected " << rp[e]
              << " (error " << err << ", allowed " << allowed << ")";
      }
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << ref.numel()
                    << " elements out of tolerance" << first.str();
  EXPECT_GT(ref2, 0.0) << what << ": reference is all zeros, the test would prove nothing";
  EXPECT_LE(std::sqrt(err2), tol.norm * std::sqrt(ref2)) << what << ": norm-wise error";
}

// ---------------------------------------------------------------------------
// Kernels against the reference
// ---------------------------------------------------------------------------

class PoisonedResults : public ::testing::Test {
 protected:
  void SetUp() override { set_poison_results(true); }
  void TearDown() override { set_poison_results(false); }
};

class CpuKernels : public ::testing::TestWithParam<std::tuple<int, Layout>> {
 protected:
  void SetUp() override { set_poison_results(true); }
  void TearDown() override { set_poison_results(false); }
};

TEST_P(CpuKernels, AllPassesMatchScatterReference) {
  const Case& c = kCases[std::get<0>(GetParam())];
  const Layout layout = std::get<1>(GetParam());
  for (at::ScalarType dtype : {at::kDouble, at::kFloat, at::kHalf, at::kBFloat16}) {
    SCOPED_TRACE(std::string("dtype ") + c10::toString(dtype));
    at::Generator gen = at::detail::createCPUGenerator(
        0x7c0 + 97 * std::get<0>(GetParam()) + 13 * static_cast<int>(layout));
    // The weight is never broadcast: that would make input channels alike.
    const Layout weight_layout = layout == Layout::Broadcast ? Layout::Strided : layout;
    const at::Tensor x = make_tensor(c.x(), layout, dtype, gen);
    const at::Tensor w = make_tensor(c.w(), weight_layout, dtype, gen);
    const std::optional<at::Tensor> b =
        c.bias ? std::optional<at::Tensor>(make_tensor({c.cout}, Layout::Strided, dtype, gen))
               : std::nullopt;
    const at::Tensor gy = make_tensor(c.y(), layout, dtype, gen);
    if (layout != Layout::Contiguous) {
      ASSERT_FALSE(x.is_contiguous());
      ASSERT_FALSE(gy.is_contiguous());
    }
    const Tolerance tol = tolerance_of(dtype);

    // The reference sees exactly the values the kernels see (already rounded to dtype).
    const at::Tensor xd = as_ref(x, c.unbatched), wd = as_ref(w, false),
                     gyd = as_ref(gy, c.unbatched);
    const std::optional<at::Tensor> bd =
        b ? std::optional<at::Tensor>(b->to(at::kDouble)) : std::nullopt;
    const at::Tensor xa = xd.abs(), wa = wd.abs(), gya = gyd.abs();
    const std::optional<at::Tensor> ba = bd ? std::optional<at::Tensor>(bd->abs()) : std::nullopt;

    const at::Tensor y = forward(x, w, b, c.stride_v(), c.padding_v(), c.output_padding_v(),
                                 c.groups, c.dilation_v());
    expect_close(y, c.y(), ref_forward(c, xd, wd, bd), ref_forward(c, xa, wa, ba), tol,
                 "forward");
    EXPECT_EQ(y.scalar_type(), dtype);
    if (!c.unbatched && (layout == Layout::Contiguous || layout == Layout::ChannelsLast)) {
      // x and the weight share a layout here, so torch's rule reduces to
      // x's format, but contiguous in float64.
      EXPECT_EQ(y.suggest_memory_format(),
                dtype == at::kDouble ? at::MemoryFormat::Contiguous : x.suggest_memory_format())
          << "forward: output memory format must follow torch's rule";
    }

    const at::Tensor gx = grad_input(gy, w, x.sizes(), c.stride_v(), c.padding_v(),
                                     c.output_padding_v(), c.groups, c.dilation_v());
    expect_close(gx, c.x(), ref_grad_input(c, gyd, wd), ref_grad_input(c, gya, wa), tol,
                 "grad_input");

    const at::Tensor gw = grad_weight(gy, x, w.sizes(), c.stride_v(), c.padding_v(),
                                      c.output_padding_v(), c.groups, c.dilation_v());
    expect_close(gw, c.w(), ref_grad_weight(c, gyd, xd), ref_grad_weight(c, gya, xa), tol,
                 "grad_weight");

    const at::Tensor gb = grad_bias(gy);
    expect_close(gb, {c.cout}, ref_grad_bias(c, gyd), ref_grad_bias(c, gya), tol, "grad_bias");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CpuKernels,
    ::testing::Combine(::testing::Range(0, static_cast<int>(std::size(kCases))),
                       ::testing::Values(Layout::Contiguous, Layout::ChannelsLast,
                                         Layout::Strided, Layout::Broadcast)),
    [](const ::testing::TestParamInfo<std::tuple<int, Layout>>& info) {
      return std::string(kCases[std::get<0>(info.param)].name) + "_" +
             layout_name(std::get<1>(info.param));
    });

// Same inputs, bitwise-same results, whatever the number of threads.
TEST_F(PoisonedResults, DeterministicAcrossThreadCounts) {
  const Case& c = kCases[0];
  at::Generator gen = at::detail::createCPUGenerator(11);
  const at::Tensor x = make_tensor(c.x(), Layout::ChannelsLast, at::kFloat, gen);
  const at::Tensor w = make_tensor(c.w(), Layout::Contiguous, at::kFloat, gen);
  const at::Tensor b = make_tensor({c.cout}, Layout::Contiguous, at::kFloat, gen);
  const at::Tensor gy = make_tensor(c.y(), Layout::ChannelsLast, at::kFloat, gen);
  auto run_all = [&] {
    return std::vector<at::Tensor>{
        forward(x, w, b, c.stride_v(), c.padding_v(), c.output_padding_v(), c.groups,
                c.dilation_v()),
        grad_input(gy, w, x.sizes(), c.stride_v(), c.padding_v(), c.output_padding_v(),
                   c.groups, c.dilation_v()),
        grad_weight(gy, x, w.sizes(), c.stride_v(), c.padding_v(), c.output_padding_v(),
                    c.groups, c.dilation_v()),
        grad_bias(gy)};
  };
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const auto one = run_all();
  at::set_num_threads(std::max(threads, 3));
  const auto many = run_all();
  const auto again = run_all();
  at::set_num_threads(threads);
  for (size_t r = 0; r < one.size(); ++r) {
    EXPECT_TRUE(at::equal(one[r], many[r])) << "result " << r;
    EXPECT_TRUE(at::equal(many[r], again[r])) << "result " << r;
  }
}

TEST_F(PoisonedResults, EmptyBatch) {
  const at::Tensor x = at::randn({0, 4, 3, 4, 5}, at::kDouble);
  const at::Tensor w = at::randn({4, 3, 2, 2, 2}, at::kDouble);
  const at::Tensor b = at::randn({3}, at::kDouble);
  const at::Tensor y = forward(x, w, b, {2}, {0}, {0}, 1, {1});
  EXPECT_EQ(y.sizes(), at::IntArrayRef({0, 3, 6, 8, 10}));
  const at::Tensor gy = at::randn({0, 3, 6, 8, 10}, at::kDouble);
  const at::Tensor gx = grad_input(gy, w, x.sizes(), {2}, {0}, {0}, 1, {1});
  EXPECT_EQ(gx.sizes(), x.sizes());
  // Sums over an empty batch are zero, not poison.
  const at::Tensor gw = grad_weight(gy, x, w.sizes(), {2}, {0}, {0}, 1, {1});
  EXPECT_TRUE(at::equal(gw, at::zeros_like(w)));
  const at::Tensor gb = grad_bias(gy);
  EXPECT_TRUE(at::equal(gb, at::zeros({3}, at::kDouble)));
}

// ---------------------------------------------------------------------------
// Kernel parameters and the op layer's own checks
// ---------------------------------------------------------------------------

TEST(Params, StridesAndAxesFromTensors) {
  const auto problem = ConvTranspose3dProblem::from_sizes(
      Sizes{2, 6, 3, 4, 5}, Sizes{6, 2, 2, 3, 4}, Sizes{1, 2, 3}, Sizes{0, 1, 2},
      Sizes{0, 1, 2}, 3, Sizes{2, 1, 1});
  const at::Tensor x = at::empty({2, 6, 3, 4, 5}, at::kFloat)
                           .contiguous(at::MemoryFormat::ChannelsLast3d);
  const at::Tensor w = at::empty({6, 2, 2, 3, 4}, at::kFloat);
  const at::Tensor y = at::empty({2, 6, 5, 8, 14}, at::kFloat);
  const at::Tensor b = at::empty({12}, at::kFloat).slice(0, 0, 12, 2);
  const ConvTranspose3dParams p = problem.params(x, w, y, b);
  EXPECT_EQ(p.batch, 2);
  EXPECT_EQ(p.in_channels, 6);
  EXPECT_EQ(p.out_channels, 6);
  EXPECT_EQ(p.groups, 3);
  EXPECT_EQ(p.in_per_group, 2);
  EXPECT_EQ(p.out_per_group, 2);
  // channels_last_3d: C innermost, then W, H, D, N.
  EXPECT_EQ(p.input.c, 1);
  EXPECT_EQ(p.input.w, 6);
  EXPECT_EQ(p.input.h, 6 * 5);
  EXPECT_EQ(p.input.d, 6 * 5 * 4);
  EXPECT_EQ(p.input.n, 6 * 5 * 4 * 3);
  EXPECT_EQ(p.weight.n, 2 * 2 * 3 * 4);
  EXPECT_EQ(p.weight.w, 1);
  EXPECT_EQ(p.output.c, 5 * 8 * 14);
  EXPECT_EQ(p.bias_stride, 2);
  const A3 in{3, 4, 5}, out{5, 8, 14}, k{2, 3, 4}, s{1, 2, 3}, pad{0, 1, 2}, d{2, 1, 1};
  for (int j = 0; j < 3; ++j) {
    EXPECT_EQ(p.axis[j].in, in[j]) << j;
    EXPECT_EQ(p.axis[j].out, out[j]) << j;
    EXPECT_EQ(p.axis[j].kernel, k[j]) << j;
    EXPECT_EQ(p.axis[j].stride, s[j]) << j;
    EXPECT_EQ(p.axis[j].padding, pad[j]) << j;
    EXPECT_EQ(p.axis[j].dilation, d[j]) << j;
  }
}

using test_support::error_message;

#define EXPECT_REJECTED(statement, needle)                                              \
  do {                                                                                  \
    EXPECT_THROW(statement, c10::Error);                                                \
    const std::string msg_ = error_message([&] { statement; });                         \
    EXPECT_NE(msg_.find(needle), std::string::npos) << "message: " << msg_;             \
  } while (0)

TEST(OpsErrors, RejectsBadTensors) {
  const at::Tensor x = at::randn({2, 4, 3, 3, 3});
  const at::Tensor w = at::randn({4, 3, 2, 2, 2});
  const at::Tensor gy = at::randn({2, 3, 4, 4, 4});
  const Sizes one{1}, zero{0};
  // Integer input.
  EXPECT_REJECTED(forward(x.to(at::kInt), w.to(at::kInt), std::nullopt, one, zero, zero, 1, one),
                  "dtype");
  // dtype mismatch between input and weight, and with the bias.
  EXPECT_REJECTED(forward(x, w.to(at::kDouble), std::nullopt, one, zero, zero, 1, one), "type");
  EXPECT_REJECTED(forward(x, w, at::randn({3}, at::kDouble), one, zero, zero, 1, one), "bias");
  // Bias of the wrong size or rank.
  EXPECT_REJECTED(forward(x, w, at::randn({4}), one, zero, zero, 1, one), "bias");
  EXPECT_REJECTED(forward(x, w, at::randn({1, 3}), one, zero, zero, 1, one), "bias");
  // Geometry errors reach the caller from every entry point.
  EXPECT_REJECTED(forward(x, w, std::nullopt, zero, zero, zero, 1, one), "stride");
  EXPECT_REJECTED(grad_input(gy, w, x.sizes(), one, Sizes{-1}, zero, 1, one), "padding");
  EXPECT_REJECTED(grad_weight(gy, x, w.sizes(), one, zero, zero, 3, one), "groups");
  // grad_output of the wrong size.
  EXPECT_REJECTED(grad_input(gy.slice(4, 0, 3), w, x.sizes(), one, zero, zero, 1, one),
                  "grad_output");
  EXPECT_REJECTED(grad_weight(gy, x, w.sizes(), Sizes{2}, zero, zero, 1, one), "grad_output");
  EXPECT_REJECTED(grad_bias(at::randn({3, 4, 4})), "grad_output");
  // A tensor on another device.
  const at::Tensor meta_w = at::empty({4, 3, 2, 2, 2}, at::TensorOptions().device(at::kMeta));
  EXPECT_REJECTED(forward(x, meta_w, std::nullopt, one, zero, zero, 1, one), "device");
}

}  // namespace
}  // namespace tconv3d
