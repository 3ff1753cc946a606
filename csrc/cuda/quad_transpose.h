// A 4 × 4 transpose among the four lanes of a quad (lanes 4i … 4i + 3), for
// the Hopper GEMM's epilogue (tensor_core_gemm_sm90.cu).  wgmma leaves each
// lane of a quad two neighbouring columns of every 8-column block of a row;
// stored as they are, that is one 4- or 8-byte store a block, a warp's store
// writing 16 or 32 bytes of each of 8 rows.  After the transpose over four
// blocks each lane holds one block's 8 columns whole: one 16-byte store
// (fp16/bf16) or two (fp32), a warp writing 64 or 128 contiguous bytes of
// each row, a quarter or half of the store instructions.
//
// Host and device, free of CUDA headers: the shuffle is the caller's
// (__shfl_xor_sync on the GPU), so the C++ tests run it on simulated lanes.
#pragma once

#include "../index_math.h"

namespace tconv3d::cuda {

// Before: lane t of the quad holds v[b] = word (t) of block b.  After: lane t
// holds v[s] = word (s) of block t, the word lane s held of it.
// shuffle(x, mask) must return x as the lane (t ^ mask) passed it, every lane
// of the quad calling it in the same order.  Two butterfly stages: at mask m
// a lane exchanges with lane t ^ m the word of each pair (i, i | m) it does
// not keep, the one whose bit m differs from its own.  The indices are known
// at compile time once the loops unroll, so the words stay in registers (a
// select each, no local memory).
template <typename Word, typename Shuffle>
TCONV3D_HOST_DEVICE void quad_transpose(Word (&v)[4], int lane_in_quad, Shuffle&& shuffle) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int mask = 1; mask <= 2; mask <<= 1) {
    const bool upper = (lane_in_quad & mask) != 0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int i = 0; i < 4; ++i) {
      if (i & mask) continue;
      const Word sent = upper ? v[i] : v[i | mask];
      const Word got = shuffle(sent, mask);
      if (upper) {
        v[i] = got;
      } else {
        v[i | mask] = got;
      }
    }
  }
}

}  // namespace tconv3d::cuda
