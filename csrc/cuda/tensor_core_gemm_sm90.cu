// Forward and grad-input as one implicit GEMM on Hopper's warpgroup MMAs
// (wgmma, sm_90a): the GEMM of implicit_gemm_walk.cuh, as the mma.sync kernel
// of tensor_core_gemm.cu computes it, rebuilt around what limits that kernel
// (RESULTS.md: 12 warps per SM, mma.sync waiting on ldmatrix, the gather's
// address arithmetic in the same warps as the MMAs, and short reductions
// spending each block in its prologue and epilogue).
//
// Warp-specialised and persistent: one CTA per SM walks the tiles (128 rows ×
// 32, 64 or 128 columns) in decode_tile order, stride gridDim.x; the GemmAxis
// of every stride phase are derived once per CTA into a table.
//  - Producer warpgroup (threads 0-127, 96 registers): computes each tile's
//    gather addresses and fills a 6-stage ring of shared-memory slices with
//    16-byte zero-filling cp.async, in the 128-byte swizzle wgmma reads (one
//    128-byte row of K per GEMM row and stage).  It runs ahead across tiles,
//    so the next tile's loads overlap this tile's epilogue.  fp16/bf16
//    stages are published by cp.async.mbarrier.arrive as the copies land;
//    TF32 ones kLag stages later, once the thread has waited for its copies
//    and rounded them in place (cvt.rna, as the mma.sync path and cuDNN round
//    them; wgmma would truncate), fenced for the async proxy.
//  - Two consumer warpgroups (threads 128-383, 200 registers) take the tiles
//    in turn (ping-pong: one's epilogue overlaps the other's MMAs) and each
//    computes a whole tile: per stage, two wgmma m64nBNk16 (k8 in TF32) for
//    each of its four 32-byte k-steps, one stage's MMAs kept in flight, the
//    stage before released (mbarrier, one arrive per warp).  Epilogue straight
//    from the accumulator registers: + bias, one rounding, two channels per
//    store where dest is channel-contiguous.
//
// Each output element is written once, by one thread, from one sum whose
// order depends only on the shape: bitwise reproducible.
#include "tensor_core_gemm.h"

#include <atomic>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../index_math.h"
#include "../scalar_convert.h"
#include "dispatch.cuh"
#include "implicit_gemm_walk.cuh"
#include "mma_sm80.cuh"
#include "sm90_primitives.cuh"

namespace tconv3d::cuda {
namespace tcg90 {

using namespace igemm;
using namespace sm90;

constexpr int kBM = 128;                 // rows per tile: two m64 wgmmas per k-step
constexpr int kConsumers = 2;            // warpgroups taking tiles in turn (ping-pong)
constexpr int kThreads = 128 * (1 + kConsumers);  // producer warpgroup + consumers
// Registers per thread: every warp starts with the launch cap, then the
// producer gives some back and the consumers take them.  setmaxnreg.inc
// waits until the pool holds enough, so the consumers must not ask for more
// than the producer released: that would hang the CTA.
constexpr int kLaunchRegs = 65536 / kThreads / 8 * 8;  // 168
constexpr int kProducerRegs = 96, kConsumerRegs = 200;
static_assert(128 * (kLaunchRegs - kProducerRegs) >= 128 * kConsumers * (kConsumerRegs - kLaunchRegs),
              "consumers would wait forever for registers");
constexpr int kSliceBytes = 128;         // K per stage: one swizzle row
constexpr int kPieces = kSliceBytes / 16;  // 16-byte pieces per row and stage
constexpr int kRowStep = 128 / kPieces;  // rows per producer pass
constexpr int kARows = kBM / kRowStep;   // A rows a producer thread loads
constexpr int kStages = 6;
constexpr int kLag = 3;  // TF32: stages in flight per producer thread before it publishes
constexpr int kMaxPhases = 8;  // per axis: the phase geometry table's size
static_assert(kStages >= kLag + 2, "a consumer holds one stage and releases the one before");

template <int BN>
struct Layout {
  static constexpr int kABytes = kBM * kSliceBytes;
  static constexpr int kStageBytes = kABytes + BN * kSliceBytes;  // multiple of 1024
  static constexpr int kSmemBytes = kStages * kStageBytes + 1024;  // + alignment slack
  static constexpr int kBRows = BN / kRowStep;
  static_assert(kStageBytes % 1024 == 0 && kBRows >= 1, "swizzle atoms stay aligned");
};

// Rounds this thread's 16-byte piece of fp32 operands to TF32 in place.
__device__ __forceinline__ void round_piece_to_tf32(uint32_t addr) {
  uint32_t v[4];
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3])
               : "r"(addr));
#pragma unroll
  for (int e = 0; e < 4; ++e) v[e] = to_tf32(v[e]);
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(v[0]), "r"(v[1]),
               "r"(v[2]), "r"(v[3])
               : "memory");
}

// The GemmAxis of every (axis, residue), derived once per CTA: per tile they
// would cost a chain of 64-bit divisions in front of each tile's first load.
using PhaseTable = GemmAxis[3][kMaxPhases];

struct SharedState {
  uint64_t full[kStages], empty[kStages];
  uint64_t mainloop_done[kConsumers];  // per consumer warpgroup, once per tile
  PhaseTable axes;
};

// What every role derives from a tile index.
struct TileGeometry {
  TileCoord tile;
  GemmAxis ax[3];
  int64_t m0, rows;  // first row, rows of the phase
  int K, nslices;    // reduction length, stages
};

template <typename scalar_t>
__device__ __forceinline__ TileGeometry tile_geometry(const KernelArgs& k, const PhaseTable& axes,
                                                      uint32_t t, uint32_t tiles_per_group) {
  constexpr int kSlice = kSliceBytes / int(sizeof(scalar_t));
  TileGeometry g;
  g.tile = decode_tile(k, t % tiles_per_group, int(t / tiles_per_group));
  int r[3];
  phase_residues(k, g.tile.phase, r);
#pragma unroll
  for (int a = 0; a < 3; ++a) g.ax[a] = axes[a][r[a]];
  const PhaseSize size = phase_size(k, g.ax);
  g.m0 = g.tile.mtile * kBM;
  g.rows = size.rows;
  g.K = size.taps * int(k.ops.channels);
  g.nslices = (g.K + kSlice - 1) / kSlice;
  return g;
}

template <typename scalar_t, typename index_t, int BN>
__device__ __forceinline__ void produce(const KernelArgs& k, const SharedState& st, uint32_t smem0,
                                        uint32_t tiles_per_group, uint32_t tiles) {
  using L = Layout<BN>;
  using uoff_t = std::make_unsigned_t<index_t>;
  constexpr bool kTf32 = std::is_same_v<scalar_t, float>;
  constexpr int kVec = 16 / int(sizeof(scalar_t));
  constexpr int kSlice = kSliceBytes / int(sizeof(scalar_t));
  const int tid = threadIdx.x;
  const int piece = tid % kPieces, row0 = tid / kPieces;
  const scalar_t* src = static_cast<const scalar_t*>(k.ops.source);
  const scalar_t* wts = static_cast<const scalar_t*>(k.ops.packed_weight);
  const int C = int(k.ops.channels), columns = int(k.ops.columns);
  const uint32_t full0 = smem_addr(st.full), empty0 = smem_addr(st.empty);

  // TF32 only: this thread's pieces of stage `seq` have landed (it waited);
  // round them (they sit at the same place in every stage), fence, arrive.
  auto publish_tf32 = [&](uint32_t seq) {
    const uint32_t s = seq % kStages;
    const uint32_t base = smem0 + s * L::kStageBytes;
#pragma unroll
    for (int q = 0; q < kARows; ++q) {
      round_piece_to_tf32(base + sw128_offset(row0 + q * kRowStep, piece));
    }
#pragma unroll
    for (int q = 0; q < L::kBRows; ++q) {
      round_piece_to_tf32(base + L::kABytes + sw128_offset(row0 + q * kRowStep, piece));
    }
    fence_proxy_async_shared();
    mbarrier_arrive(full0 + 8 * s);
  };

  uint32_t seq = 0;  // stages issued so far, over all tiles
  for (uint32_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const TileGeometry g = tile_geometry<scalar_t>(k, st.axes, t, tiles_per_group);
    if (g.m0 >= g.rows || g.nslices == 0) continue;
    const Walk<index_t> w = make_walk<index_t>(k, g.ax, g.tile.group);
    const RowDecomposer<index_t> decompose(g.ax);
    SourceRow<index_t> rows[kARows];
#pragma unroll
    for (int q = 0; q < kARows; ++q) {
      rows[q] = source_row<index_t>(k, g.ax, decompose, g.m0 + row0 + q * kRowStep, g.rows,
                                    g.tile.group);
    }
    uoff_t b_row[L::kBRows];
    bool b_ok[L::kBRows];
#pragma unroll
    for (int q = 0; q < L::kBRows; ++q) {
      const int col = g.tile.ntile * BN + row0 + q * kRowStep;
      b_ok[q] = col < columns;
      b_row[q] = w.b_origin + uoff_t(index_t(int64_t(col) * C));
    }
    Cursor<index_t> cur{};
    advance(cur, w, piece * kVec);

    for (int slice = 0; slice < g.nslices; ++slice, ++seq) {
      const uint32_t s = seq % kStages;
      if (seq >= kStages) mbarrier_wait(empty0 + 8 * s, ((seq / kStages) - 1) & 1);
      const uint32_t sa = smem0 + s * L::kStageBytes, sb = sa + L::kABytes;
      const bool kok = cur.kk < g.K;
#pragma unroll
      for (int q = 0; q < kARows; ++q) {
        const bool ok = kok && in_bounds(rows[q], cur, w);
        const scalar_t* p = ok ? src + index_t(rows[q].off + cur.a_off) : src;
        cp_async16(sa + sw128_offset(row0 + q * kRowStep, piece), p, ok);
      }
#pragma unroll
      for (int q = 0; q < L::kBRows; ++q) {
        const bool ok = kok && b_ok[q];
        const scalar_t* p = ok ? wts + index_t(b_row[q] + cur.b_off) : wts;
        cp_async16(sb + sw128_offset(row0 + q * kRowStep, piece), p, ok);
      }
      advance(cur, w, kSlice);
      if constexpr (kTf32) {
        cp_async_commit();
        if (seq >= kLag) {
          cp_async_wait<kLag>();
          publish_tf32(seq - kLag);
        }
      } else {
        cp_async_arrive_noinc(full0 + 8 * s);  // wgmma reads the copies as they land
      }
    }
  }
  if constexpr (kTf32) {
    cp_async_wait<0>();
    for (uint32_t p = seq > kLag ? seq - kLag : 0; p < seq; ++p) publish_tf32(p);
  }
}

// A consumer warpgroup takes every other tile that has rows (ping-pong: one's
// epilogue overlaps the other's MMAs) and computes all 128 rows of it.  It
// starts a tile's main loop only once the other warpgroup has finished the
// previous tile's: then every stage before this tile has been filled, so a
// barrier it waits on is never more than one phase behind (a parity wait on
// a barrier two phases behind would pass at once).
template <typename scalar_t, typename index_t, int BN>
__device__ __forceinline__ void consume(const KernelArgs& k, const SharedState& st, uint32_t smem0,
                                        uint32_t tiles_per_group, uint32_t tiles) {
  using L = Layout<BN>;
  constexpr int kSteps = kSliceBytes / 32;  // wgmma k-steps per stage
  const int wg = (threadIdx.x - 128) / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int columns = int(k.ops.columns);
  const scalar_t* bias = static_cast<const scalar_t*>(k.ops.bias);
  scalar_t* dst = static_cast<scalar_t*>(k.ops.dest);
  const index_t dc = index_t(k.dest.c);
  const uint32_t full0 = smem_addr(st.full), empty0 = smem_addr(st.empty);
  const uint32_t done0 = smem_addr(st.mainloop_done);

  auto release = [&](uint32_t seq) {
    __syncwarp();
    if (lane == 0) mbarrier_arrive(empty0 + 8 * (seq % kStages));
  };

  float acc[2][BN / 2];  // rows 0-63 and 64-127 of the tile
  uint32_t seq = 0;      // stages of every tile so far, this warpgroup's or not
  int turn = 0;          // tiles with rows so far
  for (uint32_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const TileGeometry g = tile_geometry<scalar_t>(k, st.axes, t, tiles_per_group);
    if (g.m0 >= g.rows) continue;
    const int i = turn++;
    if (i % kConsumers != wg) {
      seq += uint32_t(g.nslices);
      continue;
    }
    // Tile i - 1 was the ((i - 1) / 2)-th of the other warpgroup.
    if (i > 0) mbarrier_wait(done0 + 8 * (1 - wg), uint32_t((i - 1) / kConsumers) & 1);
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < BN / 2; ++e) acc[h][e] = 0.f;
    fence_accumulators(acc[0]);
    fence_accumulators(acc[1]);
    for (int slice = 0; slice < g.nslices; ++slice, ++seq) {
      const uint32_t s = seq % kStages;
      mbarrier_wait(full0 + 8 * s, (seq / kStages) & 1);
      const uint32_t a = smem0 + s * L::kStageBytes;
      const uint32_t b = a + L::kABytes;
      wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < kSteps; ++ks) {
        const uint64_t bd = sw128_desc(b + 32 * ks);
        Wgmma<scalar_t, BN>::run(acc[0], sw128_desc(a + 32 * ks), bd);
        Wgmma<scalar_t, BN>::run(acc[1], sw128_desc(a + 64 * kSliceBytes + 32 * ks), bd);
      }
      wgmma_commit();
      wgmma_wait<1>();  // the previous stage's MMAs are done with their operands
      if (slice > 0) release(seq - 1);
    }
    __syncwarp();
    if (lane == 0) mbarrier_arrive(done0 + 8 * wg);  // the other warpgroup's turn
    wgmma_wait<0>();
    fence_accumulators(acc[0]);
    fence_accumulators(acc[1]);
    if (g.nslices > 0) release(seq - 1);

    // Epilogue: thread (warp, lane) holds rows 64·half + 16·warp + lane/4
    // (+8) and columns 8j + 2·(lane%4) (+1).
    const RowDecomposer<index_t> decompose(g.ax);
    const int n0 = g.tile.ntile * BN;
    const int64_t bias_base = int64_t(g.tile.group) * columns;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t m = g.m0 + half * 64 + warp * 16 + lane / 4 + 8 * h;
        if (m >= g.rows) continue;
        const index_t row = dest_row<index_t>(k, g.ax, decompose, m, g.tile.group);
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int col = n0 + 8 * j + 2 * (lane % 4);
          if (col >= columns) continue;
          const bool second = col + 1 < columns;
          float v0 = acc[half][4 * j + 2 * h], v1 = acc[half][4 * j + 2 * h + 1];
          if (bias != nullptr) {
            v0 += to_acc(bias[index_t((bias_base + col) * k.p.bias_stride)]);
            if (second) v1 += to_acc(bias[index_t((bias_base + col + 1) * k.p.bias_stride)]);
          }
          if (k.pair_store) {  // columns even: the pair is whole
            struct alignas(2 * sizeof(scalar_t)) Pair {
              scalar_t x, y;
            };
            *reinterpret_cast<Pair*>(dst + row + index_t(col)) =
                Pair{from_acc<scalar_t>(v0), from_acc<scalar_t>(v1)};
          } else {
            dst[row + index_t(col) * dc] = from_acc<scalar_t>(v0);
            if (second) dst[row + index_t(col + 1) * dc] = from_acc<scalar_t>(v1);
          }
        }
      }
    }
  }
}

template <typename scalar_t, typename index_t, int BN>
__global__ void __launch_bounds__(kThreads, 1) tensor_core_gemm_sm90_kernel(const KernelArgs k) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  __shared__ SharedState st;
  const uint32_t smem0 = (smem_addr(smem_raw) + 1023u) & ~1023u;  // swizzle atoms
  const int tid = threadIdx.x;
  if (tid < kStages) {
    mbarrier_init(smem_addr(&st.full[tid]), 128);  // each producer thread, once per stage
    mbarrier_init(smem_addr(&st.empty[tid]), 4);   // each warp of the consuming warpgroup
  }
  if (tid < kConsumers) mbarrier_init(smem_addr(&st.mainloop_done[tid]), 4);  // each of its warps
  if (tid >= 32 && tid < 32 + 3 * kMaxPhases) {
    const int a = (tid - 32) / kMaxPhases, r = (tid - 32) % kMaxPhases;
    if (r < k.phases[a]) st.axes[a][r] = pass_axis(k, a, r);
  }
  __syncthreads();
  const uint32_t tiles_per_group =
      uint32_t(k.mtiles) * uint32_t(k.phases[0] * k.phases[1] * k.phases[2]) * uint32_t(k.ntiles);
  const uint32_t tiles = tiles_per_group * uint32_t(k.p.groups);
  if (tid < 128) {
    release_registers<kProducerRegs>();
    produce<scalar_t, index_t, BN>(k, st, smem0, tiles_per_group, tiles);
  } else {
    claim_registers<kConsumerRegs>();
    consume<scalar_t, index_t, BN>(k, st, smem0, tiles_per_group, tiles);
  }
#else
  __trap();  // never launched: tensor_core_gemm_sm90_runs_here requires sm_90a code
#endif
}

// 32, 64 or 128 columns: the narrowest that holds a group's columns in one
// tile, 128 beyond that (wider tiles would cost registers for little reuse).
inline int choose_columns(const ConvTranspose3dParams& p, GatherPass pass) {
  const int64_t c = columns_of(p, pass);
  return c <= 32 ? 32 : c <= 64 ? 64 : 128;
}

std::atomic<int> g_forced_ctas{0};

template <typename scalar_t, typename index_t, int BN>
cudaError_t launch_columns(const KernelArgs& args, int64_t tiles, cudaStream_t stream) {
  constexpr int smem = Layout<BN>::kSmemBytes;
  const cudaError_t err =
      opt_in_dynamic_smem<tensor_core_gemm_sm90_kernel<scalar_t, index_t, BN>>(smem);
  if (err != cudaSuccess) return err;
  const int64_t cap = g_forced_ctas.load() > 0 ? g_forced_ctas.load() : sm_count();
  const int64_t ctas = tiles < cap ? tiles : cap;
  tensor_core_gemm_sm90_kernel<scalar_t, index_t, BN>
      <<<static_cast<unsigned int>(ctas), kThreads, smem, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace tcg90

bool tensor_core_gemm_sm90_runs_here() {
#if defined(TCONV3D_WITH_SM90A)
  return kernel_runs_here<tcg90::tensor_core_gemm_sm90_kernel<__half, int32_t, 64>,
                          ArchNeed::Sm90a>();
#else
  return false;  // built without sm_90a code: the kernel bodies are empty
#endif
}

bool tensor_core_gemm_sm90_handles(const ConvTranspose3dParams& p, GatherPass pass) {
  if (pass == GatherPass::GradInput) return true;
  for (const Axis& ax : p.axis) {
    if (ax.stride > tcg90::kMaxPhases) return false;
  }
  return true;
}

bool tensor_core_gemm_sm90_pays(const ConvTranspose3dParams& p, GatherPass pass,
                                ScalarKind dtype) {
  const int64_t columns = igemm::columns_of(p, pass);
  if (dtype == ScalarKind::Float32 || columns <= (pass == GatherPass::GradInput ? 32 : 64)) {
    return false;
  }
  const igemm::LaunchShape s =
      igemm::launch_shape(p, pass, tcg90::kBM, tcg90::choose_columns(p, pass));
  // 128 tiles on the H200's 132 SMs still won (1.3-1.5x), 64 lost (0.9x).
  return 4 * s.tiles_per_group() * p.groups >= 3 * int64_t(igemm::sm_count());
}

cudaError_t launch_tensor_core_gemm_sm90(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const TensorCoreGemmOperands& ops) {
  const int bn = tcg90::choose_columns(p, ops.pass);
  const igemm::LaunchShape s = igemm::launch_shape(p, ops.pass, tcg90::kBM, bn);
  const int64_t tiles = s.tiles_per_group() * p.groups;
  if (p.batch == 0 || tiles == 0) return cudaSuccess;
  const igemm::KernelArgs args = igemm::make_kernel_args(p, ops, cfg.dtype, s);
  cudaError_t err = cudaErrorInvalidValue;
  igemm::dispatch_gemm_types(cfg, [&](auto scalar, auto index) {
    using scalar_t = decltype(scalar);
    using index_t = decltype(index);
    err = bn == 32    ? tcg90::launch_columns<scalar_t, index_t, 32>(args, tiles, cfg.stream)
          : bn == 64  ? tcg90::launch_columns<scalar_t, index_t, 64>(args, tiles, cfg.stream)
                      : tcg90::launch_columns<scalar_t, index_t, 128>(args, tiles, cfg.stream);
  });
  return err;
}

void set_tensor_core_gemm_sm90_grid(int ctas) { tcg90::g_forced_ctas.store(ctas); }

}  // namespace tconv3d::cuda
