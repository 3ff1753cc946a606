// The K-major operands of the TF32 Hopper grad-weight (grad_weight_kmajor_sm90.cu),
// written by kmajor_pack.cu.  Host and device; free of CUDA headers.
//
// wgmma reads 32-bit operands from shared memory K-major only: each row of
// the product (an input channel, an output channel of a tap) holds its K
// slice — positions — contiguous.  The GEMM's K runs over input positions;
// for tap k, input position i meets output position o = i·s − p + k·d =
// s·(i + shift) + phase.  So grad_output is split into its s_d·s_h·s_w
// stride phases, each a dense grid where tap k's operand is the box of x's
// positions moved by `shift`: a plain TMA box, no traversal stride (which
// TMA does not apply to a box's innermost dimension).  Both copies hold
// values rounded to TF32 (wgmma would truncate them), channels between h and
// w, so that a box mapped (w, channel, h, d, sample) — strides nested, as
// TMA's tensor maps describe them — lands as one slab of channel rows per
// (d, h): the K-major layout.
//
//   x_k [n][d][h][ci][w]            w padded to x_row elements
//   gy_k[n][phase][d'][h'][co][w']  w' padded to gy_row elements,
//        = grad_output[n][co][s_d·d' + r_d][s_h·h' + r_h][s_w·w' + r_w], zero
//          past the output; phase = (r_d·s_h + r_h)·s_w + r_w, d' < ceil(O_d / s_d)
//
// Rows padded to 4 floats: TMA's strides are multiples of 16 bytes.
#pragma once

#include <cstdint>

#include "../index_math.h"
#include "../params.h"

namespace tconv3d::cuda {

struct KmajorLayout {
  int64_t x_row;            // floats per w row of x_k
  int64_t phase_extent[3];  // d', h', w' extents of a phase grid
  int64_t gy_row;           // floats per w' row of gy_k
  int64_t phases;           // s_d · s_h · s_w
  int64_t x_elems, gy_elems;
};

TCONV3D_HOST_DEVICE int64_t round_up4(int64_t v) { return (v + 3) / 4 * 4; }

TCONV3D_HOST_DEVICE KmajorLayout kmajor_layout(const ConvTranspose3dParams& p) {
  KmajorLayout l{};
  l.x_row = round_up4(p.axis[2].in);
  l.phases = 1;
  for (int a = 0; a < 3; ++a) {
    l.phase_extent[a] = (p.axis[a].out + p.axis[a].stride - 1) / p.axis[a].stride;
    l.phases *= p.axis[a].stride;
  }
  l.gy_row = round_up4(l.phase_extent[2]);
  l.x_elems = p.batch * p.in_channels * p.axis[0].in * p.axis[1].in * l.x_row;
  l.gy_elems = p.batch * l.phases * p.out_channels * l.phase_extent[0] * l.phase_extent[1] * l.gy_row;
  return l;
}

// Tap k along one axis: o = s·(i + shift) + phase, 0 ≤ phase < s.
struct AxisPhase {
  int64_t phase, shift;
};
TCONV3D_HOST_DEVICE AxisPhase axis_phase(const Axis& a, int64_t k) {
  const int64_t t = k * a.dilation - a.padding;
  int64_t r = t % a.stride;
  if (r < 0) r += a.stride;
  return {r, (t - r) / a.stride};
}

// Tap (kd, kh, kw): its phase index in gy_k and its shift per axis (d, h, w).
struct TapPhase {
  int64_t phase;
  int64_t shift[3];
};
TCONV3D_HOST_DEVICE TapPhase tap_phase(const ConvTranspose3dParams& p, int64_t tap) {
  const int64_t k[3] = {tap / (p.axis[1].kernel * p.axis[2].kernel),
                        tap / p.axis[2].kernel % p.axis[1].kernel, tap % p.axis[2].kernel};
  TapPhase t{};
  for (int a = 0; a < 3; ++a) {
    const AxisPhase ap = axis_phase(p.axis[a], k[a]);
    t.phase = t.phase * p.axis[a].stride + ap.phase;
    t.shift[a] = ap.shift;
  }
  return t;
}

}  // namespace tconv3d::cuda
