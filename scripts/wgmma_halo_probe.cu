// Can wgmma read A by descriptor straight out of a halo, at a tap's offset?
//
// The halo loader (csrc/cuda/tensor_core_gemm_sm90.cu) reads each tap's A
// rows with ldmatrix through registers, and its consumers are issue-bound on
// that per-lane address arithmetic (RESULTS.md, "Two CTAs an SM round").  For
// a tile box 8 wide along w, one m64 block is 8 groups of 8 consecutive halo
// rows, a uniform halo_w rows apart: the shape of a K-major operand whose
// 8-row groups are the stride byte offset apart.  What is not documented
// plainly is whether wgmma applies the 64-byte swizzle from the absolute
// shared-memory address (as TMA wrote it) when the start is a tap's row (any
// multiple of 64 bytes, so often half-way into a 128-byte swizzle line) and
// the group stride is not a multiple of the 512-byte pattern, and what the
// descriptor's base-offset field must then hold.  This probe tries taps at
// every row parity and three base-offset rules against a CPU reference.
//
//   nvcc -std=c++17 -gencode arch=compute_90a,code=sm_90a -Icsrc/cuda -o /tmp/probe scripts/wgmma_halo_probe.cu && /tmp/probe
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cuda_bf16.h>

#include "sm90_primitives.cuh"

using namespace tconv3d::cuda::sm90;

constexpr int kRows = 200;    // two 10 × 10 d-planes of the halo
constexpr int kK = 32;        // bf16 elements a row: 64 bytes, the 64-byte swizzle
constexpr int kRowBytes = 64;
constexpr int kN = 32;

__device__ __forceinline__ uint32_t to_smem(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Byte offset of element (r, c) of a 64-byte-row operand laid out as TMA's
// 64-byte swizzle writes it from a 1024-byte-aligned base: 16-byte piece
// bits 4-5 XOR address bits 7-8.
__host__ __device__ inline uint32_t swizzled(int r, int c) {
  const uint32_t byte = uint32_t(r * kRowBytes + c * 2);
  return (byte & ~0x30u) | ((((byte >> 4) & 3) ^ ((byte >> 7) & 3)) << 4);
}

// One m64n32 product over 32 channels: A's row m = (h, w) = (m / 8, m % 8) of
// the tile is halo row (h + th) · halo_w + w + tw.
__global__ void probe(const __nv_bfloat16* halo, const __nv_bfloat16* b, int halo_w, int th, int tw,
                      int rule, float* out) {
  __shared__ __align__(1024) __nv_bfloat16 sa[kRows * kK];
  __shared__ __align__(1024) __nv_bfloat16 sb[kN * kK];
  for (int i = threadIdx.x; i < kRows * kK; i += blockDim.x) {
    sa[swizzled(i / kK, i % kK) / 2] = halo[i];
  }
  for (int i = threadIdx.x; i < kN * kK; i += blockDim.x) sb[swizzled(i / kK, i % kK) / 2] = b[i];
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();

  const uint32_t start = to_smem(sa) + uint32_t((th * halo_w + tw) * kRowBytes);
  uint64_t base_offset = 0;
  if (rule == 1) base_offset = (start >> 7) & 3;
  if (rule == 2) base_offset = (start >> 7) & 7;
  const uint64_t a_bits = smem_desc_bits(16, uint32_t(halo_w * kRowBytes), 64) | (base_offset << 49);
  const uint64_t b_bits = kmajor_swizzle_desc_bits(kRowBytes);
  float acc[kN / 2];
  for (float& v : acc) v = 0.f;
  fence_accumulators(acc);
  wgmma_fence();
  for (int ks = 0; ks < 2; ++ks) {
    Wgmma<__nv_bfloat16, kN>::run(acc, smem_desc(start + 32 * ks, a_bits),
                                  smem_desc(to_smem(sb) + 32 * ks, b_bits));
  }
  wgmma_commit();
  wgmma_wait<0>();
  fence_accumulators(acc);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int j = 0; j < kN / 8; ++j) {
    for (int h = 0; h < 2; ++h) {
      for (int e = 0; e < 2; ++e) {
        const int r = 16 * warp + lane / 4 + 8 * h, c = 8 * j + 2 * (lane % 4) + e;
        out[r * kN + c] = acc[4 * j + 2 * h + e];
      }
    }
  }
}

int main() {
  std::vector<__nv_bfloat16> halo(kRows * kK), b(kN * kK);
  std::vector<float> hf(halo.size()), bf(b.size());
  srand(7);
  for (size_t i = 0; i < halo.size(); ++i) {
    halo[i] = __float2bfloat16(float(rand() % 17 - 8) / 8);
    hf[i] = __bfloat162float(halo[i]);
  }
  for (size_t i = 0; i < b.size(); ++i) {
    b[i] = __float2bfloat16(float(rand() % 13 - 6) / 4);
    bf[i] = __bfloat162float(b[i]);
  }
  __nv_bfloat16 *dh, *db;
  float* dout;
  cudaMalloc(&dh, halo.size() * 2);
  cudaMalloc(&db, b.size() * 2);
  cudaMalloc(&dout, 64 * kN * 4);
  cudaMemcpy(dh, halo.data(), halo.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size() * 2, cudaMemcpyHostToDevice);
  const char* rules[] = {"base_offset 0", "base_offset (start>>7)&3", "base_offset (start>>7)&7"};
  // halo_w 8: the ordinary tile layout (8-row groups 512 bytes apart), the
  // control; 10: a k3 halo of an 8-wide box.
  int failures[2][3] = {};
  for (int halo_w : {8, 10}) {
  for (int rule = 0; rule < 3; ++rule) {
    for (int th = 0; th < 3; ++th) {
      for (int tw = 0; tw < 3; ++tw) {
        cudaMemset(dout, 0xff, 64 * kN * 4);  // NaN
        probe<<<1, 128>>>(dh, db, halo_w, th, tw, rule, dout);
        const cudaError_t err = cudaDeviceSynchronize();
        if (err != cudaSuccess) {
          printf("%s tap (%d, %d): %s\n", rules[rule], th, tw, cudaGetErrorString(err));
          return 1;
        }
        std::vector<float> out(64 * kN);
        cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost);
        double worst = 0;
        for (int m = 0; m < 64; ++m) {
          const int row = (m / 8 + th) * halo_w + (m % 8 + tw);
          for (int n = 0; n < kN; ++n) {
            double ref = 0;
            for (int k = 0; k < kK; ++k) ref += double(hf[row * kK + k]) * bf[n * kK + k];
            const double d = out[m * kN + n] - ref;
            worst = std::max(worst, std::isnan(d) ? 1e30 : std::fabs(d));
          }
        }
        failures[halo_w == 10][rule] += worst > 1e-3;
        printf("halo_w %2d %-26s tap (h %d, w %d) start row %2d: max |error| %.3g\n", halo_w,
               rules[rule], th, tw, th * halo_w + tw, worst);
      }
    }
  }
  }
  for (int w = 0; w < 2; ++w) {
    for (int rule = 0; rule < 3; ++rule) {
      printf("halo_w %2d, %s: %d of 9 taps wrong\n", w ? 10 : 8, rules[rule], failures[w][rule]);
    }
  }
  return 0;
}
