#include "weight_pack.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>

#include "dispatch.cuh"
#include "mma_sm80.cuh"

namespace tconv3d::cuda {
namespace {

// Any strides: each thread writes one 16-byte piece of the packed weight
// (one group, tap and column; 16 bytes of its channels), gathering its
// elements from the weight, and consecutive threads take consecutive indices
// of whichever of channel piece, column and tap has the smallest stride in
// the weight, so each of a warp's loads reads neighbouring elements.  The
// shared-memory transpose this replaced read along the taps only: on a
// channels-last weight (a model in channels_last_3d), whose taps stride by
// Cout, every load was a sector of its own, on grids of one block a column
// (H200 bf16: VAE k4s2 128→128's 2 MB weight 11.8 us, dilated 64→64's 0.2 MB
// 7.5 us; RESULTS.md, "Pack and tap-columns round").
struct GatherOrder {
  int axis[3];  // fastest first: 0 channel piece, 1 column, 2 tap
};

// Index: the decode's integer (unsigned 32-bit where every piece's index
// fits: its divisions are a few instructions, 64-bit ones dozens).
template <typename Bits, typename Index>
__global__ void __launch_bounds__(kThreads) pack_gather_kernel(const WeightPackGeometry w,
                                                               const GatherOrder order, Bits* dst) {
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
    const Bits* from = src + g * w.group_stride + column * w.column_stride +
                       kd * w.tap_stride[0] + kh * w.tap_stride[1] + kw * w.tap_stride[2] +
                       k0 * w.channel_stride;
    union {
      uint4 vec;
      Bits el[V];
    } out;
    if (vector_channels && k0 < w.channels) {  // then whole: channels are whole pieces
      out.vec = *reinterpret_cast<const uint4*>(from);
    } else {
#pragma unroll
      for (int j = 0; j < V; ++j) {
        out.el[j] = k0 + j < w.channels ? from[j * w.channel_stride] : Bits(0);
      }
    }
    if constexpr (sizeof(Bits) == 4) {
#pragma unroll
      for (int j = 0; j < V; ++j) out.el[j] = to_tf32(out.el[j]);  // weight_pack.h
    }
    *reinterpret_cast<uint4*>(dst + ((g * taps + t) * w.columns + column) * w.padded + k0) = out.vec;
  }
}

// Fastest first: the packed weight's three axes by their stride in the
// weight (an axis of one index last; the taps by the smallest stride of a
// kernel axis longer than one).
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

// A dense weight holds each group as [outer][inner][taps] (contiguous) or
// [outer][taps][inner] (channels-last), inner being whichever of the
// packing's columns and channels has the smaller stride (Cout/G in both,
// but a forward's columns and grad-input's channels), so a tile of kt
// channels × ct columns × every tap is rows of contiguous elements: per
// outer index inner-tile × taps, or per (outer, tap) the inner tile.  Each
// block loads its tile's rows with 16-byte loads, stages them as loaded,
// and writes each (tap, column)'s kt channels with 16-byte stores.  The host
// (dense_runs_tile) checks that every row, in the weight and in the packed
// weight, is whole 16-byte pieces.
struct DenseRunsTile {
  int kt, ct;               // channels (a multiple of 16 bytes), columns a tile
  int64_t k_tiles, c_tiles;
  bool inner_is_column;
  bool taps_inner;  // [outer][inner][taps], else [outer][taps][inner]
};

template <typename Bits>
__global__ void __launch_bounds__(kThreads) pack_dense_runs_kernel(const WeightPackGeometry w,
                                                                   const DenseRunsTile tile,
                                                                   Bits* dst) {
  constexpr int V = 16 / sizeof(Bits);
  extern __shared__ __align__(16) unsigned char raw[];
  Bits* staged = reinterpret_cast<Bits*>(raw);
  const Bits* src = static_cast<const Bits*>(w.weight);
  const int taps = int(w.kernel[0] * w.kernel[1] * w.kernel[2]);
  const int kt = tile.kt, ct = tile.ct;
  const bool by_column = tile.inner_is_column, taps_inner = tile.taps_inner;
  const int64_t inner_total = by_column ? w.columns : w.channels;
  const int64_t outer_total = by_column ? w.channels : w.columns;
  const int64_t outer_stride = inner_total * taps;
  const int outer = by_column ? kt : ct, inner = by_column ? ct : kt;
  // Staged as loaded: element (o, i, t) at o·inner·taps + i·taps + t, or
  // (o·taps + t)·inner + i.
  const int row = taps_inner ? inner * taps : inner, rows = taps_inner ? outer : outer * taps;
  const int chunks = row / V, groups_k = kt / V;
  const int64_t tiles = w.groups * tile.c_tiles * tile.k_tiles;
  for (int64_t b = blockIdx.x; b < tiles; b += gridDim.x) {
    const int64_t k0 = b % tile.k_tiles * kt, c0 = b / tile.k_tiles % tile.c_tiles * ct;
    const int64_t g = b / (tile.k_tiles * tile.c_tiles);
    const int64_t o0 = by_column ? k0 : c0, i0 = by_column ? c0 : k0;
    const Bits* base = src + g * w.group_stride + o0 * outer_stride + i0 * (taps_inner ? taps : 1);
    for (int e = threadIdx.x; e < rows * chunks; e += kThreads) {
      const int r = e / chunks, q = e % chunks;
      const int o = taps_inner ? r : r / taps, t = taps_inner ? 0 : r % taps;
      // Rows and chunks never straddle the tensor's inner end (whole 16-byte
      // pieces), so a chunk is in the tensor where its last element is.
      const int i_last = taps_inner ? (q * V + V - 1) / taps : q * V + V - 1;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (o0 + o < outer_total && i0 + i_last < inner_total) {
        v = *reinterpret_cast<const uint4*>(base + o * outer_stride + t * inner_total + q * V);
      }
      *reinterpret_cast<uint4*>(staged + r * row + q * V) = v;
    }
    __syncthreads();
    // (tap, column, 16-byte group of channels), channel groups fastest.
    for (int e = threadIdx.x; e < taps * ct * groups_k; e += kThreads) {
      const int kg = e % groups_k, cc = e / groups_k % ct, t = e / (groups_k * ct);
      if (c0 + cc >= w.columns) continue;
      union {
        uint4 vec;
        Bits el[V];
      } out;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const int kk = kg * V + j;
        const int o = by_column ? kk : cc, i = by_column ? cc : kk;
        Bits value = staged[taps_inner ? (o * inner + i) * taps + t : (o * taps + t) * inner + i];
        if constexpr (sizeof(Bits) == 4) value = to_tf32(value);
        out.el[j] = value;
      }
      *reinterpret_cast<uint4*>(dst + ((g * taps + t) * w.columns + c0 + cc) * w.padded + k0 +
                                kg * V) = out.vec;
    }
    __syncthreads();
  }
}

constexpr int kDenseRunsStagingBytes = 32 << 10;

// The dense-runs tile for this weight, kt == 0 where it does not apply: the
// weight dense as [G][outer][inner][taps] or [G][outer][taps][inner] (any
// pointer 16-byte aligned), no padding channels, and 16-byte rows.  Channels
// 128 bytes a tile where they divide (else 64, 32 or 16), columns as many as
// fit in the staging; then fewer columns, then fewer channels (down to 64
// bytes), until there is a block an SM: the probe's first tiling, as many
// columns as fit, lost 1.4-2.3x to the transpose kernel on 1-4 MB weights of
// 16-64 blocks, and 64 blocks of VAE-video's 256→128 forward still lost
// 1.13x (scripts/weight_pack_probe.cu, RESULTS.md).
DenseRunsTile dense_runs_tile(const WeightPackGeometry& w, int element_bytes) {
  DenseRunsTile t{0, 0, 0, 0, false, false};
  const int64_t taps = w.kernel[0] * w.kernel[1] * w.kernel[2];
  const int vec = 16 / element_bytes;
  // Taps innermost where one of columns and channels strides by the taps,
  // else outside the one of stride 1.
  t.taps_inner = w.column_stride == taps || w.channel_stride == taps;
  t.inner_is_column = w.column_stride == (t.taps_inner ? taps : 1);
  const int64_t inner_total = t.inner_is_column ? w.columns : w.channels;
  const int64_t outer_total = t.inner_is_column ? w.channels : w.columns;
  const int64_t outer_stride = t.inner_is_column ? w.channel_stride : w.column_stride;
  const int64_t inner_stride = t.inner_is_column ? w.column_stride : w.channel_stride;
  const int64_t tap_unit = t.taps_inner ? 1 : inner_total;  // the w tap's stride
  // (A size-1 kernel axis's stride is never used.)
  const bool taps_dense = (w.kernel[2] == 1 || w.tap_stride[2] == tap_unit) &&
                          (w.kernel[1] == 1 || w.tap_stride[1] == w.kernel[2] * tap_unit) &&
                          (w.kernel[0] == 1 || w.tap_stride[0] == w.kernel[1] * w.kernel[2] * tap_unit);
  if (!taps_dense || inner_stride != (t.taps_inner ? taps : 1) ||
      outer_stride != inner_total * taps ||
      (w.groups > 1 && w.group_stride != outer_total * inner_total * taps) ||
      w.channels != w.padded || (t.taps_inner ? inner_total * taps : inner_total) % vec != 0 ||
      reinterpret_cast<uintptr_t>(w.weight) % 16 != 0) {
    return t;
  }
  int kt = 128 / element_bytes;
  while (kt > vec && w.padded % kt != 0) kt /= 2;
  if (w.padded % kt != 0) return t;
  // Columns a tile: a multiple of `step` keeps a forward's rows (columns ×
  // taps, or columns) whole 16-byte pieces; grad-input's rows are channels
  // (× taps).
  int64_t step = 1;
  while (t.inner_is_column && (step * (t.taps_inner ? taps : 1)) % vec != 0) step *= 2;
  const int64_t fit = kDenseRunsStagingBytes / (int64_t(kt) * taps * element_bytes);
  if (fit < step) return t;
  const int64_t target = sm_count();
  const int narrowest = std::max(vec, 64 / element_bytes);  // two sectors a stored row
  int64_t ct = std::max(step, std::min(fit, w.columns) / step * step);
  const auto blocks = [&] { return w.groups * (w.padded / kt) * ((w.columns + ct - 1) / ct); };
  while (blocks() < target && (ct > step || kt > narrowest)) {
    if (ct > step) {
      ct -= step;
    } else {
      kt /= 2;
    }
  }
  // Stuck far below (a grouped channels-last forward, whose 16-byte column
  // step leaves few column tiles): 16 blocks took 12.2 us where the
  // transpose took 9.3 (grouped 128→128 k4, g4); 32 blocks still won.
  if (8 * blocks() < target) return t;
  t.kt = kt;
  t.ct = int(ct);
  t.k_tiles = w.padded / kt;
  t.c_tiles = (w.columns + ct - 1) / ct;
  return t;
}

template <typename Bits>
cudaError_t launch_typed(const WeightPackGeometry& w, int64_t taps, Bits* dst, cudaStream_t stream) {
  const DenseRunsTile dense = dense_runs_tile(w, sizeof(Bits));
  if (dense.kt > 0) {
    const int64_t tiles = w.groups * dense.k_tiles * dense.c_tiles;
    const size_t smem = size_t(dense.kt) * dense.ct * taps * sizeof(Bits);
    pack_dense_runs_kernel<Bits><<<unsigned(std::min<int64_t>(tiles, 8192)), kThreads, smem, stream>>>(
        w, dense, dst);
    return cudaGetLastError();
  }
  const int64_t per_group = taps * w.columns * (w.padded / (16 / int64_t(sizeof(Bits))));
  const unsigned blocks =
      unsigned(std::min<int64_t>((w.groups * per_group + kThreads - 1) / kThreads, 8192));
  if (per_group <= std::numeric_limits<uint32_t>::max()) {
    pack_gather_kernel<Bits, uint32_t><<<blocks, kThreads, 0, stream>>>(w, gather_order(w), dst);
  } else {
    pack_gather_kernel<Bits, int64_t><<<blocks, kThreads, 0, stream>>>(w, gather_order(w), dst);
  }
  return cudaGetLastError();
}
}  // namespace

cudaError_t launch_pack_weight(const WeightPackGeometry& w, int element_bytes, void* dst,
                               cudaStream_t stream) {
  const int64_t taps = w.kernel[0] * w.kernel[1] * w.kernel[2];
  if (w.groups * taps * w.columns * w.padded == 0) return cudaSuccess;
  if (element_bytes == 2) return launch_typed(w, taps, static_cast<uint16_t*>(dst), stream);
  if (element_bytes == 4) return launch_typed(w, taps, static_cast<uint32_t*>(dst), stream);
  return cudaErrorInvalidValue;
}

}  // namespace tconv3d::cuda
