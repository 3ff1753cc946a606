#include "channels_last_pack.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../scalar_convert.h"
#include "dispatch.cuh"

namespace tconv3d::cuda {
namespace {

constexpr int kTile = 32, kRowsPerPass = 8;

// One block: 32 channels × 32 positions of one (n, g), for every (n, g) its
// grid-z index reaches.  Reads run along the plane, writes along the channels.
template <typename Bits>
__global__ void __launch_bounds__(kTile* kRowsPerPass)
    pack_channels_last_kernel(const PlanarSource src, const int64_t padded, Bits* dst) {
  __shared__ Bits tile[kTile][kTile + 1];
  const Bits* in = static_cast<const Bits*>(src.data);
  const int64_t per_group = src.channels / src.groups;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t s0 = int64_t(blockIdx.x) * kTile, c0 = int64_t(blockIdx.y) * kTile;
  for (int64_t z = blockIdx.z; z < src.batch * src.groups; z += gridDim.z) {
    const int64_t n = z / src.groups, g = z % src.groups;
    const Bits* plane = in + n * src.stride_n + g * per_group * src.stride_c;
#pragma unroll
    for (int j = 0; j < kTile; j += kRowsPerPass) {
      const int64_t c = c0 + ty + j, s = s0 + tx;
      tile[ty + j][tx] = c < per_group && s < src.plane ? plane[c * src.stride_c + s] : Bits(0);
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kTile; j += kRowsPerPass) {
      const int64_t s = s0 + ty + j, c = c0 + tx;
      if (s < src.plane && c < padded) {
        dst[((n * src.plane + s) * src.groups + g) * padded + c] = tile[tx][ty + j];
      }
    }
    __syncthreads();  // the tile is reused for the next (n, g)
  }
}

// The same transpose in 16-byte pieces on both sides (V elements each), for
// planes, strides and padding in whole pieces: a 64 × 64 tile, each thread
// with several 16-byte loads in flight where the element-wise kernel has
// one 2-byte load — the copy is bound by the bytes in flight per SM.
//
// Summed (a scalar type of Bits' size; void: none) also sums each channel
// in fp32 on the way: block x of a sample walks position tiles x, x +
// gridDim.x, …, a thread adding its piece's elements in order to a running
// sum per row it loads; the PIECES lanes holding a channel's row then fold
// theirs in a fixed xor tree into partial[(n · gridDim.x + x) · channels +
// channel].  Without sums the grid has a block per tile.
constexpr int kVecTile = 64, kVecThreads = 256;

template <typename Bits, typename Summed>
__global__ void __launch_bounds__(kVecThreads)
    pack_channels_last_vec_kernel(const PlanarSource src, const int64_t padded, Bits* dst,
                                  float* __restrict__ partial) {
  constexpr int V = 16 / sizeof(Bits), PIECES = kVecTile / V;  // pieces per tile row
  constexpr int PER_THREAD = kVecTile * PIECES / kVecThreads;
  constexpr bool kSums = !std::is_void_v<Summed>;
  // [position][channel] in 16-byte chunks, chunk k of row s stored at
  // k ^ (s / V): the element stores of a warp (8 or 16 rows V apart, one
  // chunk) land in distinct banks, and a row's chunks stay whole for the
  // 16-byte reads.
  __shared__ __align__(16) Bits tile[kVecTile * kVecTile];
  const Bits* in = static_cast<const Bits*>(src.data);
  const int64_t per_group = src.channels / src.groups;
  const int64_t c0 = int64_t(blockIdx.y) * kVecTile;
  for (int64_t z = blockIdx.z; z < src.batch * src.groups; z += gridDim.z) {
    const int64_t n = z / src.groups, g = z % src.groups;
    const Bits* plane = in + n * src.stride_n + g * per_group * src.stride_c;
    float sums[PER_THREAD] = {};
    for (int64_t s0 = int64_t(blockIdx.x) * kVecTile; s0 < src.plane;
         s0 += int64_t(gridDim.x) * kVecTile) {
      uint4 v[PER_THREAD];
#pragma unroll
      for (int q = 0; q < PER_THREAD; ++q) {  // channel rows, a piece of positions each
        const int idx = threadIdx.x + q * kVecThreads, c = idx / PIECES, j = idx % PIECES;
        const int64_t s = s0 + j * V;
        v[q] = c0 + c < per_group && s < src.plane
                   ? *reinterpret_cast<const uint4*>(plane + (c0 + c) * src.stride_c + s)
                   : make_uint4(0, 0, 0, 0);
      }
      if constexpr (kSums) {
        static_assert(sizeof(Summed) == sizeof(Bits));
#pragma unroll
        for (int q = 0; q < PER_THREAD; ++q) {
          const Summed* e = reinterpret_cast<const Summed*>(&v[q]);
#pragma unroll
          for (int k = 0; k < V; ++k) sums[q] += to_acc(e[k]);
        }
      }
#pragma unroll
      for (int q = 0; q < PER_THREAD; ++q) {
        const int idx = threadIdx.x + q * kVecThreads, c = idx / PIECES, j = idx % PIECES;
        const Bits* e = reinterpret_cast<const Bits*>(&v[q]);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const int row = j * V + k;
          tile[row * kVecTile + ((c / V) ^ j) * V + c % V] = e[k];  // row / V == j
        }
      }
      __syncthreads();
#pragma unroll
      for (int q = 0; q < PER_THREAD; ++q) {  // positions, a piece of channels each
        const int idx = threadIdx.x + q * kVecThreads, s = idx / PIECES, j = idx % PIECES;
        const int64_t c = c0 + j * V;
        if (s0 + s < src.plane && c < padded) {
          *reinterpret_cast<uint4*>(dst + ((n * src.plane + s0 + s) * src.groups + g) * padded +
                                    c) =
              *reinterpret_cast<const uint4*>(&tile[s * kVecTile + (j ^ (s / V)) * V]);
        }
      }
      __syncthreads();  // the tile is reused for the next tile or (n, g)
    }
    if constexpr (kSums) {
#pragma unroll
      for (int q = 0; q < PER_THREAD; ++q) {
        const int idx = threadIdx.x + q * kVecThreads, c = idx / PIECES, j = idx % PIECES;
        float sum = sums[q];
        // A channel's row is PIECES consecutive lanes (kVecThreads is a multiple of PIECES).
#pragma unroll
        for (int lanes = PIECES / 2; lanes > 0; lanes /= 2) {
          sum += __shfl_xor_sync(0xffffffffu, sum, lanes);
        }
        if (j == 0 && c0 + c < per_group) {
          partial[(n * gridDim.x + blockIdx.x) * src.channels + g * per_group + c0 + c] = sum;
        }
      }
    }
  }
}

bool moves_pieces(const PlanarSource& src, int element_bytes, int64_t padded, const void* dst) {
  const int V = 16 / element_bytes;
  return src.plane % V == 0 && src.stride_c % V == 0 && src.stride_n % V == 0 &&
         padded % V == 0 && reinterpret_cast<uintptr_t>(src.data) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(dst) % 16 == 0;
}

// The summing copy's blocks a sample along the positions: its partial rows,
// batch of them a block, kSumRows at most in all (the combine's blocks, one a
// channel, then read 8 rows a thread) unless the batch alone is more.
constexpr int64_t kSumRows = 2048;

int64_t summing_blocks(const PlanarSource& src) {
  const int64_t tiles = (src.plane + kVecTile - 1) / kVecTile;
  return std::max<int64_t>(1, std::min(tiles, kSumRows / std::max<int64_t>(src.batch, 1)));
}

template <typename Bits, typename Summed = void>
cudaError_t launch(const PlanarSource& src, int64_t padded, void* dst, cudaStream_t stream,
                   float* partial = nullptr) {
  const bool pieces = moves_pieces(src, sizeof(Bits), padded, dst);
  const int tile = pieces ? kVecTile : kTile;
  const int64_t tiles_s = !std::is_void_v<Summed> ? summing_blocks(src)
                                                   : (src.plane + tile - 1) / tile;
  const int64_t tiles_c = (padded + tile - 1) / tile;
  if (tiles_s > 0x7fffffff || tiles_c > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(unsigned(tiles_s), unsigned(tiles_c),
                  unsigned(std::min<int64_t>(src.batch * src.groups, 65535)));
  if (pieces) {
    pack_channels_last_vec_kernel<Bits, Summed>
        <<<grid, kVecThreads, 0, stream>>>(src, padded, static_cast<Bits*>(dst), partial);
  } else if (!std::is_void_v<Summed>) {
    return cudaErrorInvalidValue;
  } else {
    pack_channels_last_kernel<Bits>
        <<<grid, dim3(kTile, kRowsPerPass), 0, stream>>>(src, padded, static_cast<Bits*>(dst));
  }
  return cudaGetLastError();
}

// Four elements of `Bits` as one aligned store.
template <typename Bits>
struct Four;
template <>
struct Four<uint16_t> {
  using type = uint2;
};
template <>
struct Four<uint32_t> {
  using type = uint4;
};

template <typename Bits>
__global__ void __launch_bounds__(256) pad_groups_to_four_kernel(const StridedPositions src, Bits* dst) {
  using Out = typename Four<Bits>::type;
  const Bits* in = static_cast<const Bits*>(src.data);
  const int64_t total = src.batch * src.positions * src.groups;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = e % src.groups, ns = e / src.groups;
    const int64_t s = ns % src.positions, n = ns / src.positions;
    const Bits* at = in + n * src.stride_n + g * src.per_group * src.stride_c + s * src.stride_s;
    Bits v[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) v[c] = c < src.per_group ? at[c * src.stride_c] : Bits(0);
    Out out;
    if constexpr (sizeof(Bits) == 2) {
      out = make_uint2(uint32_t(v[0]) | uint32_t(v[1]) << 16, uint32_t(v[2]) | uint32_t(v[3]) << 16);
    } else {
      out = make_uint4(v[0], v[1], v[2], v[3]);
    }
    reinterpret_cast<Out*>(dst)[e] = out;
  }
}

}  // namespace

cudaError_t launch_pack_channels_last(const PlanarSource& src, int element_bytes, int64_t padded,
                                      void* dst, cudaStream_t stream) {
  if (src.batch * src.groups * src.plane * padded == 0) return cudaSuccess;
  switch (element_bytes) {
    case 2:
      return launch<uint16_t>(src, padded, dst, stream);
    case 4:
      return launch<uint32_t>(src, padded, dst, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

bool pack_sums_channels(const PlanarSource& src, int element_bytes, int64_t padded,
                        const void* dst) {
  return (element_bytes == 2 || element_bytes == 4) && moves_pieces(src, element_bytes, padded, dst);
}

int64_t pack_sum_rows(const PlanarSource& src) { return src.batch * summing_blocks(src); }

cudaError_t launch_pack_channels_last_summing(const PlanarSource& src, ScalarKind dtype,
                                              int64_t padded, void* dst, float* partial,
                                              cudaStream_t stream) {
  if (src.batch * src.groups * src.plane * padded == 0) return cudaSuccess;
  cudaError_t launched = cudaErrorInvalidValue;
  dispatch_scalar(dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    if constexpr (sizeof(scalar_t) == 4) {
      launched = launch<uint32_t, scalar_t>(src, padded, dst, stream, partial);
    } else if constexpr (sizeof(scalar_t) == 2) {
      launched = launch<uint16_t, scalar_t>(src, padded, dst, stream, partial);
    }
  });
  return launched;
}

cudaError_t launch_pad_groups_to_four(const StridedPositions& src, int element_bytes, void* dst,
                                      cudaStream_t stream) {
  const int64_t total = src.batch * src.positions * src.groups;
  if (total == 0) return cudaSuccess;
  if (src.per_group < 1 || src.per_group > 4 ||
      reinterpret_cast<uintptr_t>(dst) % (4 * element_bytes) != 0) {
    return cudaErrorInvalidValue;
  }
  const unsigned blocks = unsigned(std::min<int64_t>((total + 255) / 256, 65535 * 8));
  switch (element_bytes) {
    case 2:
      pad_groups_to_four_kernel<uint16_t><<<blocks, 256, 0, stream>>>(src, static_cast<uint16_t*>(dst));
      break;
    case 4:
      pad_groups_to_four_kernel<uint32_t><<<blocks, 256, 0, stream>>>(src, static_cast<uint32_t*>(dst));
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace tconv3d::cuda
