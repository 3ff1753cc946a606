// The taps-folded forward's plan (cuda/forward_taps_plan.h): the tile and box
// stay within what the kernel holds, the tiles cover every output once, and
// the walk the kernel takes from the tables — first row and tap, counts,
// steps — visits exactly each output's taps, at box rows holding the input
// they read (forward_taps after clipping to x; the rest outside x, zeros).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "conv_shape.h"
#include "cuda/forward_taps_plan.h"

namespace tconv3d::cuda::fwd_taps {
namespace {

using plan_tests::params_of;
using plan_tests::Shape;

void check_plan(const Shape& s, int64_t max_box_rows = kMaxBoxRows) {
  SCOPED_TRACE(::testing::Message() << "in " << s.in[0] << "x" << s.in[1] << "x" << s.in[2]
                                    << " k " << s.kernel[0] << s.kernel[1] << s.kernel[2]
                                    << " s " << s.stride[0] << s.stride[1] << s.stride[2]
                                    << " p " << s.padding[0] << s.padding[1] << s.padding[2]
                                    << " d " << s.dilation[0] << s.dilation[1] << s.dilation[2]);
  const ConvTranspose3dParams p = params_of(s);
  Plan plan;
  ASSERT_TRUE(plan_forward_taps(p, &plan, max_box_rows));
  int64_t rows = 1, outputs = 1, tiles = 1;
  int max_count = 0;
  for (int a = 0; a < 3; ++a) {
    const ForwardBoxAxis& b = plan.box[a];
    EXPECT_EQ(b.tile % p.axis[a].stride, 0);
    EXPECT_LE(b.tile, kMaxTile);
    EXPECT_TRUE(b.shift == 0 || b.shift == p.axis[a].padding % p.axis[a].stride);
    EXPECT_GE(b.tiles * b.tile, p.axis[a].out + b.shift);
    EXPECT_LT((b.tiles - 1) * b.tile, p.axis[a].out + b.shift);
    rows *= b.extent;
    outputs *= b.tile;
    tiles *= b.tiles;
    for (int u = 0; u < kMaxTile; ++u) max_count = std::max(max_count, plan.count[a][u]);
  }
  EXPECT_EQ(plan.box_rows, rows);
  EXPECT_LE(rows, max_box_rows);
  EXPECT_EQ(plan.passes, (rows + kBM - 1) / kBM);
  EXPECT_LE(outputs, kMaxOutputs);
  EXPECT_EQ(plan.tiles, tiles);
  EXPECT_EQ(plan.max_count, max_count);

  const int64_t kh = p.axis[1].kernel, kw = p.axis[2].kernel;
  const int64_t eh = plan.box[1].extent, ew = plan.box[2].extent;
  for (int64_t td = 0; td < plan.box[0].tiles; ++td)
    for (int64_t th = 0; th < plan.box[1].tiles; ++th)
      for (int64_t tw = 0; tw < plan.box[2].tiles; ++tw) {
        const int64_t t[3] = {td, th, tw};
        int64_t origin[3];
        for (int a = 0; a < 3; ++a) origin[a] = forward_box_origin(p.axis[a], plan.box[a], t[a]);
        for (int64_t ud = 0; ud < plan.box[0].tile; ++ud)
          for (int64_t uh = 0; uh < plan.box[1].tile; ++uh)
            for (int64_t uw = 0; uw < plan.box[2].tile; ++uw) {
              const int64_t u[3] = {ud, uh, uw};
              int64_t o[3];
              bool inside = true;
              for (int a = 0; a < 3; ++a) {
                o[a] = t[a] * plan.box[a].tile - plan.box[a].shift + u[a];
                inside = inside && o[a] >= 0 && o[a] < p.axis[a].out;
              }
              if (!inside) continue;
              // The kernel's walk, as forward_taps_kernel takes it.
              std::set<std::pair<int64_t, int64_t>> walked;  // (tap, input position, flat)
              const int row0 = plan.first_row[0][ud] + plan.first_row[1][uh] + plan.first_row[2][uw];
              const int tap0 = plan.first_tap[0][ud] + plan.first_tap[1][uh] + plan.first_tap[2][uw];
              for (int md = 0; md < plan.count[0][ud]; ++md)
                for (int mh = 0; mh < plan.count[1][uh]; ++mh)
                  for (int mw = 0; mw < plan.count[2][uw]; ++mw) {
                    const int row = row0 + md * plan.row_step[0] + mh * plan.row_step[1] +
                                    mw * plan.row_step[2];
                    const int tap = tap0 + md * plan.tap_step[0] + mh * plan.tap_step[1] +
                                    mw * plan.tap_step[2];
                    ASSERT_GE(row, 0);
                    ASSERT_LT(row, rows);
                    const int64_t b[3] = {row / (eh * ew), row / ew % eh, row % ew};
                    const int64_t k[3] = {tap / (kh * kw), tap / kw % kh, tap % kw};
                    bool in_x = true;
                    int64_t flat = 0;
                    for (int a = 0; a < 3; ++a) {
                      const int64_t i = origin[a] + b[a];
                      ASSERT_EQ(o[a], i * p.axis[a].stride - p.axis[a].padding +
                                          k[a] * p.axis[a].dilation);
                      in_x = in_x && i >= 0 && i < p.axis[a].in;
                      flat = flat * 1000 + i;
                    }
                    if (in_x) walked.insert({tap, flat});
                  }
              // forward_taps, clipped to x, on each axis.
              std::set<std::pair<int64_t, int64_t>> expected;
              const Run r[3] = {forward_taps(p.axis[0], o[0]), forward_taps(p.axis[1], o[1]),
                                forward_taps(p.axis[2], o[2])};
              for (int64_t md = 0; md < r[0].count; ++md)
                for (int64_t mh = 0; mh < r[1].count; ++mh)
                  for (int64_t mw = 0; mw < r[2].count; ++mw) {
                    const int64_t m[3] = {md, mh, mw};
                    int64_t tap = 0, flat = 0;
                    for (int a = 0; a < 3; ++a) {
                      tap = tap * p.axis[a].kernel + r[a].a + m[a] * r[a].da;
                      flat = flat * 1000 + r[a].b + m[a] * r[a].db;
                    }
                    expected.insert({tap, flat});
                  }
              ASSERT_EQ(walked, expected) << "o " << o[0] << "," << o[1] << "," << o[2];
            }
      }
}

TEST(ForwardTapsPlan, NamedShapes) {
  const std::vector<Shape> shapes = {
      // batch, cin, cout, groups, in, kernel, stride, padding, dilation
      {2, 24, 3, 1, {5, 6, 7}, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},   // RGB output
      {1, 64, 3, 1, {9, 10, 21}, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}}, // many tiles
      {2, 40, 1, 1, {4, 5, 6}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},   // k3 s2
      {2, 20, 3, 1, {3, 4, 5}, {3, 4, 2}, {2, 3, 2}, {1, 0, 2}, {2, 1, 1}},   // dilated, aniso
      {1, 40, 1, 1, {3, 4, 3}, {3, 4, 5}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}},   // stride 3
      {1, 24, 3, 1, {4, 5, 6}, {4, 3, 4}, {2, 1, 2}, {1, 1, 1}, {1, 1, 1}},   // a stride-1 axis
      {1, 8, 3, 1, {1, 1, 1}, {4, 4, 4}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}},    // one input
  };
  for (const Shape& s : shapes) check_plan(s);
}

TEST(ForwardTapsPlan, SmallerBoxesWhereKIsWide) {
  // The kernel's box limit falls with K and the device's shared memory
  // (fp32's 512 bytes of channels: 128 rows on H100, 64 on A100): the plan
  // stays within it and covers every output, or fails where no box fits.
  const std::vector<Shape> shapes = {
      {2, 128, 3, 1, {5, 6, 7}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},  // VAE RGB output
      {1, 128, 3, 1, {9, 10, 21}, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},
      {2, 128, 3, 1, {3, 4, 5}, {3, 4, 2}, {2, 3, 2}, {1, 0, 2}, {2, 1, 1}},
  };
  for (const Shape& s : shapes) {
    for (const int64_t rows : {128, 64}) check_plan(s, rows);
  }
  Plan plan;
  const ConvTranspose3dParams p = params_of(shapes[0]);
  EXPECT_FALSE(plan_forward_taps(p, &plan, 0));
}

TEST(ForwardTapsPlan, RandomStridedShapes) {
  std::mt19937_64 rng(20261201);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  int checked = 0;
  while (checked < 300) {
    Shape s{1, 16, 3, 1, {}, {}, {}, {}, {}};
    bool ok = true;
    for (int a = 0; a < 3; ++a) {
      s.in[a] = pick(1, 9);
      s.stride[a] = pick(2, 4);
      s.dilation[a] = pick(1, 2);
      s.kernel[a] = pick(1, 2 * s.stride[a]);
      s.padding[a] = pick(0, 3);
      ok = ok && transposed_output_extent(s.in[a], s.kernel[a], s.stride[a], s.padding[a],
                                          s.dilation[a], 0) > 0;
    }
    if (!ok) continue;
    check_plan(s);
    if (HasFailure()) return;
    ++checked;
  }
}

TEST(ForwardTapsPlan, BenchmarkLayerFillsItsPasses) {
  // rgb_out_k4s2p1_64to3_b16: 64³ outputs.  At least three outputs a
  // multiplied box row, every tap run two long (the kernel's unrolled walk).
  const Shape s{16, 64, 3, 1, {32, 32, 32}, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}};
  const ConvTranspose3dParams p = params_of(s);
  Plan plan;
  ASSERT_TRUE(plan_forward_taps(p, &plan));
  const int64_t outputs = 64 * 64 * 64;
  EXPECT_GE(outputs, 3 * plan.tiles * plan.passes * kBM);
  EXPECT_EQ(plan.max_count, 2);
}

}  // namespace
}  // namespace tconv3d::cuda::fwd_taps
