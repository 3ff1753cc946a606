// A layer as the plan tests write it, and its kernel parameters: the axes of
// index_math.h, and dense strides (NCDHW or channels-last) for x and y.
#pragma once

#include <cstdint>

#include "index_math.h"
#include "params.h"

namespace tconv3d::plan_tests {

struct Shape {
  int64_t batch, cin, cout, groups;
  int64_t in[3], kernel[3], stride[3], padding[3], dilation[3];
};

// Dense strides of (N, C, D, H, W) sizes, channels innermost or not.
inline Strides5 dense_strides(int64_t c, const int64_t (&s)[3], bool channels_last) {
  if (channels_last) return {s[0] * s[1] * s[2] * c, 1, s[1] * s[2] * c, s[2] * c, c};
  return {c * s[0] * s[1] * s[2], s[0] * s[1] * s[2], s[1] * s[2], s[2], 1};
}

inline ConvTranspose3dParams params_of(const Shape& s, bool channels_last = false) {
  ConvTranspose3dParams p{};
  p.batch = s.batch;
  p.in_channels = s.cin;
  p.out_channels = s.cout;
  p.groups = s.groups;
  p.in_per_group = s.cin / s.groups;
  p.out_per_group = s.cout / s.groups;
  int64_t out[3];
  for (int a = 0; a < 3; ++a) {
    out[a] = transposed_output_extent(s.in[a], s.kernel[a], s.stride[a], s.padding[a],
                                      s.dilation[a], 0);
    p.axis[a] = make_axis(s.in[a], out[a], s.kernel[a], s.stride[a], s.padding[a], s.dilation[a]);
  }
  p.input = dense_strides(s.cin, s.in, channels_last);
  p.output = dense_strides(s.cout, out, channels_last);
  return p;
}

}  // namespace tconv3d::plan_tests
