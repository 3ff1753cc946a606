// Grad-weight in TF32 on Hopper's warpgroup MMAs (wgmma, sm_90a) with both
// operands K-major in shared memory, straight from TMA: fp32 layers (TF32
// allowed) whose groups hold multiples of 64 input and 64 output channels,
// any stride, padding, dilation and groups.
//
//   gw[ci, co, tap] = Σ_{n, i} x_k[n, ci, i] · gy_k[n, phase(tap), co, i + shift(tap)]
//
// wgmma reads 32-bit operands from shared memory K-major only, and the
// channels-last operands of grad_weight_gemm_sm90.cu land MN-major: there x
// goes through the consumers' registers and grad_output is rewritten in
// shared memory by three producer warps, a third of each stage's bytes and
// most of its time.  Here kmajor_pack.cu has already written both operands
// position-fastest and rounded to TF32 (kmajor_layout.h), so a TMA box of a
// channel's positions is one K-major row: every byte is moved by one thread's
// copies and read by wgmma where it lands.  grad_output's stride phases are
// separate grids, so a tap's operand is the x box moved by the tap's shift
// in its phase's grid: no traversal stride, and positions outside the grid
// (negative, or past its end, as are x's past the input's) arrive as zeros,
// which is exactly the masking the sum needs.
//
// The product is turned: an MMA's 64 rows are (tap, co) rows of the weight
// gradient — one copy of 64 output channels of one tap — and its N the BC
// input channels (128, else 64), since the (tap, co) side is the long one
// and M is wgmma's fixed side.  A CTA tile is 256 rows (four copies) × BC;
// both consumer warpgroups work on it together, warpgroup j on copies 2j and
// 2j + 1 (two m64nBC accumulators: 128 registers a thread at BC = 128), so
// a stage's x copy is read by 8 MMAs, not 4.
//
// K is input positions, in boxes of 32: bw × bh × bd with bw = 32 where W
// tiles into it (128-byte rows, one (d, h) slab holding the stage's four k8
// steps) else 8 (32-byte rows, a slab per k8 step).  The boxes run (n, d, h,
// w), w fastest; those past the grid's edge read zeros (wasted, not wrong).
// A box's copies land [bd][bh][channel][bw floats] in the swizzle of the row
// width: each (d, h) slab a K-major swizzled tile (kmajor_swizzle_desc_bits).
//
// Work units are (group, split, ci-tile, row tile), row tiles fastest so
// units running together read the same x boxes from L2; split `s` of S
// covers boxes [B·s/S, B·(s+1)/S) (grad_weight_kmajor_plan.h), S from the
// shape alone: results do not depend on the GPU.  Persistent CTAs, one per
// SM: a producer warpgroup (one thread issuing the copies into a 4- or
// 5-stage ring) and the two consumer warpgroups.  The epilogue stores fp32
// partials [split][tap][ci][co] from registers (a store: 8 consecutive co,
// one 32-byte sector, in each of 4 ci rows) while the producer already fills
// the next unit's stages; combine_tap_major_kernel adds the splits in order,
// rounds once and writes gw.  No atomics: bitwise reproducible.
#include "grad_weight_gemm.h"

#include <atomic>
#include <cstdint>

#include <cuda.h>

#include "dispatch.cuh"
#include "grad_weight_kmajor_plan.h"
#include "grad_weight_launch.cuh"
#include "kmajor_layout.h"
#include "mma_sm80.cuh"
#include "sm90_primitives.cuh"
#include "tensor_map_encoder.h"

namespace tconv3d::cuda {
namespace gwk {

using namespace sm90;

constexpr int kConsumers = 2;
constexpr int kThreads = 128 * (1 + kConsumers);
constexpr int kLaunchRegs = 65536 / kThreads / 8 * 8;  // 168
// As grad_weight_gemm_sm90.cu's: the issuing thread's 64-bit unit decoding
// fits 64; the consumers' 2 × 64 accumulators and descriptors fit 216.
constexpr int kProducerRegs = 64, kConsumerRegs = 216;
static_assert(128 * (kLaunchRegs - kProducerRegs) >= 128 * kConsumers * (kConsumerRegs - kLaunchRegs),
              "consumers would wait forever for registers");
// Shared memory an H100/H200 block may opt into, static included; the
// barriers' static bytes are kept out of the ring's share.
constexpr int kSmemLimit = 227 * 1024;
constexpr int kStaticReserve = 1024;

// A stage: grad_output's four copies (64 channels × 32 positions each), then
// x's (BC channels × 32 positions), each [slab][channel][kBoxW floats].
// Every copy and slab is a multiple of its swizzle's period (8 rows: 1024
// bytes at 128-byte rows, 256 at 32), so each slab starts on it and its
// descriptor's base offset is 0.
template <int BC, int kBoxW>
struct Layout {
  static constexpr int kRowBytes = 4 * kBoxW;
  static constexpr int kStepsPerRow = kBoxW / 8;  // k8 steps (32 bytes) a row
  static constexpr int kGyCopyBytes = kCopyRows * kStagePositions * 4;
  static constexpr int kXBytes = BC * kStagePositions * 4;
  static constexpr int kGySlabBytes = kCopyRows * kRowBytes, kXSlabBytes = BC * kRowBytes;
  static constexpr int kXOffset = kCopies * kGyCopyBytes;
  static constexpr int kStageBytes = kXOffset + kXBytes;  // all of it lands by TMA
  static constexpr int kStages = (kSmemLimit - kSwizzleAtomBytes - kStaticReserve) / kStageBytes;
  static constexpr int kSmemBytes = kStages * kStageBytes + kSwizzleAtomBytes;
  static constexpr uint64_t kDescBits = kmajor_swizzle_desc_bits(kRowBytes);
  static_assert(kBoxW == 8 || kBoxW == 32, "32- or 128-byte rows");
  static_assert(BC == 64 || BC == 128, "wgmma N");
  static_assert(kGySlabBytes % (8 * kRowBytes) == 0 && kXSlabBytes % (8 * kRowBytes) == 0,
                "slabs start on the swizzle's period");
  static_assert(kStageBytes % 1024 == 0, "stages keep the 128-byte swizzle's 1024-byte period");
  static_assert(kStages >= 2, "a ring");

  // k8 step j of a stage inside an operand of `slab_bytes` slabs: the slab
  // j / kStepsPerRow, 32 bytes further per step inside its rows.  A start
  // inside a swizzled row leaves the address bits the swizzle reads (7 and
  // up) as they are, so the descriptor's base offset stays 0.
  static constexpr uint32_t step_offset(int j, int slab_bytes) {
    return uint32_t((j / kStepsPerRow) * slab_bytes + 32 * (j % kStepsPerRow));
  }
};

template <int kStages>
struct SharedState {
  uint64_t full[kStages], empty[kStages];
};

// One thread issues every copy: per stage, the four grad_output copies of
// the tile's rows and the x copy of its input channels, for one box.
template <int BC, int kBoxW>
__device__ __forceinline__ void produce(const Geometry& g, const CUtensorMap& x_map,
                                        const CUtensorMap& gy_map,
                                        const SharedState<Layout<BC, kBoxW>::kStages>& st,
                                        uint32_t smem0, int64_t units) {
  using L = Layout<BC, kBoxW>;
  constexpr int kStages = L::kStages;
  if (threadIdx.x != 0) return;
  const uint32_t full0 = smem_addr(st.full), empty0 = smem_addr(st.empty);
  uint32_t seq = 0;
  for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
    const Unit w = decode_unit(g, u);
    // Per copy, once a unit: the box loop then only adds.
    CopySource src[kCopies];
#pragma unroll
    for (int c = 0; c < kCopies; ++c) src[c] = copy_source(g, w, c);
    const int ci0 = w.group * g.in_per_group + w.tc * BC;
    BoxCursor cursor;
    cursor.seek(g, w.box0);
    for (int64_t b = w.box0; b < w.box1; ++b, ++seq) {
      const int i0[3] = {cursor.origin(g, 0), cursor.origin(g, 1), cursor.origin(g, 2)};
      const int sample = cursor.sample, grids = sample * g.phases;
      cursor.next(g);
      const uint32_t s = seq % kStages, full = full0 + 8 * s;
      if (seq >= kStages) mbarrier_wait(empty0 + 8 * s, ((seq / kStages) - 1) & 1);
      const uint32_t stage = smem0 + s * L::kStageBytes;
      mbarrier_arrive_expect_tx(full, L::kStageBytes);
#pragma unroll
      for (int c = 0; c < kCopies; ++c) {
        tma_load_5d(stage + c * L::kGyCopyBytes, &gy_map, full, i0[2] + src[c].shift[2], src[c].co,
                    i0[1] + src[c].shift[1], i0[0] + src[c].shift[0], grids + src[c].sample_offset);
      }
      tma_load_5d(stage + L::kXOffset, &x_map, full, i0[2], ci0, i0[1], i0[0], sample);
    }
  }
}

// Both consumer warpgroups take every unit and every stage: warpgroup wg's
// A operands are copies 2·wg and 2·wg + 1, its B the stage's x copy.
template <int BC, int kBoxW>
__device__ __forceinline__ void consume(const Geometry& g, const SharedState<Layout<BC, kBoxW>::kStages>& st,
                                        uint32_t smem0, int64_t units) {
  using L = Layout<BC, kBoxW>;
  constexpr int kStages = L::kStages;
  constexpr int kBlocks = 2;  // m64 blocks a warpgroup
  const int wg = int(threadIdx.x) / 128 - 1, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const uint32_t full0 = smem_addr(st.full), empty0 = smem_addr(st.empty);
  auto release = [&](uint32_t seq) {
    __syncwarp();
    if (lane == 0) mbarrier_arrive(empty0 + 8 * (seq % kStages));
  };
  const uint32_t a_offset = uint32_t(kBlocks * wg) * L::kGyCopyBytes;

  float acc[kBlocks][BC / 2];
  uint32_t seq = 0;
  for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
    const Unit w = decode_unit(g, u);
    const int stages = int(w.box1 - w.box0);
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
#pragma unroll
      for (int e = 0; e < BC / 2; ++e) acc[b][e] = 0.f;
      fence_accumulators(acc[b]);
    }
    for (int stage = 0; stage < stages; ++stage, ++seq) {
      const uint32_t s = seq % kStages;
      mbarrier_wait(full0 + 8 * s, (seq / kStages) & 1);
      const uint32_t base = smem0 + s * L::kStageBytes;
      const uint64_t a_desc = smem_desc(base + a_offset, L::kDescBits);
      const uint64_t b_desc = smem_desc(base + L::kXOffset, L::kDescBits);
      wgmma_fence();
      // Step-major, so that consecutive MMAs feed different accumulators.
      // Offsets are compile-time and the start field cannot carry (shared
      // addresses stay under 2^18): adding them to the descriptor is exact.
#pragma unroll
      for (int j = 0; j < kStagePositions / 8; ++j) {
#pragma unroll
        for (int b = 0; b < kBlocks; ++b) {
          Wgmma<float, BC>::run(acc[b],
                                a_desc + ((b * L::kGyCopyBytes + L::step_offset(j, L::kGySlabBytes)) >> 4),
                                b_desc + (L::step_offset(j, L::kXSlabBytes) >> 4));
        }
      }
      wgmma_commit();
      wgmma_wait<1>();  // the previous stage's MMAs are done with their operands
      if (stage > 0) release(seq - 1);
    }
    wgmma_wait<0>();
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) fence_accumulators(acc[b]);
    if (stages > 0) release(seq - 1);

    // Thread (warp, lane) holds rows 16·warp + lane/4 (+8) of each block —
    // output channels of the block's tap — and columns 8j + 2·(lane%4) (+1):
    // input channels.  Each store writes 8 consecutive co (a 32-byte sector)
    // in each of 4 ci rows.
    const int64_t ci_base = int64_t(w.group) * g.in_per_group + int64_t(w.tc) * BC;
    float* const partials = g.workspace + w.split * g.numel;
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
      const CopyRows r = copy_rows(g, w.tr, kBlocks * wg + b);
      if (r.tap >= g.taps) continue;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int co = r.co + 16 * warp + lane / 4 + 8 * h;
        float* const dst = partials + (int64_t(r.tap) * g.in_channels + ci_base) * g.out_per_group + co;
#pragma unroll
        for (int j = 0; j < BC / 8; ++j) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            dst[int64_t(8 * j + 2 * (lane % 4) + e) * g.out_per_group] = acc[b][4 * j + 2 * h + e];
          }
        }
      }
    }
  }
}

template <int BC, int kBoxW>
__global__ void __launch_bounds__(kThreads, 1)
    grad_weight_kmajor_sm90_kernel(const __grid_constant__ Geometry g,
                                   const __grid_constant__ CUtensorMap x_map,
                                   const __grid_constant__ CUtensorMap gy_map) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using L = Layout<BC, kBoxW>;
  extern __shared__ unsigned char smem_raw[];
  __shared__ SharedState<L::kStages> st;
  const uint32_t smem0 = swizzle_aligned(smem_addr(smem_raw));
  const int tid = threadIdx.x;
  if (tid < L::kStages) {
    mbarrier_init(smem_addr(&st.full[tid]), 1);                // the issuing thread's arrive.expect_tx
    mbarrier_init(smem_addr(&st.empty[tid]), 4 * kConsumers);  // each warp of both consumers
  }
  __syncthreads();
  const int64_t units = unit_count(g);
  if (tid < 128) {
    release_registers<kProducerRegs>();
    produce<BC, kBoxW>(g, x_map, gy_map, st, smem0, units);
  } else {
    claim_registers<kConsumerRegs>();
    consume<BC, kBoxW>(g, st, smem0, units);
  }
#else
  __trap();  // never launched: runs_here requires sm_90a code
#endif
}

static_assert(kMaxPartials == cuda::kMaxPartials, "one workspace bound for all grad-weight kernels");

// 0: by shape; 8 or 32: forced (set_kmajor_box_w).
std::atomic<int> g_box_w{0};
int box_w_hook() { return g_box_w.load(std::memory_order_relaxed); }

// A K-major operand ([outer][d][h][channels][w], w rows `row` elements:
// kmajor_layout.h) as a 5-D map in the order (w, channel, h, d, outer),
// strides nested as TMA's maps describe them, so that a box lands as (d, h)
// slabs of channel rows of box_w positions: the K-major tile wgmma reads.
bool encode_kmajor_map(CUtensorMap& map, const float* base, int64_t w, int64_t channels, int64_t h,
                       int64_t d, int64_t outer, int64_t row, int box_w, int box_channels,
                       const BoxShape& box) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  if (encode == nullptr) return false;
  const cuuint64_t dim[5] = {cuuint64_t(w), cuuint64_t(channels), cuuint64_t(h), cuuint64_t(d),
                             cuuint64_t(outer)};
  const int64_t row_bytes = 4 * row, h_bytes = channels * row_bytes, d_bytes = h * h_bytes;
  const cuuint64_t stride[4] = {cuuint64_t(row_bytes), cuuint64_t(h_bytes), cuuint64_t(d_bytes),
                                cuuint64_t(d * d_bytes)};
  const cuuint32_t box_dim[5] = {cuuint32_t(box_w), cuuint32_t(box_channels), cuuint32_t(box.h),
                                 cuuint32_t(box.d), 1};
  const cuuint32_t step[5] = {1, 1, 1, 1, 1};
  return encode(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 5, const_cast<float*>(base), dim, stride,
                box_dim, step, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle_for_rows(4 * box_w),
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

template <int BC, int kBoxW>
cudaError_t launch_tile(const Geometry& g, const CUtensorMap& x_map, const CUtensorMap& gy_map,
                        int64_t units, cudaStream_t stream) {
  constexpr auto kernel = grad_weight_kmajor_sm90_kernel<BC, kBoxW>;
  constexpr int smem = Layout<BC, kBoxW>::kSmemBytes;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(smem);
  if (err != cudaSuccess) return err;
  const int64_t cap = sm_count();
  const int64_t ctas = units < cap ? units : cap;
  kernel<<<static_cast<unsigned int>(ctas), kThreads, smem, stream>>>(g, x_map, gy_map);
  return cudaGetLastError();
}

cudaError_t launch_typed(const Geometry& g, const CUtensorMap& x_map, const CUtensorMap& gy_map,
                         int64_t units, cudaStream_t stream) {
  const bool wide = g.box[2] == 32;
  if (g.bc == 128) {
    return wide ? launch_tile<128, 32>(g, x_map, gy_map, units, stream)
                : launch_tile<128, 8>(g, x_map, gy_map, units, stream);
  }
  return wide ? launch_tile<64, 32>(g, x_map, gy_map, units, stream)
              : launch_tile<64, 8>(g, x_map, gy_map, units, stream);
}

bool runs_here() {
#if defined(TCONV3D_WITH_SM90A)
  return kernel_runs_here<grad_weight_kmajor_sm90_kernel<64, 8>, ArchNeed::Sm90a>();
#else
  return false;  // built without sm_90a code: the kernel bodies are empty
#endif
}

}  // namespace gwk

void set_kmajor_box_w(int box_w) {
  gwk::g_box_w.store(box_w == 8 || box_w == 32 ? box_w : 0, std::memory_order_relaxed);
}

bool grad_weight_kmajor_sm90_supports(const ConvTranspose3dParams& p, ScalarKind dtype, bool allow_tf32) {
  if (dtype != ScalarKind::Float32 || !allow_tf32) return false;
  return gwk::supports_shape(p, gwk::box_w_hook()) && gwk::runs_here();
}

int64_t grad_weight_kmajor_sm90_workspace_elems(const ConvTranspose3dParams& p) {
  return gwk::workspace_elems(p, gwk::box_w_hook());
}

cudaError_t launch_grad_weight_kmajor_sm90(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                           const KmajorGradWeightOperands& ops) {
  if (cfg.dtype != ScalarKind::Float32 || !gwk::channels_fit(p)) return cudaErrorInvalidConfiguration;
  gwk::Geometry g;
  if (!gwk::plan_geometry(p, g, gwk::box_w_hook())) return cudaErrorInvalidConfiguration;
  if (reinterpret_cast<uintptr_t>(ops.x) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(ops.grad_output) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  g.workspace = ops.workspace;
  gw_gemm::Plan pl{};
  pl.bm = g.bc;
  pl.bn = gwk::kRowTile;
  pl.groups = g.groups;
  pl.tiles_m = g.tiles_ci;
  pl.tiles_n = g.tiles_row;
  pl.taps = g.taps;
  pl.splits = g.splits;
  pl.numel = g.numel;
  pl.blocks = gwk::unit_count(g);

  const KmajorLayout l = kmajor_layout(p);
  const gwk::BoxShape box{g.box[2], g.box[1], g.box[0]};
  CUtensorMap x_map, gy_map;
  if (!gwk::encode_kmajor_map(x_map, ops.x, p.axis[2].in, p.in_channels, p.axis[1].in, p.axis[0].in,
                              p.batch, l.x_row, box.w, g.bc, box) ||
      !gwk::encode_kmajor_map(gy_map, ops.grad_output, l.phase_extent[2], p.out_channels,
                              l.phase_extent[1], l.phase_extent[0], p.batch * l.phases, l.gy_row,
                              box.w, gwk::kCopyRows, box)) {
    return cudaErrorInvalidValue;
  }
  return gw_gemm::run_split_gemm<gw_gemm::PartialOrder::TapCiCo, /*always_partials=*/true>(
      p, cfg, pl, ops.workspace, ops.grad_weight, [&](auto, auto) -> cudaError_t {
        return gwk::launch_typed(g, x_map, gy_map, pl.blocks, cfg.stream);
      });
}

}  // namespace tconv3d::cuda
