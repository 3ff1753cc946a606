// The mixed-radix walk (cuda/mixed_radix.h) the strided kernels carry: from
// any start, stepping by any count, in 32- and 64-bit digits, every position
// it reaches has the digits division gives.
#include <gtest/gtest.h>

#include <cstdint>

#include "cuda/mixed_radix.h"

namespace tconv3d::cuda {
namespace {

template <typename T>
void expect_walk_matches_division(const T (&radix)[4], int64_t start, int64_t step_count) {
  int64_t total = 1;
  for (T r : radix) total *= r;
  T digit[4], step[4];
  digits_of(start, radix, digit);
  digits_of(step_count, radix, step);
  for (int64_t v = start; v < total; v += step_count) {
    T decoded[4];
    digits_of(v, radix, decoded);
    for (int i = 0; i < 4; ++i) ASSERT_EQ(digit[i], decoded[i]) << "value " << v;
    advance_digits(radix, step, digit);
  }
}

TEST(MixedRadix, CarriedDigitsMatchDivision) {
  const int radix32[4] = {7, 1, 5, 3};
  const int64_t radix64[4] = {13, 4, 1, 6};
  for (int64_t step : {1, 2, 7, 35, 36, 256}) {
    for (int64_t start : {0, 1, 6, 34}) {
      expect_walk_matches_division(radix32, start, step);
      expect_walk_matches_division(radix64, start, step);
    }
  }
}

TEST(MixedRadix, AStepPastTheRangeIsItsRemainder) {
  const int radix[4] = {3, 2, 2, 2};  // 24 positions
  int step[4];
  digits_of(24 + 5, radix, step);
  int five[4];
  digits_of(5, radix, five);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(step[i], five[i]);
}

}  // namespace
}  // namespace tconv3d::cuda
