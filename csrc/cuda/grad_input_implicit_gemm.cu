// Grad-input as an implicit GEMM on tensor cores, one GEMM per group
// (DESIGN.md §3), all groups in one launch.
//
// gx[n, ci, i] = Σ_{co ∈ group(ci)} Σ_k gy[n, co, i·s − p + k·d] · w[ci, co_local, k] is an
// ordinary strided convolution of gy, so for group g (Cig = Cin/G, Cog = Cout/G):
//
//   A[row, col] = gy[n, g·Cog + co, o(i, tap)]   (0 where o is outside [0, O) on any axis)
//   B[col, ci]  = w[g·Cig + ci, co, tap]
//   C[row, ci]  = gx[n, g·Cig + ci, i]
//
// with row = (n, id, ih, iw) (iw fastest), M = N·Din·Hin·Win; col = (tap, co) (co fastest,
// tap = (kd, kh, kw), kw fastest), K = Cog·kD·kH·kW; o = i·s − p + k·d per axis.  For a fixed
// tap the co run is contiguous in channels-last gy; consecutive rows are consecutive iw, so for
// NCDHW gy (stride 1) neighbouring rows read neighbouring ow.
//
// Tiling: block tile BM = 128 rows × BN = 64 input channels, BK = 32 (16-bit) or 16 (TF32)
// along K; 256 threads = 8 warps in a 4 × 2 grid, each warp a 32 × 32 sub-tile of 2 × 2 WMMA
// fragments.  A is staged in shared memory as [BM][BK + pad] (row-major m × k), B as
// [BN][BK + pad] (column-major k × n), double-buffered; the next K-chunk is loaded from global
// memory into registers while the tensor cores consume the current one (one barrier per
// chunk).  Global loads never divide: every thread owns fixed rows (their (n, id, ih, iw)
// decomposition and base offset are computed once per block, held in registers) and walks its
// K columns with a cursor that carries (co, tap) and the matching offset and position shift
// incrementally.  B loads put lanes along K (stride w.c: small for contiguous and
// channels-last weights), each thread covering one K row for 8 (16-bit) or 4 (TF32)
// input channels.  Three A-load modes: lanes along rows (NCDHW-like gy), lanes along K with
// scalar loads (channels-last-like gy), and lanes along K with 16-byte vector loads (co
// contiguous and aligned).
//
// Grid: x = m-tile · n-tiles + n-tile (the n-tiles of one m-tile are adjacent, so the A tile
// they share is fresh in L2), y = group.
//
// Epilogue: accumulators → shared memory (fp32, in the orientation the store needs) → one
// rounding → gx at p.input strides; channels-last gx is written channel-fastest, NCDHW gx row
// (iw) fastest, so a warp writes contiguous runs.  Every gx element belongs to exactly one
// (m-tile, n-tile, group) block and is written once; no atomics, no workspace.
#include "grad_input_implicit_gemm.h"

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
namespace gi_igemm {

constexpr int kTh = 256;  // threads per block
constexpr int kBM = 128;  // rows (grad_input voxels) per block
constexpr int kBN = 64;   // input channels per block
constexpr int kWarpsM = 4, kWarpsN = 2;
static_assert(kWarpsM * 32 == kBM && kWarpsN * 32 == kBN && kWarpsM * kWarpsN * 32 == kTh,
              "8 warps of 32 x 32");
constexpr int kFar = INT_MIN / 2;  // output position of rows past M: never in bounds

// A-tile load modes.
constexpr int kAModeRows = 0;   // lanes along rows (m): NCDHW-like gy, W contiguous
constexpr int kAModeCols = 1;   // lanes along K (co): channels-last-like gy, scalar loads
constexpr int kAModeColsV = 2;  // as kAModeCols with 16-byte vector loads (co contiguous, aligned)

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
  // B: each thread loads one K row × B_RUN input channels (kTh / BK apart);
  // lanes run along K, whose fastest part (co) has the small weight stride.
  static constexpr int B_RUN = kBN * BK / kTh;
  static constexpr int B_CI_STEP = kTh / BK;
  static constexpr int B_WORDS = B_RUN * ES / 4;
  // Epilogue: elements per thread.
  static constexpr int C_PER_THREAD = kBM * kBN / kTh;

  static_assert(kTh == kBM * 2, "row mode: two K halves per row");
  static_assert(A_ROWS * A_RUN * kTh == kBM * BK, "A tile coverage");
  static_assert(A_RUN * ES % 16 == 0 && B_RUN * ES == 16, "16-byte A smem stores, 4 B words");
  static_assert(kTh % BK == 0 && B_CI_STEP * B_RUN == kBN, "B tile coverage");
  static_assert(BK % WK == 0 && BK % VEC == 0, "chunk shape");

  TCONV3D_HOST_DEVICE static int a_row(int tid, int q) {
    if (AMODE == kAModeRows) return tid % kBM;
    return tid / (BK / VEC) + q * (kTh * VEC / BK);
  }
  TCONV3D_HOST_DEVICE static int a_kstart(int tid) {
    if (AMODE == kAModeRows) return (tid / kBM) * A_RUN;
    return (tid % (BK / VEC)) * VEC;
  }
  TCONV3D_HOST_DEVICE static int b_k(int tid) { return tid % BK; }
  TCONV3D_HOST_DEVICE static int b_ci(int tid, int e) { return tid / BK + e * B_CI_STEP; }
};

// (row, channel) of the q-th element a thread stores in the epilogue.
// channel_fastest: consecutive threads take consecutive input channels
// (contiguous in NDHWC); otherwise consecutive rows (consecutive iw).
struct RowCol {
  int m, ci;
};
TCONV3D_HOST_DEVICE RowCol epilogue_coord(int tid, int q, bool channel_fastest) {
  if (channel_fastest) return {tid / kBN + q * (kTh / kBN), tid % kBN};
  return {tid % kBM, tid / kBM + q * (kTh / kBM)};
}

// ---------------------------------------------------------------------------
// K-walk (host and device).

// Block-uniform walk of the K dimension: per-channel and per-tap offset steps.
template <typename index_t>
struct Stepper {
  using uoff_t = std::make_unsigned_t<index_t>;
  int cog, kw, kh;                        // channels per tap; taps along W and H
  uoff_t c_step, w_step, h_step, d_step;  // offset change per co, per tap in w/h/d
  int pw, ph, pd;                         // output-position change per tap (A only: d)
};

// A thread's position in K: column kk = tap·Cog + co, tap = (td·kH + th)·kW + tw.
template <typename index_t>
struct Cursor {
  using uoff_t = std::make_unsigned_t<index_t>;
  int kk, co, tw, th, td;
  uoff_t off;      // co·c_step + tw·w_step + th·h_step + td·d_step (mod 2^bits)
  int dw, dh, dd;  // tw·pw, th·ph, td·pd
};

template <typename index_t>
TCONV3D_HOST_DEVICE Cursor<index_t> cursor_at(const Stepper<index_t>& s, int kk) {
  using uoff_t = std::make_unsigned_t<index_t>;
  Cursor<index_t> c{};
  c.kk = kk;
  const int tap = kk / s.cog;
  c.co = kk - tap * s.cog;
  c.tw = tap % s.kw;
  const int t = tap / s.kw;
  c.th = t % s.kh;
  c.td = t / s.kh;
  c.off = uoff_t(c.co) * s.c_step + uoff_t(c.tw) * s.w_step + uoff_t(c.th) * s.h_step +
          uoff_t(c.td) * s.d_step;
  c.dw = c.tw * s.pw;
  c.dh = c.th * s.ph;
  c.dd = c.td * s.pd;
  return c;
}

template <typename index_t>
TCONV3D_HOST_DEVICE void next_tap(Cursor<index_t>& c, const Stepper<index_t>& s) {
  using uoff_t = std::make_unsigned_t<index_t>;
  ++c.tw;
  c.off += s.w_step;
  c.dw += s.pw;
  if (c.tw == s.kw) {
    c.tw = 0;
    c.off -= uoff_t(s.kw) * s.w_step;
    c.dw = 0;
    ++c.th;
    c.off += s.h_step;
    c.dh += s.ph;
    if (c.th == s.kh) {
      c.th = 0;
      c.off -= uoff_t(s.kh) * s.h_step;
      c.dh = 0;
      ++c.td;
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
  ++c.co;
  c.off += s.c_step;
  if (c.co == s.cog) {
    c.co = 0;
    c.off -= uoff_t(s.cog) * s.c_step;
    next_tap(c, s);
  }
}

// Moves the cursor n ≥ 0 columns on (past the end of K is allowed: callers mask kk < K).
template <typename index_t>
TCONV3D_HOST_DEVICE void advance(Cursor<index_t>& c, const Stepper<index_t>& s, int n) {
  using uoff_t = std::make_unsigned_t<index_t>;
  c.kk += n;
  c.co += n;
  c.off += uoff_t(n) * s.c_step;
  while (c.co >= s.cog) {
    c.co -= s.cog;
    c.off -= uoff_t(s.cog) * s.c_step;
    next_tap(c, s);
  }
}

// ---------------------------------------------------------------------------
// Tile / row decomposition (host and device).

// Everything a block needs about its tile, computed from the params.
template <typename index_t>
struct BlockCtx {
  using uoff_t = std::make_unsigned_t<index_t>;
  int in[3];    // input extents I (gx rows)
  int out[3];   // output extents O (gy positions)
  int stride[3], padding[3];
  int64_t M;    // rows: N·Din·Hin·Win
  int K;        // Cog · kD·kH·kW
  int64_t m0;   // first row of the tile
  int n0;       // first input channel (within the group) of the tile
  int group;
  int cig, cog;
  uoff_t gy_base;       // g·Cog·gs.c
  uint32_t w_base;      // g·Cig·ws.n (weight offsets are 32-bit: span < 2^31, see problem_fits)
  Stepper<index_t> sa;  // A walk (gy)
  Stepper<int32_t> sb;  // B walk (w)
};

TCONV3D_HOST_DEVICE int64_t gemm_rows(const ConvTranspose3dParams& p) {
  return p.batch * p.axis[0].in * p.axis[1].in * p.axis[2].in;
}

template <typename index_t>
TCONV3D_HOST_DEVICE BlockCtx<index_t> block_ctx(const ConvTranspose3dParams& p, int64_t bx,
                                                int64_t by, int ntiles) {
  using uoff_t = std::make_unsigned_t<index_t>;
  BlockCtx<index_t> b{};
  b.group = int(by);
  for (int a = 0; a < 3; ++a) {
    b.in[a] = int(p.axis[a].in);
    b.out[a] = int(p.axis[a].out);
    b.stride[a] = int(p.axis[a].stride);
    b.padding[a] = int(p.axis[a].padding);
  }
  b.M = gemm_rows(p);
  b.cig = int(p.in_per_group);
  b.cog = int(p.out_per_group);
  const int kd = int(p.axis[0].kernel), kh = int(p.axis[1].kernel), kw = int(p.axis[2].kernel);
  b.K = b.cog * kd * kh * kw;
  b.m0 = (bx / ntiles) * kBM;
  b.n0 = int(bx % ntiles) * kBN;

  const Strides5 gs = p.output, ws = p.weight;
  b.gy_base = uoff_t(index_t(b.group) * index_t(b.cog)) * uoff_t(index_t(gs.c));
  b.w_base = uint32_t(b.group) * uint32_t(b.cig) * uint32_t(ws.n);

  const int dd = int(p.axis[0].dilation), dh = int(p.axis[1].dilation),
            dw = int(p.axis[2].dilation);
  b.sa.cog = b.sb.cog = b.cog;
  b.sa.kw = b.sb.kw = kw;
  b.sa.kh = b.sb.kh = kh;
  b.sa.c_step = uoff_t(index_t(gs.c));
  b.sa.w_step = uoff_t(index_t(dw)) * uoff_t(index_t(gs.w));
  b.sa.h_step = uoff_t(index_t(dh)) * uoff_t(index_t(gs.h));
  b.sa.d_step = uoff_t(index_t(dd)) * uoff_t(index_t(gs.d));
  b.sa.pw = dw;
  b.sa.ph = dh;
  b.sa.pd = dd;
  b.sb.c_step = uint32_t(ws.c);
  b.sb.w_step = uint32_t(ws.w);
  b.sb.h_step = uint32_t(ws.h);
  b.sb.d_step = uint32_t(ws.d);
  b.sb.pw = b.sb.ph = b.sb.pd = 0;
  return b;
}

// Decomposition of a row m into (n, id, ih, iw).
struct RowIndex {
  int64_t n;
  int i[3];
};
template <typename index_t>
TCONV3D_HOST_DEVICE RowIndex row_index(const BlockCtx<index_t>& b, int64_t m) {
  RowIndex r;
  r.i[2] = int(m % b.in[2]);
  m /= b.in[2];
  r.i[1] = int(m % b.in[1]);
  m /= b.in[1];
  r.i[0] = int(m % b.in[0]);
  r.n = m / b.in[0];
  return r;
}

// An A row: gy offset and output position of tap 0, o = i·s − p (may be
// negative; positions kFar for rows past M).
template <typename index_t>
struct ARow {
  std::make_unsigned_t<index_t> off;
  int od, oh, ow;
};

template <typename index_t>
TCONV3D_HOST_DEVICE ARow<index_t> a_row_desc(const ConvTranspose3dParams& p,
                                             const BlockCtx<index_t>& b, int64_t m) {
  using uoff_t = std::make_unsigned_t<index_t>;
  ARow<index_t> a{};
  if (m >= b.M) {
    a.od = a.oh = a.ow = kFar;
    return a;
  }
  const RowIndex r = row_index(b, m);
  a.od = r.i[0] * b.stride[0] - b.padding[0];
  a.oh = r.i[1] * b.stride[1] - b.padding[1];
  a.ow = r.i[2] * b.stride[2] - b.padding[2];
  const Strides5 gs = p.output;
  a.off = b.gy_base + uoff_t(index_t(r.n)) * uoff_t(index_t(gs.n)) +
          uoff_t(index_t(a.od)) * uoff_t(index_t(gs.d)) +
          uoff_t(index_t(a.oh)) * uoff_t(index_t(gs.h)) +
          uoff_t(index_t(a.ow)) * uoff_t(index_t(gs.w));
  return a;
}

// gx offset of row m, channel 0 of the block's group (m < M).
template <typename index_t>
TCONV3D_HOST_DEVICE index_t gx_row_offset(const ConvTranspose3dParams& p,
                                          const BlockCtx<index_t>& b, int64_t m) {
  const RowIndex r = row_index(b, m);
  const Strides5 xs = p.input;
  return index_t(r.n) * index_t(xs.n) + index_t(b.group) * index_t(b.cig) * index_t(xs.c) +
         index_t(r.i[0]) * index_t(xs.d) + index_t(r.i[1]) * index_t(xs.h) +
         index_t(r.i[2]) * index_t(xs.w);
}

template <typename index_t>
TCONV3D_HOST_DEVICE bool a_in_bounds(const BlockCtx<index_t>& b, const ARow<index_t>& r,
                                     const Cursor<index_t>& c) {
  return unsigned(r.od + c.dd) < unsigned(b.out[0]) && unsigned(r.oh + c.dh) < unsigned(b.out[1]) &&
         unsigned(r.ow + c.dw) < unsigned(b.out[2]);
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
TCONV3D_HOST_DEVICE void load_a(const BlockCtx<index_t>& b, const scalar_t* __restrict__ gy,
                                const ARow<index_t> (&rows)[Tile<scalar_t, AMODE>::A_ROWS],
                                Cursor<index_t>& cur,
                                uint32_t (&words)[Tile<scalar_t, AMODE>::A_WORDS]) {
  using T = Tile<scalar_t, AMODE>;
  using bits_t = typename T::bits_t;
  if constexpr (AMODE == kAModeColsV) {
    // The run of VEC columns lies in one tap (Cog % VEC == 0, K % VEC == 0), is
    // contiguous (gs.c == 1) and 16-byte aligned (checked by the launcher).
    const bool kok = cur.kk < b.K;
#pragma unroll
    for (int r = 0; r < T::A_ROWS; ++r) {
      uint4 v = make_uint4(0u, 0u, 0u, 0u);
      if (kok && a_in_bounds(b, rows[r], cur)) {
        v = *reinterpret_cast<const uint4*>(gy + index_t(rows[r].off + cur.off));
      }
      words[r * 4 + 0] = v.x;
      words[r * 4 + 1] = v.y;
      words[r * 4 + 2] = v.z;
      words[r * 4 + 3] = v.w;
    }
    advance(cur, b.sa, T::BK);
  } else {
    const bits_t* gb = reinterpret_cast<const bits_t*>(gy);
#pragma unroll
    for (int e = 0; e < T::A_RUN; ++e) {
      const bool kok = cur.kk < b.K;
#pragma unroll
      for (int r = 0; r < T::A_ROWS; ++r) {
        bits_t v = 0;
        if (kok && a_in_bounds(b, rows[r], cur)) {
          v = gb[index_t(rows[r].off + cur.off)];
        }
        put_bits(words + r * T::A_WORDS_PER_ROW, e, v);
      }
      next_col(cur, b.sa);
    }
    advance(cur, b.sa, T::BK - T::A_RUN);
  }
}

// Loads this thread's part of the B chunk: K row b_k(tid) of the chunk for the
// B_RUN input channels b_ci(tid, e) (local to the tile), then moves the cursor
// one chunk on.  ci_off: weight offset of channel b_ci(tid, 0); ci_step: the
// offset between consecutive e; ci_count: how many of the B_RUN channels exist.
template <typename scalar_t, typename index_t, int AMODE>
TCONV3D_HOST_DEVICE void load_b(const BlockCtx<index_t>& b, const scalar_t* __restrict__ w,
                                uint32_t ci_off, uint32_t ci_step, int ci_count,
                                Cursor<int32_t>& cur,
                                uint32_t (&words)[Tile<scalar_t, AMODE>::B_WORDS]) {
  using T = Tile<scalar_t, AMODE>;
  using bits_t = typename T::bits_t;
  const bits_t* wb = reinterpret_cast<const bits_t*>(w);
  const bool kok = cur.kk < b.K;
#pragma unroll
  for (int e = 0; e < T::B_RUN; ++e) {
    bits_t v = 0;
    if (kok && e < ci_count) {
      v = wb[ci_off + cur.off];
    }
    put_bits(words, e, v);
    ci_off += ci_step;
  }
  advance(cur, b.sb, T::BK);
}

// How many of a thread's B channels ci_first + e·B_CI_STEP (e < B_RUN) are < cig.
template <typename scalar_t, int AMODE>
TCONV3D_HOST_DEVICE int b_channel_count(int cig, int ci_first) {
  using T = Tile<scalar_t, AMODE>;
  if (ci_first >= cig) return 0;
  const int n = (cig - ci_first + T::B_CI_STEP - 1) / T::B_CI_STEP;
  return n < T::B_RUN ? n : T::B_RUN;
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

// B elements go one by one to (k, ci) at ci·LDB + k: a warp covers
// consecutive k of one (16-bit) or two (TF32) channels.
template <typename scalar_t, int AMODE>
TCONV3D_HOST_DEVICE void store_b(unsigned char* stage, int tid,
                                 const uint32_t (&words)[Tile<scalar_t, AMODE>::B_WORDS]) {
  using T = Tile<scalar_t, AMODE>;
  unsigned char* base = stage + T::A_STAGE * T::ES;
  const int k = T::b_k(tid);
#pragma unroll
  for (int e = 0; e < T::B_RUN; ++e) {
    unsigned char* dst = base + (T::b_ci(tid, e) * T::LDB + k) * T::ES;
    if constexpr (std::is_same_v<scalar_t, float>) {
      *reinterpret_cast<uint32_t*>(dst) = tf32_bits(words[e]);
    } else {
      *reinterpret_cast<uint16_t*>(dst) = uint16_t(words[e / 2] >> (16 * (e % 2)));
    }
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
    grad_input_igemm_kernel(const ConvTranspose3dParams p, const scalar_t* __restrict__ gy,
                            const scalar_t* __restrict__ w, scalar_t* __restrict__ gx, int ntiles,
                            bool channel_fastest_out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using T = Tile<scalar_t, AMODE>;
  using uoff_t = std::make_unsigned_t<index_t>;
  using smem_t = typename Frag<scalar_t>::smem_t;
  using elem_t = typename Frag<scalar_t>::elem_t;

  __shared__ __align__(128) unsigned char smem[T::SMEM_BYTES];
  __shared__ index_t s_out[kBM];

  const BlockCtx<index_t> b = block_ctx<index_t>(p, blockIdx.x, blockIdx.y, ntiles);
  const int tid = threadIdx.x;

  // Per-block table for the epilogue (read only after the barriers below).
  if (tid < kBM && b.m0 + tid < b.M) s_out[tid] = gx_row_offset(p, b, b.m0 + tid);

  // Fixed rows / channel of this thread and its K cursors.
  ARow<index_t> rows[T::A_ROWS];
#pragma unroll
  for (int r = 0; r < T::A_ROWS; ++r) rows[r] = a_row_desc(p, b, b.m0 + T::a_row(tid, r));
  Cursor<index_t> ca = cursor_at(b.sa, T::a_kstart(tid));
  Cursor<int32_t> cb = cursor_at(b.sb, T::b_k(tid));
  const int ci_first = b.n0 + T::b_ci(tid, 0);
  const int ci_count = b_channel_count<scalar_t, AMODE>(b.cig, ci_first);
  const uint32_t ci_off = b.w_base + uint32_t(ci_first) * uint32_t(p.weight.n);
  const uint32_t ci_step = uint32_t(T::B_CI_STEP) * uint32_t(p.weight.n);

  const int warp = tid / 32;
  const int wm = warp % kWarpsM, wn = warp / kWarpsM;
  wmma::fragment<wmma::accumulator, 16, 16, T::WK, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  const int nchunks = (b.K + T::BK - 1) / T::BK;  // ≥ 1: Cog ≥ 8 and every kernel extent ≥ 1
  {
    uint32_t aw[T::A_WORDS];
    uint32_t bw[T::B_WORDS];
    load_a<scalar_t, index_t, AMODE>(b, gy, rows, ca, aw);
    load_b<scalar_t, index_t, AMODE>(b, w, ci_off, ci_step, ci_count, cb, bw);
    store_a<scalar_t, AMODE>(smem, tid, aw);
    store_b<scalar_t, AMODE>(smem, tid, bw);
    __syncthreads();
    for (int c = 0; c < nchunks; ++c) {
      const bool more = c + 1 < nchunks;
      if (more) {  // global → registers for the next chunk, overlapping the MMAs below
        load_a<scalar_t, index_t, AMODE>(b, gy, rows, ca, aw);
        load_b<scalar_t, index_t, AMODE>(b, w, ci_off, ci_step, ci_count, cb, bw);
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
  const index_t xs_c = index_t(p.input.c);
#pragma unroll 4
  for (int q = 0; q < T::C_PER_THREAD; ++q) {
    const RowCol rc = epilogue_coord(tid, q, channel_fastest_out);
    if (b.m0 + rc.m < b.M && b.n0 + rc.ci < b.cig) {
      const float v = channel_fastest_out ? Cs[rc.m * T::LDC_ROW + rc.ci]
                                          : Cs[rc.ci * T::LDC_COL + rc.m];
      gx[s_out[rc.m] + index_t(b.n0 + rc.ci) * xs_c] = from_acc<scalar_t>(v);
    }
  }
#else
  __trap();  // never launched: grad_input_implicit_gemm_supports requires sm_80 code
#endif
}

// ---------------------------------------------------------------------------
// Host side.

struct LaunchShape {
  int64_t mtiles, ntiles, nz;
};

inline LaunchShape launch_shape(const ConvTranspose3dParams& p) {
  LaunchShape s;
  s.mtiles = ceil_div(gemm_rows(p), kBM);
  s.ntiles = ceil_div(p.in_per_group, kBN);
  s.nz = p.groups;
  return s;
}

// The kernel keeps positions, taps and K in int32: o = i·s − p + k·d must stay
// well inside int32 for every i < I, k < K, and so must kFar + (K − 1)·d.
inline bool problem_fits(const ConvTranspose3dParams& p) {
  constexpr int64_t kPos = int64_t(1) << 29;
  int64_t taps = 1;
  for (int a = 0; a < 3; ++a) {
    const Axis& ax = p.axis[a];
    if (ax.in <= 0 || ax.out <= 0 || ax.kernel <= 0 || ax.stride <= 0 || ax.dilation <= 0 ||
        ax.padding < 0) {
      return false;
    }
    if (ax.in >= kPos || ax.out >= kPos || ax.kernel >= kPos || ax.stride >= kPos ||
        ax.padding >= kPos || ax.dilation >= kPos) {
      return false;
    }
    if ((ax.in - 1) * ax.stride >= kPos || (ax.kernel - 1) * ax.dilation >= kPos) return false;
    taps *= ax.kernel;
    if (taps >= kPos) return false;
  }
  if (p.in_per_group >= kPos || p.out_per_group >= kPos) return false;
  // Weight offsets are 32-bit whatever index_t is: largest reachable offset < 2^31.
  const Strides5& ws = p.weight;
  if (ws.n < 0 || ws.c < 0 || ws.d < 0 || ws.h < 0 || ws.w < 0) return false;
  const int64_t w_last = (p.in_channels - 1) * ws.n + (p.out_per_group - 1) * ws.c +
                         (p.axis[0].kernel - 1) * ws.d + (p.axis[1].kernel - 1) * ws.h +
                         (p.axis[2].kernel - 1) * ws.w;
  if (w_last >= INT_MAX) return false;
  if (taps * p.out_per_group + 64 >= INT_MAX) return false;
  const LaunchShape s = launch_shape(p);
  if (s.nz > 65535 || s.mtiles * s.ntiles >= INT_MAX) return false;
  return true;
}

template <typename scalar_t, typename index_t, int AMODE>
void launch_one(const ConvTranspose3dParams& p, const LaunchShape& s, cudaStream_t stream,
                const void* grad_output, const void* weight, void* grad_input,
                bool channel_fastest_out) {
  const dim3 grid(static_cast<unsigned int>(s.mtiles * s.ntiles), static_cast<unsigned int>(s.nz));
  grad_input_igemm_kernel<scalar_t, index_t, AMODE><<<grid, kTh, 0, stream>>>(
      p, static_cast<const scalar_t*>(grad_output), static_cast<const scalar_t*>(weight),
      static_cast<scalar_t*>(grad_input), int(s.ntiles), channel_fastest_out);
}

// co contiguous, every row base and group base 16-byte aligned.
inline bool vector_loads_ok(const ConvTranspose3dParams& p, const void* grad_output,
                            int elem_size) {
  const int64_t vec = 16 / elem_size;
  const Strides5& gs = p.output;
  return gs.c == 1 && p.out_per_group % vec == 0 && gs.n % vec == 0 && gs.d % vec == 0 &&
         gs.h % vec == 0 && gs.w % vec == 0 && reinterpret_cast<uintptr_t>(grad_output) % 16 == 0;
}

// A-load mode for gy: lanes along K when channels are the fastest-moving
// dimension (channels-last), else along rows.
inline int a_mode_for(const ConvTranspose3dParams& p, const void* grad_output, int elem_size) {
  const Strides5& gs = p.output;
  if (gs.c < gs.w) {
    return vector_loads_ok(p, grad_output, elem_size) ? kAModeColsV : kAModeCols;
  }
  return kAModeRows;
}

template <typename scalar_t>
void launch_typed(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                  const void* grad_output, const void* weight, void* grad_input) {
  const LaunchShape s = launch_shape(p);
  const bool channel_fastest_out = p.input.c < p.input.w;
  const int amode = a_mode_for(p, grad_output, int(sizeof(scalar_t)));
  dispatch_index(cfg.wide_index, [&](auto index) {
    using index_t = decltype(index);
    switch (amode) {
      case kAModeRows:
        launch_one<scalar_t, index_t, kAModeRows>(p, s, cfg.stream, grad_output, weight,
                                                  grad_input, channel_fastest_out);
        break;
      case kAModeCols:
        launch_one<scalar_t, index_t, kAModeCols>(p, s, cfg.stream, grad_output, weight,
                                                  grad_input, channel_fastest_out);
        break;
      default:
        launch_one<scalar_t, index_t, kAModeColsV>(p, s, cfg.stream, grad_output, weight,
                                                   grad_input, channel_fastest_out);
        break;
    }
  });
}

// The kernel body exists only when compiled for sm_80+ (PTX/JIT included).
inline bool kernel_built_for_device() {
  cudaFuncAttributes attr{};
  if (cudaFuncGetAttributes(&attr, grad_input_igemm_kernel<__half, int32_t, kAModeRows>) !=
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

}  // namespace gi_igemm

bool grad_input_implicit_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                       bool allow_tf32) {
  const bool dtype_ok = dtype == ScalarKind::Float16 || dtype == ScalarKind::BFloat16 ||
                        (dtype == ScalarKind::Float32 && allow_tf32);
  if (!dtype_ok) return false;
  if (p.in_per_group < 1 || p.out_per_group < 1) return false;
  if (gi_igemm::gemm_rows(p) > 0 && !gi_igemm::problem_fits(p)) return false;
  return gi_igemm::kernel_built_for_device();
}

cudaError_t launch_grad_input_implicit_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                            const void* grad_output, const void* weight,
                                            void* grad_input) {
  const int64_t total = gi_igemm::gemm_rows(p) * p.in_channels;
  if (total == 0) return cudaSuccess;
  switch (cfg.dtype) {
    case ScalarKind::Float16:
      gi_igemm::launch_typed<__half>(p, cfg, grad_output, weight, grad_input);
      break;
    case ScalarKind::BFloat16:
      gi_igemm::launch_typed<__nv_bfloat16>(p, cfg, grad_output, weight, grad_input);
      break;
    case ScalarKind::Float32:
      gi_igemm::launch_typed<float>(p, cfg, grad_output, weight, grad_input);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace tconv3d::cuda
