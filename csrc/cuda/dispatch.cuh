// Compile-time dispatch over storage type and index width for the launchers.
#pragma once

#include <atomic>
#include <cstdint>

#include <cuda_runtime_api.h>

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

// Whether Kernel, whose body exists only in sm_80+ code, has code the current
// device runs.  Asked once per device: the answer cannot change, and the
// runtime queries cost host time on every call otherwise.
template <auto Kernel>
bool sm80_kernel_runs_here() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> known[kMaxDevices];  // 0 unknown, 1 yes, -1 no
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();  // clear
    return false;
  }
  if (dev < 0 || dev >= kMaxDevices) return false;
  int state = known[dev].load(std::memory_order_relaxed);
  if (state == 0) {
    cudaFuncAttributes attr{};
    int major = 0;
    const bool ok = cudaFuncGetAttributes(&attr, Kernel) == cudaSuccess &&
                    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) ==
                        cudaSuccess;
    if (!ok) cudaGetLastError();  // clear
    state = ok && major >= 8 && attr.ptxVersion >= 80 ? 1 : -1;
    known[dev].store(state, std::memory_order_relaxed);
  }
  return state > 0;
}

constexpr int kThreads = 256;

inline unsigned int grid_for(int64_t work, int64_t cap = int64_t(1) << 20) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace tconv3d::cuda
