// The narrow-group stencil's plan (cuda/narrow_gather_plan.h): the digit walk
// a block's threads carry visits every destination item exactly once with the
// digits division would give, and the walk, item width and weight slabs stay
// within what the kernel assumes.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "conv_shape.h"
#include "cuda/narrow_gather_plan.h"

namespace tconv3d::cuda::narrow {
namespace {

using plan_tests::params_of;
using plan_tests::Shape;

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> v = {
      {4, 64, 64, 64, {16, 16, 16}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},  // depthwise
      {2, 5, 5, 5, {4, 3, 4}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},       // 5 channels
      {8, 4, 8, 1, {9, 7, 5}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},       // RGBA-like
      {3, 3, 16, 1, {5, 6, 7}, {3, 2, 4}, {1, 2, 3}, {1, 0, 2}, {2, 1, 1}},      // RGB-like
      {1, 8, 16, 4, {5, 4, 6}, {3, 2, 4}, {2, 1, 3}, {1, 0, 2}, {1, 1, 1}},      // groups of 2 -> 4
      {2, 4, 8, 4, {5, 4, 3}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},       // multiplier 2
      {2, 128, 128, 128, {6, 5, 7}, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}}, // two slabs
      {1, 1, 1, 1, {1, 1, 700}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}},     // long rows
  };
  return v;
}

constexpr ScalarKind kDtypes[] = {ScalarKind::Float64, ScalarKind::Float32, ScalarKind::Float16,
                                  ScalarKind::BFloat16};

// Every block of `blocks` and thread of `threads` walks its share as the
// kernel does; each item must come up once, with the digits of its index.
void expect_walk_covers_every_item(const Plan& plan, int64_t blocks, int threads) {
  std::vector<int> seen(size_t(plan.items), 0);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = plan.items * b / blocks, end = plan.items * (b + 1) / blocks;
    for (int t = 0; t < threads; ++t) {
      int digit[kDigits];
      digits_of(begin + t, plan.radix, digit);
      for (int64_t item = begin + t; item < end; item += threads) {
        int decoded[kDigits];
        digits_of(item, plan.radix, decoded);
        for (int i = 0; i < kDigits; ++i) ASSERT_EQ(digit[i], decoded[i]) << "item " << item;
        ++seen[size_t(item)];
        advance_digits(plan.radix, plan.step, digit);
      }
    }
  }
  for (int64_t item = 0; item < plan.items; ++item) ASSERT_EQ(seen[size_t(item)], 1);
}

TEST(NarrowGatherPlan, CarriedDigitsVisitEveryItemOnce) {
  int checked = 0;
  for (const Shape& s : shapes()) {
    for (bool channels_last : {false, true}) {
      for (bool forward : {true, false}) {
        // 256 threads as launched, and odd counts that carry across several digits at once.
        for (int threads : {256, 7, 61}) {
          const Plan plan = plan_narrow(params_of(s, channels_last), ScalarKind::BFloat16,
                                        forward, 0, 0, threads);
          if (!plan.walkable || plan.items > 50000) continue;  // seconds, not minutes
          for (int64_t blocks : {int64_t(1), int64_t(3), int64_t(13)}) {
            expect_walk_covers_every_item(plan, blocks, threads);
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 150);
}

TEST(NarrowGatherPlan, SlabsAndItemsStayWithinTheKernelsAssumptions) {
  for (const Shape& s : shapes()) {
    for (bool channels_last : {false, true}) {
      for (bool forward : {true, false}) {
        for (ScalarKind dtype : kDtypes) {
          const ConvTranspose3dParams p = params_of(s, channels_last);
          const Plan plan = plan_narrow(p, dtype, forward, 0, 0, 256);
          if (!plan.walkable) continue;
          const int64_t channels = forward ? s.cout : s.cin;
          const int64_t dst_pg = forward ? p.out_per_group : p.in_per_group;
          const int64_t src_pg = forward ? p.in_per_group : p.out_per_group;
          const int64_t kvol = s.kernel[0] * s.kernel[1] * s.kernel[2];
          EXPECT_EQ(plan.slab % plan.item_channels, 0);
          EXPECT_LE(kvol * src_pg * plan.slab * accumulator_bytes(dtype), kMaxWeightBytes);
          EXPECT_GE(plan.slab * plan.slabs, channels);          // every channel in a slab
          EXPECT_LT(plan.slab * (plan.slabs - 1), channels);    // no slab without one
          // Items of several channels either read side by side (depthwise) or
          // share one group.
          if (plan.item_channels > 1 && !plan.depthwise) {
            EXPECT_EQ(dst_pg % plan.item_channels, 0);
          }
          if (plan.walk == Walk::ChannelGroups) {
            EXPECT_EQ(plan.item_channels, dst_pg);
            EXPECT_LE(plan.item_channels, kStrided);
          }
          if (plan.walk == Walk::ChannelVectors) {
            EXPECT_TRUE(channels_last);
            EXPECT_EQ(channels % vector_channels(dtype), 0);
          }
          if (!channels_last || channels == 1) {
            EXPECT_TRUE(plan.walk == Walk::WidthFastest || plan.walk == Walk::Width);
          }
          // Vector loads of a group's source channels: whole vectors of its
          // channels-last source, 8 or 16 bytes.
          if (plan.src_vector > 1) {
            EXPECT_TRUE(channels_last);
            EXPECT_FALSE(plan.depthwise);
            EXPECT_EQ(src_pg % plan.src_vector, 0);
            const int64_t bytes = plan.src_vector * element_bytes(dtype);
            EXPECT_TRUE(bytes == 8 || bytes == 16) << bytes;
          }
          // The depthwise form takes depthwise layers' walks of several
          // channels an item; every other item holds two or four samples,
          // the batch digit counting items (the kernel's group form never
          // takes one: a depthwise layer walked one channel an item must
          // count samples too, or each item would be written twice).
          EXPECT_EQ(plan.depthwise_form,
                    plan.depthwise && plan.walk != Walk::Channels && plan.walk != Walk::Width);
          EXPECT_EQ(plan.samples, plan.depthwise_form                       ? 1
                                  : plan.src_vector > 1 && s.batch >= 4 ? 4
                                                                        : 2);
          EXPECT_EQ(plan.radix[kDigits - 1], (s.batch + plan.samples - 1) / plan.samples);
        }
      }
    }
  }
}

TEST(NarrowGatherPlan, WalkFollowsLayoutAlignmentAndGroups) {
  const Shape depthwise = shapes()[0], rgba = shapes()[2], rgb = shapes()[3];
  const auto walk = [](const Shape& s, bool cl, bool forward, uintptr_t dst) {
    return plan_narrow(params_of(s, cl), ScalarKind::BFloat16, forward, 0, dst, 256).walk;
  };
  // Channels-last: 16-byte vectors where the address allows, else one channel.
  EXPECT_EQ(walk(depthwise, true, true, 0), Walk::ChannelVectors);
  EXPECT_EQ(walk(depthwise, true, true, 8), Walk::Channels);
  const Plan unaligned =
      plan_narrow(params_of(depthwise, true), ScalarKind::BFloat16, true, 0, 8, 256);
  EXPECT_TRUE(unaligned.depthwise && !unaligned.depthwise_form && unaligned.samples == 2);
  // RGBA 4 -> 8: the forward's 8 channels a group make a bf16 vector; the
  // grad-input's 4 do not, and an item is that group; 6 channels a group
  // neither make a vector nor fit a group item.
  EXPECT_EQ(walk(rgba, true, true, 0), Walk::ChannelVectors);
  EXPECT_EQ(walk(rgba, true, false, 0), Walk::ChannelGroups);
  Shape six = rgba;
  six.cout = 6;
  EXPECT_EQ(walk(six, true, true, 0), Walk::Channels);
  EXPECT_EQ(walk(rgb, true, false, 0), Walk::ChannelGroups);  // 3 channels a group
  // W fastest: four channels an item where a group's destination channels
  // split in fours (or depthwise), else one.
  EXPECT_EQ(walk(depthwise, false, true, 0), Walk::WidthFastest);
  EXPECT_EQ(walk(rgba, false, false, 0), Walk::WidthFastest);
  EXPECT_EQ(walk(rgb, false, false, 0), Walk::Width);  // 3 channels a group
}

TEST(NarrowGatherPlan, SourceVectorsWhereAGroupsChannelsAlign) {
  const Shape depthwise = shapes()[0], rgba = shapes()[2], rgb = shapes()[3];
  const auto src_vector = [](const Shape& s, bool cl, bool forward, ScalarKind dtype,
                             uintptr_t src) {
    return plan_narrow(params_of(s, cl), dtype, forward, src, 0, 256).src_vector;
  };
  // RGBA 4 -> 8: grad-input reads 8 channels a group (one 16-byte vector in
  // bf16, two in fp32), the forward 4 (8 bytes in bf16, 16 in fp32).
  EXPECT_EQ(src_vector(rgba, true, false, ScalarKind::BFloat16, 0), 8);
  EXPECT_EQ(src_vector(rgba, true, false, ScalarKind::Float32, 0), 4);
  EXPECT_EQ(src_vector(rgba, true, true, ScalarKind::BFloat16, 0), 4);
  EXPECT_EQ(src_vector(rgba, true, true, ScalarKind::Float32, 0), 4);
  EXPECT_EQ(src_vector(rgba, true, false, ScalarKind::Float64, 0), 2);
  // RGB 3 -> 16: 16 source channels a group, 3 make no vector.
  EXPECT_EQ(src_vector(rgb, true, false, ScalarKind::BFloat16, 0), 8);
  EXPECT_EQ(src_vector(rgb, true, true, ScalarKind::BFloat16, 0), 1);
  // A source one element off its alignment, NCDHW, or depthwise (its own
  // vector walk): one element a load.
  EXPECT_EQ(src_vector(rgba, true, false, ScalarKind::BFloat16, 2), 1);
  EXPECT_EQ(src_vector(rgba, true, false, ScalarKind::BFloat16, 8), 4);  // 8-byte aligned
  EXPECT_EQ(src_vector(rgba, false, false, ScalarKind::BFloat16, 0), 1);
  EXPECT_EQ(src_vector(depthwise, true, false, ScalarKind::BFloat16, 0), 1);
}

TEST(NarrowGatherPlan, RefusesWhatItsTablesOrWeightsCannotHold) {
  Shape too_long = shapes()[7];
  too_long.in[2] = 2100;  // 2102 coordinates
  EXPECT_FALSE(plan_narrow(params_of(too_long, false), ScalarKind::Float32, true, 0, 0, 256)
                   .walkable);
  Shape big_kernel = shapes()[1];
  big_kernel.kernel[0] = 11, big_kernel.kernel[1] = 12, big_kernel.kernel[2] = 12;
  big_kernel.padding[0] = big_kernel.padding[1] = big_kernel.padding[2] = 5;
  // 1584 taps x 4 channels x 4 bytes > 24 KB for a W-fastest item of four.
  EXPECT_FALSE(plan_narrow(params_of(big_kernel, false), ScalarKind::Float32, true, 0, 0, 256)
                   .walkable);
}

// An empty batch is a walkable plan with nothing to walk; planning it must
// not divide by its zero radix (that was a SIGFPE in the host process).
TEST(NarrowGatherPlan, EmptyBatchPlansNoItems) {
  for (const Shape& shape : shapes()) {
    Shape empty = shape;
    empty.batch = 0;
    for (bool channels_last : {false, true}) {
      for (bool forward : {false, true}) {
        const Plan plan =
            plan_narrow(params_of(empty, channels_last), ScalarKind::Float32, forward, 0, 0, 256);
        EXPECT_TRUE(plan.walkable);
        EXPECT_EQ(plan.items, 0);
      }
    }
  }
}

}  // namespace
}  // namespace tconv3d::cuda::narrow
