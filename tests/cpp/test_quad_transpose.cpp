// The epilogue's quad transpose (cuda/quad_transpose.h) on four simulated
// lanes: each a thread, the shuffle a slot written, a barrier, the partner's
// slot read and a barrier, as __shfl_xor_sync behaves for a quad in lockstep.
#include <gtest/gtest.h>

#include <array>
#include <barrier>
#include <cstdint>
#include <thread>
#include <vector>

#include "cuda/quad_transpose.h"

namespace tconv3d::cuda {
namespace {

template <typename Word>
std::array<std::array<Word, 4>, 4> transpose_on_four_lanes(std::array<std::array<Word, 4>, 4> v) {
  std::array<Word, 4> slots{};
  std::barrier sync(4);
  std::vector<std::thread> lanes;
  for (int t = 0; t < 4; ++t) {
    lanes.emplace_back([&, t] {
      Word words[4] = {v[t][0], v[t][1], v[t][2], v[t][3]};
      quad_transpose(words, t, [&](Word sent, int mask) {
        slots[t] = sent;
        sync.arrive_and_wait();
        const Word got = slots[t ^ mask];
        sync.arrive_and_wait();
        return got;
      });
      for (int s = 0; s < 4; ++s) v[t][s] = words[s];
    });
  }
  for (std::thread& lane : lanes) lane.join();
  return v;
}

TEST(QuadTranspose, EachLaneEndsWithItsBlockFromEveryLane) {
  std::array<std::array<uint32_t, 4>, 4> v{};
  for (int t = 0; t < 4; ++t)
    for (int b = 0; b < 4; ++b) v[t][b] = uint32_t(10 * t + b);  // lane t's word of block b
  const auto out = transpose_on_four_lanes(v);
  for (int t = 0; t < 4; ++t)
    for (int s = 0; s < 4; ++s) EXPECT_EQ(out[t][s], uint32_t(10 * s + t)) << "lane " << t << " word " << s;
}

TEST(QuadTranspose, TwiceIsTheIdentity) {
  std::array<std::array<float, 4>, 4> v{};
  for (int t = 0; t < 4; ++t)
    for (int b = 0; b < 4; ++b) v[t][b] = 0.25f * float(7 * t + 3 * b) - 1.5f;
  EXPECT_EQ(transpose_on_four_lanes(transpose_on_four_lanes(v)), v);
}

}  // namespace
}  // namespace tconv3d::cuda
