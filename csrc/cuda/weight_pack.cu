#include "weight_pack.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>

#include "dispatch.cuh"
#include "mma_sm80.cuh"

namespace tconv3d::cuda {
namespace {

// Each thread writes one 16-byte piece of the packed weight (one group, tap
// and column; 16 bytes of its channels), gathering its elements from the
// weight, and consecutive threads take consecutive indices of whichever of
// channel piece, column and tap has the smallest stride in the weight, so
// each of a warp's loads reads neighbouring elements; the writes land in L2
// as 16-byte halves of sectors, merged there (the packed weight is at most a
// few MB).  It replaced two kernels (H200, RESULTS.md "Pack and tap-columns
// round"): a shared-memory transpose that read along the taps only — on a
// channels-last weight (a model in channels_last_3d), whose taps stride by
// Cout, a sector an element: VAE k4s2 128→128 bf16 11.8 us, now 4.4 — and a
// 16-byte staged copy of dense weights, which it beat on 50 of 58 packs; it
// lost by up to 3.5 us on contiguous weights' forward packs of 7-14 MB (the
// 512→256 bottleneck: 14.4 against 10.9 us in TF32, hot caches).
struct GatherOrder {
  int axis[3];  // fastest first: 0 channel piece, 1 column, 2 tap
};

// Index: the decode's integer (unsigned 32-bit where every piece's index
// fits: its divisions are a few instructions, 64-bit ones dozens).
template <typename Bits, typename Index>
__global__ void __launch_bounds__(kThreads) pack_gather_kernel(const WeightPackGeometry w,
                                                               const GatherOrder order,
                                                               bool round_tf32, Bits* dst) {
  constexpr int V = 16 / sizeof(Bits);
  const Bits* src = static_cast<const Bits*>(w.weight);
  const Index kw_count = Index(w.kernel[2]), kh_count = Index(w.kernel[1]);
  const Index taps = Index(w.kernel[0]) * kh_count * kw_count, pieces = Index(w.padded / V);
  const Index extent[3] = {pieces, Index(w.columns), taps};
  const Index per_group = pieces * Index(w.columns) * taps;
  const int64_t total = w.groups * int64_t(per_group);
  const bool vector_channels = w.channel_stride == 1 && w.channels % V == 0 &&
                               w.group_stride % V == 0 && w.column_stride % V == 0 &&
                               w.tap_stride[0] % V == 0 && w.tap_stride[1] % V == 0 &&
                               w.tap_stride[2] % V == 0 &&
                               reinterpret_cast<uintptr_t>(w.weight) % 16 == 0;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * kThreads) {
    const int64_t g = e / per_group;
    Index index[3], rest = Index(e - g * per_group);
#pragma unroll
    for (int d = 0; d < 3; ++d) {
      const int a = order.axis[d];
      const Index n = a == 0 ? extent[0] : a == 1 ? extent[1] : extent[2];
      const Index v = rest % n;
      rest /= n;
#pragma unroll
      for (int b = 0; b < 3; ++b) {
        if (a == b) index[b] = v;
      }
    }
    const Index q = index[0], column = index[1], t = index[2];
    const Index kw = t % kw_count, kh = t / kw_count % kh_count, kd = t / (kw_count * kh_count);
    const int64_t k0 = int64_t(q) * V;
    // Block-diagonal packs: the weight's group, column and channel of this
    // piece, and whether it lies off the diagonal (V divides the block).
    int64_t source_group = g, source_column = column, source_k0 = k0;
    bool off_diagonal = false;
    if (w.block != 0) {
      const int64_t column_block = int64_t(column) / w.block;
      off_diagonal = k0 / w.block != column_block;
      source_group = g * (w.columns / w.block) + column_block;
      source_column = int64_t(column) % w.block;
      source_k0 = k0 % w.block;
    }
    const Bits* from = src + source_group * w.group_stride + source_column * w.column_stride +
                       kd * w.tap_stride[0] + kh * w.tap_stride[1] + kw * w.tap_stride[2] +
                       source_k0 * w.channel_stride;
    union {
      uint4 vec;
      Bits el[V];
    } out;
    if (off_diagonal) {
      out.vec = make_uint4(0, 0, 0, 0);
    } else if (vector_channels && k0 < w.channels) {  // then whole: channels are whole pieces
      out.vec = *reinterpret_cast<const uint4*>(from);
    } else {
#pragma unroll
      for (int j = 0; j < V; ++j) {
        out.el[j] = k0 + j < w.channels ? from[j * w.channel_stride] : Bits(0);
      }
    }
    if constexpr (sizeof(Bits) == 4) {
      if (round_tf32) {
#pragma unroll
        for (int j = 0; j < V; ++j) out.el[j] = to_tf32(out.el[j]);  // weight_pack.h
      }
    }
    *reinterpret_cast<uint4*>(dst + ((g * taps + t) * w.columns + column) * w.padded + k0) = out.vec;
  }
}

// Fastest first: the packed weight's three axes by their stride in the
// weight (an axis of one index last; the taps by the smallest stride of a
// kernel axis longer than one), so consecutive warps stream along the
// weight's rows.  (Channel pieces second, so a packed row's pieces are
// written close together, gained 1.2 us on the bottleneck's TF32 forward
// pack with hot caches, ±0.4 on eleven others, and would give up that
// streaming on cold weights: not taken; RESULTS.md, "Pack and tap-columns
// round".)
GatherOrder gather_order(const WeightPackGeometry& w) {
  int64_t tap = std::numeric_limits<int64_t>::max();
  for (int d = 0; d < 3; ++d) {
    if (w.kernel[d] > 1) tap = std::min(tap, std::abs(w.tap_stride[d]));
  }
  const auto key = [&](int a) -> int64_t {
    const int64_t n = a == 0 ? w.padded : a == 1 ? w.columns : w.kernel[0] * w.kernel[1] * w.kernel[2];
    if (n <= 1) return std::numeric_limits<int64_t>::max();
    return a == 0 ? std::abs(w.channel_stride) : a == 1 ? std::abs(w.column_stride) : tap;
  };
  GatherOrder o{{0, 1, 2}};
  std::stable_sort(o.axis, o.axis + 3, [&](int a, int b) { return key(a) < key(b); });
  return o;
}

template <typename Bits>
cudaError_t launch_typed(const WeightPackGeometry& w, int64_t taps, bool round_tf32, Bits* dst,
                         cudaStream_t stream) {
  const int64_t per_group = taps * w.columns * (w.padded / (16 / int64_t(sizeof(Bits))));
  const unsigned blocks =
      unsigned(std::min<int64_t>((w.groups * per_group + kThreads - 1) / kThreads, 8192));
  if (per_group <= std::numeric_limits<uint32_t>::max()) {
    pack_gather_kernel<Bits, uint32_t>
        <<<blocks, kThreads, 0, stream>>>(w, gather_order(w), round_tf32, dst);
  } else {
    pack_gather_kernel<Bits, int64_t>
        <<<blocks, kThreads, 0, stream>>>(w, gather_order(w), round_tf32, dst);
  }
  return cudaGetLastError();
}
}  // namespace

cudaError_t launch_pack_weight(const WeightPackGeometry& w, int element_bytes, bool round_tf32,
                               void* dst, cudaStream_t stream) {
  const int64_t taps = w.kernel[0] * w.kernel[1] * w.kernel[2];
  if (w.groups * taps * w.columns * w.padded == 0) return cudaSuccess;
  if (element_bytes == 2) return launch_typed(w, taps, false, static_cast<uint16_t*>(dst), stream);
  if (element_bytes == 4) {
    return launch_typed(w, taps, round_tf32, static_cast<uint32_t*>(dst), stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace tconv3d::cuda
