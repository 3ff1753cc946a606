// The CPU passes as tiled implicit GEMMs over a source's channels × taps
// (DESIGN §3; the geometry is index_math.h's GemmAxis, the same the CUDA
// tensor-core kernels walk): the forward one GEMM per stride phase,
// grad-input one strided-convolution GEMM, grad-weight the input times
// grad-input's gathered columns.  A task gathers the columns of a tile of
// GEMM rows into a buffer of about kTileElements (never the whole column
// matrix torch's own fallback allocates) and multiplies it through the CPU
// BLAS (at::mm_out).
//
// Why: the per-element sums of direct_gather.h, one scalar multiply-add a
// tap, ran 15-100x behind torch's CPU conv_transpose3d (fp32, 12³-24³
// layers of 3-64 channels, 2 cores; RESULTS.md, "CPU implicit-GEMM round").
//
// Numerics (DESIGN §2): fp16/bf16 widen to fp32 as they are gathered, every
// product and sum is fp32 (fp64 for fp64) and each result rounds once.
// Deterministic: tasks and grad-weight's partial sums are cut from the shape
// alone, never from the thread count, and the partials are added in order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "../index_math.h"
#include "../params.h"
#include "../scalar_convert.h"

namespace tconv3d::cpu {

// A task's gathered columns: K × rows ≤ kTileElements, but never fewer than
// kMinTileRows rows, so that a deep K still gives the BLAS a usable width
// (K past 16K elements: 512 channels × 27 taps and up).
constexpr int64_t kTileElements = int64_t(1) << 18;
constexpr int64_t kMinTileRows = 16, kMaxTileRows = 1024;

// One GEMM of a pass, per sample and group: dest[d][row] = Σ_{t, c}
// wm[d][t·C + c] · src[c][position(row, t)], rows and taps running D, H,
// W with W fastest.
struct TapGemm {
  GemmAxis axis[3];
  int64_t rows, taps;
};

inline TapGemm make_tap_gemm(const GemmAxis& d, const GemmAxis& h, const GemmAxis& w) {
  return {{d, h, w}, d.rows * h.rows * w.rows, d.taps * h.taps * w.taps};
}

inline int64_t tile_rows(int64_t k) {
  return std::clamp(kTileElements / std::max<int64_t>(k, 1), kMinTileRows, kMaxTileRows);
}

// Element offsets (strides d, h, w of `s`) of rows [row0, row0 + n) of `gemm`:
// per tap, the source position each row reads (-1 outside the source), and
// each row's destination (strides of `dst`).
inline void tile_offsets(const TapGemm& gemm, const Strides5& src, const Strides5& dst,
                         int64_t row0, int64_t n, std::vector<int64_t>& src_off,
                         std::vector<int64_t>& dst_off) {
  const GemmAxis(&a)[3] = gemm.axis;
  src_off.resize(size_t(gemm.taps * n));
  dst_off.resize(size_t(n));
  const int64_t src_stride[3] = {src.d, src.h, src.w}, dst_stride[3] = {dst.d, dst.h, dst.w};
  for (int64_t r = 0; r < n; ++r) {
    int64_t j[3];
    int64_t rest = row0 + r;
    j[2] = rest % a[2].rows;
    rest /= a[2].rows;
    j[1] = rest % a[1].rows;
    j[0] = rest / a[1].rows;
    int64_t out = 0;
    for (int x = 0; x < 3; ++x) out += (j[x] * a[x].dst_per_row + a[x].dst_origin) * dst_stride[x];
    dst_off[size_t(r)] = out;
    int64_t t = 0;
    for (int64_t td = 0; td < a[0].taps; ++td)
      for (int64_t th = 0; th < a[1].taps; ++th)
        for (int64_t tw = 0; tw < a[2].taps; ++tw, ++t) {
          const int64_t tap[3] = {td, th, tw};
          int64_t off = 0;
          for (int x = 0; x < 3 && off >= 0; ++x) {
            const int64_t s = j[x] * a[x].src_per_row + a[x].src_origin + tap[x] * a[x].src_per_tap;
            off = s < 0 || s >= a[x].src_extent ? -1 : off + s * src_stride[x];
          }
          src_off[size_t(t * n + r)] = off;
        }
  }
}

// A tile's gathered columns: K = taps · channels, ordered (tap, channel), for
// n rows, stored position-major ([n][K]) where the source's channels are its
// innermost axis (channels-last: each row's channels of a tap are one run)
// and channel-major ([K][n]) otherwise (NCDHW: each K row reads along the
// positions).  Zero outside the source.  `src` at the sample and the group's
// first channel.  Position-major only for runs of at least kRowRun channels
// a group: one or two channels a row cost more in loop overhead than the
// strided reads of channel-major (depthwise channels-last: 1.2-1.7x slower).
constexpr int64_t kRowRun = 4;
inline bool channels_innermost(const Strides5& s, int64_t channels) {
  return channels >= kRowRun && std::abs(s.c) < std::abs(s.w);
}

template <typename scalar_t>
void gather_columns(const scalar_t* src, int64_t channel_stride, int64_t channels, int64_t taps,
                    int64_t n, const std::vector<int64_t>& src_off, bool position_major,
                    acc_t<scalar_t>* cols) {
  using acc = acc_t<scalar_t>;
  const int64_t* __restrict off = src_off.data();
  if (position_major) {
    const int64_t k = taps * channels;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t t = 0; t < taps; ++t) {
        acc* __restrict out = cols + r * k + t * channels;
        const int64_t o = off[t * n + r];
        if (o < 0) {
          for (int64_t c = 0; c < channels; ++c) out[c] = acc(0);
        } else {
          const scalar_t* __restrict in = src + o;
          for (int64_t c = 0; c < channels; ++c) out[c] = to_acc(in[c * channel_stride]);
        }
      }
    return;
  }
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t c = 0; c < channels; ++c) {
      const scalar_t* __restrict base = src + c * channel_stride;
      const int64_t* __restrict tap_off = off + t * n;
      acc* __restrict out = cols + (t * channels + c) * n;
      for (int64_t r = 0; r < n; ++r) {
        const int64_t o = tap_off[r];
        out[r] = o < 0 ? acc(0) : to_acc(base[o]);
      }
    }
}

// A view of the first rows · cols elements of a flat buffer as a row-major matrix.
inline at::Tensor as_matrix(const at::Tensor& buffer, int64_t rows, int64_t cols) {
  return buffer.narrow(0, 0, rows * cols).view({rows, cols});
}

// The gathered columns as a [K][n] matrix, whichever way they are stored.
inline at::Tensor columns_kn(const at::Tensor& buffer, int64_t k, int64_t n, bool position_major) {
  return position_major ? as_matrix(buffer, n, k).t() : as_matrix(buffer, k, n);
}

// The weight as each group's GEMM operand wm[g][d][t·C + c] (accumulator
// type, C source channels a group): weight element (g·Cin/G + i, o, k) with
// (i, o) = (c, d) where the destination channels are the weight's second
// axis (forward: Cout/G), else (d, c) (grad-input), tap k_x = k_origin +
// t_x·k_per_tap along each axis.
template <typename scalar_t>
at::Tensor weight_matrix(const ConvTranspose3dParams& p, const scalar_t* w, const TapGemm& gemm,
                         bool dest_is_output) {
  using acc = acc_t<scalar_t>;
  const int64_t dest = dest_is_output ? p.out_per_group : p.in_per_group;
  const int64_t source = dest_is_output ? p.in_per_group : p.out_per_group;
  const int64_t dest_stride = dest_is_output ? p.weight.c : p.weight.n;
  const int64_t source_stride = dest_is_output ? p.weight.n : p.weight.c;
  at::Tensor wm = at::empty({p.groups, dest, gemm.taps * source},
                            at::TensorOptions().dtype(c10::CppTypeToScalarType<acc>::value));
  acc* out = wm.mutable_data_ptr<acc>();
  const GemmAxis(&a)[3] = gemm.axis;
  for (int64_t g = 0; g < p.groups; ++g)
    for (int64_t d = 0; d < dest; ++d)
      for (int64_t td = 0; td < a[0].taps; ++td)
        for (int64_t th = 0; th < a[1].taps; ++th)
          for (int64_t tw = 0; tw < a[2].taps; ++tw) {
            const scalar_t* base = w + g * p.in_per_group * p.weight.n + d * dest_stride +
                                   (a[0].k_origin + td * a[0].k_per_tap) * p.weight.d +
                                   (a[1].k_origin + th * a[1].k_per_tap) * p.weight.h +
                                   (a[2].k_origin + tw * a[2].k_per_tap) * p.weight.w;
            for (int64_t c = 0; c < source; ++c) *out++ = to_acc(base[c * source_stride]);
          }
  return wm;
}

// The GEMMs too small for a BLAS call to pay (depthwise: one channel of 27
// taps a group, where the call's dispatch cost the most of the layer), in a
// fixed order.  Matrices by pointer and element strides (row, column).
template <typename acc>
struct StridedMatrix {
  acc* data;
  int64_t row, col;
  acc& operator()(int64_t i, int64_t j) const { return data[i * row + j * col]; }
};
template <typename acc>
StridedMatrix<acc> strided(const at::Tensor& m) {
  return {m.data_ptr<acc>(), m.stride(0), m.stride(1)};
}
constexpr int64_t kSmallGemm = 1024;  // M · K below which small_mm runs

// out[M][N] = a[M][K] · b[K][N], or out += it: each output row an
// accumulation of b's rows, K in order (contiguous rows vectorise).
template <typename acc>
void small_mm(const StridedMatrix<acc>& out, const StridedMatrix<acc>& a,
              const StridedMatrix<acc>& b, int64_t m, int64_t k, int64_t n, bool accumulate) {
  const bool rows = out.col == 1 && b.col == 1;
  for (int64_t i = 0; i < m; ++i) {
    if (!accumulate) {
      for (int64_t j = 0; j < n; ++j) out(i, j) = acc(0);
    }
    for (int64_t kk = 0; kk < k; ++kk) {
      const acc w = a(i, kk);
      if (rows) {
        acc* __restrict o = &out(i, 0);
        const acc* __restrict from = &b(kk, 0);
        for (int64_t j = 0; j < n; ++j) o[j] += w * from[j];
      } else {
        for (int64_t j = 0; j < n; ++j) out(i, j) += w * b(kk, j);
      }
    }
  }
}

// out = a · b (or out += a · b) for [M][K] · [K][N] views, by the BLAS or,
// where M · K is below `small`, by small_mm.
template <typename acc>
void matmul(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate,
            int64_t small = kSmallGemm) {
  if (a.size(0) * a.size(1) < small) {
    small_mm(strided<acc>(out), strided<acc>(a), strided<acc>(b), a.size(0), a.size(1),
             b.size(1), accumulate);
  } else if (accumulate) {
    at::Tensor o = out;
    o.addmm_(a, b);
  } else {
    at::Tensor o = out;
    at::mm_out(o, a, b);
  }
}

// A tile's results plus bias[d], each rounded once into dst[to[r] +
// d·channel_stride], along the destination's innermost axis: where its
// channels are innermost, sums as [rows][pitch] (row r's channels a run),
// else as [channels][pitch] (channel d's rows a run); null sums: the bias
// alone.
template <typename scalar_t, typename acc>
void store_tile(const acc* __restrict sums, int64_t pitch, const acc* __restrict bias,
                int64_t rows, int64_t channels, const int64_t* __restrict to,
                int64_t channel_stride, bool channels_innermost, scalar_t* __restrict dst) {
  if (channels_innermost) {
    for (int64_t r = 0; r < rows; ++r) {
      const acc* __restrict row = sums == nullptr ? nullptr : sums + r * pitch;
      for (int64_t d = 0; d < channels; ++d) {
        const acc v = row == nullptr ? bias[d] : row[d] + bias[d];
        dst[to[r] + d * channel_stride] = from_acc<scalar_t>(v);
      }
    }
  } else {
    for (int64_t d = 0; d < channels; ++d) {
      const acc* __restrict channel = sums == nullptr ? nullptr : sums + d * pitch;
      for (int64_t r = 0; r < rows; ++r) {
        const acc v = channel == nullptr ? bias[d] : channel[r] + bias[d];
        dst[to[r] + d * channel_stride] = from_acc<scalar_t>(v);
      }
    }
  }
}

// Runs `gemms` (their weight matrices in `wm`, one per GEMM) for every sample
// and group: dest (channels Cd a group, strides `ds`) = wm · gathered source
// (channels Cs a group, strides `ss`) + bias.  A task is one tile of one
// GEMM's rows of one sample, for every group (the tile's offsets found once).
template <typename scalar_t>
void run_tap_gemms(const std::vector<TapGemm>& gemms, const std::vector<at::Tensor>& wm,
                   int64_t batch, int64_t groups, const scalar_t* src, const Strides5& ss,
                   int64_t cs, scalar_t* dst, const Strides5& ds, int64_t cd,
                   const scalar_t* bias, int64_t bias_stride) {
  using acc = acc_t<scalar_t>;
  const auto acc_type = c10::CppTypeToScalarType<acc>::value;
  const bool src_rows = channels_innermost(ss, cs), dst_rows = channels_innermost(ds, cd);
  // Task ranges: GEMM q owns tasks [first[q], first[q + 1]), batch · tiles.
  std::vector<int64_t> first(gemms.size() + 1, 0), rows_per_tile(gemms.size());
  int64_t buffer = 1, out_buffer = 1;
  for (size_t q = 0; q < gemms.size(); ++q) {
    rows_per_tile[q] = tile_rows(cs * gemms[q].taps);
    first[q + 1] = first[q] + batch * ceil_div(gemms[q].rows, rows_per_tile[q]);
    buffer = std::max(buffer, cs * gemms[q].taps * rows_per_tile[q]);
    out_buffer = std::max(out_buffer, cd * rows_per_tile[q]);
  }
  at::parallel_for(0, first.back(), 1, [&](int64_t begin, int64_t end) {
    const auto options = at::TensorOptions().dtype(acc_type);
    at::Tensor cols = at::empty({buffer}, options), prod = at::empty({out_buffer}, options);
    std::vector<int64_t> src_off, dst_off;
    std::vector<acc> bias_acc(size_t(cd), acc(0));
    for (int64_t task = begin; task < end; ++task) {
      const size_t q = size_t(std::upper_bound(first.begin(), first.end(), task) - first.begin() - 1);
      const TapGemm& gemm = gemms[q];
      const int64_t tiles = ceil_div(gemm.rows, rows_per_tile[q]);
      const int64_t n = (task - first[q]) / tiles, tile = (task - first[q]) % tiles;
      const int64_t row0 = tile * rows_per_tile[q];
      const int64_t rows = std::min(rows_per_tile[q], gemm.rows - row0);
      const int64_t k = cs * gemm.taps;
      tile_offsets(gemm, ss, ds, row0, rows, src_off, dst_off);
      // The product as [rows][cd] where the destination's channels are
      // innermost, so that each row's stores are one run; else [cd][rows].
      const at::Tensor out = dst_rows ? as_matrix(prod, rows, cd) : as_matrix(prod, cd, rows);
      for (int64_t g = 0; g < groups; ++g) {
        if (k > 0) {
          gather_columns(src + n * ss.n + g * cs * ss.c, ss.c, cs, gemm.taps, rows, src_off,
                         src_rows, cols.mutable_data_ptr<acc>());
          const at::Tensor a = columns_kn(cols, k, rows, src_rows), w = wm[q][g];
          if (dst_rows) {
            matmul<acc>(out, a.t(), w.t(), false);
          } else {
            matmul<acc>(out, w, a, false);
          }
        }
        for (int64_t d = 0; d < cd; ++d) {
          bias_acc[size_t(d)] = bias == nullptr ? acc(0) : to_acc(bias[(g * cd + d) * bias_stride]);
        }
        // A GEMM no tap reaches (a phase of the forward) stores the bias alone.
        store_tile(k > 0 ? out.const_data_ptr<acc>() : nullptr, dst_rows ? cd : rows,
                   bias_acc.data(), rows, cd, dst_off.data(), ds.c, dst_rows,
                   dst + n * ds.n + g * cd * ds.c);
      }
    }
  });
}

}  // namespace tconv3d::cpu
