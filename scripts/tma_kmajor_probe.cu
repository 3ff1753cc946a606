// Can TMA land NCDHW boxes as K-major wgmma operands, for a TF32 grad-weight?
//
// The Hopper grad-weight GEMM (csrc/cuda/grad_weight_gemm_sm90.cu) reads
// channels-last boxes: both operands MN-major, which wgmma transposes for
// 16-bit types only, so TF32 grad-weights run on mma.sync (RESULTS.md,
// "What limits the grad-weight now").  Its reduction runs over positions, and
// an NCDHW tensor holds those contiguous: a box of (w 8, h 4, d 1) positions
// and 64 channels lands, densely, as 64 rows of 32 floats — one 128-byte row
// of K a channel, the K-major layout wgmma reads in TF32.  What is not plain
// from the documentation is whether TMA's 128-byte swizzle applies to such a
// box by shared-memory address (16-byte piece bits 4-6 XOR address bits 7-9)
// when the box's inner dimension (w, 32 bytes) is narrower than the swizzle
// span, so that each channel's 128 bytes are one swizzled K-major row.  (A
// traversal stride on w, which strided grad_outputs would need, is ruled out
// by the documentation: cuTensorMapEncodeTiled ignores elementStrides[0]
// without interleave.  So this layout serves stride-1 layers, and the input
// side of any layer.)
//
// Then one m64n64 product over the 32 positions (four k8 steps, A and B by
// K-major descriptors) against a float64 CPU reference; the inputs are TF32
// values already (wgmma reads shared-memory TF32 operands truncated).
//
//   nvcc -std=c++17 -gencode arch=compute_90a,code=sm_90a -Icsrc/cuda -o /tmp/kmajor scripts/tma_kmajor_probe.cu && /tmp/kmajor
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <cuda.h>
#include <cuda_runtime.h>

#include "mma_sm80.cuh"
#include "sm90_primitives.cuh"
#include "tensor_map_encoder.h"

using namespace tconv3d::cuda::sm90;
using tconv3d::cuda::smem_addr;

constexpr int kC = 64;                      // channels: A's M, B's N
constexpr int kBoxW = 8, kBoxH = 4;         // 32 positions a channel: 128 bytes of K
constexpr int kPos = kBoxW * kBoxH;
constexpr int kW = 24, kH = 6, kD = 2;      // x's extent (NCDHW, N = 1)
constexpr int kGyW = kW + 8;                // grad_output's extent along w
constexpr int kTileBytes = kC * kPos * 4;   // 8 KB each

#define CHECK(x)                                                                    \
  do {                                                                              \
    cudaError_t e = (x);                                                            \
    if (e != cudaSuccess) {                                                         \
      std::printf("%s failed: %s\n", #x, cudaGetErrorString(e));                    \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)

// Where float `i` of a dense [channel][32 positions] tile lands under the
// 128-byte swizzle applied by shared-memory address (the tile 1024-aligned).
__host__ __device__ inline uint32_t swizzled_float(uint32_t i) {
  const uint32_t byte = i * 4;
  return (byte ^ (((byte >> 7) & 7) << 4)) / 4;
}

// mbarrier_wait with a bound: a copy whose bytes never match expect_tx (a
// traversal stride TMA does not compact) must not hang the probe.
__device__ bool wait_bounded(uint32_t bar, uint32_t parity) {
  for (int i = 0; i < (1 << 24); ++i) {
    uint32_t done = 0;
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
    if (done) return true;
  }
  return false;
}

__global__ void probe(const __grid_constant__ CUtensorMap x_map,
                      const __grid_constant__ CUtensorMap gy_map, int w0, int gy_w0,
                      float* x_tile, float* gy_tile, float* d) {
  extern __shared__ unsigned char raw[];
  __shared__ uint64_t bar;
  const uint32_t base = swizzle_aligned(smem_addr(raw));
  const uint32_t xs = base, gys = base + kTileBytes;
  const uint32_t bar_addr = smem_addr(&bar);
  if (threadIdx.x == 0) mbarrier_init(bar_addr, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    mbarrier_arrive_expect_tx(bar_addr, 2 * kTileBytes);
    tma_load_5d(xs, &x_map, bar_addr, w0, 0, 0, 0, 0);        // (w, h, d, c, n)
    tma_load_5d(gys, &gy_map, bar_addr, gy_w0, 0, 0, 0, 0);
  }
  if (!wait_bounded(bar_addr, 0)) {
    if (threadIdx.x == 0) d[0] = -1.f;  // the copies never completed
    return;
  }

  // The tiles as they landed, in shared-memory order.
  const float* sx = reinterpret_cast<const float*>(raw + (base - smem_addr(raw)));
  for (int i = threadIdx.x; i < 2 * kC * kPos; i += blockDim.x) {
    (i < kC * kPos ? x_tile[i] : gy_tile[i - kC * kPos]) = sx[i];
  }

  // D[ci][co] = Σ_p x[ci][p] · gy[co][p]: A = x (64 rows of K), B = gy.
  float acc[32];
  for (float& v : acc) v = 0.f;
  fence_accumulators(acc);
  wgmma_fence();
  for (int ks = 0; ks < kPos / 8; ++ks) {  // k8 steps: 32 bytes of K each
    Wgmma<float, 64>::run(acc, sw128_desc(xs + 32 * ks), sw128_desc(gys + 32 * ks));
  }
  wgmma_commit();
  wgmma_wait<0>();
  fence_accumulators(acc);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int j = 0; j < 8; ++j) {
    for (int e = 0; e < 4; ++e) {
      const int row = 16 * warp + lane / 4 + 8 * (e / 2), col = 8 * j + 2 * (lane % 4) + e % 2;
      d[row * kC + col] = acc[4 * j + e];
    }
  }
}

// A TF32 value (low 13 mantissa bits zero), so truncation and rounding agree.
float tf32_value(uint32_t& state) {
  state = state * 1664525u + 1013904223u;
  float v = float(int(state >> 9) % 2001 - 1000) / 256.f;
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits &= ~0x1FFFu;
  std::memcpy(&v, &bits, 4);
  return v;
}

bool encode(CUtensorMap& map, float* base, int w_extent, int w_box) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode_tiled = tconv3d::cuda::tensor_map_encoder();
  if (encode_tiled == nullptr) return false;
  const cuuint64_t dim[5] = {cuuint64_t(w_extent), kH, kD, kC, 1};
  const cuuint64_t stride[4] = {cuuint64_t(w_extent) * 4, cuuint64_t(w_extent) * kH * 4,
                                cuuint64_t(w_extent) * kH * kD * 4,
                                cuuint64_t(w_extent) * kH * kD * kC * 4};
  const cuuint32_t box[5] = {cuuint32_t(w_box), kBoxH, 1, kC, 1};
  const cuuint32_t step[5] = {1, 1, 1, 1, 1};
  const CUresult r = encode_tiled(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 5, base, dim, stride, box,
                                  step, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                  CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) std::printf("  cuTensorMapEncodeTiled refused (%d)\n", int(r));
  return r == CUDA_SUCCESS;
}

int main() {
  uint32_t state = 7;
  std::vector<float> x(size_t(kC) * kD * kH * kW), gy(size_t(kC) * kD * kH * kGyW);
  for (float& v : x) v = tf32_value(state);
  for (float& v : gy) v = tf32_value(state);
  float *dx, *dgy, *dxt, *dgyt, *dd;
  CHECK(cudaMalloc(&dx, x.size() * 4));
  CHECK(cudaMalloc(&dgy, gy.size() * 4));
  CHECK(cudaMalloc(&dxt, kTileBytes));
  CHECK(cudaMalloc(&dgyt, kTileBytes));
  CHECK(cudaMalloc(&dd, kC * kC * 4));
  CHECK(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dgy, gy.data(), gy.size() * 4, cudaMemcpyHostToDevice));
  const int smem = 2 * kTileBytes + 1024;
  CHECK(cudaFuncSetAttribute(probe, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));

  // x at w0 = 8 (an interior box), grad_output at gy_w0 = 3: a box that
  // starts off a 16-byte boundary in global memory.
  const int w0 = 8, gy_w0 = 3;
  CUtensorMap x_map, gy_map;
  if (!encode(x_map, dx, kW, kBoxW) || !encode(gy_map, dgy, kGyW, kBoxW)) return 1;
  CHECK(cudaMemset(dd, 0xff, kC * kC * 4));  // NaN: unwritten shows
  probe<<<1, 128, smem>>>(x_map, gy_map, w0, gy_w0, dxt, dgyt, dd);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  std::vector<float> xt(kC * kPos), gyt(kC * kPos), d(kC * kC);
  CHECK(cudaMemcpy(xt.data(), dxt, kTileBytes, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(gyt.data(), dgyt, kTileBytes, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(d.data(), dd, kC * kC * 4, cudaMemcpyDeviceToHost));
  if (d[0] == -1.f) {
    std::printf("the copies never completed (expect_tx of %d bytes not met)\n", 2 * kTileBytes);
    return 1;
  }

  // The expected tiles: channel c's 32 positions (h, w) h-major, each float
  // at its address-swizzled place.
  auto x_at = [&](int c, int p) { return x[(size_t(c) * kD * kH + p / kBoxW) * kW + w0 + p % kBoxW]; };
  auto gy_at = [&](int c, int p) {
    return gy[(size_t(c) * kD * kH + p / kBoxW) * kGyW + gy_w0 + p % kBoxW];
  };
  int x_wrong = 0, gy_wrong = 0, x_dense_wrong = 0;
  for (int c = 0; c < kC; ++c) {
    for (int p = 0; p < kPos; ++p) {
      const uint32_t i = uint32_t(c * kPos + p);
      x_wrong += xt[swizzled_float(i)] != x_at(c, p);
      x_dense_wrong += xt[i] != x_at(c, p);
      gy_wrong += gyt[swizzled_float(i)] != gy_at(c, p);
    }
  }
  std::printf("x tile: %d of %d floats off the address-swizzled layout (%d off an unswizzled one)\n",
              x_wrong, kC * kPos, x_dense_wrong);
  std::printf("grad_output tile: %d of %d floats off the address-swizzled layout\n", gy_wrong,
              kC * kPos);
  double worst = 0, scale = 0;
  for (int ci = 0; ci < kC; ++ci) {
    for (int co = 0; co < kC; ++co) {
      double ref = 0;
      for (int p = 0; p < kPos; ++p) ref += double(x_at(ci, p)) * double(gy_at(co, p));
      const double got = d[ci * kC + co];
      worst = std::isfinite(got) ? std::fmax(worst, std::fabs(got - ref)) : INFINITY;
      scale = std::fmax(scale, std::fabs(ref));
    }
  }
  std::printf("wgmma m64n64 TF32 over 32 positions, both operands K-major by descriptor: "
              "max |D - reference| = %.3g (of max |reference| %.3g): %s\n",
              worst, scale, worst <= 1e-5 * scale ? "RIGHT" : "WRONG");
  return 0;
}
