#include "weight_pack.h"

#include <algorithm>
#include <cstdint>

#include "mma_sm80.cuh"

namespace tconv3d::cuda {
namespace {

// One thread per packed element, K fastest: stores coalesce; the strided
// reads hit a weight of at most a few MB that stays in L2.  Index: the
// packed element's position (32-bit where it fits: the divisions are most of
// the work); offsets stay 64-bit, for any weight strides.
template <typename Bits, typename Index>
__global__ void __launch_bounds__(256) pack_weight_kernel(const WeightPackGeometry w, Bits* dst) {
  const Bits* src = static_cast<const Bits*>(w.weight);
  const Index padded = Index(w.padded), columns = Index(w.columns);
  const Index kh_count = Index(w.kernel[1]), kw_count = Index(w.kernel[2]);
  const Index taps = Index(w.kernel[0]) * kh_count * kw_count;
  const Index total = Index(w.groups) * taps * columns * padded;
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += Index(gridDim.x) * blockDim.x) {
    const Index k = i % padded;
    Index rest = i / padded;
    const Index column = rest % columns;
    rest /= columns;
    const Index t = rest % taps, g = rest / taps;
    Bits value(0);
    if (k < Index(w.channels)) {
      const Index kw = t % kw_count, kh = t / kw_count % kh_count, kd = t / (kw_count * kh_count);
      value = src[int64_t(g) * w.group_stride + int64_t(column) * w.column_stride +
                  int64_t(k) * w.channel_stride + int64_t(kd) * w.tap_stride[0] +
                  int64_t(kh) * w.tap_stride[1] + int64_t(kw) * w.tap_stride[2]];
    }
    if constexpr (sizeof(Bits) == 4) value = to_tf32(value);  // weight_pack.h
    dst[i] = value;
  }
}

template <typename Bits>
void launch(const WeightPackGeometry& w, int64_t total, unsigned blocks, void* dst,
            cudaStream_t stream) {
  constexpr int64_t kMax32 = int64_t(1) << 31;
  // The grid-stride loop's last step must not wrap a 32-bit index either.
  if (total + int64_t(blocks) * 256 < kMax32) {
    pack_weight_kernel<Bits, uint32_t><<<blocks, 256, 0, stream>>>(w, static_cast<Bits*>(dst));
  } else {
    pack_weight_kernel<Bits, int64_t><<<blocks, 256, 0, stream>>>(w, static_cast<Bits*>(dst));
  }
}

}  // namespace

cudaError_t launch_pack_weight(const WeightPackGeometry& w, int element_bytes, void* dst,
                               cudaStream_t stream) {
  const int64_t total =
      w.groups * w.kernel[0] * w.kernel[1] * w.kernel[2] * w.columns * w.padded;
  if (total == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 4096));
  if (element_bytes == 2) {
    launch<uint16_t>(w, total, blocks, dst, stream);
  } else if (element_bytes == 4) {
    launch<uint32_t>(w, total, blocks, dst, stream);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace tconv3d::cuda
