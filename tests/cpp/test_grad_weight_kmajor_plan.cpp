// The K-major TF32 Hopper grad-weight GEMM's decomposition
// (cuda/grad_weight_kmajor_plan.h): box shapes, the box walk the issuing
// thread carries, that units cover every box and every (tap, co) row exactly
// once, the splits' bounds, and — walking the kernel's units, boxes and
// copies on the host, with the coordinates its copies use and TMA's
// out-of-range zeros — that the sum over gy_k and x_k (kmajor_layout.h) is
// the weight gradient of the direct definition.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "conv_shape.h"
#include "cuda/grad_weight_kmajor_plan.h"

namespace tconv3d::cuda::gwk {
namespace {

using plan_tests::params_of;
using plan_tests::Shape;

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> v = {
      {2, 64, 64, 1, {3, 5, 7}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},
      {1, 256, 128, 2, {4, 3, 32}, {2, 3, 3}, {3, 1, 2}, {2, 0, 1}, {1, 2, 1}},
      {2, 128, 64, 1, {6, 5, 7}, {3, 2, 3}, {2, 1, 3}, {2, 0, 1}, {2, 1, 1}},
      {1, 64, 128, 1, {3, 4, 3}, {2, 2, 2}, {8, 8, 8}, {0, 0, 0}, {1, 1, 1}},
      {3, 64, 64, 1, {16, 15, 17}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}},
      {2, 128, 64, 1, {24, 24, 24}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},
      {1, 512, 256, 1, {8, 8, 64}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},
      {1, 64, 64, 1, {32, 32, 32}, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},
      {4, 192, 320, 1, {3, 1, 2}, {5, 1, 3}, {3, 1, 2}, {2, 0, 1}, {1, 1, 2}},
      {2, 384, 384, 3, {5, 6, 7}, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}},
      {1, 64, 64, 1, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}},
  };
  return v;
}

TEST(GradWeightKmajorPlan, BoxShapesHold32PositionsAndFollowTheShape) {
  for (const Shape& s : shapes()) {
    const ConvTranspose3dParams p = params_of(s);
    for (const int hook : {0, 8, 32}) {
      const BoxShape b = box_shape(p, hook);
      EXPECT_EQ(b.w * b.h * b.d, kStagePositions);
      EXPECT_TRUE(b.w == 8 || b.w == 32);
      EXPECT_EQ(b.w, hook != 0 ? hook : p.axis[2].in % 32 == 0 ? 32 : 8);
      EXPECT_EQ(b.h & (b.h - 1), 0);  // a power of two
      EXPECT_TRUE(b.h == 1 || b.h <= p.axis[1].in);
      // As much along h as H holds: twice as much would not fit in it (or
      // in the box).
      EXPECT_TRUE(2 * b.h > p.axis[1].in || b.w * 2 * b.h > kStagePositions);
    }
  }
}

TEST(GradWeightKmajorPlan, CarryingTheBoxCursorMatchesDecodingEveryBox) {
  for (const Shape& s : shapes()) {
    for (const int hook : {0, 8}) {
      Geometry g;
      ASSERT_TRUE(plan_geometry(params_of(s), g, hook));
      for (int64_t split = 0; split < g.splits; ++split) {
        const int64_t b0 = g.boxes * split / g.splits, b1 = g.boxes * (split + 1) / g.splits;
        BoxCursor carried;
        carried.seek(g, b0);
        for (int64_t b = b0; b < b1; ++b) {
          BoxCursor decoded;
          decoded.seek(g, b);
          ASSERT_EQ(carried.sample, decoded.sample) << "box " << b;
          for (int a = 0; a < 3; ++a) ASSERT_EQ(carried.origin(g, a), decoded.origin(g, a));
          carried.next(g);
        }
      }
    }
  }
}

TEST(GradWeightKmajorPlan, BoxesCoverTheGrid) {
  for (const Shape& s : shapes()) {
    const ConvTranspose3dParams p = params_of(s);
    Geometry g;
    ASSERT_TRUE(plan_geometry(p, g));
    int64_t per_sample = 1, positions = 1;
    for (int a = 0; a < 3; ++a) {
      EXPECT_GE(int64_t(g.boxes_axis[a]) * g.box[a], p.axis[a].in);      // the grid is covered
      EXPECT_LT(int64_t(g.boxes_axis[a] - 1) * g.box[a], p.axis[a].in);  // no box wholly past it
      per_sample *= g.boxes_axis[a];
      positions *= g.box[a];
    }
    EXPECT_EQ(positions, kStagePositions);
    EXPECT_EQ(g.boxes, p.batch * per_sample);
  }
}

TEST(GradWeightKmajorPlan, UnitsCoverEveryBoxAndRowOnce) {
  for (const Shape& s : shapes()) {
    const ConvTranspose3dParams p = params_of(s);
    Geometry g;
    ASSERT_TRUE(plan_geometry(p, g));
    EXPECT_EQ(g.bc, p.in_per_group % 128 == 0 ? 128 : 64);
    EXPECT_EQ(g.tiles_ci * g.bc, p.in_per_group);
    EXPECT_EQ(g.numel, p.in_channels * p.out_per_group * g.taps);
    EXPECT_GE(g.splits, 1);
    EXPECT_LE(g.splits * g.numel, kMaxPartials);
    std::vector<int> box_hits(size_t(g.boxes), 0);
    std::set<std::tuple<int, int, int, int64_t>> units_seen;
    std::set<std::tuple<int, int, int, int>> rows_seen;  // (group, ci-tile, tap, co)
    for (int64_t u = 0; u < unit_count(g); ++u) {
      const Unit w = decode_unit(g, u);
      ASSERT_LT(w.group, g.groups);
      ASSERT_LT(w.tc, g.tiles_ci);
      ASSERT_LT(w.tr, g.tiles_row);
      ASSERT_LT(w.split, g.splits);
      EXPECT_TRUE(units_seen.insert({w.group, w.tc, w.tr, w.split}).second) << "unit " << u;
      if (w.group == 0 && w.tc == 0 && w.tr == 0) {
        for (int64_t b = w.box0; b < w.box1; ++b) ++box_hits[size_t(b)];
      }
      if (w.split != 0) continue;
      for (int c = 0; c < kCopies; ++c) {
        const CopyRows r = copy_rows(g, w.tr, c);
        if (r.tap >= g.taps) {
          EXPECT_EQ(w.tr, g.tiles_row - 1);  // only the last row tile runs past the final tap
          EXPECT_GE(copy_source(g, w, c).sample_offset, 1 << 30);
          continue;
        }
        EXPECT_EQ(r.co % kCopyRows, 0);
        EXPECT_LT(copy_source(g, w, c).sample_offset, g.phases);
        EXPECT_TRUE(rows_seen.insert({w.group, w.tc, r.tap, r.co}).second) << "copy covered twice";
      }
    }
    EXPECT_EQ(int64_t(units_seen.size()), unit_count(g));
    for (int64_t b = 0; b < g.boxes; ++b) EXPECT_EQ(box_hits[size_t(b)], 1) << "box " << b;
    EXPECT_EQ(int64_t(rows_seen.size()), g.groups * g.tiles_ci * g.taps * (p.out_per_group / kCopyRows));
  }
}

TEST(GradWeightKmajorPlan, SplitsFollowTheShapeAlone) {
  for (const Shape& s : shapes()) {
    Geometry g, again;
    ASSERT_TRUE(plan_geometry(params_of(s), g));
    ASSERT_TRUE(plan_geometry(params_of(s), again));
    EXPECT_EQ(g.splits, again.splits);
    EXPECT_EQ(g.boxes, again.boxes);
    const int64_t base = g.groups * g.tiles_ci * g.tiles_row;
    EXPECT_LE(base * g.splits, std::max<int64_t>(base, kTargetUnits));
    if (g.splits > 1) {
      EXPECT_GE(g.boxes / g.splits, kMinBoxesPerSplit);
    }
    EXPECT_EQ(workspace_elems(params_of(s)), g.splits * g.numel);
  }
  // Many boxes, few tiles: split up to about kTargetUnits units.
  Shape big = shapes()[4];
  big.in[0] = big.in[1] = big.in[2] = 64;
  Geometry g;
  ASSERT_TRUE(plan_geometry(params_of(big), g));
  EXPECT_EQ(g.splits, kTargetUnits / (g.groups * g.tiles_ci * g.tiles_row));
}

TEST(GradWeightKmajorPlan, RefusesChannelsAndWorkspacesItDoesNotFit) {
  Shape s = shapes()[0];
  s.cout = 96;  // 96 a group: not whole 64-channel copies
  EXPECT_FALSE(supports_shape(params_of(s)));
  s.cout = 64;
  s.cin = 32;
  EXPECT_FALSE(supports_shape(params_of(s)));
  // 1024 × 1024 × 27 taps: 28M partial sums even unsplit.
  s.cin = s.cout = 1024;
  EXPECT_FALSE(supports_shape(params_of(s)));
  EXPECT_EQ(workspace_elems(params_of(s)), 0);
  s.cout = 512;
  EXPECT_TRUE(supports_shape(params_of(s)));
  s.batch = 0;
  EXPECT_FALSE(supports_shape(params_of(s)));
}

// The kernel's sum, walked on the host: per unit, box and copy, the values
// its copies land (x_k and gy_k at the coordinates the producer computes,
// zeros outside the maps' dimensions — which are the grids', not the padded
// rows'), accumulated into [split][tap][ci][co] partials as the epilogue
// stores them, then added in split order.  Against the direct definition.
void check_against_definition(const ConvTranspose3dParams& p, int hook) {
  Geometry g;
  ASSERT_TRUE(channels_fit(p));
  ASSERT_TRUE(plan_geometry(p, g, hook));
  const KmajorLayout l = kmajor_layout(p);
  const int64_t N = p.batch, Cin = p.in_channels, Cout = p.out_channels;
  const int64_t D = p.axis[0].in, H = p.axis[1].in, W = p.axis[2].in;
  const int64_t Od = p.axis[0].out, Oh = p.axis[1].out, Ow = p.axis[2].out;
  std::mt19937 rng(1234);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::vector<double> x(size_t(N * Cin * D * H * W)), gy(size_t(N * Cout * Od * Oh * Ow));
  for (double& v : x) v = uni(rng);
  for (double& v : gy) v = uni(rng);
  auto x_at = [&](int64_t n, int64_t c, int64_t d, int64_t h, int64_t w) {
    return x[size_t((((n * Cin + c) * D + d) * H + h) * W + w)];
  };
  auto gy_at = [&](int64_t n, int64_t c, int64_t d, int64_t h, int64_t w) {
    return gy[size_t((((n * Cout + c) * Od + d) * Oh + h) * Ow + w)];
  };
  // The packed copies, rows' padding poisoned: the maps must never reach it.
  const double poison = 1e30;
  std::vector<double> xk(size_t(l.x_elems), poison), gyk(size_t(l.gy_elems), poison);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < Cin; ++c)
      for (int64_t d = 0; d < D; ++d)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t w = 0; w < W; ++w) {
            xk[size_t((((n * D + d) * H + h) * Cin + c) * l.x_row + w)] = x_at(n, c, d, h, w);
          }
  const int64_t Pd = l.phase_extent[0], Ph = l.phase_extent[1], Pw = l.phase_extent[2];
  const int64_t sd = p.axis[0].stride, sh = p.axis[1].stride, sw = p.axis[2].stride;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t ph = 0; ph < l.phases; ++ph) {
      const int64_t rd = ph / (sh * sw), rh = ph / sw % sh, rw = ph % sw;
      for (int64_t c = 0; c < Cout; ++c)
        for (int64_t d = 0; d < Pd; ++d)
          for (int64_t h = 0; h < Ph; ++h)
            for (int64_t w = 0; w < Pw; ++w) {
              const int64_t od = sd * d + rd, oh = sh * h + rh, ow = sw * w + rw;
              gyk[size_t(((((n * l.phases + ph) * Pd + d) * Ph + h) * Cout + c) * l.gy_row + w)] =
                  od < Od && oh < Oh && ow < Ow ? gy_at(n, c, od, oh, ow) : 0.0;
            }
    }
  // What a copy's element at map coordinates (w, channel, h, d, outer) lands.
  auto x_copy = [&](int64_t w, int64_t c, int64_t h, int64_t d, int64_t n) {
    if (w < 0 || w >= W || h < 0 || h >= H || d < 0 || d >= D || n < 0 || n >= N) return 0.0;
    return xk[size_t((((n * D + d) * H + h) * Cin + c) * l.x_row + w)];
  };
  auto gy_copy = [&](int64_t w, int64_t c, int64_t h, int64_t d, int64_t grid) {
    if (w < 0 || w >= Pw || h < 0 || h >= Ph || d < 0 || d >= Pd || grid < 0 || grid >= N * l.phases) {
      return 0.0;
    }
    return gyk[size_t((((grid * Pd + d) * Ph + h) * Cout + c) * l.gy_row + w)];
  };

  std::vector<double> partials(size_t(g.splits * g.numel), std::nan(""));
  const int Cg = g.out_per_group;
  for (int64_t u = 0; u < unit_count(g); ++u) {
    const Unit w = decode_unit(g, u);
    const int ci0 = w.group * g.in_per_group + w.tc * g.bc;
    std::vector<double> acc(size_t(kRowTile * g.bc), 0.0);
    CopySource src[kCopies];
    for (int c = 0; c < kCopies; ++c) src[c] = copy_source(g, w, c);
    BoxCursor cursor;
    cursor.seek(g, w.box0);
    for (int64_t b = w.box0; b < w.box1; ++b) {
      const int i0[3] = {cursor.origin(g, 0), cursor.origin(g, 1), cursor.origin(g, 2)};
      const int sample = cursor.sample;
      cursor.next(g);
      for (int bd = 0; bd < g.box[0]; ++bd)
        for (int bh = 0; bh < g.box[1]; ++bh)
          for (int bw = 0; bw < g.box[2]; ++bw) {
            const int64_t id = i0[0] + bd, ih = i0[1] + bh, iw = i0[2] + bw;
            for (int c = 0; c < kCopies; ++c)
              for (int r = 0; r < kCopyRows; ++r) {
                const double a = gy_copy(iw + src[c].shift[2], src[c].co + r, ih + src[c].shift[1],
                                         id + src[c].shift[0], int64_t(sample) * g.phases + src[c].sample_offset);
                if (a == 0.0) continue;
                for (int ci = 0; ci < g.bc; ++ci) {
                  acc[size_t((c * kCopyRows + r) * g.bc + ci)] += a * x_copy(iw, ci0 + ci, ih, id, sample);
                }
              }
          }
    }
    for (int c = 0; c < kCopies; ++c) {
      const CopyRows rows = copy_rows(g, w.tr, c);
      if (rows.tap >= g.taps) continue;
      for (int r = 0; r < kCopyRows; ++r)
        for (int ci = 0; ci < g.bc; ++ci) {
          partials[size_t(w.split * g.numel + (rows.tap * Cin + ci0 + ci) * Cg + rows.co + r)] =
              acc[size_t((c * kCopyRows + r) * g.bc + ci)];
        }
    }
  }
  // Every partial written, and their sums the definition's.
  const int64_t kw = p.axis[2].kernel, kh = p.axis[1].kernel;
  int64_t checked = 0;
  for (int64_t tap = 0; tap < g.taps; ++tap) {
    const int64_t k[3] = {tap / (kh * kw), tap / kw % kh, tap % kw};
    for (int64_t ci = 0; ci < Cin; ++ci) {
      const int64_t group = ci / p.in_per_group;
      for (int64_t co = 0; co < Cg; ++co) {
        double sum = 0.0;
        for (int64_t s = 0; s < g.splits; ++s) {
          const double v = partials[size_t(s * g.numel + (tap * Cin + ci) * Cg + co)];
          ASSERT_FALSE(std::isnan(v)) << "partial not written: tap " << tap << " ci " << ci << " co " << co;
          sum += v;
        }
        double want = 0.0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t d = 0; d < D; ++d)
            for (int64_t h = 0; h < H; ++h)
              for (int64_t w = 0; w < W; ++w) {
                const int64_t i[3] = {d, h, w};
                int64_t o[3];
                bool inside = true;
                for (int a = 0; a < 3; ++a) {
                  o[a] = i[a] * p.axis[a].stride - p.axis[a].padding + k[a] * p.axis[a].dilation;
                  inside = inside && o[a] >= 0 && o[a] < p.axis[a].out;
                }
                if (inside) want += x_at(n, ci, d, h, w) * gy_at(n, group * Cg + co, o[0], o[1], o[2]);
              }
        ASSERT_NEAR(sum, want, 1e-9 * (1.0 + std::fabs(want)))
            << "tap " << tap << " ci " << ci << " co " << co << " splits " << g.splits;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, g.numel);
}

TEST(GradWeightKmajorPlan, TheKernelsWalkSumsTheDefinition) {
  // 8-wide boxes (W = 7), stride 2: 27 taps, 7 row tiles, the last one past
  // the final tap.
  check_against_definition(params_of({2, 64, 64, 1, {3, 5, 7}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}}), 0);
  // Groups, 128-channel tiles, 32-wide boxes, mixed strides, padding past
  // the kernel and dilation.
  const Shape mixed{1, 256, 128, 2, {3, 3, 32}, {2, 3, 3}, {3, 1, 2}, {2, 0, 3}, {1, 2, 1}};
  check_against_definition(params_of(mixed), 0);
  check_against_definition(params_of(mixed), 8);  // the same, forced to 8-wide boxes
  // Dilation sharing a factor with the stride, and output padding (an
  // output longer than the taps reach).
  ConvTranspose3dParams p =
      params_of({1, 64, 128, 1, {2, 3, 5}, {3, 2, 3}, {2, 3, 2}, {1, 1, 0}, {2, 3, 2}});
  for (int a = 0; a < 3; ++a) {
    const Axis& ax = p.axis[a];
    p.axis[a] = make_axis(ax.in, ax.out + 1, ax.kernel, ax.stride, ax.padding, ax.dilation);
  }
  check_against_definition(p, 0);
}

}  // namespace
}  // namespace tconv3d::cuda::gwk
