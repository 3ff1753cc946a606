// Forward and grad-input as one implicit GEMM on tensor cores (mma.sync, sm_80+).
//
// For group g (and, in the forward, one stride phase), with the three
// GemmAxis a[] of the pass (index_math.h):
//
//   A[row, col] = source[n, src(j, t), g·C + c]     row = (n, j0, j1, j2), j2 fastest
//                                                    col = (t0, t1, t2, c), c fastest
//   B[col, n]   = packed_weight[g, k(t), n, c]
//   dest[n, g·columns + n, dst(j)] = Σ_col A·B (+ bias)
//
// C (channels per group, K side) is a multiple of 16 bytes' worth of elements,
// so every 16-byte piece of A or B lies in one tap and is one cp.async,
// zero-filled where the source position is outside the tensor, past K, or past
// the tile's rows or columns: no branch on the data path, no masking in the
// MMAs.
//
// Tile: 128 rows × 64 columns, 64 bytes of K per stage (32 fp16/bf16 or 16
// fp32), 4 stages in flight.  4 warps in 2 × 2, each 64 × 32 = 4 × 4 tiles of
// m16n8 (k16 for 16-bit, k8 for TF32; fragments from ldmatrix, which hands
// TF32 words out in the same lane order).  Shared rows are 80 bytes apart, so
// the eight 16-byte rows an ldmatrix reads fall in distinct banks.
//
// Grid: x = (m-tile, phase, n-tile), n-tile fastest then phase, so blocks that
// run together share source rows (phases of the same rows read the same
// input positions) and fill the same output sectors; y = group.
//
// Epilogue: accumulators → shared fp32 tile → + bias → one rounding → dest,
// 16 bytes per store when dest is channel-contiguous and aligned.
#include "tensor_core_gemm.h"

#include <atomic>
#include <climits>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../index_math.h"
#include "../scalar_convert.h"
#include "dispatch.cuh"
#include "mma_sm80.cuh"

namespace tconv3d::cuda {
namespace tcg {

constexpr int kThreads = 128;  // 4 warps, 2 × 2
constexpr int kSliceBytes = 64;  // K per stage
constexpr int kPitch = kSliceBytes + 16;
constexpr int kStages = 4;
constexpr int kPieces = kSliceBytes / 16;  // 16-byte pieces per row and stage
constexpr int kRowStep = kThreads / kPieces;
constexpr int kFar = INT_MIN / 2;  // position of rows past M: never in bounds

// Block tile BM rows × BN columns.  128 × 64 by default; 64 rows when the
// problem would not fill the GPU with 128-row tiles, 32 columns when a group
// has at most 32 (then a 64-wide tile would be half empty).
template <int BM, int BN>
struct Tile {
  static constexpr int kAStageBytes = BM * kPitch;
  static constexpr int kStageBytes = kAStageBytes + BN * kPitch;
  static constexpr int kSmemBytes = kStages * kStageBytes;
  static constexpr int kARows = BM / kRowStep;  // A rows a thread loads per stage
  static constexpr int kBRows = BN / kRowStep;  // B rows a thread loads per stage
  static constexpr int kWarpM = BM / 2, kWarpN = BN / 2;
  static constexpr int kMmaM = kWarpM / 16, kMmaN = kWarpN / 8;
  static constexpr int kLdcChannelFastest = BN + 4;  // 16-byte aligned rows for vector reads
  static constexpr int kLdcRowFastest = BN + 1;      // conflict-free reads down a column
  static_assert(kARows >= 1 && kBRows >= 1 && kMmaN % 2 == 0, "tile shape");
  static_assert(BM * kLdcChannelFastest * 4 <= kSmemBytes, "C tile fits the stages");
  static_assert(BM <= kThreads && BN <= kThreads, "one row / column per thread in the setup");
};

template <typename scalar_t>
constexpr int kVec = 16 / int(sizeof(scalar_t));  // elements per 16-byte piece
template <typename scalar_t>
constexpr int kSlice = kSliceBytes / int(sizeof(scalar_t));  // K elements per stage

// Block-uniform description of the walk along K.
template <typename index_t>
struct Walk {
  using uoff_t = std::make_unsigned_t<index_t>;
  int channels;
  int taps[3];
  int extent[3];    // source extents
  int p_step[3];    // source position change per tap step
  uoff_t a_step[3]; // source offset change per tap step
  uoff_t b_step[3]; // packed-weight offset change per tap step
};

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

// A source row: offset and position of tap 0 (kFar for rows past M).
template <typename index_t>
struct SourceRow {
  std::make_unsigned_t<index_t> off;
  int pos[3];
};

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

struct KernelArgs {
  ConvTranspose3dParams p;
  TensorCoreGemmOperands ops;
  Strides5 dest;      // p.output (forward) or p.input (grad-input)
  int ntiles;         // column tiles
  int phases[3];      // stride phases per axis (forward), 1s for grad-input
  bool vector_store;  // dest channel-contiguous, columns and strides multiples of 16 bytes
  bool row_fastest;   // scalar stores walk rows (NCDHW-like dest)
};

__device__ __forceinline__ GemmAxis pass_axis(const KernelArgs& k, int a, int r) {
  return k.ops.pass == GatherPass::Forward ? forward_phase_axis(k.p.axis[a], r)
                                           : grad_input_axis(k.p.axis[a]);
}

template <typename scalar_t, typename index_t, int BM, int BN>
__global__ void __launch_bounds__(kThreads, 3) tensor_core_gemm_kernel(const KernelArgs k) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using uoff_t = std::make_unsigned_t<index_t>;
  using T = Tile<BM, BN>;
  constexpr int kBM = BM, kBN = BN;
  constexpr int kAStageBytes = T::kAStageBytes, kStageBytes = T::kStageBytes;
  constexpr int kARows = T::kARows, kBRows = T::kBRows;
  constexpr int kWarpM = T::kWarpM, kWarpN = T::kWarpN, kMmaM = T::kMmaM, kMmaN = T::kMmaN;
  constexpr int VEC = kVec<scalar_t>;
  constexpr int SLICE = kSlice<scalar_t>;
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ index_t s_dst[kBM];
  __shared__ float s_bias[kBN];

  // Block → (m-tile, phase, n-tile, group), in 32-bit arithmetic: the setup
  // below runs once per block, and with a short K (a U-Net layer has four
  // pipeline stages) 64-bit divisions in it would cost as much as the GEMM.
  const int tid = threadIdx.x;
  const uint32_t nphase = uint32_t(k.phases[0] * k.phases[1] * k.phases[2]);
  const uint32_t bx = blockIdx.x;
  const int ntile = int(bx % uint32_t(k.ntiles));
  const uint32_t rest = bx / uint32_t(k.ntiles);
  const int phase = int(rest % nphase);
  const int64_t m0 = int64_t(rest / nphase) * kBM;
  const int group = blockIdx.y;
  // The block's three GemmAxis, derived once (by three threads) and shared.
  __shared__ GemmAxis ax[3];
  {
    const int r[3] = {phase / (k.phases[1] * k.phases[2]), (phase / k.phases[2]) % k.phases[1],
                      phase % k.phases[2]};
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      if (tid == a) ax[a] = pass_axis(k, a, r[a]);
    }
  }
  __syncthreads();
  int64_t M = k.p.batch;
  int taps = 1;
#pragma unroll
  for (int a = 0; a < 3; ++a) {
    M *= ax[a].rows;
    taps *= int(ax[a].taps);
  }
  if (m0 >= M) return;  // a phase smaller than the largest: block-uniform
  const int C = int(k.ops.channels);
  const int columns = int(k.ops.columns);
  const int K = taps * C;
  const int n0 = ntile * kBN;

  const int64_t src_stride[3] = {k.ops.source_d, k.ops.source_h, k.ops.source_w};
  const int64_t dst_stride[3] = {k.dest.d, k.dest.h, k.dest.w};
  const int64_t kstride[3] = {k.p.axis[1].kernel * k.p.axis[2].kernel, k.p.axis[2].kernel, 1};
  const int64_t cols_c = int64_t(columns) * C;

  Walk<index_t> w;
  w.channels = C;
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
  const int64_t kvol = k.p.axis[0].kernel * k.p.axis[1].kernel * k.p.axis[2].kernel;

  // Row decomposition m → (n, j0, j1, j2); 32-bit when offsets are (M then
  // counts at most the destination's elements, < 2^31).
  using row_t = std::conditional_t<sizeof(index_t) == 4, uint32_t, uint64_t>;
  const row_t extent[3] = {row_t(ax[0].rows), row_t(ax[1].rows), row_t(ax[2].rows)};
  auto decompose = [&](int64_t m64, int64_t& n, int (&j)[3]) {
    row_t m = row_t(m64);
#pragma unroll
    for (int a = 2; a >= 0; --a) {
      j[a] = int(m % extent[a]);
      m /= extent[a];
    }
    n = int64_t(m);
  };

  // Destination row offsets and bias of the tile.
  {
    const int64_t m = m0 + tid;
    if (tid < kBM && m < M) {
      int64_t n;
      int j[3];
      decompose(m, n, j);
      int64_t off = n * k.dest.n + int64_t(group) * columns * k.dest.c;
#pragma unroll
      for (int a = 0; a < 3; ++a) off += (j[a] * ax[a].dst_per_row + ax[a].dst_origin) * dst_stride[a];
      s_dst[tid] = index_t(off);
    }
    if (tid < kBN) {
      const int co = n0 + tid;
      const scalar_t* bias = static_cast<const scalar_t*>(k.ops.bias);
      s_bias[tid] = bias != nullptr && co < columns
                        ? to_acc(bias[index_t((int64_t(group) * columns + co) * k.p.bias_stride)])
                        : 0.f;
    }
  }

  // This thread's source rows, weight rows and K cursor.
  const int piece = tid % kPieces;
  const int row0 = tid / kPieces;
  SourceRow<index_t> rows[kARows];
#pragma unroll
  for (int q = 0; q < kARows; ++q) {
    const int64_t m = m0 + row0 + q * kRowStep;
    if (m < M) {
      int64_t n;
      int j[3];
      decompose(m, n, j);
      uoff_t off = uoff_t(index_t(n * k.ops.source_n + int64_t(group) * C));
#pragma unroll
      for (int a = 0; a < 3; ++a) {
        rows[q].pos[a] = int(j[a] * ax[a].src_per_row + ax[a].src_origin);
        off += uoff_t(index_t(rows[q].pos[a])) * uoff_t(index_t(src_stride[a]));
      }
      rows[q].off = off;
    } else {
      rows[q].off = 0;
      rows[q].pos[0] = rows[q].pos[1] = rows[q].pos[2] = kFar;
    }
  }
  uoff_t b_row[kBRows];
  bool b_ok[kBRows];
#pragma unroll
  for (int q = 0; q < kBRows; ++q) {
    const int col = n0 + row0 + q * kRowStep;
    b_ok[q] = col < columns;
    b_row[q] = uoff_t(index_t((int64_t(group) * kvol + kidx_origin) * cols_c + int64_t(col) * C));
  }
  Cursor<index_t> cur{};
  advance(cur, w, piece * VEC);

  const scalar_t* src = static_cast<const scalar_t*>(k.ops.source);
  const scalar_t* wts = static_cast<const scalar_t*>(k.ops.packed_weight);
  const uint32_t smem0 = smem_addr(smem);

  auto load_stage = [&](int stage) {
    const uint32_t sa = smem0 + stage * kStageBytes;
    const uint32_t sb = sa + kAStageBytes;
    const bool kok = cur.kk < K;
#pragma unroll
    for (int q = 0; q < kARows; ++q) {
      const bool ok = kok && in_bounds(rows[q], cur, w);
      const scalar_t* g = ok ? src + index_t(rows[q].off + cur.a_off) : src;
      cp_async16(sa + (row0 + q * kRowStep) * kPitch + piece * 16, g, ok);
    }
#pragma unroll
    for (int q = 0; q < kBRows; ++q) {
      const bool ok = kok && b_ok[q];
      const scalar_t* g = ok ? wts + index_t(b_row[q] + cur.b_off) : wts;
      cp_async16(sb + (row0 + q * kRowStep) * kPitch + piece * 16, g, ok);
    }
    advance(cur, w, SLICE);
  };

  const int lane = tid % 32, warp = tid / 32;
  const int wm = warp % 2, wn = warp / 2;
  float acc[kMmaM][kMmaN][4];
#pragma unroll
  for (int i = 0; i < kMmaM; ++i)
#pragma unroll
    for (int j = 0; j < kMmaN; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

  // ldmatrix lane addresses (bytes within a stage) for k-step 0.
  const uint32_t a_lane = (wm * kWarpM + lane % 16) * kPitch + (lane / 16) * 16;
  const uint32_t b_lane = (wn * kWarpN + lane % 8 + 8 * (lane / 16)) * kPitch + ((lane / 8) % 2) * 16;

  const int nslices = (K + SLICE - 1) / SLICE;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < nslices) load_stage(s);
    cp_async_commit();
  }
  for (int slice = 0; slice < nslices; ++slice) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // slice's stage is visible; the stage refilled below was consumed
    if (slice + kStages - 1 < nslices) load_stage((slice + kStages - 1) % kStages);
    cp_async_commit();

    const uint32_t sa = smem0 + (slice % kStages) * kStageBytes;
    const uint32_t sb = sa + kAStageBytes;
#pragma unroll
    for (int ks = 0; ks < kSliceBytes / 32; ++ks) {
      uint32_t af[kMmaM][4];
      uint32_t bf[kMmaN][2];
#pragma unroll
      for (int i = 0; i < kMmaM; ++i) ldmatrix_x4(af[i], sa + a_lane + i * 16 * kPitch + ks * 32);
#pragma unroll
      for (int jj = 0; jj < kMmaN / 2; ++jj) {
        uint32_t t4[4];
        ldmatrix_x4(t4, sb + b_lane + jj * 16 * kPitch + ks * 32);
        bf[2 * jj][0] = t4[0];
        bf[2 * jj][1] = t4[1];
        bf[2 * jj + 1][0] = t4[2];
        bf[2 * jj + 1][1] = t4[3];
      }
      if constexpr (std::is_same_v<scalar_t, float>) {
#pragma unroll
        for (int i = 0; i < kMmaM; ++i)
#pragma unroll
          for (int e = 0; e < 4; ++e) af[i][e] = to_tf32(af[i][e]);
#pragma unroll
        for (int j = 0; j < kMmaN; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) bf[j][e] = to_tf32(bf[j][e]);
      }
#pragma unroll
      for (int i = 0; i < kMmaM; ++i)
#pragma unroll
        for (int j = 0; j < kMmaN; ++j) mma<scalar_t>(acc[i][j], af[i], bf[j]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // every stage read; the C tile reuses them

  // Accumulators → shared C tile [row][column].
  float* cs = reinterpret_cast<float*>(smem);
  const int ldc = k.row_fastest ? T::kLdcRowFastest : T::kLdcChannelFastest;
  {
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int i = 0; i < kMmaM; ++i)
#pragma unroll
      for (int j = 0; j < kMmaN; ++j) {
        const int row = wm * kWarpM + i * 16 + g;
        const int col = wn * kWarpN + j * 8 + 2 * t;
        cs[row * ldc + col] = acc[i][j][0];
        cs[row * ldc + col + 1] = acc[i][j][1];
        cs[(row + 8) * ldc + col] = acc[i][j][2];
        cs[(row + 8) * ldc + col + 1] = acc[i][j][3];
      }
  }
  __syncthreads();

  scalar_t* dst = static_cast<scalar_t*>(k.ops.dest);
  const int rows_here = M - m0 < kBM ? int(M - m0) : kBM;
  const int cols_here = columns - n0 < kBN ? columns - n0 : kBN;
  if (k.vector_store) {
    constexpr int kPer = kBN / VEC;
    for (int idx = tid; idx < kBM * kPer; idx += kThreads) {
      const int row = idx / kPer, col = (idx % kPer) * VEC;
      if (row < rows_here && col < cols_here) {  // columns % VEC == 0: whole piece valid
        union {
          uint4 v;
          scalar_t e[VEC];
        } out;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          out.e[e] = from_acc<scalar_t>(cs[row * ldc + col + e] + s_bias[col + e]);
        }
        *reinterpret_cast<uint4*>(dst + s_dst[row] + index_t(n0 + col)) = out.v;
      }
    }
  } else {
    const index_t dc = index_t(k.dest.c);
    for (int idx = tid; idx < kBM * kBN; idx += kThreads) {
      const int row = k.row_fastest ? idx % kBM : idx / kBN;
      const int col = k.row_fastest ? idx / kBM : idx % kBN;
      if (row < rows_here && col < cols_here) {
        dst[s_dst[row] + index_t(n0 + col) * dc] =
            from_acc<scalar_t>(cs[row * ldc + col] + s_bias[col]);
      }
    }
  }
#else
  __trap();  // never launched: tensor_core_gemm_supports requires sm_80 code
#endif
}

// ---------------------------------------------------------------------------
// Host side.

struct LaunchShape {
  int bm, bn;
  int64_t mtiles, ntiles, phases[3];
  int64_t blocks_x() const { return mtiles * phases[0] * phases[1] * phases[2] * ntiles; }
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

std::atomic<int> g_forced_bm{0}, g_forced_bn{0};

int sm_count() {
  static std::atomic<int> cached{0};
  int n = cached.load(std::memory_order_relaxed);
  if (n == 0) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();  // clear
      return 132;
    }
    cached.store(n, std::memory_order_relaxed);
  }
  return n;
}

// 32 columns for narrow groups; 64 rows unless 128-row tiles give the GPU at
// least one full wave (3 blocks per SM).  The choice depends on the shape and
// the device only, so results stay bitwise reproducible on a given GPU (the
// tile does not change any sum's order anyway: each output is one block's).
inline LaunchShape choose_tile(const ConvTranspose3dParams& p, GatherPass pass) {
  const int bn = g_forced_bn.load() ? g_forced_bn.load() : (columns_of(p, pass) <= 32 ? 32 : 64);
  if (g_forced_bm.load()) return launch_shape(p, pass, g_forced_bm.load(), bn);
  const LaunchShape big = launch_shape(p, pass, 128, bn);
  return big.blocks_x() * p.groups >= 3 * int64_t(sm_count()) ? big : launch_shape(p, pass, 64, bn);
}

// Positions, taps and K in int with headroom; the grid within CUDA's limits.
inline bool problem_fits(const ConvTranspose3dParams& p, GatherPass pass, int64_t vec) {
  constexpr int64_t kLimit = int64_t(1) << 30;
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
  if (taps * padded + kSliceBytes >= INT_MAX || columns_of(p, pass) >= kLimit) return false;
  const LaunchShape smallest = launch_shape(p, pass, 64, 32);  // the most blocks
  return p.groups <= 65535 && smallest.blocks_x() < INT_MAX;
}

template <typename scalar_t, typename index_t, int BM, int BN>
cudaError_t launch_tile(const KernelArgs& args, const LaunchShape& s, cudaStream_t stream) {
  auto* kernel = tensor_core_gemm_kernel<scalar_t, index_t, BM, BN>;
  constexpr int smem = Tile<BM, BN>::kSmemBytes;
  const cudaError_t err = opt_in_dynamic_smem<tensor_core_gemm_kernel<scalar_t, index_t, BM, BN>>(smem);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned int>(s.blocks_x()), static_cast<unsigned int>(args.p.groups));
  kernel<<<grid, kThreads, smem, stream>>>(args);
  return cudaGetLastError();
}

template <typename scalar_t, typename index_t>
cudaError_t launch_typed(const KernelArgs& args, const LaunchShape& s, cudaStream_t stream) {
  if (s.bm == 128) {
    return s.bn == 64 ? launch_tile<scalar_t, index_t, 128, 64>(args, s, stream)
                      : launch_tile<scalar_t, index_t, 128, 32>(args, s, stream);
  }
  return s.bn == 64 ? launch_tile<scalar_t, index_t, 64, 64>(args, s, stream)
                    : launch_tile<scalar_t, index_t, 64, 32>(args, s, stream);
}

inline bool multiple_of(int64_t v, int64_t m) { return v % m == 0; }

}  // namespace tcg

int64_t tensor_core_channel_multiple(ScalarKind dtype) {
  return dtype == ScalarKind::Float32 ? 4 : 8;
}

bool tensor_core_gemm_supports(const ConvTranspose3dParams& p, GatherPass pass, ScalarKind dtype,
                               bool allow_tf32) {
  const bool dtype_ok = dtype == ScalarKind::Float16 || dtype == ScalarKind::BFloat16 ||
                        (dtype == ScalarKind::Float32 && allow_tf32);
  if (!dtype_ok || p.in_per_group < 1 || p.out_per_group < 1) return false;
  if (p.batch > 0 && !tcg::problem_fits(p, pass, tensor_core_channel_multiple(dtype))) return false;
  return sm80_kernel_runs_here<tcg::tensor_core_gemm_kernel<__half, int32_t, 128, 64>>();
}

cudaError_t launch_tensor_core_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                    const TensorCoreGemmOperands& ops) {
  using tcg::multiple_of;
  const tcg::LaunchShape s = tcg::choose_tile(p, ops.pass);
  if (p.batch == 0 || s.blocks_x() == 0) return cudaSuccess;
  tcg::KernelArgs args{};
  args.p = p;
  args.ops = ops;
  args.dest = ops.pass == GatherPass::Forward ? p.output : p.input;
  args.ntiles = int(s.ntiles);
  for (int a = 0; a < 3; ++a) args.phases[a] = int(s.phases[a]);
  const int64_t vec = tensor_core_channel_multiple(cfg.dtype);
  const Strides5& d = args.dest;
  args.vector_store = d.c == 1 && multiple_of(ops.columns, vec) && multiple_of(d.n, vec) &&
                      multiple_of(d.d, vec) && multiple_of(d.h, vec) && multiple_of(d.w, vec) &&
                      reinterpret_cast<uintptr_t>(ops.dest) % 16 == 0;
  args.row_fastest = !(d.c < d.w);
  cudaError_t err = cudaErrorInvalidValue;
  dispatch_index(cfg.wide_index, [&](auto index) {
    using index_t = decltype(index);
    switch (cfg.dtype) {
      case ScalarKind::Float16:
        err = tcg::launch_typed<__half, index_t>(args, s, cfg.stream);
        break;
      case ScalarKind::BFloat16:
        err = tcg::launch_typed<__nv_bfloat16, index_t>(args, s, cfg.stream);
        break;
      case ScalarKind::Float32:
        err = tcg::launch_typed<float, index_t>(args, s, cfg.stream);
        break;
      default:
        break;
    }
  });
  return err;
}

void set_tensor_core_tile(int rows, int columns) {
  tcg::g_forced_bm.store(rows);
  tcg::g_forced_bn.store(columns);
}

}  // namespace tconv3d::cuda
