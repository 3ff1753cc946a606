// Forward and grad-input as one implicit GEMM on tensor cores (mma.sync, sm_80+).
// The GEMM and its geometry are described in implicit_gemm_walk.cuh.
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
// Grid: x = the group's tiles in decode_tile order, y = group.
//
// Epilogue: accumulators → shared fp32 tile → + bias → one rounding → dest,
// 16 bytes per store when dest is channel-contiguous and aligned.
//
// fp32 where TF32 is not allowed runs here too, on split TF32 (kMath,
// TensorCoreGemmOperands::fp32_mma): the same tiles and stages, three MMAs a
// piece (multiply_fragments).
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

namespace tconv3d::cuda {
namespace tcg {

using namespace igemm;

constexpr int kThreads = 128;  // 4 warps, 2 × 2
constexpr int kSliceBytes = 64;  // K per stage
constexpr int kPitch = kSliceBytes + 16;
constexpr int kStages = 4;
constexpr int kPieces = kSliceBytes / 16;  // 16-byte pieces per row and stage
constexpr int kRowStep = kThreads / kPieces;

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

template <typename scalar_t, typename index_t, int BM, int BN, Fp32Mma kMath>
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

  const int tid = threadIdx.x;
  const TileCoord tile = decode_tile(k, blockIdx.x, blockIdx.y);
  const int group = tile.group;
  const int64_t m0 = tile.mtile * kBM;
  const int n0 = tile.ntile * kBN;
  // The block's three GemmAxis, derived once (by three threads) and shared.
  __shared__ GemmAxis ax[3];
  {
    int r[3];
    phase_residues(k, tile.phase, r);
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      if (tid == a) ax[a] = pass_axis(k, a, r[a]);
    }
  }
  __syncthreads();
  const PhaseSize size = phase_size(k, ax);
  const int64_t M = size.rows;
  if (m0 >= M) return;  // a phase smaller than the largest: block-uniform
  const int C = int(k.ops.channels);
  const int columns = int(k.ops.columns);
  const int K = size.taps * C;
  const Walk<index_t> w = make_walk<index_t>(k, ax, group);
  const RowDecomposer<index_t> decompose(ax);

  // Destination row offsets and bias of the tile.
  {
    const int64_t m = m0 + tid;
    if (tid < kBM && m < M) s_dst[tid] = dest_row<index_t>(k, ax, decompose, m, group, k.dest);
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
    rows[q] = source_row<index_t>(k, ax, decompose, m0 + row0 + q * kRowStep, M, group);
  }
  uoff_t b_row[kBRows];
  bool b_ok[kBRows];
#pragma unroll
  for (int q = 0; q < kBRows; ++q) {
    const int col = n0 + row0 + q * kRowStep;
    b_ok[q] = col < columns;
    b_row[q] = w.b_origin + uoff_t(index_t(int64_t(col) * C));
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
  zero_accumulators(acc);

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
      mma_k_step<scalar_t, kMmaM, kMmaN, kMath>(acc, sa + a_lane + ks * 32, sb + b_lane + ks * 32,
                                                kPitch);
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

std::atomic<int> g_forced_bm{0}, g_forced_bn{0};

// 32 columns for narrow groups; 64 rows unless 128-row tiles give the GPU at
// least one full wave (3 blocks per SM).  The choice depends on the shape and
// the device only, so results stay bitwise reproducible on a given GPU (the
// tile does not change any sum's order anyway: each output is one block's).
inline LaunchShape choose_tile(const ConvTranspose3dParams& p, GatherPass pass) {
  const int bn = g_forced_bn.load() ? g_forced_bn.load() : (columns_of(p, pass) <= 32 ? 32 : 64);
  if (g_forced_bm.load()) return launch_shape(p, pass, g_forced_bm.load(), bn);
  const LaunchShape big = launch_shape(p, pass, 128, bn);
  return big.tiles_per_group() * p.groups >= 3 * int64_t(sm_count()) ? big
                                                                      : launch_shape(p, pass, 64, bn);
}

template <typename scalar_t, typename index_t, int BM, int BN, Fp32Mma kMath>
cudaError_t launch_tile(const KernelArgs& args, const LaunchShape& s, cudaStream_t stream) {
  auto* kernel = tensor_core_gemm_kernel<scalar_t, index_t, BM, BN, kMath>;
  constexpr int smem = Tile<BM, BN>::kSmemBytes;
  const cudaError_t err =
      opt_in_dynamic_smem<tensor_core_gemm_kernel<scalar_t, index_t, BM, BN, kMath>>(smem);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned int>(s.tiles_per_group()),
                  static_cast<unsigned int>(args.p.groups));
  kernel<<<grid, kThreads, smem, stream>>>(args);
  return cudaGetLastError();
}

template <typename scalar_t, typename index_t, Fp32Mma kMath>
cudaError_t launch_math(const KernelArgs& args, const LaunchShape& s, cudaStream_t stream) {
  if (s.bm == 128) {
    return s.bn == 64 ? launch_tile<scalar_t, index_t, 128, 64, kMath>(args, s, stream)
                      : launch_tile<scalar_t, index_t, 128, 32, kMath>(args, s, stream);
  }
  return s.bn == 64 ? launch_tile<scalar_t, index_t, 64, 64, kMath>(args, s, stream)
                    : launch_tile<scalar_t, index_t, 64, 32, kMath>(args, s, stream);
}

template <typename scalar_t, typename index_t>
cudaError_t launch_typed(const KernelArgs& args, const LaunchShape& s, cudaStream_t stream) {
  return launch_fp32_mma<scalar_t>(args.ops.fp32_mma, [&](auto math) {
    return launch_math<scalar_t, index_t, decltype(math)::value>(args, s, stream);
  });
}

}  // namespace tcg

bool tensor_core_gemm_supports(const ConvTranspose3dParams& p, GatherPass pass, ScalarKind dtype,
                               bool allow_tf32) {
  const bool dtype_ok = tensor_core_dtype(dtype, allow_tf32);
  if (!dtype_ok || p.in_per_group < 1 || p.out_per_group < 1) return false;
  if (p.batch > 0 && !igemm::problem_fits(p, pass, tensor_core_channel_multiple(dtype))) return false;
  return sm80_kernel_runs_here<
      tcg::tensor_core_gemm_kernel<__half, int32_t, 128, 64, Fp32Mma::Tf32>>();
}

cudaError_t launch_tensor_core_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                    const TensorCoreGemmOperands& ops) {
  const igemm::LaunchShape s = tcg::choose_tile(p, ops.pass);
  if (p.batch == 0 || s.tiles_per_group() == 0) return cudaSuccess;
  const igemm::KernelArgs args = igemm::make_kernel_args(p, ops, cfg.dtype, s);
  cudaError_t err = cudaErrorInvalidValue;
  igemm::dispatch_gemm_types(cfg, [&](auto scalar, auto index) {
    err = tcg::launch_typed<decltype(scalar), decltype(index)>(args, s, cfg.stream);
  });
  return err;
}

void set_smem_per_block_limit(int bytes) { g_smem_per_block_limit.store(bytes); }

void set_tensor_core_tile(int rows, int columns) {
  tcg::g_forced_bm.store(rows);
  tcg::g_forced_bn.store(columns);
}

}  // namespace tconv3d::cuda
