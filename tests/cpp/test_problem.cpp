// ConvTranspose3dProblem::from_sizes: output sizes of known configurations
// (expected values computed by hand from
//     O = (I - 1)·s - 2p + d·(K - 1) + op + 1
// in the comments, not by the code under test) and one rejection per invalid
// argument, each with a message that names the argument.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <c10/util/Exception.h>

#include "expect_error.h"
#include "problem.h"

namespace tconv3d {
namespace {

using Sizes = std::vector<int64_t>;

// The arguments of from_sizes, defaulting to a valid problem.
struct Args {
  Sizes input{2, 4, 5, 6, 7};
  Sizes weight{4, 3, 3, 3, 3};
  Sizes stride{1};
  Sizes padding{0};
  Sizes output_padding{0};
  int64_t groups = 1;
  Sizes dilation{1};

  ConvTranspose3dProblem build() const {
    return ConvTranspose3dProblem::from_sizes(input, weight, stride, padding, output_padding,
                                              groups, dilation);
  }
};

using test_support::error_message;

// The arguments must be rejected with a c10::Error whose message contains `needle`.
void expect_rejected(const Args& args, const std::string& needle) {
  EXPECT_THROW(args.build(), c10::Error) << "expected rejection mentioning '" << needle << "'";
  const std::string msg = error_message([&] { args.build(); });
  EXPECT_NE(msg.find(needle), std::string::npos)
      << "message does not mention '" << needle << "': " << msg;
}

Triple T(int64_t a, int64_t b, int64_t c) { return Triple{a, b, c}; }

// ---------------------------------------------------------------------------
// Valid problems
// ---------------------------------------------------------------------------

TEST(Problem, StrideTwoDoublesTheSize) {
  Args a;
  a.stride = {2};
  a.padding = {1};
  a.output_padding = {1};
  const auto p = a.build();
  // (I-1)·2 - 2 + 2 + 1 + 1 = 2I.
  EXPECT_TRUE(p.batched);
  EXPECT_EQ(p.batch, 2);
  EXPECT_EQ(p.in_channels, 4);
  EXPECT_EQ(p.out_channels, 3);
  EXPECT_EQ(p.groups, 1);
  EXPECT_EQ(p.in_size, T(5, 6, 7));
  EXPECT_EQ(p.kernel, T(3, 3, 3));
  EXPECT_EQ(p.out_size, T(10, 12, 14));
  EXPECT_EQ(p.output_shape(), (Sizes{2, 3, 10, 12, 14}));
  EXPECT_EQ(p.input_shape(), (Sizes{2, 4, 5, 6, 7}));
  EXPECT_EQ(p.weight_shape(), (Sizes{4, 3, 3, 3, 3}));
}

TEST(Problem, IntExpandsToTriple) {
  Args a;
  a.stride = {3};
  a.padding = {2};
  a.output_padding = {1};
  a.dilation = {2};
  const auto p = a.build();
  EXPECT_EQ(p.stride, T(3, 3, 3));
  EXPECT_EQ(p.padding, T(2, 2, 2));
  EXPECT_EQ(p.output_padding, T(1, 1, 1));
  EXPECT_EQ(p.dilation, T(2, 2, 2));
  // (I-1)·3 - 4 + 2·2 + 1 + 1 = 3I - 1.
  EXPECT_EQ(p.out_size, T(14, 17, 20));
}

TEST(Problem, AnisotropicEverythingWithGroups) {
  Args a;
  a.input = {1, 6, 3, 4, 5};
  a.weight = {6, 2, 2, 3, 4};
  a.stride = {1, 2, 3};
  a.padding = {0, 1, 2};
  a.output_padding = {0, 1, 2};
  a.groups = 3;
  a.dilation = {2, 1, 1};
  const auto p = a.build();
  EXPECT_EQ(p.stride, T(1, 2, 3));
  EXPECT_EQ(p.padding, T(0, 1, 2));
  EXPECT_EQ(p.output_padding, T(0, 1, 2));
  EXPECT_EQ(p.dilation, T(2, 1, 1));
  EXPECT_EQ(p.kernel, T(2, 3, 4));
  // D: 2·1 - 0 + 2·1 + 0 + 1 = 5;  H: 3·2 - 2 + 1·2 + 1 + 1 = 8;  W: 4·3 - 4 + 1·3 + 2 + 1 = 14.
  EXPECT_EQ(p.out_size, T(5, 8, 14));
  EXPECT_EQ(p.out_channels, 6);  // 2 per group · 3 groups
  EXPECT_EQ(p.groups, 3);
  EXPECT_EQ(p.weight_shape(), (Sizes{6, 2, 2, 3, 4}));
  EXPECT_EQ(p.output_shape(), (Sizes{1, 6, 5, 8, 14}));
}

TEST(Problem, Depthwise) {
  Args a;
  a.input = {3, 5, 4, 3, 4};
  a.weight = {5, 1, 3, 3, 3};
  a.groups = 5;
  a.stride = {2};
  a.padding = {1};
  a.output_padding = {1};
  const auto p = a.build();
  // 2I: (I-1)·2 - 2 + 2 + 1 + 1.
  EXPECT_EQ(p.out_size, T(8, 6, 8));
  EXPECT_EQ(p.out_channels, 5);
  EXPECT_EQ(p.weight_shape(), (Sizes{5, 1, 3, 3, 3}));
}

TEST(Problem, UnbatchedInput) {
  Args a;
  a.input = {4, 5, 6, 7};
  a.stride = {2};
  a.padding = {1};
  a.output_padding = {1};
  const auto p = a.build();
  EXPECT_FALSE(p.batched);
  EXPECT_EQ(p.batch, 1);
  EXPECT_EQ(p.in_channels, 4);
  EXPECT_EQ(p.in_size, T(5, 6, 7));
  EXPECT_EQ(p.out_size, T(10, 12, 14));
  EXPECT_EQ(p.input_shape(), (Sizes{4, 5, 6, 7}));
  EXPECT_EQ(p.output_shape(), (Sizes{3, 10, 12, 14}));
}

TEST(Problem, OutputPaddingBelowDilationIsAllowed) {
  Args a;
  a.input = {1, 2, 4, 4, 4};
  a.weight = {2, 1, 2, 2, 2};
  a.stride = {1};
  a.dilation = {3};
  a.output_padding = {2};  // ≥ stride, < dilation: valid, as in torch
  const auto p = a.build();
  // 3·1 - 0 + 3·1 + 2 + 1 = 9.
  EXPECT_EQ(p.out_size, T(9, 9, 9));
}

TEST(Problem, PaddingMayShrinkTheOutput) {
  Args a;
  a.input = {1, 4, 5, 5, 5};
  a.weight = {4, 3, 2, 2, 2};
  a.padding = {2};
  const auto p = a.build();
  // 4·1 - 4 + 1 + 0 + 1 = 2.
  EXPECT_EQ(p.out_size, T(2, 2, 2));
}

TEST(Problem, EmptyBatchIsAllowed) {
  Args a;
  a.input = {0, 4, 5, 6, 7};
  const auto p = a.build();
  EXPECT_EQ(p.batch, 0);
  // (I-1) + 2 + 1 = I + 2.
  EXPECT_EQ(p.output_shape(), (Sizes{0, 3, 7, 8, 9}));
}

// ---------------------------------------------------------------------------
// Invalid arguments
// ---------------------------------------------------------------------------

TEST(ProblemErrors, InputRank) {
  Args a;
  a.input = {4, 5, 6};
  expect_rejected(a, "input");
  a.input = {1, 2, 4, 5, 6, 7};
  expect_rejected(a, "input");
}

TEST(ProblemErrors, WeightRank) {
  Args a;
  a.weight = {4, 3, 3, 3};
  expect_rejected(a, "weight");
  a.weight = {4, 3, 3, 3, 3, 3};
  expect_rejected(a, "weight");
}

TEST(ProblemErrors, ChannelMismatch) {
  Args a;
  a.input = {2, 5, 5, 6, 7};  // weight expects 4 input channels
  expect_rejected(a, "channels");
  a.input = {5, 5, 6, 7};  // unbatched
  expect_rejected(a, "channels");
}

TEST(ProblemErrors, GroupsNotDividingChannels) {
  Args a;
  a.groups = 3;  // 4 input channels
  expect_rejected(a, "groups");
}

TEST(ProblemErrors, NonPositiveStride) {
  Args a;
  a.stride = {0};
  expect_rejected(a, "stride");
  a.stride = {1, -1, 1};
  expect_rejected(a, "stride");
}

TEST(ProblemErrors, NonPositiveDilation) {
  Args a;
  a.dilation = {0};
  expect_rejected(a, "dilation");
  a.dilation = {1, 1, -2};
  expect_rejected(a, "dilation");
}

TEST(ProblemErrors, NonPositiveGroups) {
  Args a;
  a.groups = 0;
  expect_rejected(a, "groups");
  a.groups = -2;
  expect_rejected(a, "groups");
}

TEST(ProblemErrors, NegativePadding) {
  Args a;
  a.padding = {-1};
  expect_rejected(a, "padding");
  a.padding = {0, -1, 0};
  expect_rejected(a, "padding");
}

TEST(ProblemErrors, NegativeOutputPadding) {
  Args a;
  a.stride = {2};
  a.output_padding = {0, 0, -1};
  expect_rejected(a, "output_padding");
}

TEST(ProblemErrors, OutputPaddingNotSmallerThanStrideOrDilation) {
  Args a;
  a.output_padding = {1};  // stride 1, dilation 1
  expect_rejected(a, "output_padding");
  a.stride = {2};
  a.dilation = {2};
  a.output_padding = {0, 2, 0};
  expect_rejected(a, "output_padding");
  a.stride = {3, 1, 1};
  a.dilation = {1, 2, 1};
  a.output_padding = {2, 1, 1};  // W: op 1 with stride 1 and dilation 1
  expect_rejected(a, "output_padding");
}

TEST(ProblemErrors, OutputTooSmall) {
  Args a;
  a.input = {1, 4, 1, 5, 5};
  a.weight = {4, 3, 1, 1, 1};
  a.padding = {1, 0, 0};  // D: 0 - 2 + 0 + 0 + 1 = -1
  expect_rejected(a, "too small");
  a.weight = {4, 3, 2, 1, 1};  // D: 0 - 2 + 1 + 0 + 1 = 0
  expect_rejected(a, "too small");
}

TEST(ProblemErrors, WrongLengthLists) {
  {
    Args a;
    a.stride = {1, 2};
    expect_rejected(a, "stride");
  }
  {
    Args a;
    a.stride = {1, 1, 1, 1};
    expect_rejected(a, "stride");
  }
  {
    Args a;
    a.padding = {};
    expect_rejected(a, "padding");
  }
  {
    Args a;
    a.output_padding = {0, 0};
    expect_rejected(a, "output_padding");
  }
  {
    Args a;
    a.dilation = {1, 1, 1, 1};
    expect_rejected(a, "dilation");
  }
}

TEST(ProblemErrors, EmptyKernelOrChannels) {
  Args a;
  a.weight = {4, 3, 3, 0, 3};
  expect_rejected(a, "kernel");
  a.weight = {4, 0, 3, 3, 3};
  expect_rejected(a, "weight");
}

TEST(ProblemErrors, EmptySpatialInput) {
  Args a;
  a.input = {2, 4, 5, 0, 7};
  expect_rejected(a, "spatial");
}

TEST(ProblemErrors, ArgumentsPast32Bits) {
  // The largest accepted value gives a valid problem.
  Args ok;
  ok.input = {1, 4, 1, 1, 2};
  ok.stride = {2147483647};
  EXPECT_EQ(ok.build().out_size, T(3, 3, 2147483650));  // W: 1·(2^31 − 1) + 2 + 1
  for (Sizes Args::*field : {&Args::stride, &Args::padding, &Args::dilation}) {
    Args a;
    a.*field = {1, 2147483648, 1};
    expect_rejected(a, "above 2^31 - 1");
  }
  Args a;
  a.stride = {4294967296};
  a.output_padding = {2147483648};
  expect_rejected(a, "above 2^31 - 1");
}

TEST(ProblemErrors, OutputExtentOverflow) {
  // (2^33 − 1)·(2^31 − 1) > 2^63: once wrapped around to a plausible extent.
  Args a;
  a.input = {1, 4, 8589934592, 1, 1};
  a.stride = {2147483647, 1, 1};
  expect_rejected(a, "overflows int64");
}

TEST(ProblemErrors, NegativeBatch) {
  // Sizes come straight from the caller in grad_input(input_size=...).
  Args a;
  a.input = {-1, 4, 5, 6, 7};
  expect_rejected(a, "batch");
}

}  // namespace
}  // namespace tconv3d
