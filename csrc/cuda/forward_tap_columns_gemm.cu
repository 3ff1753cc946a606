// The forward when every output position takes exactly one tap: kernel ==
// stride, no dilation, padding or output padding, on every axis (3-D U-Net
// decoders, k = s = 2).  Then output position i·s + k is input position i
// through tap k alone, and per group the layer is one GEMM
//
//   Y[i, (k, co)] = Σ_ci X[i, ci] · W[ci, (k, co)] + b[co]
//
// over rows i = input positions and columns (tap, co), stored interleaved.
// The phase-decomposed GEMM (tensor_core_gemm.cu) runs it as s³ GEMMs of
// K = Cin/G each: a pipeline fill, a few k-steps and an epilogue per tile,
// every phase loading the same rows of x again.  Here a block loads its
// 128 rows of x once, whole K (≤ 512 bytes of channels), and walks its
// column tiles with the next tile's weights in flight while it multiplies.
//
// Tile: 128 rows × 64 columns, 8 warps in 4 × 2, each 32 × 32 = 2 × 4
// m16n8 pieces (k16 fp16/bf16, k8 TF32), fragments by ldmatrix from rows
// padded to an odd number of 16-byte pieces (conflict-free).  K is padded
// with zeros to 32 bytes (one k-step) by the zero-filling copies.
// Epilogue: accumulators + bias, rounded once.  Where the output is
// channel-contiguous and Cout/G whole 16-byte pieces (so no piece straddles
// two taps), through a shared tile into 16-byte stores; else straight from
// the registers (staging NCDHW through shared memory measured 20-35 % slower
// on the U-Net cases, the staged loop costing three shared loads an
// element).  Into NCDHW outputs with an even kernel width the columns are
// walked as (kd, kh, co, kw): a thread's two neighbouring columns are then
// neighbouring outputs of one row, written as one pair, and a warp's store
// covers whole 32-byte sectors (in (tap, co) order they were half-written
// twice, by two tiles or warps).  Each output is written once by one
// thread: deterministic, no workspace.
//
// NCDHW sources are read as they are where each (n, c) plane is contiguous
// and a whole number of 16-byte pieces: a tile's 128 rows of one channel are
// contiguous there, so A lands k-major ([channel][row]) and the fragments
// are transposed on the way out of shared memory (mma_k_step_k_major_a).
// That saves the channels-last copy of x (its bytes written and read again,
// and memory the size of x: 512 MB for the big U-Net's TF32 input).
//
// Channels-last outputs (fp16/bf16 and TF32) run on Hopper's warpgroup MMAs
// where they can (forward_tap_columns_sm90.cu; cuda_passes.cpp tries it first).
#include "tensor_core_gemm.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <c10/macros/Macros.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../scalar_convert.h"
#include "dispatch.cuh"
#include "implicit_gemm_walk.cuh"
#include "mma_sm80.cuh"
#include "vector_access.cuh"

namespace tconv3d::cuda {
namespace tapcol {

constexpr int kBM = 128, kBN = 64, kThreads = 256;
constexpr int kWarpsM = 4, kWarpM = 32, kWarpN = 32, kMI = kWarpM / 16, kNI = kWarpN / 8;
constexpr int kMaxKBytes = 512;
// A k-major: a channel's 128 rows, 8 elements more (16-byte aligned rows;
// TF32 word loads conflict-free at 136 words, ldmatrix rows at 17 pieces).
constexpr int kKMajorRowElements = kBM + 8;
template <typename scalar_t>
constexpr int kPitchKMajor = kKMajorRowElements * int(sizeof(scalar_t));
// A's tile in shared memory: k_bytes / element size channel rows of
// kPitchKMajor bytes, or kBM position rows of k_bytes + 16 (an odd number of
// 16-byte pieces).
constexpr int a_tile_bytes(bool k_major, int k_bytes) {
  return k_major ? kKMajorRowElements * k_bytes : kBM * (k_bytes + 16);
}
// The output tile for 16-byte stores: [row][column], rows a piece longer
// (aligned for the vector reads, writes from fragments spread over the banks).
template <typename scalar_t>
constexpr int kOutPitch = kBN + 16 / int(sizeof(scalar_t));
constexpr int kOutBytes = kBM * (kBN + 4) * 4;  // the larger, fp32
constexpr int kMaxABytes = std::max(a_tile_bytes(false, kMaxKBytes), a_tile_bytes(true, kMaxKBytes));
constexpr int kMaxSmem = kMaxABytes + 2 * kBN * (kMaxKBytes + 16) + kOutBytes;

struct Args {
  ConvTranspose3dParams p;
  TensorCoreGemmOperands ops;
  int64_t rows;       // N·D·H·W input positions
  int64_t col_count;  // taps · Cout/G
  int64_t m_tiles, col_tiles, tiles_per_block;
  int k_bytes;  // channels · element size, rounded up to 32
  int pitch;    // k_bytes + 16: an odd number of 16-byte pieces
  int a_bytes;  // A's tile in shared memory
  // The kernel width and height and Cout/G as multiply-shift dividers: the
  // column decodes' chains of divisions sit on every tile's path (the first
  // two warps decode while the others wait at the barrier).
  at::cuda::detail::IntDivider<unsigned> kw_div, kh_div, cog_div;
  // Staged 16-byte stores: output channel-contiguous; Cout/G, strides and
  // address in pieces.
  bool vector_store;
  bool pair_store;  // a thread's two neighbouring columns neighbouring outputs: one pair store
  bool kw_pairs;    // columns walked as (kd, kh, co, kw) (NCDHW outputs: kw, kw + 1 neighbours)
};

// Blocks an SM: two at 115-119 registers a thread; three (compiled to 80
// registers, 12-32 bytes of spills, stored once a block and reloaded once a
// column tile, none in the k-loop) where the output takes the staged 16-byte
// stores and shared memory holds three (on an H100/H200 fp16/bf16 groups of up
// to 96 input channels, TF32 of up to 32).  The big U-Net 64 → 32 forward was
// latency-bound at two (ncu: 0.48 instructions issued a scheduler a cycle);
// at three its bf16 channels-last forward took 0.619 against 0.757 ms (H200,
// RESULTS.md), but into NCDHW outputs from a channels-last copy of x (scalar
// stores from the registers then) three blocks lost 17-25 % (TF32 2.09
// against 1.68 ms, bf16 1.49 against 1.24); read in place with paired
// stores, the same layer gains from three (launch_typed).
// Each output is computed the same way in either.
template <typename scalar_t, typename index_t, int kMinBlocks, bool kKMajorA>
__global__ void __launch_bounds__(kThreads, kMinBlocks) forward_tap_columns_kernel(const Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int ES = sizeof(scalar_t), VEC = 16 / ES;
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ index_t s_xrow[kBM], s_yrow[kBM];
  __shared__ index_t s_col[2][kBN];
  __shared__ float s_bias[2][kBN];
  __shared__ int s_wcol[2][kBN];  // packed weight column of tile t's columns

  const ConvTranspose3dParams& p = a.p;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp % kWarpsM, wn = warp / kWarpsM;
  const int64_t g = blockIdx.y;
  const int64_t m0 = int64_t(blockIdx.x % a.m_tiles) * kBM;
  const int64_t t_begin = int64_t(blockIdx.x / a.m_tiles) * a.tiles_per_block;
  const int64_t t_end = std::min(t_begin + a.tiles_per_block, a.col_tiles);
  const int C = int(a.ops.channels), cog = int(a.ops.columns);
  const int pieces = a.k_bytes / 16, pitch = a.pitch;
  const uint32_t sa = smem_addr(smem), sb0 = sa + a.a_bytes;
  const int b_bytes = kBN * pitch;
  scalar_t* const out = reinterpret_cast<scalar_t*>(smem + a.a_bytes + 2 * b_bytes);
  constexpr int out_pitch = kOutPitch<scalar_t>;
  const scalar_t* x = static_cast<const scalar_t*>(a.ops.source);
  const scalar_t* wts = static_cast<const scalar_t*>(a.ops.packed_weight) + g * a.col_count * C;
  const scalar_t* bias = static_cast<const scalar_t*>(a.ops.bias);
  scalar_t* y = static_cast<scalar_t*>(a.ops.dest);
  const int kw_count = int(p.axis[2].kernel);
  // Column j of the walk → column of the packed weight ((tap, co) order).
  // Columns in 32 bits (col_count < 2^31, forward_tap_columns_gemm_supports):
  // 64-bit divisions here, a few a weight piece and column a tile, were most
  // of the big U-Net NCDHW forward's instructions (ncu: issue-bound).
  auto packed_column = [&](int j) -> int {
    if (!a.kw_pairs) return j;
    const auto kw = a.kw_div.divmod(unsigned(j));  // (kd, kh, co) and kw
    const auto co = a.cog_div.divmod(kw.div);      // (kd, kh) and co
    return (int(co.div) * kw_count + int(kw.mod)) * cog + int(co.mod);
  };

  if (tid < kBM) {  // the rows' offsets in x and y (tap 0, channel 0 of the group)
    const int64_t r = m0 + tid;
    index_t xo = 0, yo = 0;
    if (r < a.rows) {
      int64_t i[3];
      const int64_t n = unflatten_input_position(p.axis, r, i);
      const int64_t id = i[0], ih = i[1], iw = i[2];
      const int64_t group_channels = kKMajorA ? p.in_per_group : C;
      xo = index_t(n * a.ops.source_n + id * a.ops.source_d + ih * a.ops.source_h +
                   iw * a.ops.source_w + g * group_channels * a.ops.source_c);
      yo = index_t(n * p.output.n + id * p.axis[0].stride * p.output.d +
                   ih * p.axis[1].stride * p.output.h + iw * p.axis[2].stride * p.output.w +
                   g * cog * p.output.c);
    }
    s_xrow[tid] = xo;
    s_yrow[tid] = yo;
  }
  auto column_tables = [&](int64_t t) {  // output offset and bias of tile t's columns
    if (tid < kBN) {
      const int j = int(t) * kBN + tid;
      index_t off = 0;
      float b = 0.f;
      if (j < a.col_count) {
        const auto tap = a.cog_div.divmod(unsigned(packed_column(j)));  // tap and co
        const auto kw = a.kw_div.divmod(tap.div);                       // (kd, kh) and kw
        const auto kh = a.kh_div.divmod(kw.div);                        // kd and kh
        const int64_t co = tap.mod;
        off = index_t(kh.div * p.output.d + kh.mod * p.output.h + kw.mod * p.output.w +
                      co * p.output.c);
        if (bias != nullptr) b = to_acc(bias[index_t((g * cog + co) * p.bias_stride)]);
      }
      s_col[t % 2][tid] = off;
      s_bias[t % 2][tid] = b;
    }
  };
  // By the last two warps (column_tables' are the first two), a tile ahead
  // of its load_b, so the loads decode no columns.
  auto weight_columns = [&](int64_t t) {
    if (tid >= kThreads - kBN) {
      const int j = int(t) * kBN + tid - (kThreads - kBN);
      s_wcol[t % 2][tid - (kThreads - kBN)] = j < a.col_count ? packed_column(j) : -1;
    }
  };
  auto load_b = [&](int64_t t) {
    const uint32_t sb = sb0 + int(t % 2) * b_bytes;
    for (int idx = tid; idx < kBN * pieces; idx += kThreads) {
      const int col = idx / pieces, pc = idx % pieces;
      const int wcol = s_wcol[t % 2][col];
      const bool ok = wcol >= 0 && pc * VEC < C;
      cp_async16(sb + col * pitch + pc * 16, ok ? wts + index_t(wcol) * C + pc * VEC : wts, ok);
    }
  };
  weight_columns(t_begin);
  weight_columns(t_begin + 1);
  __syncthreads();  // row offsets and the first two tiles' weight columns visible
  if constexpr (kKMajorA) {
    // [channel][row]: VEC rows a piece, never across two samples (D·H·W is
    // whole pieces); channels past the group's, up to the k-step, zeros.
    constexpr int kRowPieces = kBM / VEC;
    const int k_rows = a.k_bytes / ES;
    for (int idx = tid; idx < k_rows * kRowPieces; idx += kThreads) {
      const int c = idx / kRowPieces, row = idx % kRowPieces * VEC;
      const bool ok = m0 + row < a.rows && c < p.in_per_group;
      cp_async16(sa + c * kPitchKMajor<scalar_t> + row * ES,
                 ok ? x + s_xrow[row] + index_t(c * a.ops.source_c) : x, ok);
    }
  } else {
    for (int idx = tid; idx < kBM * pieces; idx += kThreads) {
      const int row = idx / pieces, pc = idx % pieces;
      const bool ok = m0 + row < a.rows && pc * VEC < C;
      cp_async16(sa + row * pitch + pc * 16, ok ? x + s_xrow[row] + pc * VEC : x, ok);
    }
  }
  load_b(t_begin);
  column_tables(t_begin);
  cp_async_commit();

  const int gq = lane / 4, tq = lane % 4;
  const uint32_t a_lane = (wm * kWarpM + lane % 16) * pitch + (lane / 16) * 16;
  const uint32_t b_lane = (wn * kWarpN + lane % 8 + 8 * (lane / 16)) * pitch + ((lane / 8) % 2) * 16;
  for (int64_t t = t_begin; t < t_end; ++t) {
    if (t + 1 < t_end) {
      load_b(t + 1);  // its buffer and tables were last read before the loop's closing barrier
      column_tables(t + 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // x rows and tile t's weights and tables visible
    // Buffer t % 2 was last read by load_b(t), before this barrier; read by
    // load_b(t + 2) after the loop's closing one.
    if (t + 2 < t_end) weight_columns(t + 2);

    float acc[kMI][kNI][4];
    zero_accumulators(acc);
    const uint32_t sb = sb0 + int(t % 2) * b_bytes;
    if constexpr (kKMajorA) {
#pragma unroll 2
      for (int kb = 0; kb < a.k_bytes; kb += 32) {
        mma_k_step_k_major_a<scalar_t, kMI, kNI, kPitchKMajor<scalar_t>>(
            acc, smem + kb / ES * kPitchKMajor<scalar_t>, wm * kWarpM, lane, sb + b_lane + kb,
            pitch);
      }
    } else {
#pragma unroll 2
      for (int kb = 0; kb < a.k_bytes; kb += 32) {
        mma_k_step<scalar_t, kMI, kNI>(acc, sa + a_lane + kb, sb + b_lane + kb, pitch);
      }
    }

    const index_t* cols = s_col[t % 2];
    const float* bs = s_bias[t % 2];
    if (a.vector_store) {
#pragma unroll
      for (int i = 0; i < kMI; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {  // rows gq and gq + 8 of the m16 piece
          const int row = wm * kWarpM + i * 16 + gq + 8 * h;
#pragma unroll
          for (int j = 0; j < kNI; ++j) {
            const int col = wn * kWarpN + j * 8 + 2 * tq;
            out[row * out_pitch + col] = from_acc<scalar_t>(acc[i][j][2 * h] + bs[col]);
            out[row * out_pitch + col + 1] =
                from_acc<scalar_t>(acc[i][j][2 * h + 1] + bs[col + 1]);
          }
        }
      __syncthreads();  // the output tile is complete
      const int rows_here = int(std::min<int64_t>(a.rows - m0, kBM));
      const int cols_here = int(std::min<int64_t>(a.col_count - t * kBN, kBN));
      constexpr int PER_ROW = kBN / VEC;
      for (int idx = tid; idx < kBM * PER_ROW; idx += kThreads) {
        const int row = idx / PER_ROW, col = idx % PER_ROW * VEC;
        if (row < rows_here && col < cols_here) {  // col_count is whole pieces
          *reinterpret_cast<uint4*>(y + s_yrow[row] + cols[col]) =
              *reinterpret_cast<const uint4*>(out + row * out_pitch + col);
        }
      }
    } else {
      // The thread's columns' offsets and biases in registers first: y may
      // alias shared memory as far as the compiler knows, so read in the
      // store loop they were read again after every store (ncu: the big U-Net
      // NCDHW forward issue-bound, most of its instructions here).
      index_t col_off[kNI][2];
      float col_bias[kNI][2];
      bool col_in[kNI][2];
      const int cols_here = int(std::min<int64_t>(a.col_count - t * kBN, kBN));
#pragma unroll
      for (int j = 0; j < kNI; ++j) {
        const int col = wn * kWarpN + j * 8 + 2 * tq;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          col_off[j][e] = cols[col + e];
          col_bias[j][e] = bs[col + e];
          col_in[j][e] = col + e < cols_here;
        }
      }
      const int rows_here = int(std::min<int64_t>(a.rows - m0, kBM));
      // The pair and single stores in loops of their own: a branch between
      // them at every store cost more instructions than the stores.
      auto store_fragments = [&](auto store) {
#pragma unroll
        for (int i = 0; i < kMI; ++i)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int row = wm * kWarpM + i * 16 + gq + 8 * h;
            if (row >= rows_here) continue;
            scalar_t* yr = y + s_yrow[row];
#pragma unroll
            for (int j = 0; j < kNI; ++j) {
              store(yr, j, from_acc<scalar_t>(acc[i][j][2 * h] + col_bias[j][0]),
                    from_acc<scalar_t>(acc[i][j][2 * h + 1] + col_bias[j][1]));
            }
          }
      };
      if (a.pair_store) {  // (kw, kw + 1) of one co, or (co, co + 1) of one tap: col_count is even
        store_fragments([&](scalar_t* yr, int j, scalar_t v0, scalar_t v1) {
          if (col_in[j][0]) *reinterpret_cast<Vec<scalar_t, 2>*>(yr + col_off[j][0]) = {{v0, v1}};
        });
      } else {
        store_fragments([&](scalar_t* yr, int j, scalar_t v0, scalar_t v1) {
          if (col_in[j][0]) yr[col_off[j][0]] = v0;
          if (col_in[j][1]) yr[col_off[j][1]] = v1;
        });
      }
    }
    __syncthreads();  // tile t's buffer and tables are free for tile t + 2
  }
#else
  __trap();  // never launched: forward_tap_columns_gemm_supports requires sm_80 code
#endif
}

// Row tiles × column-tile chunks × groups.
inline int64_t grid_blocks(const Args& a) {
  return a.m_tiles * ((a.col_tiles + a.tiles_per_block - 1) / a.tiles_per_block) * a.p.groups;
}

template <typename scalar_t, typename index_t, int kMinBlocks, bool kKMajorA>
cudaError_t launch_blocks(const Args& a, int smem, cudaStream_t stream) {
  constexpr auto kernel = forward_tap_columns_kernel<scalar_t, index_t, kMinBlocks, kKMajorA>;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(kMaxSmem);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned int>(grid_blocks(a) / a.p.groups),
                  static_cast<unsigned int>(a.p.groups));
  kernel<<<grid, kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

// Static shared memory (row and column tables, bias) and the 1 KB the
// driver reserves a block, rounded up.
constexpr int kBlockOverhead = 5 * 1024;

// Blocks of `smem` bytes of dynamic shared memory that fit an SM.
int blocks_fit(int smem) { return smem_per_sm() / (smem + kBlockOverhead); }

// NCDHW sources (k-major A) go with NCDHW outputs (torch's memory-format
// rule), whose paired stores come from the registers: three blocks an SM
// (80 registers, 12-32 bytes of spills outside the k-loop) on grids of at least
// three waves of two, else two.  Big U-Net 64 → 32 bf16 took 0.998 ms at
// three against 1.222 at two (16384 blocks), the b8 32 → 32 0.065 against
// 0.072 (864), but U-Net 64 → 32 0.053 against 0.049 (512 blocks: the
// second wave of three a third full; H200, CUDA-graph replays, RESULTS.md
// "NCDHW planes round").
// Stores from the registers (NCDHW outputs; channels-last ones whose staging
// tile would cost the third block) take the same rule from either A layout.
bool three_fit(int smem) { return blocks_fit(smem) >= 3; }

bool three_blocks(const Args& a, int smem) {
  if (!three_fit(smem)) return false;
  return a.vector_store || grid_blocks(a) >= 6 * int64_t(sm_count());
}

template <typename scalar_t, typename index_t>
cudaError_t launch_typed(const Args& a, int smem, cudaStream_t stream) {
  const bool three = three_blocks(a, smem);
  if (a.ops.source_c != 1) {
    return three ? launch_blocks<scalar_t, index_t, 3, true>(a, smem, stream)
                 : launch_blocks<scalar_t, index_t, 2, true>(a, smem, stream);
  }
  return three ? launch_blocks<scalar_t, index_t, 3, false>(a, smem, stream)
               : launch_blocks<scalar_t, index_t, 2, false>(a, smem, stream);
}

// Column tiles a block.  Each split of a row tile's columns over blocks
// loads its rows of x again, so they split only as far as it takes to give
// every SM two blocks — except where one block fills an SM's shared memory
// (512 bytes of channels): then nothing hides a block's load of x and its
// last epilogue, and the split taken is the one of fewest waves × (column
// tiles a block + one for x).  bf16 U-Net 256 → 128 channels-last (64 row
// tiles of 16 column tiles): 128 blocks of 8 tiles, 0.0397 ms, against 256
// of 4 (two waves) 0.0420; 256 → 256 b1 0.0402 against 0.0426 (H200, graph
// replays, RESULTS.md "Pack and tap-columns round").
int64_t tiles_per_block(int64_t row_tiles, int64_t col_tiles, int smem) {
  const int64_t sms = sm_count();
  if (blocks_fit(smem) >= 2) {
    const int64_t chunks = std::clamp<int64_t>((2 * sms + row_tiles - 1) / row_tiles, 1, col_tiles);
    return (col_tiles + chunks - 1) / chunks;
  }
  int64_t best = col_tiles, best_cost = std::numeric_limits<int64_t>::max();
  for (int64_t per = col_tiles; per >= 1; --per) {
    const int64_t blocks = row_tiles * ((col_tiles + per - 1) / per);
    const int64_t cost = (blocks + sms - 1) / sms * (per + 1);
    if (cost < best_cost) best = per, best_cost = cost;
  }
  return best;
}

}  // namespace tapcol

bool forward_tap_columns_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype) {
  using namespace tapcol;
  if (!one_tap_per_output(p.axis)) return false;
  const int k_bytes = int(k_step_bytes(padded_channels(p.in_per_group, dtype), dtype));
  // A in either layout and B's two buffers: the stores from the registers'
  // shared memory (the staged stores' tile comes on top where it fits).
  const int ab_bytes = std::max(a_tile_bytes(false, k_bytes), a_tile_bytes(true, k_bytes)) +
                       2 * kBN * (k_bytes + 16);
  if (k_bytes > kMaxKBytes || !block_smem_fits(ab_bytes) || p.groups > 65535) return false;
  const int64_t rows = input_positions(p.batch, p.axis);
  if ((rows + tapcol::kBM - 1) / tapcol::kBM > (int64_t(1) << 30) ||
      p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel * p.out_per_group + tapcol::kBN >
          std::numeric_limits<int32_t>::max()) {
    return false;
  }
  return sm80_kernel_runs_here<tapcol::forward_tap_columns_kernel<__half, int32_t, 2, false>>();
}

cudaError_t launch_forward_tap_columns_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                            const TensorCoreGemmOperands& ops) {
  using namespace tapcol;
  Args a{};
  a.p = p;
  a.ops = ops;
  a.rows = input_positions(p.batch, p.axis);
  a.col_count = p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel * ops.columns;
  if (a.rows == 0 || a.col_count == 0) return cudaSuccess;
  a.kw_div = at::cuda::detail::IntDivider<unsigned>(unsigned(p.axis[2].kernel));
  a.kh_div = at::cuda::detail::IntDivider<unsigned>(unsigned(p.axis[1].kernel));
  a.cog_div = at::cuda::detail::IntDivider<unsigned>(unsigned(ops.columns));
  a.k_bytes = int(k_step_bytes(ops.channels, cfg.dtype));
  a.pitch = a.k_bytes + 16;
  a.a_bytes = a_tile_bytes(ops.source_c != 1, a.k_bytes);
  a.m_tiles = (a.rows + kBM - 1) / kBM;
  a.col_tiles = (a.col_count + kBN - 1) / kBN;
  const int64_t vec = tensor_core_channel_multiple(cfg.dtype), es = 16 / vec;
  const Strides5 o = p.output;
  const int ab_bytes = a.a_bytes + 2 * kBN * a.pitch;
  const int staged_smem = ab_bytes + int(es) * kBM * (kBN + int(vec));
  // (The staged stores' tile only where the device's shared memory holds it
  // beside A and B: not at 512 bytes of channels on A100.)
  const bool staged = block_smem_fits(staged_smem) && o.c == 1 && ops.columns % vec == 0 &&
                      o.n % vec == 0 && o.d % vec == 0 && o.h % vec == 0 && o.w % vec == 0 &&
                      reinterpret_cast<uintptr_t>(ops.dest) % 16 == 0;
  const bool pairs_aligned = reinterpret_cast<uintptr_t>(ops.dest) % (2 * es) == 0 &&
                             o.n % 2 == 0 && o.d % 2 == 0 && o.h % 2 == 0;
  // (co, co + 1) of one tap are neighbours in a channels-last output where
  // Cout/G is even (a pair never straddles two taps); (kw, kw + 1) of one co
  // in an NCDHW one where the kernel width is even, the columns walked so.
  const bool cl_pairs = pairs_aligned && o.c == 1 && ops.columns % 2 == 0 && o.w % 2 == 0;
  a.kw_pairs = !staged && pairs_aligned && o.w == 1 && p.axis[2].kernel % 2 == 0 &&
               o.c % 2 == 0;
  // The staging tile (35 KB in fp32) can cost the third block an SM (TF32
  // 64-channel groups): on grids long enough for three there, the pairs
  // from the registers, as into NCDHW outputs: big U-Net TF32 channels-last
  // 1.047 ms against 1.129 staged at two (H200, graph replays, one build;
  // RESULTS.md "Merged branches and in-place grad-input round").
  a.vector_store = staged;
  a.pair_store = a.kw_pairs || (!staged && cl_pairs);
  a.tiles_per_block =
      tiles_per_block(a.m_tiles * p.groups, a.col_tiles, staged ? staged_smem : ab_bytes);
  if (staged && cl_pairs && !three_fit(staged_smem)) {
    Args pairs = a;
    pairs.vector_store = false;
    pairs.pair_store = true;
    pairs.tiles_per_block = tiles_per_block(a.m_tiles * p.groups, a.col_tiles, ab_bytes);
    if (three_blocks(pairs, ab_bytes)) a = pairs;
  }
  const int smem = a.vector_store ? staged_smem : ab_bytes;
  cudaError_t err = cudaErrorInvalidValue;
  igemm::dispatch_gemm_types(cfg, [&](auto scalar, auto index) {
    err = launch_typed<decltype(scalar), decltype(index)>(a, smem, cfg.stream);
  });
  return err;
}

}  // namespace tconv3d::cuda
