// The tap-columns forward (forward_tap_columns_gemm.cu: kernel == stride, no
// dilation, padding or output padding; per group one GEMM over input
// positions × (tap, co) columns) on Hopper's warpgroup MMAs, fp16/bf16 and
// TF32 into channels-last outputs.
//
// Why: the mma.sync version is latency-bound where a group has 512 bytes of
// channels (one 256-thread block an SM, its loads, MMAs and stores in turn:
// bf16 U-Net 256 → 128 at 134 of 765 TFLOP/s, DRAM 3 % busy; RESULTS.md,
// "Row-once and TF32 group blocks round").  Here a CTA's 128 rows of x land
// once by tensor-map copies, whole K (≤ 512 bytes: four 128-byte swizzled
// chunks; 1 KB on 32-column tiles), and stay; a producer warp streams the
// weight's column tiles through a ring of stages; two consumer warpgroups
// take alternate column tiles, so one's epilogue runs under the other's MMAs.
//
// A consumer's tile is all 128 rows × kCols columns (64; by a test hook 128
// in fp16/bf16, or 32 with K to 1 KB: forward_tap_columns_sm90_plan.h): two
// m64nNk16 wgmmas a k-step (k8 in TF32) into kCols accumulators a thread.
// Its epilogue adds the bias in fp32, rounds once, transposes each four
// 8-column blocks across the quad (quad_transpose.h) and stores 16 bytes a
// lane straight to y; TF32 stores its fp32 pairs as they are (a quad's four
// make a 32-byte sector).  Cout/G in whole 8-channel pieces, so no piece
// straddles two taps.  Each output is written once by one thread, summed in
// a fixed order: deterministic, no workspace.
//
// TF32: wgmma truncates the fp32 operands it reads from shared memory, and
// TF32 must round to nearest.  The packed weight is rounded when packed
// (weight_pack.h); x's resident tile is rounded once in shared memory when it
// lands, by both consumers, before any wgmma reads it.
//
// Operands as the mma.sync version's (TensorCoreGemmOperands, pass Forward),
// with x's positions one flat run of rows (a contiguous channels-last x or
// the op layer's padded copy) so that a row tile is one box.
#include "tensor_core_gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdint>

#include <c10/macros/Macros.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../index_math.h"
#include "../scalar_convert.h"
#include "dispatch.cuh"
#include "forward_tap_columns_sm90_plan.h"
#include "quad_transpose.h"
#include "sm90_primitives.cuh"
#include "tensor_map_encoder.h"
#include "vector_access.cuh"

namespace tconv3d::cuda {
namespace tapcol90 {

using namespace sm90;

constexpr int kProducerWarp = 4 * kConsumers;
static_assert(kAlignSlack == kSwizzleAtomBytes, "the stages start on a swizzle period");

struct Args {
  ConvTranspose3dParams p;
  const void* bias;
  void* dest;
  int64_t rows;  // N·D·H·W input positions
  int64_t m_tiles;
  int col_count;  // taps · Cout/G
  int cog;
  int col_tiles, tiles_per_block;
  int chunks;  // 128-byte rows of K
  at::cuda::detail::IntDivider<unsigned> kw_div, kh_div, cog_div;
};

__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// The epilogue of a 16-bit tile: bias, one rounding, each four 8-column
// blocks transposed across the quad so that a lane stores one 16-byte piece
// of its row.
template <int kCols, typename scalar_t>
__device__ __forceinline__ void store_pieces(const float (&acc)[2][kCols / 2],
                                             const int64_t (&y_row)[2][2], const float* s_bias,
                                             const int64_t* s_col, int cols_here, int lane,
                                             scalar_t* y) {
  // The thread's columns' biases and offsets in registers first: y may alias
  // shared memory as far as the compiler knows, so read in the store loop
  // they would be read again after every store.
  float col_bias[kCols / 32][4][2];
  int64_t col_off[kCols / 32];
#pragma unroll
  for (int q = 0; q < kCols / 32; ++q) {
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const int col = 8 * (4 * q + b) + 2 * (lane % 4);
      col_bias[q][b][0] = s_bias[col];
      col_bias[q][b][1] = s_bias[col + 1];
    }
    const int piece = 4 * q + lane % 4;
    col_off[q] = 8 * piece < cols_here ? s_col[piece] : -1;
  }
  const auto xor_lane = [](uint32_t word, int mask) {
    return __shfl_xor_sync(0xffffffffu, word, mask);
  };
#pragma unroll
  for (int half = 0; half < 2; ++half)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      // Every lane shuffles (a quad shares its row) and stores only within.
      const int64_t row = y_row[half][h];
#pragma unroll
      for (int q = 0; q < kCols / 32; ++q) {
        uint32_t packed[4];  // the rounded pair of block 4q + b, then of block 4q + lane % 4
#pragma unroll
        for (int b = 0; b < 4; ++b) {
          const int j = 4 * q + b;
          packed[b] = pack_pair(from_acc<scalar_t>(acc[half][4 * j + 2 * h] + col_bias[q][b][0]),
                                from_acc<scalar_t>(acc[half][4 * j + 2 * h + 1] + col_bias[q][b][1]));
        }
        quad_transpose(packed, lane % 4, xor_lane);
        if (row >= 0 && col_off[q] >= 0) {
          *reinterpret_cast<uint4*>(y + row + col_off[q]) =
              make_uint4(packed[0], packed[1], packed[2], packed[3]);
        }
      }
    }
}

// The epilogue of a TF32 tile: bias, and each lane's fp32 pair of every
// 8-column block stored as it is.  Block by block, its bias and offset read
// before its four stores: all blocks' in registers first cost the TF32
// instance spills under the two-CTA register cap.
template <int kCols>
__device__ __forceinline__ void store_pairs(const float (&acc)[2][kCols / 2],
                                            const int64_t (&y_row)[2][2], const float* s_bias,
                                            const int64_t* s_col, int cols_here, int lane,
                                            float* y) {
#pragma unroll
  for (int j = 0; j < kCols / 8; ++j) {
    if (8 * j >= cols_here) break;
    const int col = 8 * j + 2 * (lane % 4);
    const float bias0 = s_bias[col], bias1 = s_bias[col + 1];
    float* const y_col = y + s_col[j] + 2 * (lane % 4);
#pragma unroll
    for (int half = 0; half < 2; ++half)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        if (y_row[half][h] >= 0) {
          *reinterpret_cast<float2*>(y_col + y_row[half][h]) =
              make_float2(acc[half][4 * j + 2 * h] + bias0, acc[half][4 * j + 2 * h + 1] + bias1);
        }
      }
  }
}

// 64 and 32 columns: at most 112 registers (96 and 64-71 used), so two CTAs
// an SM where shared memory holds two; 128: one CTA an SM, 128 accumulators
// a thread (167 used).
template <typename scalar_t, int kCols>
__global__ void __maxnreg__(kCols == 128 ? 224 : 112)
    forward_tap_columns_sm90_kernel(const __grid_constant__ Args a,
                                    const __grid_constant__ CUtensorMap x_map,
                                    const __grid_constant__ CUtensorMap w_map) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kStages = stages(kCols), kChunkBBytes = chunk_b_bytes(kCols);
  constexpr int kChunkElements = kChunkBytes / sizeof(scalar_t);
  constexpr bool kTf32 = sizeof(scalar_t) == 4;
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) uint64_t bars[1 + 2 * kStages];  // x's rows; stages full, empty
  __shared__ float s_bias[kConsumers][2][kCols];
  __shared__ int64_t s_col[kConsumers][2][kCols / 8];  // y offset of each 8-column piece
  const uint32_t sa = swizzle_aligned(smem_addr(smem_raw));
  const uint32_t sb0 = sa + a.chunks * kChunkABytes;
  const uint32_t stage_bytes = a.chunks * kChunkBBytes;
  const uint32_t a_full = smem_addr(&bars[0]), full0 = a_full + 8, empty0 = full0 + 8 * kStages;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t g = blockIdx.y;
  const int64_t m0 = int64_t(blockIdx.x % a.m_tiles) * kBM;
  const int t_begin = int(blockIdx.x / a.m_tiles) * a.tiles_per_block;
  const int n_tiles = std::min(t_begin + a.tiles_per_block, a.col_tiles) - t_begin;
  if (tid == 0) {
    mbarrier_init(a_full, 1);
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(full0 + 8 * s, 1);   // the producer's arrive.expect_tx
      mbarrier_init(empty0 + 8 * s, 4);  // each warp of the consuming warpgroup
    }
  }
  __syncthreads();

  if (warp == kProducerWarp) {
    if (lane == 0) {
      mbarrier_arrive_expect_tx(a_full, a.chunks * kChunkABytes);
      for (int c = 0; c < a.chunks; ++c) {
        tma_load_3d(sa + c * kChunkABytes, &x_map, a_full, c * kChunkElements, int(g), int(m0));
      }
      const int w_row0 = int(g) * a.col_count + t_begin * kCols;
      for (int i = 0; i < n_tiles; ++i) {
        const int s = i % kStages;
        if (i >= kStages) mbarrier_wait(empty0 + 8 * s, uint32_t(i / kStages - 1) & 1u);
        mbarrier_arrive_expect_tx(full0 + 8 * s, stage_bytes);
        for (int c = 0; c < a.chunks; ++c) {
          tma_load_2d(sb0 + s * stage_bytes + c * kChunkBBytes, &w_map, full0 + 8 * s,
                      c * kChunkElements, w_row0 + i * kCols);
        }
      }
    }
    return;
  }

  const ConvTranspose3dParams& p = a.p;
  const int wg = warp / 4, wg_tid = tid % 128, wg_warp = warp % 4;
  // This thread's four rows of every tile: rows 16·warp + lane/4 (+ 8) of
  // each 64-row half; -1 past the input.
  int64_t y_row[2][2];
#pragma unroll
  for (int half = 0; half < 2; ++half)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t r = m0 + 64 * half + 16 * wg_warp + lane / 4 + 8 * h;
      y_row[half][h] = -1;
      if (r < a.rows) {
        int64_t i[3];
        const int64_t n = unflatten_input_position(p.axis, r, i);
        y_row[half][h] = n * p.output.n + i[0] * p.axis[0].stride * p.output.d +
                         i[1] * p.axis[1].stride * p.output.h +
                         i[2] * p.axis[2].stride * p.output.w + g * a.cog * p.output.c;
      }
    }
  const scalar_t* bias = static_cast<const scalar_t*>(a.bias);
  scalar_t* const y = static_cast<scalar_t*>(a.dest);

  mbarrier_wait(a_full, 0);
  if constexpr (kTf32) {
    // Rounded once here, not on every wgmma's way in: both consumers split
    // the tile, then make their writes visible to the wgmmas (async proxy).
    for (int v = wg * 128 + wg_tid; v < a.chunks * kChunkABytes / 16; v += 128 * kConsumers) {
      round_tf32_shared_x4(sa + 16 * v);
    }
    fence_proxy_async_shared();
    named_barrier_sync(1 + kConsumers, 128 * kConsumers);
  }
  for (int i = wg; i < n_tiles; i += kConsumers) {
    const int t = t_begin + i, s = i % kStages, buf = (i / kConsumers) % 2;
    // Tile t's column table, while its weights land.  Buffer buf was last
    // read by this warpgroup's epilogue two tiles ago, before the barrier
    // of the tile between.
    if (wg_tid < kCols) {
      const int j = t * kCols + wg_tid;
      float b = 0.f;
      int64_t off = 0;
      if (j < a.col_count) {
        const auto tap = a.cog_div.divmod(unsigned(j));  // tap and co
        const auto kw = a.kw_div.divmod(tap.div);        // (kd, kh) and kw
        const auto kh = a.kh_div.divmod(kw.div);         // kd and kh
        const int64_t co = tap.mod;
        off = kh.div * p.output.d + kh.mod * p.output.h + kw.mod * p.output.w + co * p.output.c;
        if (bias != nullptr) b = to_acc(bias[(g * a.cog + co) * p.bias_stride]);
      }
      s_bias[wg][buf][wg_tid] = b;
      if (wg_tid % 8 == 0) s_col[wg][buf][wg_tid / 8] = off;
    }
    named_barrier_sync(1 + wg, 128);

    mbarrier_wait(full0 + 8 * s, uint32_t(i / kStages) & 1u);
    float acc[2][kCols / 2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
#pragma unroll
      for (int e = 0; e < kCols / 2; ++e) acc[half][e] = 0.f;
      fence_accumulators(acc[half]);
    }
    wgmma_fence();
    const uint32_t sb = sb0 + s * stage_bytes;
    // Whole chunks (past the group's channels the boxes land zeros): a
    // branch between a chunk's wgmmas made ptxas fence each one.
    for (int c = 0; c < a.chunks; ++c) {
      const uint64_t b_desc = sw128_desc(sb + c * kChunkBBytes);
      const uint64_t a_desc0 = sw128_desc(sa + c * kChunkABytes);
      const uint64_t a_desc1 = sw128_desc(sa + c * kChunkABytes + kChunkABytes / 2);
#pragma unroll
      for (int ks = 0; ks < 4; ++ks) {
        Wgmma<scalar_t, kCols>::run(acc[0], desc_plus(a_desc0, 32 * ks), desc_plus(b_desc, 32 * ks));
        Wgmma<scalar_t, kCols>::run(acc[1], desc_plus(a_desc1, 32 * ks), desc_plus(b_desc, 32 * ks));
      }
    }
    wgmma_commit();
    wgmma_wait<0>();
#pragma unroll
    for (int half = 0; half < 2; ++half) fence_accumulators(acc[half]);
    __syncwarp();
    if (lane == 0) mbarrier_arrive(empty0 + 8 * s);  // the stage is free for tile i + kStages

    const int cols_here = min(a.col_count - t * kCols, kCols);
    if constexpr (kTf32) {
      store_pairs<kCols>(acc, y_row, s_bias[wg][buf], s_col[wg][buf], cols_here, lane, y);
    } else {
      store_pieces<kCols>(acc, y_row, s_bias[wg][buf], s_col[wg][buf], cols_here, lane, y);
    }
  }
#else
  __trap();  // never launched: runs_here requires sm_90a code
#endif
}

bool runs_here() {
#if defined(TCONV3D_WITH_SM90A)
  return kernel_runs_here<forward_tap_columns_sm90_kernel<__nv_bfloat16, 64>, ArchNeed::Sm90a>();
#else
  return false;  // built without sm_90a code: the kernel body is empty
#endif
}

std::atomic<bool> g_enabled{true};
std::atomic<int> g_columns{0};

template <typename scalar_t, int kCols>
cudaError_t launch(const Args& a, const CUtensorMap& x_map, const CUtensorMap& w_map,
                   const dim3& grid, cudaStream_t stream) {
  constexpr auto kernel = forward_tap_columns_sm90_kernel<scalar_t, kCols>;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(smem_bytes(max_chunks(kCols), kCols));
  if (err != cudaSuccess) return err;
  kernel<<<grid, kThreads, smem_bytes(a.chunks, kCols), stream>>>(a, x_map, w_map);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch(const Args& a, int cols, const CUtensorMap& x_map, const CUtensorMap& w_map,
                   const dim3& grid, cudaStream_t stream) {
  if constexpr (sizeof(scalar_t) == 2) {
    if (cols == 128) return launch<scalar_t, 128>(a, x_map, w_map, grid, stream);
  }
  if (cols == 32) return launch<scalar_t, 32>(a, x_map, w_map, grid, stream);
  return launch<scalar_t, 64>(a, x_map, w_map, grid, stream);
}

// The operands the op layer hands a layer's forward, x channels-last and
// dense (or its padded copy): what plan decides on before any is made.
Operands dense_operands(const ConvTranspose3dParams& p, ScalarKind dtype) {
  const int64_t es = int64_t(element_bytes(dtype)), padded = padded_channels(p.in_per_group, dtype);
  const int64_t w = padded * p.groups, h = p.axis[2].in * w, d = p.axis[1].in * h;
  return {int(es), padded, p.out_per_group, p.axis[0].in * d, d, h, w, 1, true};
}

}  // namespace tapcol90

void set_forward_tap_columns_sm90(bool enabled) { tapcol90::g_enabled.store(enabled); }
void set_forward_tap_columns_sm90_columns(int columns) { tapcol90::g_columns.store(columns); }

bool forward_tap_columns_sm90_may_take(const ConvTranspose3dParams& p, ScalarKind dtype) {
  using namespace tapcol90;
  Plan pl{};
  return g_enabled.load() &&
         plan(p, dense_operands(p, dtype), sm_count(), smem_per_sm(), g_columns.load(), pl) &&
         runs_here();
}

cudaError_t launch_forward_tap_columns_sm90(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                            const TensorCoreGemmOperands& ops) {
  using namespace tapcol90;
  if (!g_enabled.load() || ops.group_blocks != 0 || !runs_here()) return cudaErrorNotSupported;
  const auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  const Operands o{int(element_bytes(cfg.dtype)),
                   ops.channels,
                   ops.columns,
                   ops.source_n,
                   ops.source_d,
                   ops.source_h,
                   ops.source_w,
                   ops.source_c,
                   aligned(ops.source) && aligned(ops.packed_weight) && aligned(ops.dest)};
  Plan pl{};
  if (!plan(p, o, sm_count(), smem_per_sm(), g_columns.load(), pl)) return cudaErrorNotSupported;
  if (pl.rows == 0 || pl.col_count == 0) return cudaSuccess;

  const int64_t es = o.element_bytes, C = ops.channels;
  // x as [rows][G][C], a box one group's 128 bytes of channels × 128 rows;
  // the packed weight as [G · col_count][C], a box 128 bytes × a tile's
  // columns.  Channels past C land as zeros: the k-steps past a group's
  // channels add nothing.
  CUtensorMap x_map, w_map;
  const cuuint64_t x_dim[3] = {cuuint64_t(C), cuuint64_t(p.groups), cuuint64_t(pl.rows)};
  const cuuint64_t x_stride[2] = {cuuint64_t(C * es), cuuint64_t(ops.source_w * es)};
  const cuuint32_t chunk_elements = cuuint32_t(kChunkBytes / es);
  const cuuint32_t x_box[3] = {chunk_elements, 1, kBM};
  const cuuint64_t w_dim[2] = {cuuint64_t(C), cuuint64_t(p.groups * pl.col_count)};
  const cuuint64_t w_stride[1] = {cuuint64_t(C * es)};
  const cuuint32_t w_box[2] = {chunk_elements, cuuint32_t(pl.cols)};
  const cuuint32_t step[3] = {1, 1, 1};
  if (!encode_tiled(x_map, cfg.dtype, ops.source, 3, x_dim, x_stride, x_box, step,
                    CU_TENSOR_MAP_SWIZZLE_128B) ||
      !encode_tiled(w_map, cfg.dtype, ops.packed_weight, 2, w_dim, w_stride, w_box, step,
                    CU_TENSOR_MAP_SWIZZLE_128B)) {
    return cudaErrorNotSupported;
  }

  Args a{};
  a.p = p;
  a.bias = ops.bias;
  a.dest = ops.dest;
  a.rows = pl.rows;
  a.m_tiles = pl.m_tiles;
  a.col_count = int(pl.col_count);
  a.cog = int(ops.columns);
  a.col_tiles = pl.col_tiles;
  a.tiles_per_block = pl.tiles_per_block;
  a.chunks = pl.chunks;
  a.kw_div = at::cuda::detail::IntDivider<unsigned>(unsigned(p.axis[2].kernel));
  a.kh_div = at::cuda::detail::IntDivider<unsigned>(unsigned(p.axis[1].kernel));
  a.cog_div = at::cuda::detail::IntDivider<unsigned>(unsigned(ops.columns));
  const dim3 grid(static_cast<unsigned int>(pl.m_tiles * pl.column_chunks),
                  static_cast<unsigned int>(p.groups));
  switch (cfg.dtype) {
    case ScalarKind::Float16: return launch<__half>(a, pl.cols, x_map, w_map, grid, cfg.stream);
    case ScalarKind::BFloat16:
      return launch<__nv_bfloat16>(a, pl.cols, x_map, w_map, grid, cfg.stream);
    default: return launch<float>(a, pl.cols, x_map, w_map, grid, cfg.stream);
  }
}

}  // namespace tconv3d::cuda
