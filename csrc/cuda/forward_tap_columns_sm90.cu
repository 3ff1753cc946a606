// The tap-columns forward (forward_tap_columns_gemm.cu: kernel == stride, no
// dilation, padding or output padding; per group one GEMM over input
// positions × (tap, co) columns) on Hopper's warpgroup MMAs, fp16/bf16 into
// channels-last outputs.
//
// Why: the mma.sync version is latency-bound where a group has 512 bytes of
// channels (one 256-thread block an SM, its loads, MMAs and stores in turn:
// bf16 U-Net 256 → 128 at 134 of 765 TFLOP/s, DRAM 3 % busy; RESULTS.md,
// "Row-once and TF32 group blocks round").  Here a CTA's 128 rows of x land
// once by tensor-map copies, whole K (≤ 256 channels: four 128-byte
// swizzled chunks), and stay; a producer warp streams the weight's column
// tiles through a ring of four stages; two consumer warpgroups take
// alternate column tiles, so one's epilogue runs under the other's MMAs.
//
// A consumer's tile is all 128 rows × 64 columns: two m64n64k16 wgmmas a
// k-step into 64 accumulators a thread.  Its epilogue adds the bias in fp32,
// rounds once, transposes each four 8-column blocks across the quad
// (quad_transpose.h) and stores 16 bytes a lane straight to y: Cout/G in
// whole 8-channel pieces, so no piece straddles two taps.  Each output is
// written once by one thread, summed in a fixed order: deterministic, no
// workspace.
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

constexpr int kChunkElements = kChunkBytes / 2;  // fp16/bf16
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

template <typename scalar_t>
__global__ void __maxnreg__(112)
    forward_tap_columns_sm90_kernel(const __grid_constant__ Args a,
                                    const __grid_constant__ CUtensorMap x_map,
                                    const __grid_constant__ CUtensorMap w_map) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) uint64_t bars[1 + 2 * kStages];  // x's rows; stages full, empty
  __shared__ float s_bias[kConsumers][2][kBN];
  __shared__ int64_t s_col[kConsumers][2][kBN / 8];  // y offset of each 8-column piece
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
      const int w_row0 = int(g) * a.col_count + t_begin * kBN;
      for (int i = 0; i < n_tiles; ++i) {
        const int s = i % kStages;
        if (i >= kStages) mbarrier_wait(empty0 + 8 * s, uint32_t(i / kStages - 1) & 1u);
        mbarrier_arrive_expect_tx(full0 + 8 * s, stage_bytes);
        for (int c = 0; c < a.chunks; ++c) {
          tma_load_2d(sb0 + s * stage_bytes + c * kChunkBBytes, &w_map, full0 + 8 * s,
                      c * kChunkElements, w_row0 + i * kBN);
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
  const auto xor_lane = [](uint32_t word, int mask) {
    return __shfl_xor_sync(0xffffffffu, word, mask);
  };

  mbarrier_wait(a_full, 0);
  for (int i = wg; i < n_tiles; i += kConsumers) {
    const int t = t_begin + i, s = i % kStages, buf = (i / kConsumers) % 2;
    // Tile t's column table, while its weights land.  Buffer buf was last
    // read by this warpgroup's epilogue two tiles ago, before the barrier
    // of the tile between.
    if (wg_tid < kBN) {
      const int j = t * kBN + wg_tid;
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
    float acc[2][kBN / 2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
#pragma unroll
      for (int e = 0; e < kBN / 2; ++e) acc[half][e] = 0.f;
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
        Wgmma<scalar_t, kBN>::run(acc[0], desc_plus(a_desc0, 32 * ks), desc_plus(b_desc, 32 * ks));
        Wgmma<scalar_t, kBN>::run(acc[1], desc_plus(a_desc1, 32 * ks), desc_plus(b_desc, 32 * ks));
      }
    }
    wgmma_commit();
    wgmma_wait<0>();
#pragma unroll
    for (int half = 0; half < 2; ++half) fence_accumulators(acc[half]);
    __syncwarp();
    if (lane == 0) mbarrier_arrive(empty0 + 8 * s);  // the stage is free for tile i + kStages

    // The thread's columns' biases and offsets in registers first: y may
    // alias shared memory as far as the compiler knows, so read in the store
    // loop they would be read again after every store.
    const int cols_here = min(a.col_count - t * kBN, int(kBN));
    float col_bias[kBN / 32][4][2];
    int64_t col_off[kBN / 32];
#pragma unroll
    for (int q = 0; q < kBN / 32; ++q) {
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        const int col = 8 * (4 * q + b) + 2 * (lane % 4);
        col_bias[q][b][0] = s_bias[wg][buf][col];
        col_bias[q][b][1] = s_bias[wg][buf][col + 1];
      }
      const int piece = 4 * q + lane % 4;
      col_off[q] = 8 * piece < cols_here ? s_col[wg][buf][piece] : -1;
    }
#pragma unroll
    for (int half = 0; half < 2; ++half)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        // Every lane shuffles (a quad shares its row) and stores only within.
        const int64_t row = y_row[half][h];
#pragma unroll
        for (int q = 0; q < kBN / 32; ++q) {
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
#else
  __trap();  // never launched: runs_here requires sm_90a code
#endif
}

bool runs_here() {
#if defined(TCONV3D_WITH_SM90A)
  return kernel_runs_here<forward_tap_columns_sm90_kernel<__nv_bfloat16>, ArchNeed::Sm90a>();
#else
  return false;  // built without sm_90a code: the kernel body is empty
#endif
}

std::atomic<bool> g_enabled{true};

template <typename scalar_t>
cudaError_t launch(const Args& a, const CUtensorMap& x_map, const CUtensorMap& w_map,
                   const dim3& grid, cudaStream_t stream) {
  constexpr auto kernel = forward_tap_columns_sm90_kernel<scalar_t>;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(smem_bytes(kMaxChunks));
  if (err != cudaSuccess) return err;
  kernel<<<grid, kThreads, smem_bytes(a.chunks), stream>>>(a, x_map, w_map);
  return cudaGetLastError();
}

}  // namespace tapcol90

void set_forward_tap_columns_sm90(bool enabled) { tapcol90::g_enabled.store(enabled); }

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
  if (!plan(p, o, sm_count(), smem_per_sm(), pl)) return cudaErrorNotSupported;
  if (pl.rows == 0 || pl.col_count == 0) return cudaSuccess;

  const int64_t es = o.element_bytes, C = ops.channels;
  // x as [rows][G][C], a box one group's 64 channels × 128 rows; the packed
  // weight as [G · col_count][C], a box 64 channels × 64 columns.  Channels
  // past C land as zeros: the k16 steps past a group's channels add nothing.
  CUtensorMap x_map, w_map;
  const cuuint64_t x_dim[3] = {cuuint64_t(C), cuuint64_t(p.groups), cuuint64_t(pl.rows)};
  const cuuint64_t x_stride[2] = {cuuint64_t(C * es), cuuint64_t(ops.source_w * es)};
  const cuuint32_t x_box[3] = {kChunkElements, 1, kBM};
  const cuuint64_t w_dim[2] = {cuuint64_t(C), cuuint64_t(p.groups * pl.col_count)};
  const cuuint64_t w_stride[1] = {cuuint64_t(C * es)};
  const cuuint32_t w_box[2] = {kChunkElements, kBN};
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
  return cfg.dtype == ScalarKind::Float16 ? launch<__half>(a, x_map, w_map, grid, cfg.stream)
                                          : launch<__nv_bfloat16>(a, x_map, w_map, grid, cfg.stream);
}

}  // namespace tconv3d::cuda
