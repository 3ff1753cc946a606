// index_math.h on its own, against brute-force enumeration of the relation
//
//     o = i * stride - padding + k * dilation,   0 <= i < I, 0 <= k < K, 0 <= o < O.
//
// No torch here: this translation unit builds in seconds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "index_math.h"

namespace tconv3d {
namespace {

using Pair = std::pair<int64_t, int64_t>;
using PairSet = std::set<Pair>;
using TapRun = tconv3d::Run;  // unqualified Run inside a TEST names testing::Test::Run

struct AxisConfig {
  int64_t in, kernel, stride, padding, dilation, output_padding;
  int64_t out() const {
    // Written out here rather than taken from transposed_output_extent.
    return (in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1;
  }
  std::string str() const {
    std::ostringstream s;
    s << "I=" << in << " K=" << kernel << " s=" << stride << " p=" << padding
      << " d=" << dilation << " op=" << output_padding << " O=" << out();
    return s.str();
  }
};

int64_t output_of(const AxisConfig& c, int64_t i, int64_t k) {
  return i * c.stride - c.padding + k * c.dilation;
}

// Mathematical mod, result in [0, b).
int64_t mod(int64_t a, int64_t b) { return ((a % b) + b) % b; }

// Expands a run into its pairs, failing the test on a duplicate (a run must
// not visit a pair twice) or a negative count.
PairSet pairs_of(const TapRun& r, const std::string& where) {
  PairSet s;
  EXPECT_GE(r.count, 0) << where;
  for (int64_t m = 0; m < r.count; ++m) {
    const bool inserted = s.insert({r.a + m * r.da, r.b + m * r.db}).second;
    EXPECT_TRUE(inserted) << where << ": run visits (" << r.a + m * r.da << ", "
                          << r.b + m * r.db << ") twice";
  }
  return s;
}

std::string describe(const PairSet& s) {
  std::ostringstream o;
  o << "{";
  for (const auto& [a, b] : s) o << "(" << a << "," << b << ")";
  o << "}";
  return o.str();
}

// Checks every query function of one axis against brute force.  Returns the
// number of (i, k) pairs that reach the output, to let callers make sure the
// sweep is not vacuous.
int64_t check_axis(const AxisConfig& c) {
  const int64_t O = c.out();
  const Axis ax = make_axis(c.in, O, c.kernel, c.stride, c.padding, c.dilation);
  const std::string cfg = c.str();

  // All (i, k, o) triples of the relation, by brute force.
  std::vector<PairSet> by_output(O);        // o -> {(k, i)}
  std::vector<PairSet> by_input(c.in);      // i -> {(k, o)}
  std::vector<PairSet> by_tap(c.kernel);    // k -> {(i, o)}
  int64_t connections = 0;
  for (int64_t i = 0; i < c.in; ++i) {
    for (int64_t k = 0; k < c.kernel; ++k) {
      const int64_t o = output_of(c, i, k);
      if (o < 0 || o >= O) continue;
      by_output[o].insert({k, i});
      by_input[i].insert({k, o});
      by_tap[k].insert({i, o});
      ++connections;
    }
  }

  // Each query function must yield exactly its brute-force set of pairs.
  const auto check_query = [&](const char* name, const char* arg, int64_t count,
                               const std::vector<PairSet>& expected, auto query) {
    for (int64_t v = 0; v < count; ++v) {
      const TapRun r = query(ax, v);
      const std::string where = cfg + " " + name + "(" + arg + "=" + std::to_string(v) + ")";
      const PairSet got = pairs_of(r, where);
      EXPECT_EQ(got, expected[v]) << where << ": got " << describe(got) << ", expected "
                                  << describe(expected[v]);
      if (expected[v].empty()) {
        EXPECT_EQ(r.count, 0) << where;
      }
    }
  };
  check_query("forward_taps", "o", O, by_output, forward_taps);
  check_query("grad_input_taps", "i", c.in, by_input, grad_input_taps);
  check_query("grad_weight_positions", "k", c.kernel, by_tap, grad_weight_positions);

  // The implicit-GEMM geometries: rows × taps, filtered by the source extent,
  // must visit exactly the relation's pairs, each destination once per pass.
  const auto gemm_pairs = [&](const GemmAxis& g, std::vector<PairSet>& got,
                              std::vector<int>& row_hits, const std::string& where) {
    for (int64_t j = 0; j < g.rows; ++j) {
      const int64_t dst = j * g.dst_per_row + g.dst_origin;
      ASSERT_TRUE(dst >= 0 && dst < static_cast<int64_t>(got.size())) << where << " row " << j;
      ++row_hits[dst];
      for (int64_t t = 0; t < g.taps; ++t) {
        const int64_t src = j * g.src_per_row + g.src_origin + t * g.src_per_tap;
        const int64_t k = g.k_origin + t * g.k_per_tap;
        ASSERT_TRUE(k >= 0 && k < c.kernel) << where << " row " << j << " tap " << t;
        if (src < 0 || src >= g.src_extent) continue;
        EXPECT_TRUE(got[dst].insert({k, src}).second) << where << " pair visited twice";
      }
    }
  };
  std::vector<PairSet> fwd(O);
  std::vector<int> fwd_rows(O, 0);
  for (int64_t r = 0; r < c.stride; ++r) {
    const GemmAxis g = forward_phase_axis(ax, r);
    EXPECT_EQ(g.src_extent, c.in);
    gemm_pairs(g, fwd, fwd_rows, cfg + " forward_phase_axis(r=" + std::to_string(r) + ")");
  }
  EXPECT_EQ(fwd, by_output) << cfg << " forward_phase_axis";
  EXPECT_EQ(fwd_rows, std::vector<int>(O, 1)) << cfg << " forward phases must tile the output";
  std::vector<PairSet> gin(c.in);
  std::vector<int> gin_rows(c.in, 0);
  const GemmAxis gi = grad_input_axis(ax);
  EXPECT_EQ(gi.src_extent, O);
  gemm_pairs(gi, gin, gin_rows, cfg + " grad_input_axis");
  EXPECT_EQ(gin, by_input) << cfg << " grad_input_axis";
  EXPECT_EQ(gin_rows, std::vector<int>(c.in, 1)) << cfg << " grad-input rows must tile the input";
  return connections;
}

// ---------------------------------------------------------------------------
// floor_div / ceil_div / gcd64
// ---------------------------------------------------------------------------

TEST(IndexMath, FloorDivCeilDivKnownValues) {
  EXPECT_EQ(floor_div(7, 2), 3);
  EXPECT_EQ(ceil_div(7, 2), 4);
  EXPECT_EQ(floor_div(-7, 2), -4);
  EXPECT_EQ(ceil_div(-7, 2), -3);
  EXPECT_EQ(floor_div(-6, 3), -2);
  EXPECT_EQ(ceil_div(-6, 3), -2);
  EXPECT_EQ(floor_div(-1, 5), -1);
  EXPECT_EQ(ceil_div(-1, 5), 0);
  EXPECT_EQ(floor_div(0, 4), 0);
  EXPECT_EQ(ceil_div(0, 4), 0);
  EXPECT_EQ(floor_div(1, 1), 1);
  EXPECT_EQ(ceil_div(-1, 1), -1);
  const int64_t big = int64_t{1} << 40;
  EXPECT_EQ(floor_div(-big - 1, 3), -(big + 1 + 2) / 3);
  EXPECT_EQ(ceil_div(big + 1, 3), (big + 1 + 2) / 3);
}

TEST(IndexMath, FloorDivCeilDivExhaustive) {
  for (int64_t b = 1; b <= 12; ++b) {
    for (int64_t a = -100; a <= 100; ++a) {
      const int64_t f = floor_div(a, b);
      const int64_t c = ceil_div(a, b);
      // f is the largest q with q*b <= a; c the smallest q with q*b >= a.
      EXPECT_TRUE(f * b <= a && a < (f + 1) * b) << "floor_div(" << a << ", " << b << ") = " << f;
      EXPECT_TRUE(c * b >= a && a > (c - 1) * b) << "ceil_div(" << a << ", " << b << ") = " << c;
      EXPECT_EQ(c - f, a % b == 0 ? 0 : 1) << a << " / " << b;
    }
  }
}

TEST(IndexMath, Gcd) {
  for (int64_t a = 1; a <= 30; ++a) {
    for (int64_t b = 1; b <= 30; ++b) {
      int64_t expected = 1;
      for (int64_t g = 1; g <= a; ++g) {
        if (a % g == 0 && b % g == 0) expected = g;
      }
      EXPECT_EQ(gcd64(a, b), expected) << a << ", " << b;
    }
  }
}

// ---------------------------------------------------------------------------
// transposed_output_extent
// ---------------------------------------------------------------------------

TEST(IndexMath, TransposedOutputExtentKnownValues) {
  // (I - 1)·s - 2p + d·(K - 1) + op + 1, evaluated by hand.
  EXPECT_EQ(transposed_output_extent(4, 3, 1, 0, 1, 0), 6);    // 3 + 2 + 1
  EXPECT_EQ(transposed_output_extent(4, 2, 2, 0, 1, 0), 8);    // U-Net k2s2 doubles
  EXPECT_EQ(transposed_output_extent(5, 3, 2, 1, 1, 1), 10);   // 8 - 2 + 2 + 1 + 1
  EXPECT_EQ(transposed_output_extent(5, 4, 2, 1, 1, 0), 10);   // 8 - 2 + 3 + 1
  EXPECT_EQ(transposed_output_extent(3, 3, 3, 2, 2, 2), 9);    // 6 - 4 + 4 + 2 + 1
  EXPECT_EQ(transposed_output_extent(1, 1, 7, 0, 5, 0), 1);
  EXPECT_EQ(transposed_output_extent(5, 2, 1, 2, 1, 0), 2);    // 4 - 4 + 1 + 1
  EXPECT_EQ(transposed_output_extent(1, 1, 1, 1, 1, 0), -1);   // too small: caller rejects
}

TEST(IndexMath, TransposedOutputExtentMatchesReach) {
  // With p = 0 and op = 0 the output is exactly the span the scatter reaches;
  // padding crops p from each side and output_padding adds op at the end.
  for (int64_t I = 1; I <= 6; ++I)
    for (int64_t K = 1; K <= 5; ++K)
      for (int64_t s = 1; s <= 4; ++s)
        for (int64_t d = 1; d <= 3; ++d)
          for (int64_t p = 0; p <= 3; ++p)
            for (int64_t op = 0; op < std::max(s, d); ++op) {
              int64_t max_o = std::numeric_limits<int64_t>::min();
              for (int64_t i = 0; i < I; ++i)
                for (int64_t k = 0; k < K; ++k) max_o = std::max(max_o, i * s - p + k * d);
              EXPECT_EQ(transposed_output_extent(I, K, s, p, d, op), max_o + 1 - p + op)
                  << I << " " << K << " " << s << " " << p << " " << d << " " << op;
            }
}

// ---------------------------------------------------------------------------
// make_axis / phase_first_tap
// ---------------------------------------------------------------------------

TEST(IndexMath, MakeAxisNumberTheory) {
  for (int64_t s = 1; s <= 9; ++s) {
    for (int64_t d = 1; d <= 9; ++d) {
      const Axis ax = make_axis(5, 7, 3, s, 1, d);
      EXPECT_EQ(ax.in, 5);
      EXPECT_EQ(ax.out, 7);
      EXPECT_EQ(ax.kernel, 3);
      EXPECT_EQ(ax.stride, s);
      EXPECT_EQ(ax.padding, 1);
      EXPECT_EQ(ax.dilation, d);
      EXPECT_EQ(s % ax.gcd, 0);
      EXPECT_EQ(d % ax.gcd, 0);
      EXPECT_EQ(ax.tap_step * ax.gcd, s);
      EXPECT_EQ(ax.in_step * ax.gcd, d);
      EXPECT_EQ(gcd64(ax.tap_step, ax.in_step), 1);
      EXPECT_GE(ax.inv_in_step, 0);
      EXPECT_LT(ax.inv_in_step, std::max<int64_t>(ax.tap_step, 1));
      EXPECT_EQ(mod(ax.in_step * ax.inv_in_step, ax.tap_step), mod(1, ax.tap_step))
          << "s=" << s << " d=" << d;
    }
  }
}

TEST(IndexMath, PhaseFirstTapBruteForce) {
  int64_t phases_without_taps = 0;
  for (int64_t s = 1; s <= 8; ++s) {
    for (int64_t d = 1; d <= 8; ++d) {
      for (int64_t p = 0; p <= 10; ++p) {
        const Axis ax = make_axis(4, 9, 6, s, p, d);
        for (int64_t r = 0; r < s; ++r) {
          // Smallest k >= 0 with (r + p - k·d) ≡ 0 (mod s).  The condition is
          // periodic in k with period dividing s, so k < s suffices.
          int64_t expected = -1;
          for (int64_t k = 0; k < s; ++k) {
            if (mod(r + p - k * d, s) == 0) {
              expected = k;
              break;
            }
          }
          if (expected < 0) ++phases_without_taps;
          EXPECT_EQ(phase_first_tap(ax, r), expected) << "s=" << s << " d=" << d << " p=" << p
                                                      << " phase=" << r;
        }
      }
    }
  }
  EXPECT_GT(phases_without_taps, 0);  // the sweep covers gcd(s, d) > 1
}

// ---------------------------------------------------------------------------
// forward_taps / grad_input_taps / grad_weight_positions
// ---------------------------------------------------------------------------

TEST(IndexMath, RunsMatchBruteForceExhaustive) {
  int64_t configs = 0, connections = 0, empty_outputs = 0;
  for (int64_t I = 1; I <= 6; ++I)
    for (int64_t K = 1; K <= 5; ++K)
      for (int64_t s = 1; s <= 4; ++s)
        for (int64_t d = 1; d <= 3; ++d)
          for (int64_t p = 0; p <= 3; ++p)
            for (int64_t op = 0; op < std::max(s, d); ++op) {
              const AxisConfig c{I, K, s, p, d, op};
              if (c.out() <= 0) continue;  // rejected by the argument checks
              connections += check_axis(c);
              ++configs;
              // Count outputs that no tap reaches (forward must report count 0).
              const Axis ax = make_axis(I, c.out(), K, s, p, d);
              for (int64_t o = 0; o < c.out(); ++o) empty_outputs += forward_taps(ax, o).count == 0;
              if (HasFailure()) {
                ADD_FAILURE() << "stopping at first failing configuration " << c.str();
                return;
              }
            }
  EXPECT_GT(configs, 3000);
  EXPECT_GT(connections, 0);
  EXPECT_GT(empty_outputs, 0);
}

TEST(IndexMath, RunsMatchBruteForceRandomLarger) {
  std::mt19937_64 rng(20240611);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  int64_t tested = 0;
  while (tested < 3000) {
    AxisConfig c{uniform(1, 40), uniform(1, 9), uniform(1, 7), uniform(0, 12), uniform(1, 6), 0};
    c.output_padding = uniform(0, std::max(c.stride, c.dilation) - 1);
    if (c.out() <= 0) continue;
    check_axis(c);
    ++tested;
    if (HasFailure()) {
      ADD_FAILURE() << "stopping at first failing configuration " << c.str();
      return;
    }
  }
}

TEST(IndexMath, KnownRuns) {
  // U-Net k=2 s=2: every output has exactly one tap, k = o mod 2, i = o / 2.
  {
    const Axis ax = make_axis(4, 8, 2, 2, 0, 1);
    for (int64_t o = 0; o < 8; ++o) {
      const TapRun r = forward_taps(ax, o);
      ASSERT_EQ(r.count, 1) << o;
      EXPECT_EQ(r.a, o % 2);
      EXPECT_EQ(r.b, o / 2);
    }
  }
  // s=2, d=2, p=0: odd outputs receive no tap at all.
  {
    const Axis ax = make_axis(3, 9, 3, 2, 0, 2);
    EXPECT_EQ(phase_first_tap(ax, 1), -1);
    EXPECT_EQ(forward_taps(ax, 3).count, 0);
    // o = 4 = i·2 + k·2: (k, i) in {(0, 2), (1, 1), (2, 0)}.
    const TapRun r = forward_taps(ax, 4);
    EXPECT_EQ(r.count, 3);
    EXPECT_EQ(r.a, 0);
    EXPECT_EQ(r.da, 1);
    EXPECT_EQ(r.b, 2);
    EXPECT_EQ(r.db, -1);
  }
  // Heavy padding crops taps: I=5, K=2, s=1, p=2 gives O=2; input 0 reaches nothing.
  {
    const Axis ax = make_axis(5, 2, 2, 1, 2, 1);
    EXPECT_EQ(grad_input_taps(ax, 0).count, 0);
    EXPECT_EQ(grad_input_taps(ax, 4).count, 0);
    const TapRun r = grad_input_taps(ax, 2);  // o = 2 - 2 + k ∈ {0, 1}
    EXPECT_EQ(r.count, 2);
    EXPECT_EQ(r.a, 0);
    EXPECT_EQ(r.b, 0);
    const TapRun w = grad_weight_positions(ax, 1);  // o = i - 1 ∈ [0, 2) → i ∈ {1, 2}
    EXPECT_EQ(w.count, 2);
    EXPECT_EQ(w.a, 1);
    EXPECT_EQ(w.b, 0);
    EXPECT_EQ(w.db, 1);
  }
}

// ---------------------------------------------------------------------------
// forward_box_axis: every tap of every output of a tile reads inside the box
// ---------------------------------------------------------------------------

TEST(IndexMath, ForwardBoxHoldsEveryTapOfItsTile) {
  int64_t checked = 0;
  for (int64_t I = 1; I <= 7; ++I)
    for (int64_t K = 1; K <= 5; ++K)
      for (int64_t s = 1; s <= 4; ++s)
        for (int64_t d = 1; d <= 3; ++d)
          for (int64_t p = 0; p <= 4; ++p)
            for (int64_t op = 0; op < std::max(s, d); ++op) {
              const AxisConfig c{I, K, s, p, d, op};
              if (c.out() <= 0) continue;
              const Axis ax = make_axis(I, c.out(), K, s, p, d);
              for (int64_t shift : {int64_t(0), p % s})
                for (int64_t L = s; L <= 3 * s; L += s) {
                  const ForwardBoxAxis box = forward_box_axis(ax, L, shift);
                  ASSERT_GE(box.extent, 1) << c.str();
                  std::vector<int> covered(c.out(), 0);
                  for (int64_t t = 0; t < box.tiles; ++t) {
                    const int64_t origin = forward_box_origin(ax, box, t);
                    for (int64_t u = 0; u < L; ++u) {
                      const int64_t o = t * L - shift + u;
                      if (o < 0 || o >= c.out()) continue;
                      ++covered[o];
                      // The box's run is forward_taps' before clipping to [0, I).
                      const TapRun r = forward_taps(ax, o);
                      const ForwardBoxTaps bt = forward_box_taps(ax, box, u);
                      std::set<Pair> clipped, unclipped;
                      for (int64_t m = 0; m < r.count; ++m) clipped.insert({r.a + m * r.da, r.b + m * r.db});
                      for (int64_t m = 0; m < bt.count; ++m) {
                        const int64_t k = bt.tap + m * ax.tap_step;
                        const int64_t b = bt.box - m * ax.in_step;
                        ASSERT_LT(k, K) << c.str();
                        ASSERT_GE(b, 0) << c.str() << " L=" << L << " shift=" << shift;
                        ASSERT_LT(b, box.extent) << c.str() << " L=" << L << " shift=" << shift;
                        ASSERT_EQ(o, (origin + b) * s - p + k * d) << c.str();
                        if (origin + b >= 0 && origin + b < I) unclipped.insert({k, origin + b});
                        ++checked;
                      }
                      ASSERT_EQ(clipped, unclipped) << c.str() << " o=" << o;
                    }
                  }
                  for (int64_t o = 0; o < c.out(); ++o) ASSERT_EQ(covered[o], 1) << c.str();
                }
            }
  EXPECT_GT(checked, 10000);
}

}  // namespace
}  // namespace tconv3d
