// Per-element sums of the direct (gather) formulation: the CUDA fallback
// kernels'.  Each function produces one element of
// a result from its valid taps only (see index_math.h); the caller decides the
// parallel decomposition, the accumulation across threads and the store.
#pragma once

#include "index_math.h"
#include "params.h"
#include "scalar_convert.h"

namespace tconv3d {

struct Index5 {
  int64_t n, c, d, h, w;
};

// Logical index of the element at position `linear` of a dense NCDHW
// enumeration of logical sizes (N, C, D, H, W).
template <typename index_t>
TCONV3D_HOST_DEVICE Index5 unflatten(index_t linear, index_t C, index_t D, index_t H, index_t W) {
  Index5 idx;
  idx.w = linear % W;
  linear /= W;
  idx.h = linear % H;
  linear /= H;
  idx.d = linear % D;
  linear /= D;
  idx.c = linear % C;
  idx.n = linear / C;
  return idx;
}

template <typename index_t>
TCONV3D_HOST_DEVICE index_t offset_of(const Strides5& s, const Index5& i) {
  return index_t(i.n) * index_t(s.n) + index_t(i.c) * index_t(s.c) + index_t(i.d) * index_t(s.d) +
         index_t(i.h) * index_t(s.h) + index_t(i.w) * index_t(s.w);
}

// The valid taps of one position along each axis.  Computed once per spatial
// position and shared by all of its channels: the index arithmetic (64-bit
// divisions) costs more than a channel's few multiply-adds on small layers.
struct Taps3 {
  Run d, h, w;
  TCONV3D_HOST_DEVICE bool empty() const { return d.count == 0 || h.count == 0 || w.count == 0; }
};

TCONV3D_HOST_DEVICE Taps3 forward_taps3(const ConvTranspose3dParams& p, const Index5& out) {
  return {forward_taps(p.axis[0], out.d), forward_taps(p.axis[1], out.h),
          forward_taps(p.axis[2], out.w)};
}

TCONV3D_HOST_DEVICE Taps3 grad_input_taps3(const ConvTranspose3dParams& p, const Index5& in) {
  return {grad_input_taps(p.axis[0], in.d), grad_input_taps(p.axis[1], in.h),
          grad_input_taps(p.axis[2], in.w)};
}

// acc += Σ_{valid taps} src[b-side position] · w[a-side tap] of one source
// channel and one weight column: src and w already at their sample and
// channels, both walked by the runs of `taps`.
template <typename scalar_t, typename index_t>
TCONV3D_HOST_DEVICE void add_tap_runs(acc_t<scalar_t>& acc, const scalar_t* src, const Strides5& ss,
                                      const scalar_t* w, const Strides5& ws, const Taps3& taps) {
  const Run &rd = taps.d, &rh = taps.h, &rw = taps.w;
  const index_t s_step_w = index_t(rw.db * ss.w), w_step_w = index_t(rw.da * ws.w);
  for (int64_t md = 0; md < rd.count; ++md) {
    const scalar_t* sd = src + index_t(rd.b + md * rd.db) * index_t(ss.d);
    const scalar_t* wd = w + index_t(rd.a + md * rd.da) * index_t(ws.d);
    for (int64_t mh = 0; mh < rh.count; ++mh) {
      const scalar_t* sp = sd + index_t(rh.b + mh * rh.db) * index_t(ss.h) + index_t(rw.b) * index_t(ss.w);
      const scalar_t* wp = wd + index_t(rh.a + mh * rh.da) * index_t(ws.h) + index_t(rw.a) * index_t(ws.w);
      for (int64_t mw = 0; mw < rw.count; ++mw) {
        acc += to_acc(*sp) * to_acc(*wp);
        sp += s_step_w;
        wp += w_step_w;
      }
    }
  }
}

// y[n, co, o] without bias: Σ_{ci ∈ group(co)} Σ_{valid taps} x[n, ci, i] · w[ci, co_local, k],
// with `taps` = forward_taps3(p, out).
template <typename scalar_t, typename index_t>
TCONV3D_HOST_DEVICE acc_t<scalar_t> forward_sum(const ConvTranspose3dParams& p, const scalar_t* x,
                                                const scalar_t* w, const Index5& out,
                                                const Taps3& taps) {
  acc_t<scalar_t> acc = 0;
  if (taps.empty()) return acc;
  const index_t group = index_t(out.c) / index_t(p.out_per_group);
  const index_t co_local = index_t(out.c) - group * index_t(p.out_per_group);
  const Strides5 xs = p.input, ws = p.weight;
  for (index_t ci_local = 0; ci_local < p.in_per_group; ++ci_local) {
    const index_t ci = group * index_t(p.in_per_group) + ci_local;
    add_tap_runs<scalar_t, index_t>(acc, x + index_t(out.n) * index_t(xs.n) + ci * index_t(xs.c), xs,
                                    w + ci * index_t(ws.n) + co_local * index_t(ws.c), ws, taps);
  }
  return acc;
}

// grad_x[n, ci, i] = Σ_{co ∈ group(ci)} Σ_{valid taps} gy[n, co, i·s − p + k·d] · w[ci, co_local, k].
// with `taps` = grad_input_taps3(p, in).
template <typename scalar_t, typename index_t>
TCONV3D_HOST_DEVICE acc_t<scalar_t> grad_input_sum(const ConvTranspose3dParams& p,
                                                   const scalar_t* grad_out, const scalar_t* w,
                                                   const Index5& in, const Taps3& taps) {
  acc_t<scalar_t> acc = 0;
  if (taps.empty()) return acc;
  const index_t group = index_t(in.c) / index_t(p.in_per_group);
  const Strides5 gs = p.output, ws = p.weight;
  for (index_t co_local = 0; co_local < p.out_per_group; ++co_local) {
    const index_t co = group * index_t(p.out_per_group) + co_local;
    add_tap_runs<scalar_t, index_t>(acc, grad_out + index_t(in.n) * index_t(gs.n) + co * index_t(gs.c),
                                    gs, w + index_t(in.c) * index_t(ws.n) + co_local * index_t(ws.c),
                                    ws, taps);
  }
  return acc;
}

// The reduction behind grad_w[ci, co_local, k] runs over rows (n, md, mh) of
// the valid (input, output) position pairs for tap k, each row a contiguous
// run along W.  Splitting the rows, never the elements of a row, keeps every
// partial sum in a fixed order.
struct GradWeightRows {
  Run d, h, w;
  int64_t count;  // N · d.count · h.count
};

TCONV3D_HOST_DEVICE GradWeightRows grad_weight_rows(const ConvTranspose3dParams& p,
                                                    const Index5& k) {
  GradWeightRows r;
  r.d = grad_weight_positions(p.axis[0], k.d);
  r.h = grad_weight_positions(p.axis[1], k.h);
  r.w = grad_weight_positions(p.axis[2], k.w);
  r.count = r.w.count == 0 ? 0 : p.batch * r.d.count * r.h.count;
  return r;
}

// Σ over rows q = row_begin, row_begin + row_step, … < row_end of
// Σ_w x[n, ci, i] · gy[n, co, o].  `k` holds (ci, co_local, kd, kh, kw).
template <typename scalar_t, typename index_t>
TCONV3D_HOST_DEVICE acc_t<scalar_t> grad_weight_sum(const ConvTranspose3dParams& p,
                                                    const scalar_t* x, const scalar_t* grad_out,
                                                    const Index5& k, const GradWeightRows& rows,
                                                    int64_t row_begin, int64_t row_end,
                                                    int64_t row_step) {
  acc_t<scalar_t> acc = 0;
  const index_t group = k.n / p.in_per_group;
  const index_t co = group * index_t(p.out_per_group) + index_t(k.c);
  const Strides5 xs = p.input, gs = p.output;
  const index_t x_step_w = index_t(xs.w), g_step_w = index_t(rows.w.db * gs.w);
  for (int64_t q = row_begin; q < row_end; q += row_step) {
    const int64_t mh = q % rows.h.count;
    const int64_t md = (q / rows.h.count) % rows.d.count;
    const int64_t n = q / (rows.h.count * rows.d.count);
    const scalar_t* xp = x + index_t(n) * index_t(xs.n) + index_t(k.n) * index_t(xs.c) +
                         index_t(rows.d.a + md) * index_t(xs.d) + index_t(rows.h.a + mh) * index_t(xs.h) +
                         index_t(rows.w.a) * index_t(xs.w);
    const scalar_t* gp = grad_out + index_t(n) * index_t(gs.n) + co * index_t(gs.c) +
                         index_t(rows.d.b + md * rows.d.db) * index_t(gs.d) +
                         index_t(rows.h.b + mh * rows.h.db) * index_t(gs.h) +
                         index_t(rows.w.b) * index_t(gs.w);
    acc_t<scalar_t> row = 0;  // two-level sum: error grows with row length + rows, not their product
    for (int64_t mw = 0; mw < rows.w.count; ++mw) {
      row += to_acc(*xp) * to_acc(*gp);
      xp += x_step_w;
      gp += g_step_w;
    }
    acc += row;
  }
  return acc;
}

}  // namespace tconv3d
