// Forward pass as an implicit GEMM on tensor cores, one GEMM per stride phase
// and group (DESIGN.md §3), all of them in one launch.
//
// Phase (rd, rh, rw), r = o mod s per axis: the outputs o = r + s·j of the
// phase receive exactly the taps k = k0(r) + m·s' (m = 0 … T−1) from the input
// positions i = j + base(r) − m·d', base(r) = (r + p − k0·d)/s (exact).  So,
// for group g:
//
//   A[row, col] = x[n, g·Cig + ci, i(j, tap)]   (0 where i is outside [0, I))
//   B[col, co]  = w[g·Cig + ci, co, k(tap)]
//   C[row, co]  = y[n, g·Cog + co, o(j)] − bias[g·Cog + co]
//
// with row = (n, jd, jh, jw) (jw fastest), col = (tap, ci) (ci fastest, tap =
// (md, mh, mw), mw fastest).  A phase with no taps has K = 0 and writes bias.
//
// Tiling: block tile BM = 128 rows × BN = 64 output channels, BK = 32 (16-bit)
// or 16 (TF32) along K; 256 threads = 8 warps in a 4 × 2 grid, each warp a
// 32 × 32 sub-tile of 2 × 2 WMMA fragments.  A is staged in shared memory as
// [BM][BK + pad] (row-major m × k), B as [BN][BK + pad] (i.e. column-major
// k × n), double-buffered; the next K-chunk is loaded from global memory into
// registers while the tensor cores consume the current one (one barrier per
// chunk).  Global loads never divide: every thread owns fixed rows (their
// (n, j) decomposition is done once per block) and walks its K columns with a
// cursor that carries (ci, tap) and the matching offset incrementally.
//
// Grid: x = m-tile · n-tiles + n-tile (the n-tiles of one m-tile are adjacent,
// so the A tile they share is fresh in L2), y = group · phases + phase.
// m-tiles are counted for the largest phase (phase 0); blocks beyond a
// smaller phase's extent exit at once.
//
// Epilogue: accumulators → shared memory (fp32, in the orientation the store
// needs) → + bias (fp32) → one rounding → y at p.output strides; channels-last
// outputs are written channel-fastest, NCDHW outputs row (W) fastest.
#include "forward_implicit_gemm.h"

#include <climits>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "../index_math.h"
#include "../scalar_convert.h"
#include "dispatch.cuh"

namespace tconv3d::cuda {
namespace igemm {

constexpr int kTh = 256;  // threads per block
constexpr int kBM = 128;  // rows (output voxels of one phase) per block
constexpr int kBN = 64;   // output channels per block
constexpr int kWarpsM = 4, kWarpsN = 2;
static_assert(kWarpsM * 32 == kBM && kWarpsN * 32 == kBN && kWarpsM * kWarpsN * 32 == kTh,
              "8 warps of 32 x 32");
constexpr int kFar = INT_MIN / 2;  // input position of rows past M: never in bounds

// A-tile load modes.
constexpr int kAModeRows = 0;    // lanes along rows (m): NCDHW-like inputs, W contiguous
constexpr int kAModeCols = 1;    // lanes along K (ci): channels-last-like inputs, scalar loads
constexpr int kAModeColsV = 2;   // as kAModeCols with 16-byte vector loads (ci contiguous, aligned)

template <typename scalar_t>
struct Cfg;
template <>
struct Cfg<__half> {
  using bits_t = uint16_t;
  static constexpr int BK = 32;
  static constexpr int WK = 16;
};
template <>
struct Cfg<__nv_bfloat16> {
  using bits_t = uint16_t;
  static constexpr int BK = 32;
  static constexpr int WK = 16;
};
template <>
struct Cfg<float> {
  using bits_t = float;
  static constexpr int BK = 16;
  static constexpr int WK = 8;
};

template <typename scalar_t, int AMODE>
struct Tile {
  using bits_t = typename Cfg<scalar_t>::bits_t;
  static constexpr int BK = Cfg<scalar_t>::BK;
  static constexpr int WK = Cfg<scalar_t>::WK;
  static constexpr int ES = int(sizeof(scalar_t));  // 2 or 4 bytes
  static constexpr int VEC = 16 / ES;               // elements per 16 bytes
  static constexpr int LDA = BK + VEC;              // smem A: [BM][LDA], element (m, k)
  static constexpr int LDB = BK + VEC;              // smem B: [BN][LDB], element (k, n) at n·LDB + k
  static constexpr int A_STAGE = kBM * LDA;         // elements
  static constexpr int B_STAGE = kBN * LDB;
  static constexpr int STAGE_BYTES = (A_STAGE + B_STAGE) * ES;
  static constexpr int LDC_ROW = kBN + 4;  // C as [BM][LDC_ROW] (channels-last epilogue)
  static constexpr int LDC_COL = kBM + 4;  // C as [BN][LDC_COL] (NCDHW epilogue)
  static constexpr int C_BYTES =
      (kBM * LDC_ROW > kBN * LDC_COL ? kBM * LDC_ROW : kBN * LDC_COL) * 4;
  static constexpr int SMEM_BYTES = 2 * STAGE_BYTES > C_BYTES ? 2 * STAGE_BYTES : C_BYTES;

  // A: each thread loads A_ROWS rows × A_RUN consecutive K columns per chunk.
  static constexpr int A_RUN = AMODE == kAModeRows ? BK / 2 : VEC;
  static constexpr int A_ROWS = kBM * BK / (kTh * A_RUN);
  static constexpr int A_WORDS_PER_ROW = A_RUN * ES / 4;
  static constexpr int A_WORDS = A_ROWS * A_WORDS_PER_ROW;
  // B: each thread loads one output channel × B_RUN consecutive K rows.
  static constexpr int B_RUN = kBN * BK / kTh;
  static constexpr int B_WORDS = B_RUN * ES / 4;
  // Epilogue: elements per thread.
  static constexpr int C_PER_THREAD = kBM * kBN / kTh;

  static_assert(kTh == kBM * 2, "row mode: two K halves per row");
  static_assert(A_ROWS * A_RUN * kTh == kBM * BK, "A tile coverage");
  static_assert(A_RUN * ES % 16 == 0 && B_RUN * ES == 16, "16-byte smem stores");
  static_assert(BK % WK == 0 && BK % VEC == 0, "chunk shape");

  TCONV3D_HOST_DEVICE static int a_row(int tid, int q) {
    if (AMODE == kAModeRows) return tid % kBM;
    return tid / (BK / VEC) + q * (kTh * VEC / BK);
  }
  TCONV3D_HOST_DEVICE static int a_kstart(int tid) {
    if (AMODE == kAModeRows) return (tid / kBM) * A_RUN;
    return (tid % (BK / VEC)) * VEC;
  }
  TCONV3D_HOST_DEVICE static int b_col(int tid) { return tid % kBN; }
  TCONV3D_HOST_DEVICE static int b_kstart(int tid) { return (tid / kBN) * B_RUN; }
};

// (row, channel) of the q-th element a thread stores in the epilogue.
// channel_fastest: consecutive threads take consecutive output channels
// (contiguous in NDHWC); otherwise consecutive rows (consecutive jw).
struct RowCol {
  int m, co;
};
TCONV3D_HOST_DEVICE RowCol epilogue_coord(int tid, int q, bool channel_fastest) {
  if (channel_fastest) return {tid / kBN + q * (kTh / kBN), tid % kBN};
  return {tid % kBM, tid / kBM + q * (kTh / kBM)};
}

// ---------------------------------------------------------------------------
// Phase decomposition (host and device).

struct PhaseAxis {
  int J;       // outputs of the phase along this axis: o = r + s·j, j < J
  int taps;    // T: taps reaching them, k = k0 + m·s', m < T (0: none)
  int k0;      // first tap
  int base;    // input position of tap m = 0 for j = 0: i = j + base − m·d'
  int r;       // the phase
};

TCONV3D_HOST_DEVICE PhaseAxis phase_axis(const Axis& ax, int64_t r) {
  PhaseAxis q{};
  q.r = int(r);
  q.J = r < ax.out ? int((ax.out - 1 - r) / ax.stride + 1) : 0;
  const int64_t k0 = phase_first_tap(ax, r);
  if (k0 >= 0 && k0 < ax.kernel) {
    q.k0 = int(k0);
    q.taps = int((ax.kernel - 1 - k0) / ax.tap_step + 1);
    q.base = int((r + ax.padding - k0 * ax.dilation) / ax.stride);  // exact division
  }
  return q;
}

// Block-uniform walk of the K dimension: per-channel and per-tap offset steps.
template <typename index_t>
struct Stepper {
  using uoff_t = std::make_unsigned_t<index_t>;
  int cig, tw, th;
  uoff_t c_step, w_step, h_step, d_step;  // offset change per ci, per tap step in w/h/d
  int pw, ph, pd;                         // input-position change per tap step (A only)
};

// A thread's position in K: column kk = tap·Cig + ci, tap = (md·Th + mh)·Tw + mw.
template <typename index_t>
struct Cursor {
  using uoff_t = std::make_unsigned_t<index_t>;
  int kk, ci, mw, mh, md;
  uoff_t off;      // ci·c_step + mw·w_step + mh·h_step + md·d_step (mod 2^bits)
  int dw, dh, dd;  // mw·pw, mh·ph, md·pd
};

template <typename index_t>
TCONV3D_HOST_DEVICE Cursor<index_t> cursor_at(const Stepper<index_t>& s, int kk) {
  using uoff_t = std::make_unsigned_t<index_t>;
  Cursor<index_t> c{};
  c.kk = kk;
  if (s.tw <= 0 || s.th <= 0) return c;  // no taps: never dereferenced
  const int tap = kk / s.cig;
  c.ci = kk - tap * s.cig;
  c.mw = tap % s.tw;
  const int t = tap / s.tw;
  c.mh = t % s.th;
  c.md = t / s.th;
  c.off = uoff_t(c.ci) * s.c_step + uoff_t(c.mw) * s.w_step + uoff_t(c.mh) * s.h_step +
          uoff_t(c.md) * s.d_step;
  c.dw = c.mw * s.pw;
  c.dh = c.mh * s.ph;
  c.dd = c.md * s.pd;
  return c;
}

template <typename index_t>
TCONV3D_HOST_DEVICE void next_tap(Cursor<index_t>& c, const Stepper<index_t>& s) {
  using uoff_t = std::make_unsigned_t<index_t>;
  ++c.mw;
  c.off += s.w_step;
  c.dw += s.pw;
  if (c.mw == s.tw) {
    c.mw = 0;
    c.off -= uoff_t(s.tw) * s.w_step;
    c.dw = 0;
    ++c.mh;
    c.off += s.h_step;
    c.dh += s.ph;
    if (c.mh == s.th) {
      c.mh = 0;
      c.off -= uoff_t(s.th) * s.h_step;
      c.dh = 0;
      ++c.md;
      c.off += s.d_step;
      c.dd += s.pd;
    }
  }
}

// Moves the cursor one column on.
template <typename index_t>
TCONV3D_HOST_DEVICE void next_col(Cursor<index_t>& c, const Stepper<index_t>& s) {
  using uoff_t = std::make_unsigned_t<index_t>;
  ++c.kk;
  ++c.ci;
  c.off += s.c_step;
  if (c.ci == s.cig) {
    c.ci = 0;
    c.off -= uoff_t(s.cig) * s.c_step;
    next_tap(c, s);
  }
}

// Moves the cursor n ≥ 0 columns on (past the end of K is allowed: callers mask kk < K).
template <typename index_t>
TCONV3D_HOST_DEVICE void advance(Cursor<index_t>& c, const Stepper<index_t>& s, int n) {
  using uoff_t = std::make_unsigned_t<index_t>;
  c.kk += n;
  c.ci += n;
  c.off += uoff_t(n) * s.c_step;
  while (c.ci >= s.cig) {
    c.ci -= s.cig;
    c.off -= uoff_t(s.cig) * s.c_step;
    next_tap(c, s);
  }
}

// Everything a block needs about its tile, computed from the Axis structs.
template <typename index_t>
struct BlockCtx {
  using uoff_t = std::make_unsigned_t<index_t>;
  bool active;
  PhaseAxis ax[3];
  int in[3];    // input extents I
  int64_t M;    // rows of this phase: N·Jd·Jh·Jw
  int K;        // Cig · Td·Th·Tw
  int64_t m0;   // first row of the tile
  int n0;       // first output channel (within the group) of the tile
  int group;
  int cig, cog;
  uoff_t x_base;        // g·Cig·xs.c
  uoff_t w_base;        // g·Cig·ws.n + k0·(ws.d, ws.h, ws.w)
  Stepper<index_t> sa;  // A walk
  Stepper<index_t> sb;  // B walk
};

TCONV3D_HOST_DEVICE int64_t phase_count(const ConvTranspose3dParams& p) {
  return p.axis[0].stride * p.axis[1].stride * p.axis[2].stride;
}

// Rows of the largest phase (phase 0 along every axis).
TCONV3D_HOST_DEVICE int64_t max_phase_rows(const ConvTranspose3dParams& p) {
  int64_t rows = p.batch;
  for (int a = 0; a < 3; ++a) rows *= ceil_div(p.axis[a].out, p.axis[a].stride);
  return rows;
}

template <typename index_t>
TCONV3D_HOST_DEVICE BlockCtx<index_t> block_ctx(const ConvTranspose3dParams& p, int64_t bx,
                                                int64_t by, int ntiles) {
  using uoff_t = std::make_unsigned_t<index_t>;
  BlockCtx<index_t> b{};
  const int64_t nph = phase_count(p);
  const int64_t ph = by % nph;
  b.group = int(by / nph);
  const int64_t sw = p.axis[2].stride, sh = p.axis[1].stride;
  const int64_t r[3] = {ph / (sw * sh), (ph / sw) % sh, ph % sw};
  b.M = p.batch;
  int taps = 1;
  for (int a = 0; a < 3; ++a) {
    b.ax[a] = phase_axis(p.axis[a], r[a]);
    b.in[a] = int(p.axis[a].in);
    b.M *= b.ax[a].J;
    taps *= b.ax[a].taps;
  }
  b.cig = int(p.in_per_group);
  b.cog = int(p.out_per_group);
  b.K = taps * b.cig;
  b.m0 = (bx / ntiles) * kBM;
  b.n0 = int(bx % ntiles) * kBN;
  b.active = b.m0 < b.M;

  const Strides5 xs = p.input, ws = p.weight;
  b.x_base = uoff_t(index_t(b.group) * index_t(b.cig)) * uoff_t(index_t(xs.c));
  b.w_base = uoff_t(index_t(b.group) * index_t(b.cig)) * uoff_t(index_t(ws.n)) +
             uoff_t(index_t(b.ax[0].k0)) * uoff_t(index_t(ws.d)) +
             uoff_t(index_t(b.ax[1].k0)) * uoff_t(index_t(ws.h)) +
             uoff_t(index_t(b.ax[2].k0)) * uoff_t(index_t(ws.w));

  const int dd = int(p.axis[0].in_step), dh = int(p.axis[1].in_step), dw = int(p.axis[2].in_step);
  b.sa.cig = b.sb.cig = b.cig;
  b.sa.tw = b.sb.tw = b.ax[2].taps;
  b.sa.th = b.sb.th = b.ax[1].taps;
  b.sa.c_step = uoff_t(index_t(xs.c));
  b.sa.w_step = uoff_t(0) - uoff_t(index_t(dw)) * uoff_t(index_t(xs.w));
  b.sa.h_step = uoff_t(0) - uoff_t(index_t(dh)) * uoff_t(index_t(xs.h));
  b.sa.d_step = uoff_t(0) - uoff_t(index_t(dd)) * uoff_t(index_t(xs.d));
  b.sa.pw = dw;
  b.sa.ph = dh;
  b.sa.pd = dd;
  b.sb.c_step = uoff_t(index_t(ws.n));
  b.sb.w_step = uoff_t(index_t(p.axis[2].tap_step)) * uoff_t(index_t(ws.w));
  b.sb.h_step = uoff_t(index_t(p.axis[1].tap_step)) * uoff_t(index_t(ws.h));
  b.sb.d_step = uoff_t(index_t(p.axis[0].tap_step)) * uoff_t(index_t(ws.d));
  b.sb.pw = b.sb.ph = b.sb.pd = 0;
  return b;
}

// Decomposition of a row m of the phase into (n, jd, jh, jw).
struct RowIndex {
  int64_t n;
  int j[3];
};
template <typename index_t>
TCONV3D_HOST_DEVICE RowIndex row_index(const BlockCtx<index_t>& b, int64_t m) {
  RowIndex r;
  r.j[2] = int(m % b.ax[2].J);
  m /= b.ax[2].J;
  r.j[1] = int(m % b.ax[1].J);
  m /= b.ax[1].J;
  r.j[0] = int(m % b.ax[0].J);
  r.n = m / b.ax[0].J;
  return r;
}

// An A row: input offset and position of tap m = 0 (positions kFar for rows past M).
template <typename index_t>
struct ARow {
  std::make_unsigned_t<index_t> off;
  int id, ih, iw;
};

template <typename index_t>
TCONV3D_HOST_DEVICE ARow<index_t> a_row_desc(const ConvTranspose3dParams& p,
                                             const BlockCtx<index_t>& b, int64_t m) {
  using uoff_t = std::make_unsigned_t<index_t>;
  ARow<index_t> a{};
  if (m >= b.M) {
    a.id = a.ih = a.iw = kFar;
    return a;
  }
  const RowIndex r = row_index(b, m);
  a.id = r.j[0] + b.ax[0].base;
  a.ih = r.j[1] + b.ax[1].base;
  a.iw = r.j[2] + b.ax[2].base;
  const Strides5 xs = p.input;
  a.off = b.x_base + uoff_t(index_t(r.n)) * uoff_t(index_t(xs.n)) +
          uoff_t(index_t(a.id)) * uoff_t(index_t(xs.d)) +
          uoff_t(index_t(a.ih)) * uoff_t(index_t(xs.h)) +
          uoff_t(index_t(a.iw)) * uoff_t(index_t(xs.w));
  return a;
}

// Output offset of row m, channel 0 of the block's group (m < M).
template <typename index_t>
TCONV3D_HOST_DEVICE index_t out_row_offset(const ConvTranspose3dParams& p,
                                           const BlockCtx<index_t>& b, int64_t m) {
  const RowIndex r = row_index(b, m);
  const Strides5 ys = p.output;
  const int64_t od = b.ax[0].r + p.axis[0].stride * r.j[0];
  const int64_t oh = b.ax[1].r + p.axis[1].stride * r.j[1];
  const int64_t ow = b.ax[2].r + p.axis[2].stride * r.j[2];
  return index_t(r.n) * index_t(ys.n) + index_t(b.group) * index_t(b.cog) * index_t(ys.c) +
         index_t(od) * index_t(ys.d) + index_t(oh) * index_t(ys.h) + index_t(ow) * index_t(ys.w);
}

template <typename index_t>
TCONV3D_HOST_DEVICE bool a_in_bounds(const BlockCtx<index_t>& b, const ARow<index_t>& r,
                                     const Cursor<index_t>& c) {
  return unsigned(r.id - c.dd) < unsigned(b.in[0]) && unsigned(r.ih - c.dh) < unsigned(b.in[1]) &&
         unsigned(r.iw - c.dw) < unsigned(b.in[2]);
}

TCONV3D_HOST_DEVICE uint32_t bits_of(uint16_t v) { return v; }
TCONV3D_HOST_DEVICE uint32_t bits_of(float v) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(v);
#else
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
#endif
}

// Packs element e (of a run) into 32-bit words.
template <typename bits_t>
TCONV3D_HOST_DEVICE void put_bits(uint32_t* words, int e, bits_t v) {
  if constexpr (sizeof(bits_t) == 2) {
    if (e % 2 == 0) {
      words[e / 2] = bits_of(v);
    } else {
      words[e / 2] |= bits_of(v) << 16;
    }
  } else {
    words[e] = bits_of(v);
  }
}

// Loads this thread's part of the A chunk at its cursor into registers and
// moves the cursor one chunk (BK columns) on.
template <typename scalar_t, typename index_t, int AMODE>
TCONV3D_HOST_DEVICE void load_a(const BlockCtx<index_t>& b, const scalar_t* __restrict__ x,
                                const ARow<index_t> (&rows)[Tile<scalar_t, AMODE>::A_ROWS],
                                Cursor<index_t>& cur,
                                uint32_t (&words)[Tile<scalar_t, AMODE>::A_WORDS]) {
  using T = Tile<scalar_t, AMODE>;
  using bits_t = typename T::bits_t;
  if constexpr (AMODE == kAModeColsV) {
    // The run of VEC columns lies in one tap (Cig % VEC == 0), is contiguous
    // (xs.c == 1) and 16-byte aligned (checked by the launcher).
    const bool kok = cur.kk < b.K;
#pragma unroll
    for (int r = 0; r < T::A_ROWS; ++r) {
      uint4 v = make_uint4(0u, 0u, 0u, 0u);
      if (kok && a_in_bounds(b, rows[r], cur)) {
        v = *reinterpret_cast<const uint4*>(x + index_t(rows[r].off + cur.off));
      }
      words[r * 4 + 0] = v.x;
      words[r * 4 + 1] = v.y;
      words[r * 4 + 2] = v.z;
      words[r * 4 + 3] = v.w;
    }
    advance(cur, b.sa, T::BK);
  } else {
    const bits_t* xb = reinterpret_cast<const bits_t*>(x);
#pragma unroll
    for (int e = 0; e < T::A_RUN; ++e) {
      const bool kok = cur.kk < b.K;
#pragma unroll
      for (int r = 0; r < T::A_ROWS; ++r) {
        bits_t v = 0;
        if (kok && a_in_bounds(b, rows[r], cur)) {
          v = xb[index_t(rows[r].off + cur.off)];
        }
        put_bits(words + r * T::A_WORDS_PER_ROW, e, v);
      }
      next_col(cur, b.sa);
    }
    advance(cur, b.sa, T::BK - T::A_RUN);
  }
}

// Loads this thread's part of the B chunk (one channel, B_RUN consecutive K rows).
template <typename scalar_t, typename index_t, int AMODE>
TCONV3D_HOST_DEVICE void load_b(const BlockCtx<index_t>& b, const scalar_t* __restrict__ w,
                                std::make_unsigned_t<index_t> co_off, bool co_ok,
                                Cursor<index_t>& cur,
                                uint32_t (&words)[Tile<scalar_t, AMODE>::B_WORDS]) {
  using T = Tile<scalar_t, AMODE>;
  using bits_t = typename T::bits_t;
  const bits_t* wb = reinterpret_cast<const bits_t*>(w);
#pragma unroll
  for (int e = 0; e < T::B_RUN; ++e) {
    bits_t v = 0;
    if (co_ok && cur.kk < b.K) {
      v = wb[index_t(co_off + cur.off)];
    }
    put_bits(words, e, v);
    next_col(cur, b.sb);
  }
  advance(cur, b.sb, T::BK - T::B_RUN);
}

TCONV3D_HOST_DEVICE uint32_t tf32_bits(uint32_t u) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __float_as_uint(nvcuda::wmma::__float_to_tf32(__uint_as_float(u)));
#else
  return u;  // host compilation pass: never executed
#endif
}

// Registers → shared memory, 16 bytes at a time.  TF32 rounding happens here,
// once per element.
template <typename scalar_t, int AMODE>
TCONV3D_HOST_DEVICE void store_a(unsigned char* stage, int tid,
                                 const uint32_t (&words)[Tile<scalar_t, AMODE>::A_WORDS]) {
  using T = Tile<scalar_t, AMODE>;
  const int k0 = T::a_kstart(tid);
#pragma unroll
  for (int r = 0; r < T::A_ROWS; ++r) {
    const int row = T::a_row(tid, r);
    uint4* dst = reinterpret_cast<uint4*>(stage + (row * T::LDA + k0) * T::ES);
#pragma unroll
    for (int v = 0; v < T::A_WORDS_PER_ROW / 4; ++v) {
      const uint32_t* s = words + r * T::A_WORDS_PER_ROW + v * 4;
      if constexpr (std::is_same_v<scalar_t, float>) {
        dst[v] = make_uint4(tf32_bits(s[0]), tf32_bits(s[1]), tf32_bits(s[2]), tf32_bits(s[3]));
      } else {
        dst[v] = make_uint4(s[0], s[1], s[2], s[3]);
      }
    }
  }
}

template <typename scalar_t, int AMODE>
TCONV3D_HOST_DEVICE void store_b(unsigned char* stage, int tid,
                                 const uint32_t (&words)[Tile<scalar_t, AMODE>::B_WORDS]) {
  using T = Tile<scalar_t, AMODE>;
  uint4* dst = reinterpret_cast<uint4*>(stage + T::A_STAGE * T::ES +
                                        (T::b_col(tid) * T::LDB + T::b_kstart(tid)) * T::ES);
  if constexpr (std::is_same_v<scalar_t, float>) {
    *dst = make_uint4(tf32_bits(words[0]), tf32_bits(words[1]), tf32_bits(words[2]),
                      tf32_bits(words[3]));
  } else {
    *dst = make_uint4(words[0], words[1], words[2], words[3]);
  }
}

// ---------------------------------------------------------------------------
// Device side.

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
template <typename scalar_t>
struct Frag {
  using elem_t = scalar_t;  // __half / __nv_bfloat16
  using smem_t = scalar_t;
};
template <>
struct Frag<float> {
  using elem_t = nvcuda::wmma::precision::tf32;
  using smem_t = float;
};
#endif

template <typename scalar_t, typename index_t, int AMODE>
__global__ void __launch_bounds__(kTh, 2)
    forward_igemm_kernel(const ConvTranspose3dParams p, const scalar_t* __restrict__ x,
                         const scalar_t* __restrict__ w, const scalar_t* __restrict__ bias,
                         scalar_t* __restrict__ y, int ntiles, bool channel_fastest_out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using T = Tile<scalar_t, AMODE>;
  using uoff_t = std::make_unsigned_t<index_t>;
  using smem_t = typename Frag<scalar_t>::smem_t;
  using elem_t = typename Frag<scalar_t>::elem_t;

  __shared__ __align__(128) unsigned char smem[T::SMEM_BYTES];
  __shared__ index_t s_out[kBM];
  __shared__ float s_bias[kBN];

  const BlockCtx<index_t> b = block_ctx<index_t>(p, blockIdx.x, blockIdx.y, ntiles);
  if (!b.active) return;  // block-uniform, before any barrier
  const int tid = threadIdx.x;

  // Per-block tables for the epilogue.
  if (tid < kBM && b.m0 + tid < b.M) s_out[tid] = out_row_offset(p, b, b.m0 + tid);
  if (tid < kBN) {
    const int co = b.n0 + tid;
    float v = 0.f;
    if (bias != nullptr && co < b.cog) {
      v = to_acc(bias[index_t(int64_t(b.group) * b.cog + co) * index_t(p.bias_stride)]);
    }
    s_bias[tid] = v;
  }

  // Fixed rows / channel of this thread and its K cursors.
  ARow<index_t> rows[T::A_ROWS];
#pragma unroll
  for (int r = 0; r < T::A_ROWS; ++r) rows[r] = a_row_desc(p, b, b.m0 + T::a_row(tid, r));
  Cursor<index_t> ca = cursor_at(b.sa, T::a_kstart(tid));
  Cursor<index_t> cb = cursor_at(b.sb, T::b_kstart(tid));
  const int co_b = b.n0 + T::b_col(tid);
  const bool co_ok = co_b < b.cog;
  const uoff_t co_off = b.w_base + uoff_t(index_t(co_b)) * uoff_t(index_t(p.weight.c));

  const int warp = tid / 32;
  const int wm = warp % kWarpsM, wn = warp / kWarpsM;
  wmma::fragment<wmma::accumulator, 16, 16, T::WK, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  const int nchunks = (b.K + T::BK - 1) / T::BK;
  if (nchunks > 0) {
    uint32_t aw[T::A_WORDS];
    uint32_t bw[T::B_WORDS];
    load_a<scalar_t, index_t, AMODE>(b, x, rows, ca, aw);
    load_b<scalar_t, index_t, AMODE>(b, w, co_off, co_ok, cb, bw);
    store_a<scalar_t, AMODE>(smem, tid, aw);
    store_b<scalar_t, AMODE>(smem, tid, bw);
    __syncthreads();
    for (int c = 0; c < nchunks; ++c) {
      const bool more = c + 1 < nchunks;
      if (more) {  // global → registers for the next chunk, overlapping the MMAs below
        load_a<scalar_t, index_t, AMODE>(b, x, rows, ca, aw);
        load_b<scalar_t, index_t, AMODE>(b, w, co_off, co_ok, cb, bw);
      }
      unsigned char* stage = smem + (c & 1) * T::STAGE_BYTES;
      const smem_t* As = reinterpret_cast<const smem_t*>(stage);
      const smem_t* Bs = reinterpret_cast<const smem_t*>(stage + T::A_STAGE * T::ES);
#pragma unroll
      for (int ks = 0; ks < T::BK / T::WK; ++ks) {
        wmma::fragment<wmma::matrix_a, 16, 16, T::WK, elem_t, wmma::row_major> fa[2];
        wmma::fragment<wmma::matrix_b, 16, 16, T::WK, elem_t, wmma::col_major> fb[2];
#pragma unroll
        for (int i = 0; i < 2; ++i)
          wmma::load_matrix_sync(fa[i], As + (wm * 32 + i * 16) * T::LDA + ks * T::WK, T::LDA);
#pragma unroll
        for (int j = 0; j < 2; ++j)
          wmma::load_matrix_sync(fb[j], Bs + (wn * 32 + j * 16) * T::LDB + ks * T::WK, T::LDB);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
      if (more) {  // the other stage was last read before the previous barrier
        unsigned char* next = smem + ((c + 1) & 1) * T::STAGE_BYTES;
        store_a<scalar_t, AMODE>(next, tid, aw);
        store_b<scalar_t, AMODE>(next, tid, bw);
      }
      __syncthreads();
    }
  }

  // Epilogue: the C tile reuses the stage buffers (the last barrier above
  // ended every read of them).
  float* Cs = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int m = wm * 32 + i * 16, n = wn * 32 + j * 16;
      if (channel_fastest_out) {
        wmma::store_matrix_sync(Cs + m * T::LDC_ROW + n, acc[i][j], T::LDC_ROW,
                                wmma::mem_row_major);
      } else {
        wmma::store_matrix_sync(Cs + n * T::LDC_COL + m, acc[i][j], T::LDC_COL,
                                wmma::mem_col_major);
      }
    }
  __syncthreads();
  const index_t ys_c = index_t(p.output.c);
#pragma unroll 4
  for (int q = 0; q < T::C_PER_THREAD; ++q) {
    const RowCol rc = epilogue_coord(tid, q, channel_fastest_out);
    if (b.m0 + rc.m < b.M && b.n0 + rc.co < b.cog) {
      const float v = (channel_fastest_out ? Cs[rc.m * T::LDC_ROW + rc.co]
                                           : Cs[rc.co * T::LDC_COL + rc.m]) +
                      s_bias[rc.co];
      y[s_out[rc.m] + index_t(b.n0 + rc.co) * ys_c] = from_acc<scalar_t>(v);
    }
  }
#else
  __trap();  // never launched: forward_implicit_gemm_supports requires sm_80 code
#endif
}

// ---------------------------------------------------------------------------
// Host side.

struct LaunchShape {
  int64_t mtiles, ntiles, nz;
};

inline LaunchShape launch_shape(const ConvTranspose3dParams& p) {
  LaunchShape s;
  s.mtiles = ceil_div(max_phase_rows(p), kBM);
  s.ntiles = ceil_div(p.out_per_group, kBN);
  s.nz = p.groups * phase_count(p);
  return s;
}

inline bool problem_fits(const ConvTranspose3dParams& p) {
  constexpr int64_t kPos = int64_t(1) << 29;  // positions, taps, strides: int32 with headroom
  for (int a = 0; a < 3; ++a) {
    const Axis& ax = p.axis[a];
    if (ax.in >= kPos || ax.out >= kPos || ax.kernel >= kPos || ax.stride >= kPos ||
        ax.padding >= kPos || ax.dilation >= kPos || ax.in <= 0 || ax.out <= 0) {
      return false;
    }
  }
  int64_t taps = 1;  // upper bound on taps of any phase
  for (int a = 0; a < 3; ++a) taps *= ceil_div(p.axis[a].kernel, p.axis[a].tap_step);
  if (taps * p.in_per_group + 64 >= INT_MAX) return false;
  if (p.in_per_group >= kPos || p.out_per_group >= kPos) return false;
  const LaunchShape s = launch_shape(p);
  if (s.nz > 65535 || s.mtiles * s.ntiles >= INT_MAX) return false;
  return true;
}

template <typename scalar_t, typename index_t, int AMODE>
void launch_one(const ConvTranspose3dParams& p, const LaunchShape& s, cudaStream_t stream,
                const void* input, const void* weight, const void* bias, void* output,
                bool channel_fastest_out) {
  const dim3 grid(static_cast<unsigned int>(s.mtiles * s.ntiles), static_cast<unsigned int>(s.nz));
  forward_igemm_kernel<scalar_t, index_t, AMODE><<<grid, kTh, 0, stream>>>(
      p, static_cast<const scalar_t*>(input), static_cast<const scalar_t*>(weight),
      static_cast<const scalar_t*>(bias), static_cast<scalar_t*>(output), int(s.ntiles),
      channel_fastest_out);
}

// ci contiguous, every row base and group base 16-byte aligned.
inline bool vector_loads_ok(const ConvTranspose3dParams& p, const void* input, int elem_size) {
  const int64_t vec = 16 / elem_size;
  const Strides5& xs = p.input;
  return xs.c == 1 && p.in_per_group % vec == 0 && xs.n % vec == 0 && xs.d % vec == 0 &&
         xs.h % vec == 0 && xs.w % vec == 0 && reinterpret_cast<uintptr_t>(input) % 16 == 0;
}

template <typename scalar_t>
void launch_typed(const ConvTranspose3dParams& p, const LaunchConfig& cfg, const void* input,
                  const void* weight, const void* bias, void* output) {
  const LaunchShape s = launch_shape(p);
  const Strides5& xs = p.input;
  const Strides5& ys = p.output;
  const bool channel_fastest_out = ys.c < ys.w;
  const int amode = xs.c < xs.w ? (vector_loads_ok(p, input, int(sizeof(scalar_t))) ? kAModeColsV
                                                                                    : kAModeCols)
                                : kAModeRows;
  dispatch_index(cfg.wide_index, [&](auto index) {
    using index_t = decltype(index);
    switch (amode) {
      case kAModeRows:
        launch_one<scalar_t, index_t, kAModeRows>(p, s, cfg.stream, input, weight, bias, output,
                                                  channel_fastest_out);
        break;
      case kAModeCols:
        launch_one<scalar_t, index_t, kAModeCols>(p, s, cfg.stream, input, weight, bias, output,
                                                  channel_fastest_out);
        break;
      default:
        launch_one<scalar_t, index_t, kAModeColsV>(p, s, cfg.stream, input, weight, bias, output,
                                                   channel_fastest_out);
        break;
    }
  });
}

// The kernel body exists only when compiled for sm_80+ (PTX/JIT included).
inline bool kernel_built_for_device() {
  cudaFuncAttributes attr{};
  if (cudaFuncGetAttributes(&attr, forward_igemm_kernel<__half, int32_t, kAModeRows>) !=
      cudaSuccess) {
    cudaGetLastError();  // clear
    return false;
  }
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major >= 8 && attr.ptxVersion >= 80;
}

}  // namespace igemm

bool forward_implicit_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                    bool allow_tf32) {
  const bool dtype_ok = dtype == ScalarKind::Float16 || dtype == ScalarKind::BFloat16 ||
                        (dtype == ScalarKind::Float32 && allow_tf32);
  if (!dtype_ok) return false;
  if (p.in_per_group < 1 || p.out_per_group < 1) return false;
  if (p.batch > 0 && !igemm::problem_fits(p)) return false;
  return igemm::kernel_built_for_device();
}

cudaError_t launch_forward_implicit_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const void* input, const void* weight, const void* bias,
                                         void* output) {
  const int64_t total =
      p.batch * p.out_channels * p.axis[0].out * p.axis[1].out * p.axis[2].out;
  if (total == 0) return cudaSuccess;
  switch (cfg.dtype) {
    case ScalarKind::Float16:
      igemm::launch_typed<__half>(p, cfg, input, weight, bias, output);
      break;
    case ScalarKind::BFloat16:
      igemm::launch_typed<__nv_bfloat16>(p, cfg, input, weight, bias, output);
      break;
    case ScalarKind::Float32:
      igemm::launch_typed<float>(p, cfg, input, weight, bias, output);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace tconv3d::cuda
