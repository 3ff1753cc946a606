// Can TMA land w-fastest boxes, mapped (w, channel, h, d, sample), as the
// K-major operands wgmma reads in TF32?  A box of (bw w, 64 channels, bh h,
// bd d) with bw·bh·bd = 32 should land as bh·bd slabs of 64 rows (channels)
// of bw floats, in the swizzle of 4·bw bytes (Swizzle<log2(bw/4), 4, 3> on
// the shared-memory address), zeros where the box leaves the tensor
// (negative coordinates included).  Then one m64n64 product over the 32
// positions (four k8 steps: step j in slab j / (bw/8) at byte 32·(j % (bw/8))
// of its rows) against a CPU reference.  Values are TF32 already (wgmma
// truncates).  Arguments: bw (8, 16, 32), `nested` ([d][h][c][w] in memory)
// or `c-outer` ([c][d][h][w], NCDHW: strides not growing with the mapped
// dimension), and the x and grad_output boxes' w coordinates.
//
// On an H200 (2026-12-02, RESULTS.md "K-major TF32 grad-weight round"): both
// layouts land as described and the product is right for bw 8, 16 and 32 —
// but only where the w coordinate is a multiple of 4 floats (16 bytes): a box
// from w = 3 or −3 is an illegal instruction.  That is what sank a TF32
// grad-weight reading grad_output's taps as boxes moved by their shift.
//
//   nvcc -std=c++17 -gencode arch=compute_90a,code=sm_90a -Icsrc/cuda -o /tmp/kprobe scripts/kmajor_layout_probe.cu
//   /tmp/kprobe 8 nested 4 -4 && /tmp/kprobe 8 nested 3 -3   (the second: illegal instruction)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <cuda.h>
#include <cuda_runtime.h>

#include "mma_sm80.cuh"
#include "probe_check.h"
#include "sm90_primitives.cuh"
#include "tensor_map_encoder.h"

using namespace tconv3d::cuda::sm90;
using tconv3d::cuda::smem_addr;

constexpr int kC = 64, kPos = 32, kTileBytes = kC * kPos * 4;  // 8 KB a tile
constexpr int kW = 40, kRow = 40, kH = 5, kD = 3;                // one sample

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

struct Coord {
  int w, h, d;
};

__global__ void probe(const __grid_constant__ CUtensorMap x_map, const __grid_constant__ CUtensorMap gy_map,
                      Coord xc, Coord gc, int bw, float* tiles, float* d) {
  extern __shared__ unsigned char raw[];
  __shared__ uint64_t bar;
  const uint32_t base = swizzle_aligned(smem_addr(raw));
  const uint32_t xs = base, gys = base + kTileBytes;
  const uint32_t bar_addr = smem_addr(&bar);
  if (threadIdx.x == 0) mbarrier_init(bar_addr, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    mbarrier_arrive_expect_tx(bar_addr, 2 * kTileBytes);
    tma_load_5d(xs, &x_map, bar_addr, xc.w, 0, xc.h, xc.d, 0);  // (w, c, h, d, n)
    tma_load_5d(gys, &gy_map, bar_addr, gc.w, 0, gc.h, gc.d, 0);
  }
  if (!wait_bounded(bar_addr, 0)) {
    if (threadIdx.x == 0) d[0] = -1.f;
    return;
  }
  const float* s = reinterpret_cast<const float*>(raw + (base - smem_addr(raw)));
  for (int i = threadIdx.x; i < 2 * kC * kPos; i += blockDim.x) tiles[i] = s[i];
  // wgmma is .aligned: the warpgroup must arrive converged, which the
  // bounded waits' data-dependent exits do not leave it (illegal instruction).
  __syncthreads();

  // D[co][ci] = Σ_p gy[co][p] · x[ci][p]: A = gy (64 rows), B = x (N 64).
  const uint32_t row_bytes = 4 * bw, slab_bytes = kC * row_bytes;
  const uint64_t bits = kmajor_swizzle_desc_bits(row_bytes);
  float acc[32];
  for (float& v : acc) v = 0.f;
  fence_accumulators(acc);
  wgmma_fence();
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const uint32_t off = (j / (bw / 8)) * slab_bytes + 32 * (j % (bw / 8));
    Wgmma<float, 64>::run(acc, smem_desc(gys + off, bits), smem_desc(xs + off, bits));
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

float tf32_value(uint32_t& state) {
  state = state * 1664525u + 1013904223u;
  float v = float(int(state >> 9) % 2001 - 1000) / 256.f;
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits &= ~0x1FFFu;
  std::memcpy(&v, &bits, 4);
  return v;
}

// The tensor in one sample: [c][d][h][w] (`nested` false: strides not
// growing with the mapped dimension) or [d][h][c][w] (nested), rows kRow
// floats, mapped (w, c, h, d, n) either way.
size_t offset(bool nested, int c, int d, int h, int w) {
  return nested ? ((size_t(d) * kH + h) * kC + c) * kRow + w : ((size_t(c) * kD + d) * kH + h) * kRow + w;
}

bool encode(CUtensorMap& map, float* base, int bw, int bh, int bd, bool nested) {
  const auto encode_tiled = tconv3d::cuda::tensor_map_encoder();
  if (encode_tiled == nullptr) return false;
  const cuuint64_t dim[5] = {kW, kC, kH, kD, 1};
  const cuuint64_t row = kRow * 4, sample = cuuint64_t(kC) * kD * kH * row;
  const cuuint64_t stride[4] = {nested ? row : kD * kH * row, nested ? kC * row : row,
                                nested ? kH * kC * row : kH * row, sample};
  const cuuint32_t box[5] = {cuuint32_t(bw), kC, cuuint32_t(bh), cuuint32_t(bd), 1};
  const cuuint32_t step[5] = {1, 1, 1, 1, 1};
  const CUtensorMapSwizzle swizzle = bw == 32 ? CU_TENSOR_MAP_SWIZZLE_128B
                                     : bw == 16 ? CU_TENSOR_MAP_SWIZZLE_64B
                                                : CU_TENSOR_MAP_SWIZZLE_32B;
  const CUresult r = encode_tiled(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 5, base, dim, stride, box, step,
                                  CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) std::printf("  cuTensorMapEncodeTiled refused (%d)\n", int(r));
  return r == CUDA_SUCCESS;
}

int main(int argc, char** argv) {
  const int bw = argc > 1 ? std::atoi(argv[1]) : 8;
  const bool nested = argc > 2 && std::strcmp(argv[2], "nested") == 0;
  if (bw != 8 && bw != 16 && bw != 32) return 2;
  const int slabs = kPos / bw, bh = slabs >= 4 ? 4 : slabs, bd = slabs / bh;
  uint32_t state = 7;
  const size_t elems = size_t(kC) * kD * kH * kRow;
  std::vector<float> x(elems), gy(elems);
  for (float& v : x) v = tf32_value(state);
  for (float& v : gy) v = tf32_value(state);
  float *dx, *dgy, *dt, *dd;
  CHECK(cudaMalloc(&dx, elems * 4));
  CHECK(cudaMalloc(&dgy, elems * 4));
  CHECK(cudaMalloc(&dt, 2 * kTileBytes));
  CHECK(cudaMalloc(&dd, kC * kC * 4));
  CHECK(cudaMemcpy(dx, x.data(), elems * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dgy, gy.data(), elems * 4, cudaMemcpyHostToDevice));
  const int smem = 2 * kTileBytes + 1024;
  CHECK(cudaFuncSetAttribute(probe, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  CUtensorMap x_map, gy_map;
  if (!encode(x_map, dx, bw, bh, bd, nested) || !encode(gy_map, dgy, bw, bh, bd, nested)) return 1;
  // x inside (w 3: not a 16-byte boundary); grad_output from w −3, h −1:
  // its first columns and rows past the tensor's edge.
  const int xw = argc > 3 ? std::atoi(argv[3]) : 3, gw = argc > 4 ? std::atoi(argv[4]) : -3;
  const Coord xc{xw, 1, 1}, gc{gw, -1, 1};
  std::printf("x box from w %d, grad_output box from w %d\n", xw, gw);
  std::fflush(stdout);
  CHECK(cudaMemset(dd, 0xff, kC * kC * 4));
  probe<<<1, 128, smem>>>(x_map, gy_map, xc, gc, bw, dt, dd);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  std::vector<float> t(2 * kC * kPos), d(kC * kC);
  CHECK(cudaMemcpy(t.data(), dt, 2 * kTileBytes, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(d.data(), dd, kC * kC * 4, cudaMemcpyDeviceToHost));
  if (d[0] == -1.f) {
    std::printf("bw %d: the copies never completed\n", bw);
    return 1;
  }
  // Position p of a box: slab p / bw = (d, h) with h fastest, w = p % bw.
  auto value = [&](const std::vector<float>& v, Coord c0, int c, int p) {
    const int slab = p / bw, w = c0.w + p % bw, h = c0.h + slab % bh, dd_ = c0.d + slab / bh;
    if (w < 0 || w >= kW || h < 0 || h >= kH || dd_ < 0 || dd_ >= kD) return 0.f;
    return v[offset(nested, c, dd_, h, w)];
  };
  const uint32_t log_swz = bw == 32 ? 3 : bw == 16 ? 2 : 1;
  auto landed = [&](int tile, int c, int p) {
    const uint32_t byte = uint32_t((p / bw) * kC * bw * 4 + c * bw * 4 + (p % bw) * 4);
    const uint32_t sw = byte ^ (((byte >> 7) & ((1u << log_swz) - 1)) << 4);
    return t[tile * kC * kPos + sw / 4];
  };
  int wrong[2] = {0, 0};
  for (int c = 0; c < kC; ++c) {
    for (int p = 0; p < kPos; ++p) {
      wrong[0] += landed(0, c, p) != value(x, xc, c, p);
      wrong[1] += landed(1, c, p) != value(gy, gc, c, p);
    }
  }
  std::printf("%s bw %d (box %d x 64 x %d x %d, %d-byte swizzle): x tile %d, grad_output tile %d of %d floats off "
              "the expected layout\n",
              nested ? "nested" : "c-outer", bw, bw, bh, bd, 4 * bw, wrong[0], wrong[1], kC * kPos);
  double worst = 0, scale = 0;
  for (int co = 0; co < kC; ++co) {
    for (int ci = 0; ci < kC; ++ci) {
      double ref = 0;
      for (int p = 0; p < kPos; ++p) ref += double(value(gy, gc, co, p)) * double(value(x, xc, ci, p));
      const double got = d[co * kC + ci];
      worst = std::isfinite(got) ? std::fmax(worst, std::fabs(got - ref)) : INFINITY;
      scale = std::fmax(scale, std::fabs(ref));
    }
  }
  std::printf("bw %d: wgmma m64n64 TF32, both K-major by descriptor: max |D - ref| = %.3g of %.3g: %s\n", bw,
              worst, scale, worst <= 1e-5 * scale ? "RIGHT" : "WRONG");
  return 0;
}
