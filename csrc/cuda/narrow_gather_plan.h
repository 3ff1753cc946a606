// The plan of the narrow-group stencil (narrow_gather.cu): which walk a pass
// takes, how wide its items are, how its channels split into weight slabs,
// and the mixed-radix walk (mixed_radix.h) threads carry over the destination.  Host and
// device; free of CUDA headers, so the C++ tests check it without a GPU.
#pragma once

#include <cstdint>

#include "../index_math.h"
#include "../params.h"
#include "channel_vectors.h"
#include "mixed_radix.h"

namespace tconv3d::cuda::narrow {

// Shared memory: the two together stay within the 48 KB a block gets unasked.
constexpr int kMaxRuns = 2048;              // D + H + W destination coordinates tabulated
constexpr int kMaxWeightBytes = 24 * 1024;  // a block's [tap][j][channel] weights (accumulator type)
constexpr int kStrided = 4;                 // channels of a W-fastest item where groups allow
constexpr int kMaxSamples = 4;              // samples an item of the group form

// How a thread's item lies in memory.  ChannelVectors: a 16-byte vector of
// destination channels, contiguous and aligned; ChannelGroups: one group's
// 2–4 destination channels, contiguous, one element at a time (a group's
// source channels, loaded once, feed all of them); Channels: one channel;
// WidthFastest: kStrided channels a plane apart (Width: one), consecutive
// items along W.
enum class Walk { ChannelVectors, ChannelGroups, Channels, WidthFastest, Width };

// The destination's items as digits, fastest first: (v, w, h, d, n) for the
// channels-fastest walks, (w, h, d, v, n) for the W-fastest ones; v indexes
// the item-wide channel vectors of a block's slab.
constexpr int kDigits = 5;

inline int64_t accumulator_bytes(ScalarKind dtype) { return dtype == ScalarKind::Float64 ? 8 : 4; }

struct Plan {
  bool walkable = false;  // false: the kernel does not take the shape
  Walk walk = Walk::Channels;
  bool depthwise = false;  // one source and one destination channel a group
  int64_t item_channels = 1, slab = 1, slabs = 1;
  // Source channels a load (channels-last walks, not depthwise): a group's S
  // source channels of a position as 16- or 8-byte vectors where they lie
  // aligned, else 1 (one element a load).  Across a warp, one element a
  // load touched as many L1 wavefronts as a whole vector does (a warp's
  // positions a group's S channels apart), S times a tap.
  int64_t src_vector = 1;
  // The kernel's depthwise form: an item's channels read side by side, one
  // load of them (depthwise layers' walks of several channels an item; one
  // channel an item reads its source alike in the group form).
  bool depthwise_form = false;
  // In the group form an item is `samples` samples' positions at the same
  // spatial coordinates, n + i · ceil(N / samples): the same taps and
  // weights, so each weight read from shared memory (a warp's 16-byte read of
  // one address costs four wavefronts) serves them all.  Four where the batch
  // has four, else two (the group form never takes one); the depthwise form
  // one; four only with vector loads (the element loads' instances kept to
  // two).  The batch digit counts items.  Measured against two (H200, graph
  // replays, channels-last, RESULTS.md "Resident weight round"): grad-input
  // of RGBA 4 → 8 0.041 → 0.034 ms (TF32 and bf16), small_ch 4 → 8 bf16
  // 0.047 → 0.037; forwards 8-18 % faster but RGBA's TF32 (0.039 → 0.041).
  int samples = 1;
  int radix[kDigits] = {};
  int step[kDigits] = {};  // a block's threads written in that radix
  int64_t items = 0;       // per slab
};

inline Plan plan_narrow(const ConvTranspose3dParams& p, ScalarKind dtype, bool forward,
                        uintptr_t src, uintptr_t dst, int threads) {
  Plan plan;
  const Strides5& ss = forward ? p.input : p.output;
  const Strides5& ds = forward ? p.output : p.input;
  const int64_t channels = forward ? p.out_channels : p.in_channels;
  const int64_t dst_per_group = forward ? p.out_per_group : p.in_per_group;
  const int64_t src_per_group = forward ? p.in_per_group : p.out_per_group;
  int64_t kvol = 1, coords = 0, extent[3];
  for (int i = 0; i < 3; ++i) {
    kvol *= p.axis[i].kernel;
    extent[i] = forward ? p.axis[i].out : p.axis[i].in;
    coords += extent[i];
  }
  // The walk's digits and grid rows are 32-bit.
  if (coords > kMaxRuns || p.batch > INT32_MAX || channels > INT32_MAX || channels == 0) {
    return plan;
  }
  plan.depthwise = src_per_group == 1 && dst_per_group == 1;
  const int64_t vec = vector_channels(dtype);
  const bool channels_last = ss.c == 1 && ds.c == 1 && channels > 1;
  // An item's channels read side by side (depthwise) or share a group.
  const auto fits_item = [&](int64_t width) {
    return plan.depthwise || dst_per_group % width == 0;
  };
  if (channels_last) {
    const int64_t bytes = element_bytes(dtype);
    const bool aligned = vectors_aligned(ds, dst, vec, bytes) && channels % vec == 0 &&
                         (!plan.depthwise || vectors_aligned(ss, src, vec, bytes));
    plan.walk = aligned && fits_item(vec)                          ? Walk::ChannelVectors
                : !plan.depthwise && dst_per_group > 1 && dst_per_group <= kStrided
                    ? Walk::ChannelGroups
                    : Walk::Channels;
    if (!plan.depthwise && plan.walk != Walk::Channels) {
      for (const int64_t vector_bytes : {16, 8}) {
        const int64_t v = vector_bytes / bytes;
        if (v > 1 && src_per_group % v == 0 && vectors_aligned(ss, src, v, bytes)) {
          plan.src_vector = v;
          break;
        }
      }
    }
  } else {
    plan.walk = fits_item(kStrided) ? Walk::WidthFastest : Walk::Width;
  }
  plan.item_channels = plan.walk == Walk::ChannelVectors  ? vec
                       : plan.walk == Walk::ChannelGroups ? dst_per_group
                       : plan.walk == Walk::WidthFastest  ? kStrided
                                                          : 1;
  // The block's weights, [tap][j][slab] in the accumulator type, within
  // kMaxWeightBytes: slabs of whole items, spread evenly over grid rows.
  const int64_t per_channel = kvol * src_per_group * accumulator_bytes(dtype);
  const int64_t max_slab = kMaxWeightBytes / per_channel / plan.item_channels * plan.item_channels;
  if (max_slab == 0) return plan;
  const int64_t rounded =
      (channels + plan.item_channels - 1) / plan.item_channels * plan.item_channels;
  plan.slabs = (rounded + max_slab - 1) / max_slab;
  plan.slab = (rounded / plan.item_channels + plan.slabs - 1) / plan.slabs * plan.item_channels;
  if (plan.slabs > 65535) return plan;  // grid rows

  plan.depthwise_form =
      plan.depthwise && (plan.walk == Walk::ChannelVectors || plan.walk == Walk::WidthFastest);
  plan.samples = plan.depthwise_form                               ? 1
                 : plan.src_vector > 1 && p.batch >= kMaxSamples ? kMaxSamples
                                                                  : 2;
  const int64_t vectors = plan.slab / plan.item_channels;
  const bool width_fastest = plan.walk == Walk::WidthFastest || plan.walk == Walk::Width;
  const int64_t radix[kDigits] = {width_fastest ? extent[2] : vectors,
                                  width_fastest ? extent[1] : extent[2],
                                  width_fastest ? extent[0] : extent[1],
                                  width_fastest ? vectors : extent[0],
                                  (p.batch + plan.samples - 1) / plan.samples};
  plan.items = 1;
  for (int i = 0; i < kDigits; ++i) {
    plan.radix[i] = int(radix[i]);
    plan.items *= radix[i];
  }
  // An empty batch has nothing to walk (and a zero radix to divide by).
  if (plan.items > 0) digits_of(threads, plan.radix, plan.step);
  plan.walkable = true;
  return plan;
}

}  // namespace tconv3d::cuda::narrow
