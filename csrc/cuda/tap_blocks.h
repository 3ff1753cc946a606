// What the kernel == stride GEMMs that read NCDHW planes in place
// (grad_input_tap_blocks_gemm.cu, grad_weight_tap_blocks_gemm.cu) both ask
// of the layer and of grad_output.
#pragma once

#include <cstdint>

#include "../params.h"
#include "channel_vectors.h"

namespace tconv3d::cuda {

// Every axis: kernel == stride, no dilation or padding, an output that holds
// the input's s-blocks (output padding beyond them allowed); stride 2 along
// W.  grad_output read along W in 16-byte pieces of whole (kw 0, 1) pairs of
// positions sharing a W line: its strides (W's 1) whole pieces, the input's
// W a multiple of half a piece's elements, the address 16-byte aligned.
inline bool tap_blocks_read_grad_output(const ConvTranspose3dParams& p, ScalarKind dtype,
                                        const void* grad_output) {
  for (const Axis& ax : p.axis) {
    if (ax.kernel != ax.stride || ax.dilation != 1 || ax.padding != 0 ||
        ax.out < ax.in * ax.stride) {
      return false;
    }
  }
  const int64_t vec = vector_channels(dtype);
  const Strides5 gy = p.output;
  return p.axis[2].stride == 2 && gy.w == 1 && gy.n % vec == 0 && gy.c % vec == 0 &&
         gy.d % vec == 0 && gy.h % vec == 0 && p.axis[2].in % (vec / 2) == 0 &&
         reinterpret_cast<uintptr_t>(grad_output) % 16 == 0;
}

}  // namespace tconv3d::cuda
