// The Hopper grad-weight GEMM's decomposition (cuda/grad_weight_sm90_plan.h):
// the box walk the issuing thread carries from stage to stage, and that the
// work units' ranges and column tiles cover every box and every (tap, co)
// column exactly once, in planes 0, 1, … a tile, within TMA's box limits and the workspace bound, for
// fp16/bf16 tiles and TF32's; which shapes and dtypes the kernel takes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <tuple>
#include <vector>

#include "conv_shape.h"
#include "cuda/grad_weight_sm90_plan.h"

namespace tconv3d::cuda::gw90 {
namespace {

using plan_tests::dense_strides;
using plan_tests::params_of;
using plan_tests::Shape;

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> v = {
      {2, 64, 64, 1, {9, 10, 11}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},
      {1, 256, 256, 2, {5, 6, 7}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},
      {2, 128, 64, 1, {6, 5, 7}, {3, 2, 3}, {2, 1, 3}, {2, 0, 1}, {2, 1, 1}},
      {1, 64, 128, 1, {3, 4, 3}, {2, 2, 2}, {8, 8, 8}, {0, 0, 0}, {1, 1, 1}},
      {3, 64, 64, 1, {16, 15, 17}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}},
      {2, 128, 64, 1, {7, 6, 5}, {1, 1, 1}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}},
      {2, 128, 64, 1, {24, 24, 24}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},
      {1, 512, 256, 1, {8, 8, 8}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},
      {1, 64, 64, 1, {32, 32, 32}, {4, 4, 4}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},
      {4, 192, 320, 1, {3, 1, 2}, {5, 1, 3}, {3, 1, 2}, {2, 0, 1}, {1, 1, 2}},
      // 32-channel groups: turned tiles (32 input channels), 32-channel
      // copies of grad_output (four taps a 128-column tile), both, and 96.
      {4, 32, 32, 1, {32, 32, 32}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}},
      {2, 64, 32, 1, {9, 10, 11}, {5, 5, 5}, {2, 2, 2}, {2, 2, 2}, {1, 1, 1}},
      {2, 32, 64, 1, {7, 6, 5}, {3, 5, 7}, {1, 1, 1}, {1, 2, 3}, {1, 1, 1}},
      {1, 192, 192, 2, {5, 6, 7}, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}},
  };
  return v;
}

// Each shape at each element size whose tiles its channels fit: 2 (fp16/
// bf16: all of them) and 4 (TF32: groups of multiples of 64 input and 32
// output channels).
std::vector<std::pair<Shape, int>> planned_shapes() {
  std::vector<std::pair<Shape, int>> v;
  for (const Shape& s : shapes()) {
    for (const int bytes : {2, 4}) {
      if (channels_fit(params_of(s), bytes)) v.push_back({s, bytes});
    }
  }
  return v;
}

TEST(GradWeightSm90Plan, EveryShapeIsPlannedForTf32WhereItsChannelsFit) {
  // The coverage tests below then walk TF32's tile over most shapes too.
  int tf32 = 0;
  for (const auto& [s, bytes] : planned_shapes()) tf32 += bytes == 4;
  EXPECT_EQ(tf32, 11);
}

TEST(GradWeightSm90Plan, CarryingTheBoxCursorMatchesDecodingEveryBox) {
  for (const auto& [s, bytes] : planned_shapes()) {
    Geometry g;
    ASSERT_TRUE(plan_geometry(params_of(s), g, bytes));
    for_each_unit(g, 0, 1, [&](const Unit& w) {
      BoxCursor carried;
      carried.seek(g, w.box0);
      for (int64_t b = w.box0; b < w.box1; ++b) {
        BoxCursor decoded;
        decoded.seek(g, b);
        ASSERT_EQ(carried.sample, decoded.sample) << "box " << b;
        for (int a = 0; a < 3; ++a) ASSERT_EQ(carried.origin(g, a), decoded.origin(g, a));
        carried.next(g);
      }
    });
  }
}

TEST(GradWeightSm90Plan, BoxesCoverTheGridWithinTmaLimits) {
  for (const auto& [s, bytes] : planned_shapes()) {
    const ConvTranspose3dParams p = params_of(s);
    Geometry g;
    ASSERT_TRUE(plan_geometry(p, g, bytes));
    int64_t per_sample = 1;
    int log_rows = 0;
    for (int a = 0; a < 3; ++a) {
      const int64_t side = int64_t(1) << g.log_box[a];
      EXPECT_GE(g.boxes_axis[a] * side, p.axis[a].in);            // the grid is covered
      EXPECT_LT((g.boxes_axis[a] - 1) * side, p.axis[a].in);      // and no box lies wholly past it
      EXPECT_LE(side * p.axis[a].stride, 256);                     // grad_output's strided box
      per_sample *= g.boxes_axis[a];
      log_rows += g.log_box[a];
    }
    EXPECT_EQ(log_rows, kLogBoxRows);
    EXPECT_EQ(g.boxes, p.batch * per_sample);
  }
}

TEST(GradWeightSm90Plan, UnitsCoverEveryBoxAndColumnOnce) {
  for (const auto& [s, bytes] : planned_shapes()) {
    const ConvTranspose3dParams p = params_of(s);
    Geometry g;
    ASSERT_TRUE(plan_geometry(p, g, bytes));
    EXPECT_GE(g.splits, 1);
    EXPECT_LE(g.splits * g.numel, kMaxPartials);
    EXPECT_EQ(g.numel, p.in_channels * p.out_per_group * g.taps);
    const int64_t tiles = tile_count(g);
    ASSERT_EQ(g.cut.tiles, tiles);
    // Per tile: how many units cover each box, and the planes its units
    // write, in box order.
    std::vector<std::vector<int>> box_hits(static_cast<size_t>(tiles),
                                           std::vector<int>(static_cast<size_t>(g.boxes), 0));
    std::vector<std::vector<int64_t>> planes(static_cast<size_t>(tiles));
    std::set<std::tuple<int, int, int, int>> columns_seen;
    // Strided over two CTAs, as on a GPU of fewer SMs than ranges: the
    // units are the same, only who runs them differs.
    for (int cta = 0; cta < 2; ++cta) {
      for_each_unit(g, cta, 2, [&](const Unit& w) {
        ASSERT_LT(w.group, g.groups);
        ASSERT_LT(w.tm * g.bm, g.in_per_group);
        ASSERT_EQ(w.tile, (int64_t(w.group) * g.tiles_m + w.tm) * g.tiles_n + w.tn);
        ASSERT_LT(w.box0, w.box1);
        ASSERT_LE(w.box1, g.boxes);
        for (int64_t b = w.box0; b < w.box1; ++b) ++box_hits[size_t(w.tile)][size_t(b)];
        planes[size_t(w.tile)].push_back(w.split);
        if (w.split != 0) return;
        for (int j = 0; j < g.bn / g.co_box; ++j) {
          const ColumnBlock c = column_block(g, w.tn, j, g.bn);
          if (c.tap >= g.taps) {
            // Only the last column tile runs past the final tap.
            EXPECT_EQ(w.tn, g.tiles_n - 1);
            continue;
          }
          EXPECT_EQ(c.co % g.co_box, 0);
          EXPECT_TRUE(columns_seen.insert({w.group, w.tm, c.tap, c.co}).second)
              << "column block covered twice";
        }
      });
    }
    int64_t most = 0;
    for (int64_t t = 0; t < tiles; ++t) {
      for (int64_t b = 0; b < g.boxes; ++b) ASSERT_EQ(box_hits[size_t(t)][size_t(b)], 1) << "box " << b;
      // Planes 0, 1, … in the order of the boxes (the sums' order), as
      // many as the combine reads.
      std::vector<int64_t> sorted = planes[size_t(t)];
      std::sort(sorted.begin(), sorted.end());
      for (size_t i = 0; i < sorted.size(); ++i) ASSERT_EQ(sorted[i], int64_t(i)) << "tile " << t;
      const int64_t planes = g.cut.workers == 0 ? g.splits : g.cut.pieces(t);
      EXPECT_EQ(int64_t(sorted.size()), planes) << "tile " << t;
      most = std::max(most, int64_t(sorted.size()));
    }
    EXPECT_EQ(g.splits, most);
    EXPECT_EQ(int64_t(columns_seen.size()),
              g.groups * g.tiles_m * g.taps * (p.out_per_group / g.co_box));
  }
}

TEST(GradWeightSm90Plan, TilesFollowTheGroupsChannels) {
  // (Cin/G, Cout/G) → (bm, co_box, bn): 64-channel copies where a group's
  // grad_output channels are whole 64s, else 32; 32-channel x tiles (the
  // turned product) where its input channels are not; 128 columns with
  // either narrow side.
  const struct {
    int64_t cin, cout, bm, co_box, bn;
  } cases[] = {{64, 64, 64, 64, 128},   {128, 64, 128, 64, 128}, {32, 32, 32, 32, 128},
               {64, 32, 64, 32, 128},   {32, 64, 32, 64, 128},   {96, 96, 32, 32, 128},
               {128, 32, 128, 32, 128}};
  for (const auto& c : cases) {
    Shape s = shapes()[0];
    s.cin = c.cin;
    s.cout = c.cout;
    Geometry g;
    ASSERT_TRUE(plan_geometry(params_of(s), g, 2));
    EXPECT_EQ(g.bm, c.bm) << c.cin << " -> " << c.cout;
    EXPECT_EQ(g.co_box, c.co_box) << c.cin << " -> " << c.cout;
    EXPECT_EQ(g.bn, c.bn) << c.cin << " -> " << c.cout;
    EXPECT_EQ(g.tiles_m * g.bm, c.cin);
  }
  // One tap of 64 channels: a 64-column tile.
  Shape one_tap = shapes()[4];
  Geometry g;
  ASSERT_TRUE(plan_geometry(params_of(one_tap), g, 2));
  EXPECT_EQ(g.bn, 64);
}

TEST(GradWeightSm90Plan, RefusesStridesPastTmaTraversal) {
  Shape s = shapes()[0];
  s.stride[0] = 9;
  Geometry g;
  EXPECT_FALSE(plan_geometry(params_of(s), g, 2));
}

TEST(GradWeightSm90Plan, RefusesLayersWhosePartialsWouldPassTheWorkspaceBound) {
  // 1024 × 1024 × 27 taps: 28M partial sums even unsplit (the mma.sync kernel
  // stores such gw directly); 1024 × 512 × 27 = 14M still fits.
  Shape s = shapes()[0];
  s.cin = s.cout = 1024;
  Geometry g;
  EXPECT_FALSE(plan_geometry(params_of(s), g, 2));
  s.cout = 512;
  ASSERT_TRUE(plan_geometry(params_of(s), g, 2));
  EXPECT_LE(g.splits * g.numel, kMaxPartials);
}

TEST(GradWeightSm90Plan, SplitsFollowTheShapeAlone) {
  // Two units a SM of a 132-SM part where the boxes allow; never fewer than
  // 8 boxes a split (unless there are fewer than 8 in all).  TF32 (one
  // consumer an SM) cuts the tiles' boxes into 132 equal ranges instead
  // where those units would leave the last wave of 132 under 85 % full and
  // each range can hold 8 boxes.
  int cut = 0;
  for (const auto& [s, bytes] : planned_shapes()) {
    Geometry g;
    ASSERT_TRUE(plan_geometry(params_of(s), g, bytes));
    const int64_t base = tile_count(g);
    int64_t splits = std::min(std::max<int64_t>(1, kTargetUnits / base), g.boxes / kMinBoxesPerSplit);
    splits = std::max<int64_t>(1, std::min(splits, kMaxPartials / g.numel));
    const int64_t waves = (base * splits + kSms - 1) / kSms;
    const int64_t items = base * g.boxes;
    if (bytes == 4 && 20 * base * splits < 17 * waves * kSms && items / kMinBoxesPerSplit >= kSms) {
      ++cut;
      EXPECT_EQ(g.cut.workers, kSms);
      EXPECT_EQ(g.splits, g.cut.most_pieces());
      for (int64_t w = 0; w < g.cut.workers; ++w) {
        const int64_t length = g.cut.begin(w + 1) - g.cut.begin(w);
        EXPECT_GE(length, items / g.cut.workers);
        EXPECT_LE(length, items / g.cut.workers + 1);
        if (g.cut.workers > 1) {
          EXPECT_GE(length, kMinBoxesPerSplit);
        }
      }
    } else {
      EXPECT_EQ(g.cut.workers, 0);
      EXPECT_EQ(g.splits, splits);
      EXPECT_EQ(work_count(g), base * splits);
    }
  }
  EXPECT_GT(cut, 0);  // the shapes walk the cut too
}

TEST(GradWeightSm90Plan, RangeCutPiecesMatchItsWorkers) {
  // worker_of against a search over begin(), and the pieces of each tile.
  const RangeCut cuts[] = {{132, 108, 128}, {132, 432, 8}, {264, 216, 8}, {7, 3, 5}, {1, 4, 9}, {12, 12, 1}};
  for (const RangeCut& cut : cuts) {
    for (int64_t i = 0; i < cut.items(); ++i) {
      int64_t owner = 0;
      while (owner + 1 < cut.workers && cut.begin(owner + 1) <= i) ++owner;
      ASSERT_EQ(cut.worker_of(i), owner) << "item " << i;
    }
    int64_t most = 0;
    for (int64_t t = 0; t < cut.tiles; ++t) {
      int64_t pieces = 0;
      for (int64_t w = 0; w < cut.workers; ++w) {
        pieces += cut.begin(w) < (t + 1) * cut.steps && cut.begin(w + 1) > t * cut.steps;
      }
      EXPECT_EQ(cut.pieces(t), pieces) << "tile " << t;
      most = std::max(most, pieces);
    }
    EXPECT_EQ(cut.most_pieces(), most);
  }
}

TEST(GradWeightSm90Plan, Tf32TakesTilesOf64ColumnsIn32ChannelCopies) {
  // Whatever the group's channels (64, 128, 192, 256 in; 32, 64, 96, 320
  // out): 128 input channels where they divide the group, else 64, × 64
  // (tap, co) columns, grad_output in copies of 32.
  const struct {
    int64_t cin, cout;
  } cases[] = {{64, 32}, {64, 64}, {128, 96}, {192, 320}, {128, 128}, {256, 64}};
  for (const auto& c : cases) {
    Shape s = shapes()[0];
    s.cin = c.cin;
    s.cout = c.cout;
    const ConvTranspose3dParams p = params_of(s);
    ASSERT_TRUE(channels_fit(p, 4));
    Geometry g;
    ASSERT_TRUE(plan_geometry(p, g, 4));
    EXPECT_EQ(g.bm, c.cin % 128 == 0 ? 128 : kTf32TileM) << c.cin << " -> " << c.cout;
    EXPECT_EQ(g.bn, kTf32TileN) << c.cin << " -> " << c.cout;
    EXPECT_EQ(g.co_box, kTf32Chunk) << c.cin << " -> " << c.cout;
    EXPECT_EQ(g.tiles_m, c.cin / g.bm);
    EXPECT_EQ(g.tiles_n, (g.taps * c.cout + 63) / 64);
  }
}

TEST(GradWeightSm90Plan, SupportsFp16Bf16AndTf32WhereAllowedAndTheChannelsFit) {
  Shape s = shapes()[0];  // 64 -> 64
  EXPECT_TRUE(supports_shape(params_of(s), ScalarKind::BFloat16, false));
  EXPECT_TRUE(supports_shape(params_of(s), ScalarKind::Float16, true));
  EXPECT_TRUE(supports_shape(params_of(s), ScalarKind::Float32, true));
  EXPECT_FALSE(supports_shape(params_of(s), ScalarKind::Float32, false));  // full fp32
  EXPECT_FALSE(supports_shape(params_of(s), ScalarKind::Float64, true));
  // TF32 wants 64 input channels a group (32 and 96 stay on mma.sync, as
  // fp16/bf16 do not) and 32 output channels (48 fits neither).
  for (const int64_t cin : {32, 96}) {
    s.cin = cin;
    EXPECT_FALSE(supports_shape(params_of(s), ScalarKind::Float32, true)) << cin;
    EXPECT_TRUE(supports_shape(params_of(s), ScalarKind::BFloat16, true)) << cin;
  }
  s.cin = 64;
  s.cout = 32;
  EXPECT_TRUE(supports_shape(params_of(s), ScalarKind::Float32, true));
  s.cout = 48;
  EXPECT_FALSE(supports_shape(params_of(s), ScalarKind::Float32, true));
  EXPECT_FALSE(supports_shape(params_of(s), ScalarKind::BFloat16, true));
  // Grouped: 2 groups of 64 -> 32.
  s.cin = 128;
  s.cout = 64;
  s.groups = 2;
  EXPECT_TRUE(supports_shape(params_of(s), ScalarKind::Float32, true));
  // A stride past TMA's traversal: no plan, whatever the dtype.
  s.stride[0] = 9;
  EXPECT_FALSE(supports_shape(params_of(s), ScalarKind::Float32, true));
}

TEST(GradWeightSm90Plan, WorkspaceFollowsTheDtypesTile) {
  // 128 -> 64 at 27 taps (432 boxes): fp16/bf16 tiles of 128 × 128, so 1 × 14
  // tiles and 264 / 14 = 18 splits; TF32 tiles of 128 × 64, so 1 × 27 tiles
  // and 264 / 27 = 9 splits (243 units: two waves 92 % full, not cut).  Each:
  // its planes of partials, then a plane count a tile.
  const ConvTranspose3dParams p = params_of(shapes()[6]);
  Geometry half, tf32;
  ASSERT_TRUE(plan_geometry(p, half, 2));
  ASSERT_TRUE(plan_geometry(p, tf32, 4));
  EXPECT_EQ(half.tiles_m * half.tiles_n, 14);
  EXPECT_EQ(tf32.tiles_m * tf32.tiles_n, 27);
  EXPECT_EQ(half.splits, 18);
  EXPECT_EQ(tf32.splits, 9);
  EXPECT_EQ(tf32.cut.workers, 0);
  EXPECT_EQ(tf32.numel, half.numel);
  EXPECT_EQ(workspace_elems(p, ScalarKind::BFloat16, 0, nullptr), 18 * half.numel + 14);
  EXPECT_EQ(workspace_elems(p, ScalarKind::Float16, 0, nullptr), 18 * half.numel + 14);
  EXPECT_EQ(workspace_elems(p, ScalarKind::Float32, 0, nullptr), 9 * tf32.numel + 27);
}

TEST(GradWeightSm90Plan, Tf32CutsTheBottleneckWhereRangesFillTheSms) {
  // 512 -> 256, k3s2: 4 × 108 TF32 tiles, one split each: 432 units, four
  // waves of 132 only 82 % full.  At 8³ (8 boxes a tile): 132 ranges of
  // 26.2 boxes, a tile in one piece or two.  At 4³ (one box): 432 boxes
  // make only 54 ranges of 8, fewer than the SMs: whole splits.
  const struct {
    int64_t side, boxes, workers, splits;
  } cases[] = {{8, 8, 132, 2}, {4, 1, 0, 1}};
  for (const auto& c : cases) {
    Shape bottleneck = shapes()[7];
    for (int64_t& side : bottleneck.in) side = c.side;
    Geometry g;
    ASSERT_TRUE(plan_geometry(params_of(bottleneck), g, 4)) << c.side;
    EXPECT_EQ(tile_count(g), 432) << c.side;
    EXPECT_EQ(g.boxes, c.boxes) << c.side;
    EXPECT_EQ(g.cut.workers, c.workers) << c.side;
    EXPECT_EQ(g.splits, c.splits) << c.side;
  }
  Geometry half;  // two consumers an SM: whole splits
  ASSERT_TRUE(plan_geometry(params_of(shapes()[7]), half, 2));
  EXPECT_EQ(half.cut.workers, 0);
}

TEST(GradWeightSm90Plan, TheEpilogueWritesAChannelsLastGwWhereOneUnitSumsEachElement) {
  // The bf16 bottleneck at 8³: one split, whole (two consumers an SM: no
  // cut).  Its gw channels-last ([ci][tap][co], co contiguous): written by
  // the epilogue, no workspace.  Contiguous (taps innermost), under group
  // blocks, or at an address a pair of co cannot be stored at: partials.
  ConvTranspose3dParams p = params_of(shapes()[7]);
  const int64_t kernel[3] = {3, 3, 3};
  const Strides5 channels_last = dense_strides(p.out_per_group, kernel, true);
  const Strides5 contiguous = dense_strides(p.out_per_group, kernel, false);
  alignas(16) static float gw[4];
  Geometry half, tf32;
  ASSERT_TRUE(plan_geometry(p, half, 2));
  ASSERT_TRUE(plan_geometry(p, tf32, 4));
  ASSERT_EQ(half.splits, 1);
  ASSERT_EQ(half.cut.workers, 0);
  p.weight = channels_last;
  EXPECT_TRUE(writes_grad_weight(p, half, 2, 0, gw));
  EXPECT_EQ(workspace_elems(p, ScalarKind::BFloat16, 0, gw), 0);
  EXPECT_FALSE(writes_grad_weight(p, half, 2, 16, gw));
  EXPECT_GT(workspace_elems(p, ScalarKind::BFloat16, 16, gw), 0);
  EXPECT_FALSE(writes_grad_weight(p, half, 2, 0, reinterpret_cast<char*>(gw) + 2));
  // TF32 cuts this shape's tiles into ranges (two planes): partials.
  EXPECT_FALSE(writes_grad_weight(p, tf32, 4, 0, gw));
  EXPECT_EQ(workspace_elems(p, ScalarKind::Float32, 0, gw), tf32.splits * tf32.numel + tf32.cut.tiles);
  p.weight = contiguous;
  EXPECT_FALSE(writes_grad_weight(p, half, 2, 0, gw));
  // Many splits (shape 6: 18), channels-last gw: partials.
  ConvTranspose3dParams q = params_of(shapes()[6]);
  q.weight = dense_strides(q.out_per_group, shapes()[6].kernel, true);
  Geometry split;
  ASSERT_TRUE(plan_geometry(q, split, 2));
  EXPECT_FALSE(writes_grad_weight(q, split, 2, 0, gw));
}

TEST(GradWeightSm90Plan, TheEpilogueStoresEightCoALaneWhereGwKeepsThemInWhole16BytePieces) {
  // The bottleneck's channels-last gw (256 co a ci's tap): fp16/bf16 at a
  // 16-byte address, 8 co a store; fp32 (its pairs fill their sectors), an
  // address of 4 mod 16, or a co extent of 4 mod 8 (strides of 4 mod 8
  // elements): pairs.
  ConvTranspose3dParams p = params_of(shapes()[7]);
  const int64_t kernel[3] = {3, 3, 3};
  p.weight = dense_strides(p.out_per_group, kernel, true);
  alignas(16) static float gw[4];
  EXPECT_TRUE(gw_vectors(p, 2, gw));
  EXPECT_FALSE(gw_vectors(p, 4, gw));
  EXPECT_FALSE(gw_vectors(p, 2, gw + 1));
  p.weight = dense_strides(36, kernel, true);
  EXPECT_FALSE(gw_vectors(p, 2, gw));
}

}  // namespace
}  // namespace tconv3d::cuda::gw90
