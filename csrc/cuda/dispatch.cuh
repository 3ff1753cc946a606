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

// What a kernel's code needs of the device: sm_80 or newer (bodies compiled
// only for __CUDA_ARCH__ >= 800), or exactly sm_90 running sm_90a machine code
// (wgmma and the other architecture-specific features).
enum class ArchNeed { Sm80OrNewer, Sm90a };

// Devices the per-device caches below hold.
constexpr int kMaxDevices = 64;

// The current device (the op's: its device guard is set), or -1 where it
// cannot be read or is past the caches.
inline int current_device() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();  // clear
    return -1;
  }
  return dev >= 0 && dev < kMaxDevices ? dev : -1;
}

// Whether Kernel has code the current device runs, as `need` says.  Asked
// once per device: the answer cannot change, and the runtime queries cost host
// time on every call otherwise.
template <auto Kernel, ArchNeed need>
bool kernel_runs_here() {
  static std::atomic<int> known[kMaxDevices];  // 0 unknown, 1 yes, -1 no
  const int dev = current_device();
  if (dev < 0) return false;
  int state = known[dev].load(std::memory_order_relaxed);
  if (state == 0) {
    cudaFuncAttributes attr{};
    int major = 0, minor = 0;
    const bool ok =
        cudaFuncGetAttributes(&attr, Kernel) == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess;
    if (!ok) cudaGetLastError();  // clear
    const bool arch_ok = need == ArchNeed::Sm80OrNewer
                             ? major >= 8 && attr.ptxVersion >= 80
                             : major == 9 && minor == 0 && attr.binaryVersion == 90;
    state = ok && arch_ok ? 1 : -1;
    known[dev].store(state, std::memory_order_relaxed);
  }
  return state > 0;
}

template <auto Kernel>
bool sm80_kernel_runs_here() {
  return kernel_runs_here<Kernel, ArchNeed::Sm80OrNewer>();
}

// An attribute of the current device, read once per device; `fallback`
// while it cannot be read.  Per device, as the shared-memory checks need on
// a machine of mixed GPUs.
template <cudaDeviceAttr kAttr>
int device_attribute(int fallback) {
  static std::atomic<int> cached[kMaxDevices];  // 0: not read yet
  const int dev = current_device();
  if (dev < 0) return fallback;
  int n = cached[dev].load(std::memory_order_relaxed);
  if (n <= 0) {
    if (cudaDeviceGetAttribute(&n, kAttr, dev) != cudaSuccess) {
      cudaGetLastError();  // clear
      return fallback;
    }
    cached[dev].store(n, std::memory_order_relaxed);
  }
  return n;
}

// Multiprocessors (tile and grid choices read it).
inline int sm_count() { return device_attribute<cudaDevAttrMultiProcessorCount>(132); }

// Shared memory an SM holds (0 if unknown: no choice that reads it then
// assumes more than the smallest).
inline int smem_per_sm() {
  return device_attribute<cudaDevAttrMaxSharedMemoryPerMultiprocessor>(0);
}

// Test hook (set_smem_per_block_limit): a smaller limit than the device's,
// so an H100 takes the choices a smaller GPU would (0: the device's).
inline std::atomic<int> g_smem_per_block_limit{0};

// Dynamic and static shared memory a block may opt in to (0 if unknown):
// 227 KB on H100, 163 KB on A100, 99 KB on sm_86/sm_89.
inline int smem_per_block_optin() {
  const int device = device_attribute<cudaDevAttrMaxSharedMemoryPerBlockOptin>(0);
  const int limit = g_smem_per_block_limit.load(std::memory_order_relaxed);
  return limit > 0 && limit < device ? limit : device;
}

// The dynamic shared memory a block may take here beside `static_bytes` of
// static (by default 4 KB: the mma.sync kernels' tables).  Their sizes were
// chosen on H100 (227 KB); the support checks of the kernels that can pass
// A100's 163 KB or sm_86/89's 99 KB ask this, so the router falls back
// instead of the launch failing.
inline int64_t block_smem_room(int64_t static_bytes = 4096) {
  return int64_t(smem_per_block_optin()) - static_bytes;
}

inline bool block_smem_fits(int64_t dynamic) { return dynamic <= block_smem_room(); }

constexpr int kThreads = 256;

inline unsigned int grid_for(int64_t work, int64_t cap = int64_t(1) << 20) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace tconv3d::cuda
