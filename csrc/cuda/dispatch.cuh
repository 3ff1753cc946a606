// Compile-time dispatch over storage type and index width for the launchers.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../params.h"

namespace tconv3d::cuda {

// Calls f(scalar_t{}) with the CUDA storage type of `kind`.
template <typename F>
void dispatch_scalar(ScalarKind kind, F&& f) {
  switch (kind) {
    case ScalarKind::Float32:
      f(float{});
      break;
    case ScalarKind::Float64:
      f(double{});
      break;
    case ScalarKind::Float16:
      f(__half{});
      break;
    case ScalarKind::BFloat16:
      f(__nv_bfloat16{});
      break;
  }
}

// Calls f(index_t{}) with int64_t when offsets may pass 2^31 - 1, else int32_t.
template <typename F>
void dispatch_index(bool wide, F&& f) {
  if (wide) {
    f(int64_t{});
  } else {
    f(int32_t{});
  }
}

constexpr int kThreads = 256;

inline unsigned int grid_for(int64_t work, int64_t cap = int64_t(1) << 20) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace tconv3d::cuda
