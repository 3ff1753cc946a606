// A position walked as mixed-radix digits, fastest first: the kernels that
// stride through a multi-dimensional range by a fixed step carry their digits
// instead of dividing at every step.  Host and device; free of CUDA headers,
// so the C++ tests check it without a GPU.
#pragma once

#include <cstdint>

#include "../index_math.h"

namespace tconv3d::cuda {

// Digits of `value` in `radix` (division: once per walk).  What passes the
// last radix is dropped: written in the radix, a step past the end of the
// range reads as its remainder, and the walk stops there anyway.
template <typename T, int N>
TCONV3D_HOST_DEVICE void digits_of(int64_t value, const T (&radix)[N], T (&digit)[N]) {
  for (int i = 0; i < N; ++i) {
    digit[i] = T(value % radix[i]);
    value /= radix[i];
  }
}

// The digits `step` further, `step` written in the same radix: every digit
// and step digit is below its radix, so one carry a digit suffices.  Past the
// last item the digits are meaningless; the walk stops there.
template <typename T, int N>
TCONV3D_HOST_DEVICE void advance_digits(const T (&radix)[N], const T (&step)[N], T (&digit)[N]) {
  T carry = 0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int i = 0; i < N; ++i) {
    digit[i] += step[i] + carry;
    carry = digit[i] >= radix[i];
    if (carry) digit[i] -= radix[i];
  }
}

}  // namespace tconv3d::cuda
