// sm_80 building blocks shared by the tensor-core kernels: asynchronous
// 16-byte copies into shared memory, ldmatrix fragment loads and mma.sync
// (m16n8k16 for fp16/bf16, m16n8k8 for TF32), fp32 accumulation.
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "channel_vectors.h"

namespace tconv3d::cuda {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global → shared, or 16 zero bytes when !valid (nothing is read).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}
// 8 bytes global → shared (through L1: .cg takes only 16), zeros when !valid.
__device__ __forceinline__ void cp_async8(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 8 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// The cp.async ring of the mma.sync grad-weight kernels over nslices slices
// of their reduction: STAGES - 1 slices' copies in flight while one is
// multiplied, each slice's rows decoded (decode_rows(slice), into a table
// the copies read) a stage before its copies are issued (load_stage(slice)),
// multiply(stage) on a slice's landed stage.  Every copy has landed when it
// returns.
template <int STAGES, typename index_t, typename Decode, typename Load, typename Multiply>
__device__ __forceinline__ void run_slice_ring(index_t nslices, Decode&& decode_rows,
                                               Load&& load_stage, Multiply&& multiply) {
  // Prologue: stages 0 … STAGES-2 in flight, the rows of STAGES-1 decoded.
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    decode_rows(s);
    __syncthreads();  // the table is visible; the one decoded before it was consumed
    if (s < nslices) load_stage(s);
    cp_async_commit();
  }
  decode_rows(STAGES - 1);

  for (index_t slice = 0; slice < nslices; ++slice) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // slice's stage and the next rows are visible; the stage refilled was consumed
    if (slice + STAGES - 1 < nslices) load_stage(slice + STAGES - 1);
    cp_async_commit();
    decode_rows(slice + STAGES);
    multiply(int(slice % STAGES));
  }
  cp_async_wait<0>();
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// The same, each 8 × 8 matrix transposed: from rows of k, fragments of rows of m.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// One 4-byte word from shared memory, and 16 bytes into it (shared-space
// addresses).
__device__ __forceinline__ uint32_t lds32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(v) : "r"(addr));
  return v;
}
__device__ __forceinline__ void sts128(uint32_t addr, const uint32_t (&v)[4]) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(v[0]), "r"(v[1]),
               "r"(v[2]), "r"(v[3])
               : "memory");
}

// fp32 rounded to the nearest TF32 value.  sm_90 converts in one
// instruction (F2FP) with ties to even; before it, cvt has only ties away for
// TF32, emulated in three (a compare, an add, a mask) — a third of a TF32
// k-step's instructions in the Hopper GEMM's consumers.  The two differ only
// on exact ties.
__device__ __forceinline__ uint32_t to_tf32(uint32_t bits) {
  uint32_t out;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm("cvt.rn.tf32.f32 %0, %1;\n" : "=r"(out) : "f"(__uint_as_float(bits)));
#else
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(out) : "f"(__uint_as_float(bits)));
#endif
  return out;
}

// fp32 as the sum of two TF32 values: hi, its nearest, and lo, the nearest to
// the remainder (exact in fp32).  hi·hi + hi·lo + lo·hi misses only lo·lo,
// 2^-22 of the product: the split-TF32 GEMMs' fp32 where TF32 is not allowed.
// An infinite operand's products come out NaN (its hi times the other's lo,
// often 0) where fp32's are ±inf: non-finite where fp32's are, all the same.
__device__ __forceinline__ void split_tf32(uint32_t bits, uint32_t& hi, uint32_t& lo) {
  hi = to_tf32(bits);
  lo = to_tf32(__float_as_uint(__uint_as_float(bits) - __uint_as_float(hi)));
}

// One 32-byte step along K: d += a · b over m16 n8 (k16 in 16-bit, k8 in TF32).
template <typename scalar_t>
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (std::is_same_v<scalar_t, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else if constexpr (std::is_same_v<scalar_t, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// A warp's MI × NI tile of m16n8 accumulators, zeroed.
template <int MI, int NI>
__device__ __forceinline__ void zero_accumulators(float (&acc)[MI][NI][4]) {
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;
}

// B's fragments of one 32-byte k-step from [n][k] rows `pitch` bytes apart,
// this lane's ldmatrix address at b_addr.
template <int NI>
__device__ __forceinline__ void load_b_fragments(uint32_t (&bf)[NI][2], uint32_t b_addr, int pitch) {
  static_assert(NI % 2 == 0, "B fragments come in pairs");
#pragma unroll
  for (int jj = 0; jj < NI / 2; ++jj) {
    uint32_t t4[4];
    ldmatrix_x4(t4, b_addr + jj * 16 * pitch);
    bf[2 * jj][0] = t4[0];
    bf[2 * jj][1] = t4[1];
    bf[2 * jj + 1][0] = t4[2];
    bf[2 * jj + 1][1] = t4[3];
  }
}

// acc += A · B over a warp's MI × NI pieces of one k-step; TF32 rounds both
// operands first.  Split TF32 (fp32 only, Fp32Mma::Split): each operand
// split_tf32 into hi and lo, three MMAs a piece (3xTF32: a third of TF32's
// rate, still several times the CUDA cores' fp32 FMAs'), summed apart from
// the accumulator and added to it in fp32 (channel_vectors.h says why; its
// error against fp32's is tested, test_parity.py's split-TF32 tests).
template <typename scalar_t, int MI, int NI, Fp32Mma kMath = Fp32Mma::Tf32>
__device__ __forceinline__ void multiply_fragments(float (&acc)[MI][NI][4], uint32_t (&af)[MI][4],
                                                   uint32_t (&bf)[NI][2]) {
  constexpr bool kSplit = kMath != Fp32Mma::Tf32;
  static_assert(!kSplit || std::is_same_v<scalar_t, float>, "split TF32 is fp32's");
  if constexpr (kSplit) {
    uint32_t alo[MI][4], blo[NI][2];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) split_tf32(af[i][e], af[i][e], alo[i][e]);
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) split_tf32(bf[j][e], bf[j][e], blo[j][e]);
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        float step[4] = {0.f, 0.f, 0.f, 0.f};
        mma<float>(step, alo[i], bf[j]);
        mma<float>(step, af[i], blo[j]);
        mma<float>(step, af[i], bf[j]);
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] += step[e];
      }
  } else {
    if constexpr (std::is_same_v<scalar_t, float>) {
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) af[i][e] = to_tf32(af[i][e]);
#pragma unroll
      for (int j = 0; j < NI; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) bf[j][e] = to_tf32(bf[j][e]);
    }
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < NI; ++j) mma<scalar_t>(acc[i][j], af[i], bf[j]);
  }
}

// One 32-byte step along K of a warp's MI × NI tile of m16n8 pieces.  a_addr:
// this lane's ldmatrix address in A ([m][k] rows `pitch` bytes apart) at the
// step; b_addr: the same in B ([n][k] rows).  TF32 rounds both operands
// (split TF32: split them, multiply_fragments).
template <typename scalar_t, int MI, int NI, Fp32Mma kMath = Fp32Mma::Tf32>
__device__ __forceinline__ void mma_k_step(float (&acc)[MI][NI][4], uint32_t a_addr,
                                           uint32_t b_addr, int pitch) {
  uint32_t af[MI][4], bf[NI][2];
#pragma unroll
  for (int i = 0; i < MI; ++i) ldmatrix_x4(af[i], a_addr + i * 16 * pitch);
  load_b_fragments(bf, b_addr, pitch);
  multiply_fragments<scalar_t, MI, NI, kMath>(acc, af, bf);
}

// The same step with A stored k-major, as [k][m] rows PITCH_A bytes apart
// (NCDHW planes read as they are: a channel's positions contiguous).  a_step:
// row k of the step, the warp's rows from m0.  fp16/bf16 transpose in
// ldmatrix; TF32 loads words (ldmatrix cannot transpose 32-bit elements),
// conflict-free where PITCH_A is 8 words past a multiple of 32.
template <typename scalar_t, int MI, int NI, int PITCH_A>
__device__ __forceinline__ void mma_k_step_k_major_a(float (&acc)[MI][NI][4],
                                                     const unsigned char* a_step, int m0, int lane,
                                                     uint32_t b_addr, int pitch) {
  uint32_t af[MI][4], bf[NI][2];
  if constexpr (std::is_same_v<scalar_t, float>) {
    const uint32_t* fa = reinterpret_cast<const uint32_t*>(a_step);
    constexpr int PA = PITCH_A / 4;
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int i = 0; i < MI; ++i) {
      const int m = m0 + i * 16 + g;
      af[i][0] = fa[t * PA + m];
      af[i][1] = fa[t * PA + m + 8];
      af[i][2] = fa[(t + 4) * PA + m];
      af[i][3] = fa[(t + 4) * PA + m + 8];
    }
  } else {
    const uint32_t sa = smem_addr(a_step);
    const int mat = lane / 8, r8 = lane % 8;  // matrices (m block, k block) = (mat % 2, mat / 2)
#pragma unroll
    for (int i = 0; i < MI; ++i) {
      ldmatrix_x4_trans(af[i], sa + ((mat / 2) * 8 + r8) * PITCH_A + (m0 + i * 16 + (mat % 2) * 8) * 2);
    }
  }
  load_b_fragments(bf, b_addr, pitch);
  multiply_fragments<scalar_t>(acc, af, bf);
}

// One stage of a warp's MI × NI tile of m16n8 accumulators from k-major
// operands in shared memory: A as [k][m] rows PITCH_A bytes apart, B as
// [k][n] rows PITCH_B apart (the grad-weight GEMMs' layout: a reduction row
// is a position, its channels contiguous).  The warp's rows k0 … k0 + KW − 1,
// its tile at (m0, n0).  fp16/bf16: ldmatrix.trans, k16 steps; TF32: word
// loads (ldmatrix cannot transpose 32-bit words), k8 steps, rounded (the
// split TF32: split, multiply_fragments).
template <typename scalar_t, int MI, int NI, int KW, int PITCH_A, int PITCH_B,
          Fp32Mma kMath = Fp32Mma::Tf32>
__device__ __forceinline__ void mma_k_major_stage(float (&acc)[MI][NI][4], const unsigned char* a,
                                                  const unsigned char* b, int k0, int m0, int n0,
                                                  int lane) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    const uint32_t* fa = reinterpret_cast<const uint32_t*>(a);
    const uint32_t* fb = reinterpret_cast<const uint32_t*>(b);
    constexpr int PA = PITCH_A / 4, PB = PITCH_B / 4;
    const int g = lane / 4, t = lane % 4;
    // Rounded as loaded (the split: whole, for multiply_fragments): kept so
    // because rounding after all loads cost the TF32 instances registers
    // (ptxas: 16 bytes more spilled on five of them).
    constexpr bool kSplit = kMath != Fp32Mma::Tf32;
    const auto operand = [](uint32_t bits) { return kSplit ? bits : to_tf32(bits); };
#pragma unroll
    for (int ks = 0; ks < KW / 8; ++ks) {
      const int k = k0 + ks * 8 + t;
      uint32_t af[MI][4], bf[NI][2];
#pragma unroll
      for (int i = 0; i < MI; ++i) {
        const int m = m0 + i * 16 + g;
        af[i][0] = operand(fa[k * PA + m]);
        af[i][1] = operand(fa[k * PA + m + 8]);
        af[i][2] = operand(fa[(k + 4) * PA + m]);
        af[i][3] = operand(fa[(k + 4) * PA + m + 8]);
      }
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const int n = n0 + j * 8 + g;
        bf[j][0] = operand(fb[k * PB + n]);
        bf[j][1] = operand(fb[(k + 4) * PB + n]);
      }
      if constexpr (kSplit) {
        multiply_fragments<float, MI, NI, kMath>(acc, af, bf);
      } else {
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
          for (int j = 0; j < NI; ++j) mma<float>(acc[i][j], af[i], bf[j]);
      }
    }
  } else {
    static_assert(kMath == Fp32Mma::Tf32, "split TF32 is fp32's");
    static_assert(NI % 2 == 0, "B fragments come in pairs");
    // Lane l addresses row l % 8 of matrix l / 8.
    const uint32_t sa = smem_addr(a), sb = smem_addr(b);
    const int mat = lane / 8, r8 = lane % 8;
#pragma unroll
    for (int ks = 0; ks < KW / 16; ++ks) {
      uint32_t af[MI][4], bf[NI][2];
#pragma unroll
      for (int i = 0; i < MI; ++i) {  // matrices (m block, k block) = (mat % 2, mat / 2)
        const int k = k0 + ks * 16 + (mat / 2) * 8 + r8;
        const int m = m0 + i * 16 + (mat % 2) * 8;
        ldmatrix_x4_trans(af[i], sa + k * PITCH_A + m * 2);
      }
#pragma unroll
      for (int jj = 0; jj < NI / 2; ++jj) {  // matrices (n block, k block) = (mat / 2, mat % 2)
        const int k = k0 + ks * 16 + (mat % 2) * 8 + r8;
        const int n = n0 + jj * 16 + (mat / 2) * 8;
        uint32_t t4[4];
        ldmatrix_x4_trans(t4, sb + k * PITCH_B + n * 2);
        bf[2 * jj][0] = t4[0];
        bf[2 * jj][1] = t4[1];
        bf[2 * jj + 1][0] = t4[2];
        bf[2 * jj + 1][1] = t4[3];
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j) mma<scalar_t>(acc[i][j], af[i], bf[j]);
    }
  }
}

// launch(std::integral_constant<Fp32Mma, M>{}) for the mode `math` names: a
// kernel's launch with its fp32 mode a template argument.  Split TF32
// exists for fp32 only; asking it of another dtype is invalid.
template <typename scalar_t, typename Launch>
cudaError_t launch_fp32_mma(Fp32Mma math, Launch&& launch) {
  using Mode = Fp32Mma;
  if (math == Mode::Tf32) return launch(std::integral_constant<Mode, Mode::Tf32>{});
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (math == Mode::Split) return launch(std::integral_constant<Mode, Mode::Split>{});
  }
  return cudaErrorInvalidValue;
}

// Kernels using more than 48 KB of dynamic shared memory must opt in, per
// device, to the most any launch uses: a call asking no more than the size
// already granted costs one atomic load, a larger one raises it (a kernel
// whose size follows the shape may ask a different size each call).
template <auto Kernel>
cudaError_t opt_in_dynamic_smem(int bytes) {
  static std::atomic<int> granted[64] = {};  // per device
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  std::atomic<int>* const g = dev < 64 ? &granted[dev] : nullptr;
  const int before = g != nullptr ? g->load(std::memory_order_relaxed) : 0;
  if (bytes <= before) return cudaSuccess;
  err = cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (err == cudaSuccess && g != nullptr) {
    int seen = before;
    while (seen < bytes && !g->compare_exchange_weak(seen, bytes, std::memory_order_relaxed)) {
    }
  }
  return err;
}

}  // namespace tconv3d::cuda
