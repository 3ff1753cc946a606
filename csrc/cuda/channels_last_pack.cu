#include "channels_last_pack.h"

#include <algorithm>

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

template <typename Bits>
cudaError_t launch(const PlanarSource& src, int64_t padded, void* dst, cudaStream_t stream) {
  const int64_t tiles_s = (src.plane + kTile - 1) / kTile, tiles_c = (padded + kTile - 1) / kTile;
  if (tiles_s > 0x7fffffff || tiles_c > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(unsigned(tiles_s), unsigned(tiles_c),
                  unsigned(std::min<int64_t>(src.batch * src.groups, 65535)));
  pack_channels_last_kernel<Bits>
      <<<grid, dim3(kTile, kRowsPerPass), 0, stream>>>(src, padded, static_cast<Bits*>(dst));
  return cudaGetLastError();
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
    case 8:
      return launch<uint64_t>(src, padded, dst, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace tconv3d::cuda
