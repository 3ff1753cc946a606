// Channels moved 16 bytes at a time: how many make a vector of each dtype, and
// whether a channels-last tensor's vectors all sit on 16-byte boundaries.
// Host only; free of CUDA headers.
#pragma once

#include <cstdint>

#include "../params.h"

namespace tconv3d::cuda {

inline int64_t element_bytes(ScalarKind dtype) {
  return dtype == ScalarKind::Float64 ? 8 : dtype == ScalarKind::Float32 ? 4 : 2;
}

// The taps-folded GEMMs (grad_weight_taps_gemm.cu, grad_input_taps_gemm.cu)
// read grad_output with each group's at most 4 channels padded to 4: a
// (position, tap) is one 8- or 16-byte piece.
constexpr int kTapChannels = 4;

// The dtypes the tensor-core kernels take: fp16, bf16, and fp32 as TF32
// where allowed.
inline bool tensor_core_dtype(ScalarKind dtype, bool allow_tf32) {
  return dtype == ScalarKind::Float16 || dtype == ScalarKind::BFloat16 ||
         (dtype == ScalarKind::Float32 && allow_tf32);
}

// How the mma.sync GEMMs multiply fp32: rounded to TF32 (where TF32 is
// allowed), or, where it is not, split into a TF32 value and a TF32
// remainder, three MMAs for one (3xTF32), each k-step's three summed apart
// and added to the accumulator in fp32.  Sending all three to the
// accumulator instead was 5-15x torch's fp32 error on an H200 (the tensor
// cores' fp32 accumulation truncates) and only 1.14x faster; summed apart,
// the error stays that of one k-step's sum, within twice fp32 FMA's
// (RESULTS.md, "Split-TF32 on the GPU round").
enum class Fp32Mma { Tf32, Split };

// Channels in 16 bytes.
inline int64_t vector_channels(ScalarKind dtype) { return 16 / element_bytes(dtype); }

// Whether every offset a 16-byte vector of `vec` channels is read or written
// at is a multiple of 16 bytes: channels innermost, every other stride a
// multiple of vec, the address aligned (address 0: a plan made before the
// tensors exist).
inline bool vectors_aligned(const Strides5& s, uintptr_t address, int64_t vec,
                            int64_t elem_bytes) {
  return s.c == 1 && s.n % vec == 0 && s.d % vec == 0 && s.h % vec == 0 && s.w % vec == 0 &&
         address % uintptr_t(vec * elem_bytes) == 0;
}

}  // namespace tconv3d::cuda
