// Index mathematics of 3-D transposed convolution, one spatial axis at a time.
//
// Shared verbatim by the CPU and CUDA kernels, so it holds no torch types and
// every function is __host__ __device__.  All of it follows from one relation:
// input position i, kernel tap k and output position o are linked by
//
//     o = i * stride - padding + k * dilation.
//
// The forward pass gathers, for each o, the (k, i) pairs that satisfy it.  Those
// pairs form an arithmetic progression whose start depends only on the phase
// o mod stride, so the kernels walk them with no divisibility test per tap.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define TCONV3D_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TCONV3D_HOST_DEVICE inline
#endif

namespace tconv3d {

TCONV3D_HOST_DEVICE int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

TCONV3D_HOST_DEVICE int64_t ceil_div(int64_t a, int64_t b) {  // b > 0
  return -floor_div(-a, b);
}

TCONV3D_HOST_DEVICE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
TCONV3D_HOST_DEVICE int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

TCONV3D_HOST_DEVICE int64_t gcd64(int64_t a, int64_t b) {
  while (b != 0) {
    const int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// O = (I - 1)·s - 2p + d·(K - 1) + op + 1
TCONV3D_HOST_DEVICE int64_t transposed_output_extent(int64_t in, int64_t kernel, int64_t stride,
                                                     int64_t padding, int64_t dilation,
                                                     int64_t output_padding) {
  return (in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1;
}

// One spatial axis of the problem, with the number theory of the phase
// decomposition solved once on the host.
//
// Tap k reaches output o iff (o + p - k·d) ≡ 0 (mod s).  With g = gcd(s, d),
// s' = s/g and d' = d/g this has solutions iff g | (o + p), and then
// k ≡ ((o + p)/g) · d'^{-1} (mod s').  Consecutive valid taps are s' apart and
// their input positions d' apart.
struct Axis {
  int64_t in;        // I
  int64_t out;       // O
  int64_t kernel;    // K
  int64_t stride;    // s
  int64_t padding;   // p
  int64_t dilation;  // d
  int64_t gcd;       // g = gcd(s, d)
  int64_t tap_step;  // s' = s / g: distance between taps of one phase
  int64_t in_step;   // d' = d / g: distance between their input positions
  int64_t inv_in_step;  // d'^{-1} mod s'
};

TCONV3D_HOST_DEVICE Axis make_axis(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                                   int64_t padding, int64_t dilation) {
  Axis a{};
  a.in = in;
  a.out = out;
  a.kernel = kernel;
  a.stride = stride;
  a.padding = padding;
  a.dilation = dilation;
  a.gcd = gcd64(stride, dilation);
  a.tap_step = stride / a.gcd;
  a.in_step = dilation / a.gcd;
  a.inv_in_step = 0;
  // s' is small (a stride), so a search is cheaper than extended Euclid to read.
  for (int64_t v = 0; v < a.tap_step; ++v) {
    if ((a.in_step * v) % a.tap_step == 1 % a.tap_step) {
      a.inv_in_step = v;
      break;
    }
  }
  return a;
}

// A run of index pairs along one axis: (a + m·da, b + m·db) for m in [0, count).
// Which indices a and b are depends on the function that made the run.
struct Run {
  int64_t a, da;
  int64_t b, db;
  int64_t count;
};

// Smallest kernel tap that reaches outputs of phase r = o mod s, or -1 when
// the phase receives no tap at all (possible when gcd(s, d) > 1).
TCONV3D_HOST_DEVICE int64_t phase_first_tap(const Axis& ax, int64_t phase) {
  const int64_t shifted = phase + ax.padding;  // ≥ 0
  if (shifted % ax.gcd != 0) return -1;
  return ((shifted / ax.gcd) % ax.tap_step) * ax.inv_in_step % ax.tap_step;
}

// Forward: the taps that reach output position o.  a = kernel tap k (step s'),
// b = input position i (step -d').  Only pairs with 0 ≤ k < K and 0 ≤ i < I.
TCONV3D_HOST_DEVICE Run forward_taps(const Axis& ax, int64_t o) {
  Run r{0, ax.tap_step, 0, -ax.in_step, 0};
  const int64_t k0 = phase_first_tap(ax, o % ax.stride);
  if (k0 < 0 || k0 >= ax.kernel) return r;
  const int64_t i0 = (o + ax.padding - k0 * ax.dilation) / ax.stride;  // exact
  // m ranges over taps with k < K and 0 ≤ i0 - m·d' < I.
  const int64_t m_lo = max64(0, ceil_div(i0 - ax.in + 1, ax.in_step));
  const int64_t m_hi = min64((ax.kernel - 1 - k0) / ax.tap_step, floor_div(i0, ax.in_step));
  if (m_hi < m_lo) return r;
  r.a = k0 + m_lo * ax.tap_step;
  r.b = i0 - m_lo * ax.in_step;
  r.count = m_hi - m_lo + 1;
  return r;
}

// Grad-input: the taps through which input position i reached the output.
// a = kernel tap k (step 1), b = output position o (step d).
TCONV3D_HOST_DEVICE Run grad_input_taps(const Axis& ax, int64_t i) {
  const int64_t base = i * ax.stride - ax.padding;  // o = base + k·d
  const int64_t k_lo = max64(0, ceil_div(-base, ax.dilation));
  const int64_t k_hi = min64(ax.kernel - 1, floor_div(ax.out - 1 - base, ax.dilation));
  Run r{k_lo, 1, base + k_lo * ax.dilation, ax.dilation, 0};
  r.count = k_hi >= k_lo ? k_hi - k_lo + 1 : 0;
  return r;
}

// Grad-weight: the input positions that tap k connects to the output.
// a = input position i (step 1), b = output position o (step s).
TCONV3D_HOST_DEVICE Run grad_weight_positions(const Axis& ax, int64_t k) {
  const int64_t shift = k * ax.dilation - ax.padding;  // o = i·s + shift
  const int64_t i_lo = max64(0, ceil_div(-shift, ax.stride));
  const int64_t i_hi = min64(ax.in - 1, floor_div(ax.out - 1 - shift, ax.stride));
  Run r{i_lo, 1, i_lo * ax.stride + shift, ax.stride, 0};
  r.count = i_hi >= i_lo ? i_hi - i_lo + 1 : 0;
  return r;
}

// Input positions N·D·H·W: the rows of the GEMMs over input positions, the
// reduction of the grad-weight ones.
TCONV3D_HOST_DEVICE int64_t input_positions(int64_t batch, const Axis (&axis)[3]) {
  return batch * axis[0].in * axis[1].in * axis[2].in;
}

// Every output position takes exactly one tap (kernel == stride, no
// dilation, padding or output padding along every axis: 3-D U-Net
// decoders): the forward is one GEMM over input positions × (tap, co).
TCONV3D_HOST_DEVICE bool one_tap_per_output(const Axis (&axis)[3]) {
  for (int a = 0; a < 3; ++a) {
    const Axis& ax = axis[a];
    if (ax.kernel != ax.stride || ax.dilation != 1 || ax.padding != 0 ||
        ax.out != ax.in * ax.stride) {
      return false;
    }
  }
  return true;
}

// Position r of a flattened (n, d, h, w) grid of input positions, W fastest:
// its coordinates i[0..2] (D, H, W) and, returned, its sample n.  The GEMMs
// whose rows are input positions decode them here.
TCONV3D_HOST_DEVICE int64_t unflatten_input_position(const Axis (&axis)[3], int64_t r,
                                                     int64_t (&i)[3]) {
  i[2] = r % axis[2].in;
  r /= axis[2].in;
  i[1] = r % axis[1].in;
  r /= axis[1].in;
  i[0] = r % axis[0].in;
  return r / axis[0].in;
}

// One spatial axis of an implicit GEMM that gathers rows from a source tensor.
// GEMM row j (0 ≤ j < rows) and tap t (0 ≤ t < taps) read source position
//
//     src = j·src_per_row + src_origin + t·src_per_tap   (nothing where src ∉ [0, src_extent))
//
// through weight tap k = k_origin + t·k_per_tap, and the row's sum lands at
// destination position dst = j·dst_per_row + dst_origin.  The tensor-core
// kernels run the forward (one GEMM per stride phase) and grad-input as such
// GEMMs; the functions below are the only places their geometry is derived.
struct GemmAxis {
  int64_t rows, taps;
  int64_t src_extent, src_per_row, src_origin, src_per_tap;
  int64_t k_origin, k_per_tap;
  int64_t dst_per_row, dst_origin;
};

// Forward, phase r = o mod s: outputs o = r + s·j receive taps k = k0 + t·s'
// from inputs i = j + base − t·d' (see phase_first_tap).  A phase that no tap
// reaches has taps = 0: its outputs are bias only.
TCONV3D_HOST_DEVICE GemmAxis forward_phase_axis(const Axis& ax, int64_t r) {
  GemmAxis g{};
  g.rows = r < ax.out ? (ax.out - 1 - r) / ax.stride + 1 : 0;
  g.src_extent = ax.in;
  g.src_per_row = 1;
  g.src_per_tap = -ax.in_step;
  g.k_per_tap = ax.tap_step;
  g.dst_per_row = ax.stride;
  g.dst_origin = r;
  const int64_t k0 = phase_first_tap(ax, r);
  if (k0 >= 0 && k0 < ax.kernel) {
    g.taps = (ax.kernel - 1 - k0) / ax.tap_step + 1;
    g.k_origin = k0;
    g.src_origin = (r + ax.padding - k0 * ax.dilation) / ax.stride;  // exact
  }
  return g;
}

// Grad-input: gx at input position i gathers grad_output at o = i·s − p + k·d
// over every tap k (an ordinary strided convolution).
TCONV3D_HOST_DEVICE GemmAxis grad_input_axis(const Axis& ax) {
  GemmAxis g{};
  g.rows = ax.in;
  g.taps = ax.kernel;
  g.src_extent = ax.out;
  g.src_per_row = ax.stride;
  g.src_origin = -ax.padding;
  g.src_per_tap = ax.dilation;
  g.k_origin = 0;
  g.k_per_tap = 1;
  g.dst_per_row = 1;
  g.dst_origin = 0;
  return g;
}

// The forward's input box (forward_taps_gemm.cu).  A tile of L output
// positions along an axis, L a multiple of s, starts at T·L − shift
// (0 ≤ shift ≤ p, so P = p − shift ≥ 0 and every output's (o + p) is
// T·L + P + u, u in [0, L)).  The inputs its taps reach (forward_taps) lie in
//
//     T·L/s − lift + [0, extent),   lift = −⌈(P − (K−1)d)/s⌉,
//                                   extent = ⌊(L − 1 + P)/s⌋ + lift + 1,
//
// and ⌈(O + shift)/L⌉ tiles cover the axis.
struct ForwardBoxAxis {
  int64_t tile;  // L
  int64_t shift;
  int64_t lift;
  int64_t extent;
  int64_t tiles;
};

TCONV3D_HOST_DEVICE ForwardBoxAxis forward_box_axis(const Axis& ax, int64_t tile, int64_t shift) {
  const int64_t p = ax.padding - shift;
  ForwardBoxAxis b{};
  b.tile = tile;
  b.shift = shift;
  b.lift = -ceil_div(p - (ax.kernel - 1) * ax.dilation, ax.stride);
  b.extent = floor_div(tile - 1 + p, ax.stride) + b.lift + 1;
  b.tiles = ceil_div(ax.out + shift, tile);
  return b;
}

// Output u of a tile (o = T·L − shift + u) along the axis: its first tap, the
// box position that tap reads (T·L/s − lift + box), and how many taps reach
// it (forward_taps without the clipping to [0, I): the box's positions
// outside x are zeros) — each further tap s' taps on and d' positions back.
struct ForwardBoxTaps {
  int64_t tap, box, count;
};

TCONV3D_HOST_DEVICE ForwardBoxTaps forward_box_taps(const Axis& ax, const ForwardBoxAxis& b,
                                                    int64_t u) {
  const int64_t v = ax.padding - b.shift + u;  // (o + p) − T·L
  const int64_t k0 = phase_first_tap(ax, (u - b.shift + ax.stride) % ax.stride);
  if (k0 < 0 || k0 >= ax.kernel) return {0, 0, 0};
  return {k0, (v - k0 * ax.dilation) / ax.stride + b.lift,  // exact
          (ax.kernel - 1 - k0) / ax.tap_step + 1};
}

// First input position of tile t's box.
TCONV3D_HOST_DEVICE int64_t forward_box_origin(const Axis& ax, const ForwardBoxAxis& b,
                                               int64_t t) {
  return t * b.tile / ax.stride - b.lift;
}

}  // namespace tconv3d
