// Grad-weight on Hopper's warpgroup MMAs (wgmma, sm_90a) fed by TMA, for
// fp16/bf16 operands laid out channels-last (read in place, or packed from
// NCDHW by the op layer) whose groups hold whole multiples of 64 channels on
// both sides:
//
//   C_k[ci, co] = Σ_i x[n, i, ci] · gy[n, i·s − p + k·d, co]   (group g, tap k)
//
// The mma.sync kernel (grad_weight_gemm_channels_last.cu) spends its SM
// copying 16-byte pieces and transposing them through ldmatrix; here one
// thread moves every byte with tensor-map copies and wgmma reads the
// operands as they land.
//
// Rows (the GEMM's K) are the input positions of the whole grid, cut into
// boxes of 64 (d × h × w powers of two, row_boxes.h).  Columns are (tap, co)
// pairs, co fastest, so a 128-wide tile of a 64-channel group spans two taps
// that share each x box.  A stage holds one box of x, BM channels (BM/64
// copies of 64 positions × 128 bytes), and per 64 columns the box of gy
// their tap reaches from it: every s-th output position from i0·s − p + k·d
// (TMA's element strides).  Output positions outside gy — and input
// positions past the grid's end — arrive as zeros, which is exactly the
// masking the sum needs, so no row is decoded or bounds-checked.  Both
// operands land as [position][128 bytes of channels] in the 128-byte
// swizzle: K rows of M (or N) elements, the MN-major layout wgmma reads with
// its transpose bits (mn_major_sw128_desc).
//
// Work units are (group, split, ci-tile, column tile), columns fastest so
// units running together read the same x boxes from L2; split `s` of S
// covers boxes [B·s/S, B·(s+1)/S) of the grid's B.  S is chosen from the
// shape alone (results do not depend on the GPU): about two units per SM of
// a 132-SM part, so one consumer's epilogue overlaps the other's main loop.
//
// Persistent CTAs, one per SM, as the forward GEMM (tensor_core_gemm_sm90.cu):
// a producer warpgroup (one thread issues the copies into a 6-stage ring) and
// two consumer warpgroups taking units in turn (ping-pong), each computing a
// whole BM × BN tile: per stage and 16-row k-step, one m64nBNk16 per 64 rows
// of ci.  Epilogue from registers: fp32 partials [split][tap][ci][co] (pairs
// of co as one 8-byte store), even with one split: gw keeps its taps
// innermost, so stores straight into it would be 2-byte writes kD·kH·kW
// elements apart (the 512→256 bottleneck spent most of its 70 us on them).
// combine_tap_major_kernel then adds the splits in order, rounds once and
// writes gw in its own order.  No atomics: bitwise reproducible.
#include "grad_weight_gemm.h"

#include <cstdint>
#include <type_traits>

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../scalar_convert.h"
#include "dispatch.cuh"
#include "grad_weight_launch.cuh"
#include "grad_weight_sm90_plan.h"
#include "implicit_gemm_walk.cuh"
#include "mma_sm80.cuh"
#include "sm90_primitives.cuh"
#include "tensor_map_encoder.h"

namespace tconv3d::cuda {
namespace gw90 {

using namespace sm90;

constexpr int kChunkBytes = kBoxRows * 128;  // one copy's box: 8 KB
constexpr int kConsumers = 2;
constexpr int kThreads = 128 * (1 + kConsumers);
constexpr int kLaunchRegs = 65536 / kThreads / 8 * 8;  // 168
constexpr int kProducerRegs = 64, kConsumerRegs = 216;
static_assert(128 * (kLaunchRegs - kProducerRegs) >= 128 * kConsumers * (kConsumerRegs - kLaunchRegs),
              "consumers would wait forever for registers");
constexpr int kStages = 6;
template <int BM, int BN>
struct Layout {
  static constexpr int kABytes = BM / kChunk * kChunkBytes;
  static constexpr int kStageBytes = kABytes + BN / kChunk * kChunkBytes;
  static constexpr int kSmemBytes = kStages * kStageBytes + kSwizzleAtomBytes;
};

struct SharedState {
  uint64_t full[kStages], empty[kStages];
  uint64_t mainloop_done[kConsumers];
};

template <int BM, int BN>
__device__ __forceinline__ void produce(const Geometry& g, const CUtensorMap& x_map,
                                        const CUtensorMap& gy_map, const SharedState& st,
                                        uint32_t smem0, int64_t units) {
  using L = Layout<BM, BN>;
  if (threadIdx.x != 0) return;
  const uint32_t full0 = smem_addr(st.full), empty0 = smem_addr(st.empty);
  uint32_t seq = 0;
  for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
    const Unit w = decode_unit(g, u);
    // Per 64-column block: the grad_output channel and the tap's offset from
    // o = i·s (a block past the last tap reads outside the tensor: zeros).
    int shift[BN / kChunk][3], co[BN / kChunk], sample_offset[BN / kChunk];
#pragma unroll
    for (int j = 0; j < BN / kChunk; ++j) {
      const ColumnBlock c = column_block(g, w.tn, j, BN);
      const int k[3] = {c.tap / (g.kernel[1] * g.kernel[2]), (c.tap / g.kernel[2]) % g.kernel[1],
                        c.tap % g.kernel[2]};
#pragma unroll
      for (int a = 0; a < 3; ++a) shift[j][a] = g.shift0[a] + k[a] * g.dilation[a];
      co[j] = w.group * g.out_per_group + c.co;
      sample_offset[j] = c.tap < g.taps ? 0 : 1 << 30;
    }
    const int ci0 = w.group * g.in_per_group + w.tm * BM;
    BoxCursor cursor;
    cursor.seek(g, w.box0);
    for (int64_t b = w.box0; b < w.box1; ++b, ++seq) {
      const int i0[3] = {cursor.origin(g, 0), cursor.origin(g, 1), cursor.origin(g, 2)};
      const int sample = cursor.sample;
      cursor.next(g);
      const uint32_t s = seq % kStages, full = full0 + 8 * s;
      if (seq >= kStages) mbarrier_wait(empty0 + 8 * s, ((seq / kStages) - 1) & 1);
      const uint32_t sa = smem0 + s * L::kStageBytes, sb = sa + L::kABytes;
      mbarrier_arrive_expect_tx(full, L::kStageBytes);
#pragma unroll
      for (int j = 0; j < BM / kChunk; ++j) {
        tma_load_5d(sa + j * kChunkBytes, &x_map, full, ci0 + j * kChunk, i0[2], i0[1], i0[0], sample);
      }
#pragma unroll
      for (int j = 0; j < BN / kChunk; ++j) {
        tma_load_5d(sb + j * kChunkBytes, &gy_map, full, co[j], i0[2] * g.stride[2] + shift[j][2],
                    i0[1] * g.stride[1] + shift[j][1], i0[0] * g.stride[0] + shift[j][0],
                    sample + sample_offset[j]);
      }
    }
  }
}

// A consumer warpgroup takes every other unit and computes its whole tile.
// It starts a unit's main loop only once the other warpgroup has finished
// the previous unit's: then every stage before this unit has been filled, so
// a barrier it waits on is never more than one phase behind.
template <typename scalar_t, int BM, int BN>
__device__ __forceinline__ void consume(const Geometry& g, const SharedState& st, uint32_t smem0,
                                        int64_t units) {
  using L = Layout<BM, BN>;
  constexpr int kHalves = BM / 64;  // m64 wgmmas per k-step
  const int wg = (threadIdx.x - 128) / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const uint32_t full0 = smem_addr(st.full), empty0 = smem_addr(st.empty);
  const uint32_t done0 = smem_addr(st.mainloop_done);
  auto release = [&](uint32_t seq) {
    __syncwarp();
    if (lane == 0) mbarrier_arrive(empty0 + 8 * (seq % kStages));
  };

  float acc[kHalves][BN / 2];
  uint32_t seq = 0;
  int turn = 0;
  for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
    const Unit w = decode_unit(g, u);
    const int stages = int(w.box1 - w.box0);
    const int i = turn++;
    if (i % kConsumers != wg) {
      seq += uint32_t(stages);
      continue;
    }
    if (i > 0) mbarrier_wait(done0 + 8 * (1 - wg), uint32_t((i - 1) / kConsumers) & 1);
#pragma unroll
    for (int h = 0; h < kHalves; ++h) {
#pragma unroll
      for (int e = 0; e < BN / 2; ++e) acc[h][e] = 0.f;
      fence_accumulators(acc[h]);
    }
    for (int stage = 0; stage < stages; ++stage, ++seq) {
      const uint32_t s = seq % kStages;
      mbarrier_wait(full0 + 8 * s, (seq / kStages) & 1);
      const uint32_t a = smem0 + s * L::kStageBytes, b = a + L::kABytes;
      wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < kBoxRows / 16; ++ks) {
        const uint64_t bd = mn_major_sw128_desc(b + 2048 * ks, kChunkBytes);
#pragma unroll
        for (int h = 0; h < kHalves; ++h) {
          WgmmaMnMajor<scalar_t, BN>::run(acc[h], mn_major_sw128_desc(a + h * kChunkBytes + 2048 * ks, kChunkBytes), bd);
        }
      }
      wgmma_commit();
      wgmma_wait<1>();  // the previous stage's MMAs are done with their operands
      if (stage > 0) release(seq - 1);
    }
    __syncwarp();
    if (lane == 0) mbarrier_arrive(done0 + 8 * wg);  // the other warpgroup's turn
    wgmma_wait<0>();
#pragma unroll
    for (int h = 0; h < kHalves; ++h) fence_accumulators(acc[h]);
    if (stages > 0) release(seq - 1);

    // Thread (warp, lane) holds ci rows 64·half + 16·warp + lane/4 (+8) and
    // co columns 8j + 2·(lane%4) (+1) of the tile.
    const int64_t ci_base = int64_t(w.group) * g.in_per_group + int64_t(w.tm) * BM;
    float* const partials = g.workspace + w.split * g.numel;
#pragma unroll
    for (int block = 0; block < BN / kChunk; ++block) {
      const ColumnBlock c = column_block(g, w.tn, block, BN);
      if (c.tap >= g.taps) continue;
      float* const tap_base = partials + int64_t(c.tap) * g.in_channels * g.out_per_group + c.co;
#pragma unroll
      for (int half = 0; half < kHalves; ++half) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t ci = ci_base + half * 64 + warp * 16 + lane / 4 + 8 * h;
#pragma unroll
          for (int j = 8 * block; j < 8 * block + 8; ++j) {
            const int co = 8 * (j - 8 * block) + 2 * (lane % 4);
            *reinterpret_cast<float2*>(tap_base + ci * g.out_per_group + co) =
                make_float2(acc[half][4 * j + 2 * h], acc[half][4 * j + 2 * h + 1]);
          }
        }
      }
    }
  }
}

template <typename scalar_t, int BM, int BN>
__global__ void __launch_bounds__(kThreads, 1)
    grad_weight_gemm_sm90_kernel(const __grid_constant__ Geometry g,
                                 const __grid_constant__ CUtensorMap x_map,
                                 const __grid_constant__ CUtensorMap gy_map) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  __shared__ SharedState st;
  const uint32_t smem0 = swizzle_aligned(smem_addr(smem_raw));
  const int tid = threadIdx.x;
  if (tid < kStages) {
    mbarrier_init(smem_addr(&st.full[tid]), 1);   // the issuing thread's arrive.expect_tx
    mbarrier_init(smem_addr(&st.empty[tid]), 4);  // each warp of the consuming warpgroup
  }
  if (tid < kConsumers) mbarrier_init(smem_addr(&st.mainloop_done[tid]), 4);
  __syncthreads();
  const int64_t units = unit_count(g);
  if (tid < 128) {
    release_registers<kProducerRegs>();
    produce<BM, BN>(g, x_map, gy_map, st, smem0, units);
  } else {
    claim_registers<kConsumerRegs>();
    consume<scalar_t, BM, BN>(g, st, smem0, units);
  }
#else
  __trap();  // never launched: runs_here requires sm_90a code
#endif
}

static_assert(kMaxPartials == cuda::kMaxPartials, "one workspace bound for both kernels");

// The plan run_split_gemm takes, from the decomposition.
bool plan(const ConvTranspose3dParams& p, Geometry& g, gw_gemm::Plan& pl) {
  if (!plan_geometry(p, g)) return false;
  pl = gw_gemm::Plan{};
  pl.bm = g.bm;
  pl.bn = g.bn;
  pl.groups = g.groups;
  pl.tiles_m = g.tiles_m;
  pl.tiles_n = g.tiles_n;
  pl.taps = g.taps;
  pl.splits = g.splits;
  pl.numel = g.numel;
  pl.blocks = unit_count(g);
  return true;
}

template <typename scalar_t, int BM, int BN>
cudaError_t launch_tile(const Geometry& g, const CUtensorMap& x_map, const CUtensorMap& gy_map,
                        int64_t units, cudaStream_t stream) {
  constexpr auto kernel = grad_weight_gemm_sm90_kernel<scalar_t, BM, BN>;
  constexpr int smem = Layout<BM, BN>::kSmemBytes;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(smem);
  if (err != cudaSuccess) return err;
  const int64_t cap = sm_count();
  const int64_t ctas = units < cap ? units : cap;
  kernel<<<static_cast<unsigned int>(ctas), kThreads, smem, stream>>>(g, x_map, gy_map);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_typed(const Geometry& g, const CUtensorMap& x_map, const CUtensorMap& gy_map,
                         int bm, int bn, int64_t units, cudaStream_t stream) {
  if (bm == 128 && bn == 128) return launch_tile<scalar_t, 128, 128>(g, x_map, gy_map, units, stream);
  if (bm == 128) return launch_tile<scalar_t, 128, 64>(g, x_map, gy_map, units, stream);
  if (bn == 128) return launch_tile<scalar_t, 64, 128>(g, x_map, gy_map, units, stream);
  return launch_tile<scalar_t, 64, 64>(g, x_map, gy_map, units, stream);
}

bool runs_here() {
#if defined(TCONV3D_WITH_SM90A)
  return kernel_runs_here<grad_weight_gemm_sm90_kernel<__nv_bfloat16, 64, 64>, ArchNeed::Sm90a>();
#else
  return false;  // built without sm_90a code: the kernel bodies are empty
#endif
}

}  // namespace gw90

bool grad_weight_gemm_sm90_supports(const ConvTranspose3dParams& p, ScalarKind dtype,
                                    const GradWeightOperands& ops) {
  if (dtype != ScalarKind::Float16 && dtype != ScalarKind::BFloat16) return false;
  if (p.in_per_group % gw90::kChunk != 0 || p.out_per_group % gw90::kChunk != 0) return false;
  // Channels exactly the group's (no padding: a box must not read into the
  // next group's), strides and addresses as TMA needs them (16-byte multiples).
  if (ops.input_channels != p.in_per_group || ops.grad_output_channels != p.out_per_group) {
    return false;
  }
  const int64_t strides[8] = {ops.input_n,         ops.input_d,         ops.input_h,
                              ops.input_w,         ops.grad_output_n,   ops.grad_output_d,
                              ops.grad_output_h,   ops.grad_output_w};
  for (const int64_t s : strides) {
    if (s % 8 != 0 || s <= 0 || s >= (int64_t(1) << 38)) return false;
  }
  if (reinterpret_cast<uintptr_t>(ops.input) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(ops.grad_output) % 16 != 0) {
    return false;
  }
  gw90::Geometry g;
  gw_gemm::Plan pl;
  return gw90::plan(p, g, pl) && gw90::runs_here();
}

int64_t grad_weight_gemm_sm90_workspace_elems(const ConvTranspose3dParams& p) {
  gw90::Geometry g;
  gw_gemm::Plan pl;
  return gw90::plan(p, g, pl) ? pl.splits * pl.numel : 0;  // one split too: see the epilogue
}

cudaError_t launch_grad_weight_gemm_sm90(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                         const GradWeightOperands& ops) {
  gw90::Geometry g;
  gw_gemm::Plan pl;
  if (!gw90::plan(p, g, pl)) return cudaErrorInvalidConfiguration;
  if (p.batch == 0 || pl.numel == 0) return cudaSuccess;
  g.workspace = ops.workspace;
  const int64_t in_extent[3] = {p.axis[0].in, p.axis[1].in, p.axis[2].in};
  const int64_t out_extent[3] = {p.axis[0].out, p.axis[1].out, p.axis[2].out};
  const int64_t x_strides[4] = {ops.input_n, ops.input_d, ops.input_h, ops.input_w};
  const int64_t gy_strides[4] = {ops.grad_output_n, ops.grad_output_d, ops.grad_output_h,
                                 ops.grad_output_w};
  const int64_t unit_stride[3] = {1, 1, 1};
  const int64_t conv_stride[3] = {p.axis[0].stride, p.axis[1].stride, p.axis[2].stride};
  CUtensorMap x_map, gy_map;
  if (!encode_channels_last_boxes(x_map, cfg.dtype, ops.input, p.in_channels, p.batch, in_extent,
                                  x_strides, gw90::kChunk, g.log_box, unit_stride,
                                  CU_TENSOR_MAP_SWIZZLE_128B) ||
      !encode_channels_last_boxes(gy_map, cfg.dtype, ops.grad_output, p.out_channels, p.batch,
                                  out_extent, gy_strides, gw90::kChunk, g.log_box, conv_stride,
                                  CU_TENSOR_MAP_SWIZZLE_128B)) {
    return cudaErrorInvalidValue;
  }
  return gw_gemm::run_split_gemm<gw_gemm::PartialOrder::TapCiCo, /*always_partials=*/true>(
      p, cfg, pl, ops.workspace, ops.grad_weight, [&](auto scalar, auto) -> cudaError_t {
        using scalar_t = decltype(scalar);
        if constexpr (std::is_same_v<scalar_t, float>) {
          return cudaErrorInvalidValue;  // fp16/bf16 only (supports says so)
        } else {
          return gw90::launch_typed<scalar_t>(g, x_map, gy_map, pl.bm, pl.bn, pl.blocks, cfg.stream);
        }
      });
}

}  // namespace tconv3d::cuda
