#include "kmajor_pack.h"

#include <cstdint>

#include "kmajor_layout.h"
#include "mma_sm80.cuh"

namespace tconv3d::cuda {
namespace {

constexpr int kTile = 32, kRowsPerPass = 8;

// A tensor [n][c][D][H][W] at any element strides, split into the phases
// of `step`: dst[n][phase][d'][h'][c][w'] = src[n][c][step·d' + r]..., zero
// past the source, w' rows `row` floats long.  x is the case step = 1.
struct PhaseSplit {
  const float* src;
  Strides5 s;
  int64_t batch, channels, extent[3];
  int step[3];
  int64_t phase_extent[3], row, phases;
};

// One block: 32 channels × 32 w' of one (n, phase, d', h') row of every
// channel.  Loads run along whichever of c and w is contiguous in the
// source (channels-last: c), stores along w'; the tile in between turns the
// one into the other.
__global__ void __launch_bounds__(kTile* kRowsPerPass) phase_split_kernel(const PhaseSplit a, float* dst) {
  __shared__ float tile[kTile][kTile + 1];  // [c][w']
  const int tx = threadIdx.x, ty = threadIdx.y;
  int64_t r = blockIdx.x;
  const int64_t hp = r % a.phase_extent[1];
  r /= a.phase_extent[1];
  const int64_t dp = r % a.phase_extent[0];
  r /= a.phase_extent[0];
  const int64_t phase = r % a.phases, n = r / a.phases;
  const int rw = int(phase % a.step[2]), rh = int(phase / a.step[2] % a.step[1]),
            rd = int(phase / (a.step[2] * a.step[1]));
  const int64_t d = dp * a.step[0] + rd, h = hp * a.step[1] + rh;
  const int64_t c0 = int64_t(blockIdx.y) * kTile, w0 = int64_t(blockIdx.z) * kTile;
  const bool row_inside = d < a.extent[0] && h < a.extent[1];
  const float* plane = a.src + n * a.s.n + d * a.s.d + h * a.s.h;
  const bool channels_fastest = a.s.c == 1 && a.s.w != 1;
#pragma unroll
  for (int j = 0; j < kTile; j += kRowsPerPass) {
    const int cc = channels_fastest ? tx : ty + j, ww = channels_fastest ? ty + j : tx;
    const int64_t c = c0 + cc, w = (w0 + ww) * a.step[2] + rw;
    float v = 0.f;
    if (row_inside && c < a.channels && w < a.extent[2]) v = plane[c * a.s.c + w * a.s.w];
    tile[cc][ww] = __uint_as_float(to_tf32(__float_as_uint(v)));
  }
  __syncthreads();
  const int64_t w = w0 + tx;
  if (w >= a.row) return;
#pragma unroll
  for (int j = 0; j < kTile; j += kRowsPerPass) {
    const int64_t c = c0 + ty + j;
    if (c < a.channels) {
      dst[((((n * a.phases + phase) * a.phase_extent[0] + dp) * a.phase_extent[1] + hp) * a.channels + c) * a.row +
          w] = tile[ty + j][tx];
    }
  }
}

cudaError_t launch_split(const PhaseSplit& a, float* dst, cudaStream_t stream) {
  const int64_t rows = a.batch * a.phases * a.phase_extent[0] * a.phase_extent[1];
  if (rows == 0 || a.channels == 0 || a.row == 0) return cudaSuccess;
  const int64_t c_tiles = (a.channels + kTile - 1) / kTile, w_tiles = (a.row + kTile - 1) / kTile;
  if (rows > INT32_MAX || c_tiles > 65535 || w_tiles > 65535) return cudaErrorInvalidConfiguration;
  phase_split_kernel<<<dim3(unsigned(rows), unsigned(c_tiles), unsigned(w_tiles)), dim3(kTile, kRowsPerPass), 0,
                       stream>>>(a, dst);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_kmajor_pack(const ConvTranspose3dParams& p, const float* x, const float* grad_output,
                               float* x_k, float* gy_k, cudaStream_t stream) {
  const KmajorLayout l = kmajor_layout(p);
  PhaseSplit xs{x, p.input, p.batch, p.in_channels, {p.axis[0].in, p.axis[1].in, p.axis[2].in},
                {1, 1, 1}, {p.axis[0].in, p.axis[1].in, p.axis[2].in}, l.x_row, 1};
  cudaError_t err = launch_split(xs, x_k, stream);
  if (err != cudaSuccess) return err;
  PhaseSplit gs{grad_output, p.output, p.batch, p.out_channels,
                {p.axis[0].out, p.axis[1].out, p.axis[2].out},
                {int(p.axis[0].stride), int(p.axis[1].stride), int(p.axis[2].stride)},
                {l.phase_extent[0], l.phase_extent[1], l.phase_extent[2]}, l.gy_row, l.phases};
  return launch_split(gs, gy_k, stream);
}

}  // namespace tconv3d::cuda
