// The plain description every kernel receives: sizes, the three axes and the
// element strides of the tensors involved.  No torch types, so CUDA
// translation units compile without the ATen headers.
#pragma once

#include <cstdint>

#include "index_math.h"

namespace tconv3d {

enum class ScalarKind { Float32, Float64, Float16, BFloat16 };

// Element strides of a 5-D tensor in logical (N, C, D, H, W) order, whatever
// its memory layout.
struct Strides5 {
  int64_t n, c, d, h, w;
};

struct ConvTranspose3dParams {
  int64_t batch;
  int64_t in_channels;   // Cin
  int64_t out_channels;  // Cout
  int64_t groups;        // G
  int64_t in_per_group;   // Cin / G
  int64_t out_per_group;  // Cout / G
  Axis axis[3];           // D, H, W
  // The tensors of a pass play three roles: input-shaped (x or grad_input),
  // weight-shaped (w or grad_weight: [Cin, Cout/G, kD, kH, kW]) and
  // output-shaped (y or grad_output).
  Strides5 input;
  Strides5 weight;
  Strides5 output;
  int64_t bias_stride;
};

}  // namespace tconv3d
