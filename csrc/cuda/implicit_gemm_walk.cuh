// The geometry both tensor-core implicit GEMMs of the gather passes share
// (tensor_core_gemm.cu on mma.sync, tensor_core_gemm_sm90.cu on wgmma): which
// (group, phase, row range, column range) a tile covers, where its GEMM rows
// sit in the source and the destination, and the walk along K that turns a
// column index into a (tap, channel) pair and 16-byte source/weight pieces.
//
// For group g and one stride phase (forward) with the three GemmAxis a[] of
// the pass (index_math.h):
//
//   A[row, col] = source[n, src(j, t), g·C + c]     row = (n, j0, j1, j2), j2 fastest
//                                                    col = (t0, t1, t2, c), c fastest
//   B[col, n]   = packed_weight[g, k(t), n, c]
//   dest[n, g·columns + n, dst(j)] = Σ_col A·B (+ bias)
#pragma once

#include <atomic>
#include <climits>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "../index_math.h"
#include "../params.h"
#include "dispatch.cuh"
#include "launch.h"
#include "tensor_core_gemm.h"
#include "tile_order.h"

namespace tconv3d::cuda::igemm {

constexpr int kFar = INT_MIN / 2;  // position of rows past M: never in bounds

struct KernelArgs {
  ConvTranspose3dParams p;
  TensorCoreGemmOperands ops;
  Strides5 dest;      // p.output (forward) or p.input (grad-input)
  Strides5 partial;   // split K: a plane of dest's elements, dense channels-last
  int mtiles, ntiles; // row and column tiles of the largest phase
  int phases[3];      // stride phases per axis (forward), 1s for grad-input
  bool vector_store;  // dest channel-contiguous, columns and strides multiples of 16 bytes
  bool pair_store;    // dest channel-contiguous, columns and strides even, address aligned
  bool row_fastest;   // scalar stores walk rows (NCDHW-like dest)
  TileDeal deal;      // the Hopper kernel's few-wave order (tile_order.h); grid 0 elsewhere
};

// A tile: tile-local (m-tile, phase, n-tile) of `group`, in tile_order.h's
// order (heaviest phase first where k.deal says so).
struct TileCoord {
  int group, phase, ntile;
  int64_t mtile;
};

__device__ __forceinline__ TileCoord decode_tile(const KernelArgs& k, uint32_t within_group,
                                                 int group) {
  const TileInGroup t =
      k.deal.grid != 0
          ? heavy_first_tile(within_group, uint32_t(k.ntiles), uint32_t(k.mtiles), k.deal)
          : tile_in_group(within_group, uint32_t(k.ntiles),
                          uint32_t(k.phases[0] * k.phases[1] * k.phases[2]));
  return {group, t.phase, t.ntile, int64_t(t.mtile)};
}

__device__ __forceinline__ GemmAxis pass_axis(const KernelArgs& k, int a, int r) {
  return k.ops.pass == GatherPass::Forward ? forward_phase_axis(k.p.axis[a], r)
                                           : grad_input_axis(k.p.axis[a]);
}

// Host too: the launch's few-wave deal (tensor_core_gemm_sm90.cu) reads each
// phase's taps through it.
__host__ __device__ __forceinline__ void phase_residues(const KernelArgs& k, int phase, int (&r)[3]) {
  r[0] = phase / (k.phases[1] * k.phases[2]);
  r[1] = (phase / k.phases[2]) % k.phases[1];
  r[2] = phase % k.phases[2];
}

// Rows (the GEMM's M) and taps of a (pass, phase).
struct PhaseSize {
  int64_t rows;
  int taps;
};

__device__ __forceinline__ PhaseSize phase_size(const KernelArgs& k, const GemmAxis (&ax)[3]) {
  PhaseSize s{k.p.batch, 1};
#pragma unroll
  for (int a = 0; a < 3; ++a) {
    s.rows *= ax[a].rows;
    s.taps *= int(ax[a].taps);
  }
  return s;
}

// Block-uniform description of the walk along K.
template <typename index_t>
struct Walk {
  using uoff_t = std::make_unsigned_t<index_t>;
  int channels;
  int taps[3];
  int extent[3];     // source extents
  int p_step[3];     // source position change per tap step
  uoff_t a_step[3];  // source offset change per tap step
  uoff_t b_step[3];  // packed-weight offset change per tap step
  uoff_t b_origin;   // packed-weight offset of (group, first tap, column 0)
};

template <typename index_t>
__device__ __forceinline__ Walk<index_t> make_walk(const KernelArgs& k, const GemmAxis (&ax)[3],
                                                   int group) {
  using uoff_t = std::make_unsigned_t<index_t>;
  const int64_t src_stride[3] = {k.ops.source_d, k.ops.source_h, k.ops.source_w};
  const int64_t kstride[3] = {k.p.axis[1].kernel * k.p.axis[2].kernel, k.p.axis[2].kernel, 1};
  const int64_t cols_c = k.ops.columns * k.ops.channels;
  const int64_t kvol = k.p.axis[0].kernel * kstride[0];
  Walk<index_t> w;
  w.channels = int(k.ops.channels);
  int64_t kidx_origin = 0;
#pragma unroll
  for (int a = 0; a < 3; ++a) {
    w.taps[a] = int(ax[a].taps);
    w.extent[a] = int(ax[a].src_extent);
    w.p_step[a] = int(ax[a].src_per_tap);
    w.a_step[a] = uoff_t(index_t(ax[a].src_per_tap * src_stride[a]));
    w.b_step[a] = uoff_t(index_t(ax[a].k_per_tap * kstride[a] * cols_c));
    kidx_origin += ax[a].k_origin * kstride[a];
  }
  w.b_origin = uoff_t(index_t((int64_t(group) * kvol + kidx_origin) * cols_c));
  return w;
}

// A thread's position along K (its 16-byte piece of the current stage).
template <typename index_t>
struct Cursor {
  using uoff_t = std::make_unsigned_t<index_t>;
  int kk, c;
  int t[3], dpos[3];
  uoff_t a_off, b_off;
};

// Odometer step over (t0, t1, t2), t2 fastest.  Written without an early exit
// so that, unrolled, every array index is static and the cursor stays in registers.
template <typename index_t>
__device__ __forceinline__ void next_tap(Cursor<index_t>& cur, const Walk<index_t>& w) {
  using uoff_t = std::make_unsigned_t<index_t>;
  bool carry = true;
#pragma unroll
  for (int a = 2; a >= 0; --a) {
    if (carry) {
      ++cur.t[a];
      cur.a_off += w.a_step[a];
      cur.b_off += w.b_step[a];
      cur.dpos[a] += w.p_step[a];
      carry = a > 0 && cur.t[a] == w.taps[a];
      if (carry) {
        cur.a_off -= uoff_t(w.taps[a]) * w.a_step[a];
        cur.b_off -= uoff_t(w.taps[a]) * w.b_step[a];
        cur.t[a] = 0;
        cur.dpos[a] = 0;
      }
    }
  }
}

// Moves the cursor n ≥ 0 columns on; past K is fine (callers mask kk < K).
template <typename index_t>
__device__ __forceinline__ void advance(Cursor<index_t>& cur, const Walk<index_t>& w, int n) {
  using uoff_t = std::make_unsigned_t<index_t>;
  cur.kk += n;
  cur.c += n;
  cur.a_off += uoff_t(n);
  cur.b_off += uoff_t(n);
  while (cur.c >= w.channels) {
    cur.c -= w.channels;
    cur.a_off -= uoff_t(w.channels);
    cur.b_off -= uoff_t(w.channels);
    next_tap(cur, w);
  }
}

// Row m of a phase's GEMM → (n, j0, j1, j2); 32-bit when offsets are (M then
// counts at most the destination's elements, < 2^31).
template <typename index_t>
struct RowDecomposer {
  using row_t = std::conditional_t<sizeof(index_t) == 4, uint32_t, uint64_t>;
  row_t extent[3];

  __device__ __forceinline__ explicit RowDecomposer(const GemmAxis (&ax)[3])
      : extent{row_t(ax[0].rows), row_t(ax[1].rows), row_t(ax[2].rows)} {}

  __device__ __forceinline__ void operator()(int64_t m64, int64_t& n, int (&j)[3]) const {
    row_t m = row_t(m64);
#pragma unroll
    for (int a = 2; a >= 0; --a) {
      j[a] = int(m % extent[a]);
      m /= extent[a];
    }
    n = int64_t(m);
  }
};

// A source row: offset and position of tap 0 (kFar for rows past M).
template <typename index_t>
struct SourceRow {
  std::make_unsigned_t<index_t> off;
  int pos[3];
};

template <typename index_t>
__device__ __forceinline__ SourceRow<index_t> source_row(const KernelArgs& k,
                                                         const GemmAxis (&ax)[3],
                                                         const RowDecomposer<index_t>& decompose,
                                                         int64_t m, int64_t M, int group) {
  using uoff_t = std::make_unsigned_t<index_t>;
  SourceRow<index_t> r;
  if (m >= M) {
    r.off = 0;
    r.pos[0] = r.pos[1] = r.pos[2] = kFar;
    return r;
  }
  const int64_t src_stride[3] = {k.ops.source_d, k.ops.source_h, k.ops.source_w};
  int64_t n;
  int j[3];
  decompose(m, n, j);
  uoff_t off = uoff_t(index_t(n * k.ops.source_n + int64_t(group) * k.ops.channels));
#pragma unroll
  for (int a = 0; a < 3; ++a) {
    r.pos[a] = int(j[a] * ax[a].src_per_row + ax[a].src_origin);
    off += uoff_t(index_t(r.pos[a])) * uoff_t(index_t(src_stride[a]));
  }
  r.off = off;
  return r;
}

// Offset of sample n, phase position j, column 0 of the group in a tensor of
// dest's shape at strides `at` (dest's own, or the split-K partials').
template <typename index_t>
__device__ __forceinline__ index_t dest_offset(const KernelArgs& k, const GemmAxis (&ax)[3],
                                               int64_t n, const int (&j)[3], int group,
                                               const Strides5& at) {
  const int64_t dst_stride[3] = {at.d, at.h, at.w};
  int64_t off = n * at.n + int64_t(group) * k.ops.columns * at.c;
#pragma unroll
  for (int a = 0; a < 3; ++a) off += (j[a] * ax[a].dst_per_row + ax[a].dst_origin) * dst_stride[a];
  return index_t(off);
}

// The same for row m < M.
template <typename index_t>
__device__ __forceinline__ index_t dest_row(const KernelArgs& k, const GemmAxis (&ax)[3],
                                            const RowDecomposer<index_t>& decompose, int64_t m,
                                            int group, const Strides5& at) {
  int64_t n;
  int j[3];
  decompose(m, n, j);
  return dest_offset<index_t>(k, ax, n, j, group, at);
}

template <typename index_t>
__device__ __forceinline__ bool in_bounds(const SourceRow<index_t>& r, const Cursor<index_t>& cur,
                                          const Walk<index_t>& w) {
  bool ok = true;
#pragma unroll
  for (int a = 0; a < 3; ++a) {
    ok &= static_cast<unsigned>(r.pos[a] + cur.dpos[a]) < static_cast<unsigned>(w.extent[a]);
  }
  return ok;
}

// ---------------------------------------------------------------------------
// Host side.

struct LaunchShape {
  int bm, bn;
  int64_t mtiles, ntiles, phases[3];
  int64_t tiles_per_group() const { return mtiles * phases[0] * phases[1] * phases[2] * ntiles; }
};

inline int64_t columns_of(const ConvTranspose3dParams& p, GatherPass pass) {
  return pass == GatherPass::Forward ? p.out_per_group : p.in_per_group;
}

inline LaunchShape launch_shape(const ConvTranspose3dParams& p, GatherPass pass, int bm, int bn) {
  LaunchShape s{bm, bn};
  int64_t rows = p.batch;  // rows of the largest phase (phase 0 on every axis)
  for (int a = 0; a < 3; ++a) {
    const bool fwd = pass == GatherPass::Forward;
    s.phases[a] = fwd ? p.axis[a].stride : 1;
    rows *= fwd ? ceil_div(p.axis[a].out, p.axis[a].stride) : p.axis[a].in;
  }
  s.mtiles = ceil_div(rows, bm);
  s.ntiles = ceil_div(columns_of(p, pass), bn);
  return s;
}

// Positions, taps and K in int with headroom; tile counts within 32 bits
// (both kernels' smallest tile is 64 × 32).
inline bool problem_fits(const ConvTranspose3dParams& p, GatherPass pass, int64_t vec) {
  constexpr int64_t kLimit = int64_t(1) << 30;
  constexpr int64_t kKHeadroom = 256;  // K elements a cursor may run past K
  int64_t taps = 1;
  for (int a = 0; a < 3; ++a) {
    const Axis& ax = p.axis[a];
    if (ax.in <= 0 || ax.out <= 0) return false;
    const int64_t reach = (ax.in + 1) * ax.stride + ax.padding + (ax.kernel + 1) * ax.dilation;
    if (ax.out >= kLimit || reach >= kLimit) return false;
    taps *= ax.kernel;
  }
  const int64_t channels = pass == GatherPass::Forward ? p.in_per_group : p.out_per_group;
  const int64_t padded = ceil_div(channels, vec) * vec;
  if (taps * padded + kKHeadroom >= INT_MAX || columns_of(p, pass) >= kLimit) return false;
  const LaunchShape smallest = launch_shape(p, pass, 64, 32);  // the most tiles
  return p.groups <= 65535 && smallest.tiles_per_group() * p.groups < INT_MAX;
}

// A gather pass's destination, y for the forward and x for grad-input: its
// channels and (D, H, W) extents, and one sample's elements.
struct GatherDest {
  int64_t channels, extent[3];
  int64_t sample_numel() const { return channels * extent[0] * extent[1] * extent[2]; }
};

inline GatherDest gather_dest(const ConvTranspose3dParams& p, GatherPass pass) {
  const bool fwd = pass == GatherPass::Forward;
  GatherDest d{fwd ? p.out_channels : p.in_channels, {}};
  for (int a = 0; a < 3; ++a) d.extent[a] = fwd ? p.axis[a].out : p.axis[a].in;
  return d;
}

inline KernelArgs make_kernel_args(const ConvTranspose3dParams& p, const TensorCoreGemmOperands& ops,
                                   ScalarKind dtype, const LaunchShape& s) {
  KernelArgs args{};
  args.p = p;
  args.ops = ops;
  args.dest = ops.pass == GatherPass::Forward ? p.output : p.input;
  const GatherDest g = gather_dest(p, ops.pass);
  const int64_t row = g.extent[2] * g.channels, plane = g.extent[1] * row;
  args.partial = Strides5{g.sample_numel(), 1, plane, row, g.channels};
  args.mtiles = int(s.mtiles);
  args.ntiles = int(s.ntiles);
  for (int a = 0; a < 3; ++a) args.phases[a] = int(s.phases[a]);
  const Strides5& d = args.dest;
  const auto all_multiples = [&](int64_t m) {
    return ops.columns % m == 0 && d.n % m == 0 && d.d % m == 0 && d.h % m == 0 && d.w % m == 0;
  };
  const int64_t vec = tensor_core_channel_multiple(dtype);
  const int64_t element = 16 / vec;
  const uintptr_t address = reinterpret_cast<uintptr_t>(ops.dest);
  args.vector_store = d.c == 1 && all_multiples(vec) && address % 16 == 0;
  args.pair_store = d.c == 1 && all_multiples(2) && address % (2 * element) == 0;
  args.row_fastest = !(d.c < d.w);
  return args;
}

// f(scalar_t{}, index_t{}) with the kernel's storage and offset types.
template <typename F>
void dispatch_gemm_types(const LaunchConfig& cfg, F&& f) {
  dispatch_index(cfg.wide_index, [&](auto index) {
    switch (cfg.dtype) {
      case ScalarKind::Float16:
        f(__half{}, index);
        break;
      case ScalarKind::BFloat16:
        f(__nv_bfloat16{}, index);
        break;
      case ScalarKind::Float32:
        f(float{}, index);
        break;
      default:
        break;
    }
  });
}

}  // namespace tconv3d::cuda::igemm
