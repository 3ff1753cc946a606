// sm_90a building blocks of the Hopper kernels: mbarriers, tensor-map
// copies, shared-memory matrix descriptors and warpgroup MMAs (wgmma) reading
// both operands from shared memory (or A from registers, in TF32), fp32
// accumulation.  Everything here is only meaningful in code compiled for
// sm_90a (__CUDA_ARCH_FEAT_SM90_ALL).
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "mma_sm80.cuh"

namespace tconv3d::cuda::sm90 {

__device__ __forceinline__ void mbarrier_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

// Arrive (release at CTA scope): what this thread wrote before is visible to
// whoever completes a wait on the phase.
__device__ __forceinline__ void mbarrier_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// Blocks until the phase of parity `parity` has completed (acquire).
__device__ __forceinline__ void mbarrier_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (done == 0);
}

// Arrives on the barrier once every cp.async this thread has issued so far
// has landed; counts as one of the arrivals the barrier was initialised with.
__device__ __forceinline__ void cp_async_arrive_noinc(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}

// Arms the barrier's current phase with `bytes` of bulk copies still to land
// and counts as one arrival: the phase completes when both are in.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}

// Tensor-map (TMA) tile loads into shared memory: the box at the given
// coordinates (innermost dimension first, signed: elements outside the tensor
// land as zeros), completing `bar`'s transaction bytes.  `map` is the generic
// address of a CUtensorMap in kernel parameter (grid-constant) memory.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const void* map, uint32_t bar, int c0,
                                            int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4}], [%2];\n" ::"r"(dst),
      "l"(map), "r"(bar), "r"(c0), "r"(c1)
      : "memory");
}
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const void* map, uint32_t bar, int c0,
                                            int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(dst),
      "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const void* map, uint32_t bar, int c0,
                                            int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6}], [%2];\n" ::"r"(dst),
      "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}
__device__ __forceinline__ void tma_load_5d(uint32_t dst, const void* map, uint32_t bar, int c0,
                                            int c1, int c2, int c3, int c4) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6, %7}], [%2];\n" ::"r"(dst),
      "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4)
      : "memory");
}

// Moves registers between warpgroups (sm_90a): the kernel must start with a
// register cap (__launch_bounds__(threads, 1)); each role calls one of these.
template <int kRegs>
__device__ __forceinline__ void release_registers() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void claim_registers() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

// 128-byte swizzle atoms repeat every 1024 bytes: a kernel's stages start on
// such a boundary, so its dynamic shared memory asks for that much slack.
constexpr int kSwizzleAtomBytes = 1024;

__device__ __forceinline__ uint32_t swizzle_aligned(uint32_t smem_addr) {
  return (smem_addr + kSwizzleAtomBytes - 1u) & ~uint32_t(kSwizzleAtomBytes - 1);
}

// Shared-memory matrix descriptors: the start address (bits 0-13, in 16-byte
// units) over address-independent bits — leading byte offset (16-29), stride
// byte offset (32-45), layout type (62-63: 1 = 128-byte, 2 = 64-byte, 3 =
// 32-byte swizzle) — built first, so that a loop can hoist them.
__host__ __device__ constexpr uint64_t smem_desc_bits(uint32_t leading_bytes, uint32_t stride_bytes,
                                                      uint32_t swizzle_bytes) {
  const uint64_t layout = swizzle_bytes == 128 ? 1 : swizzle_bytes == 64 ? 2 : 3;
  return (uint64_t((leading_bytes >> 4) & 0x3FFF) << 16) | (uint64_t(stride_bytes >> 4) << 32) |
         (layout << 62);
}
__device__ __forceinline__ uint64_t smem_desc(uint32_t smem_addr, uint64_t bits) {
  return uint64_t((smem_addr & 0x3FFFF) >> 4) | bits;
}
// The descriptor of a start `bytes` further, where the start is aligned
// beyond them (a k-step inside a swizzle row: the address bits they set are
// zero): one OR on the low word, no carry chain.
__device__ __forceinline__ uint64_t desc_plus(uint64_t desc, uint32_t bytes) {
  return desc | (bytes >> 4);
}

// A K-major operand tile in the `row_bytes`-byte swizzle (32, 64 or 128: what
// a TMA box of that inner extent lands under CU_TENSOR_MAP_SWIZZLE_32B/64B/
// 128B, and cute's Layout_K_SW32/64/128_Atom): rows of row_bytes (the K
// slice), 8-row groups 8·row_bytes apart (the stride byte offset), the
// address's 16-byte-piece bits XORed with its bits 7 and up (Swizzle<1|2|3,
// 4, 3>), so the tile starts 8·row_bytes aligned (base offset 0).  The
// leading byte offset is unused by swizzled K-major layouts (16 bytes, as
// cute sets it).  A k-step (32 bytes of K) inside a row is a plain byte
// offset of the start address.
__host__ __device__ constexpr uint64_t kmajor_swizzle_desc_bits(uint32_t row_bytes) {
  return smem_desc_bits(16, 8 * row_bytes, row_bytes);
}
// The 128-byte case: 16-byte piece p of row r stored at piece p ^ (r % 8),
// 8-row groups 1024 bytes apart, the tile 1024-byte aligned.
__device__ __forceinline__ uint64_t sw128_desc(uint32_t smem_addr) {
  return smem_desc(smem_addr, kmajor_swizzle_desc_bits(128));
}

// Byte offset of 16-byte piece `piece` of row `row` in such a tile.
__device__ __forceinline__ uint32_t sw128_offset(int row, int piece) {
  return uint32_t(row * 128 + ((piece ^ (row & 7)) << 4));
}

// Descriptor of an MN-major operand tile in the `row_bytes`-byte swizzle (64
// or 128), as a TMA box of rows that wide lands it: K runs down the rows (row
// k holds row_bytes / 2 fp16/bf16 elements of M or N: one swizzle atom's
// width), 8-row groups 8·row_bytes apart (the stride byte offset); the next
// atom along M/N `block_bytes` further (the leading byte offset), so one
// descriptor spans boxes laid side by side.  A k16 step is 16 rows: +
// 16·row_bytes, which keeps the start aligned to the swizzle's period (base
// offset 0).  fp16/bf16 only (wgmma transposes no 32-bit operand).
__device__ __forceinline__ uint64_t mn_major_desc(uint32_t smem_addr, uint32_t row_bytes,
                                                  uint32_t block_bytes) {
  return smem_desc(smem_addr, smem_desc_bits(block_bytes, 8 * row_bytes, row_bytes));
}

// Orders this thread's generic-proxy shared-memory writes before later
// async-proxy reads of them (wgmma's descriptors, TMA stores): a thread that
// wrote an MMA operand with st.shared fences, then the reader synchronises.
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// A 32-bit word of shared memory by address, ordered with the asm around it
// (a flag one thread publishes before an mbarrier arrive, others read after
// the wait).
__device__ __forceinline__ void store_shared_u32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}
__device__ __forceinline__ uint32_t load_shared_u32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr) : "memory");
  return v;
}

// Rounds the four fp32 values at shared-memory address `addr` (16-byte
// aligned) to TF32 in place: wgmma truncates the fp32 operands it reads from
// shared memory, and TF32 must round to nearest (to_tf32).
__device__ __forceinline__ void round_tf32_shared_x4(uint32_t addr) {
  uint32_t v[4];
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3])
               : "r"(addr));
#pragma unroll
  for (int e = 0; e < 4; ++e) v[e] = to_tf32(v[e]);
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(v[0]), "r"(v[1]),
               "r"(v[2]), "r"(v[3])
               : "memory");
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Pins accumulator registers at this point of the program: the wgmma asm
// statements "produce" them when issued, but the values are only there after
// wgmma_wait, so reads must not be hoisted above it (nor writes sunk below).
template <int R>
__device__ __forceinline__ void fence_accumulators(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// D[64 × N] += A[64 × 32 bytes of K] · B[N × 32 bytes of K], both K-major in
// shared memory (descriptors above): k16 for fp16/bf16, k8 for TF32 (float
// storage; the operands must already be rounded to TF32).  Thread t of the
// warpgroup holds rows 16·(t/32) + (t%32)/4 (+8) and columns 8j + 2(t%4) (+1)
// of D in d[4j .. 4j+3], as mma.sync's m16n8 accumulator.
//
// WgmmaMnMajor: the same with both operands MN-major (A stored [K][M], B
// [K][N]; mn_major_desc), fp16/bf16 only.
//
// WgmmaRegisterA (TF32): A in registers, as mma.sync's A fragment per warp
// (rows 16·warp + lane/4 (+8); m16n8k8: k lane%4 (+4), a[0] = (r, k),
// a[1] = (r + 8, k), a[2] = (r, k + 4), a[3] = (r + 8, k + 4)): what
// ldmatrix.x4 of the 16 × 32 bytes gives, matrices (rows 0-7, bytes 0-15), (8-15, 0-15), (0-7, 16-31),
// (8-15, 16-31).  TF32 goes this way so that the consumer rounds A on the way
// (wgmma reads shared-memory TF32 operands truncated).  The hardware reads
// `a` after issue: they must not change until a wgmma_wait has retired the
// instruction.
template <typename scalar_t, int N>
struct Wgmma;
template <typename scalar_t, int N>
struct WgmmaMnMajor;
template <typename scalar_t, int N>
struct WgmmaRegisterA;

// The register lists are mechanical: one macro per N taking the instruction,
// the A and B operand text (their % numbers follow the accumulators'), the
// immediates (scale-d, scale-a, scale-b and, in 16-bit, both operands'
// majorness) and the A and B inputs.
#define TCONV3D_WGMMA_N32(instruction, ab, immediates, ...)  \
  asm volatile(instruction " {"  \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"  \
               "}, " ab ", " immediates ";\n"  \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),  \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])  \
               : __VA_ARGS__)

#define TCONV3D_WGMMA_N64(instruction, ab, immediates, ...)  \
  asm volatile(instruction " {"  \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "  \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"  \
               "}, " ab ", " immediates ";\n"  \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),  \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),  \
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),  \
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])  \
               : __VA_ARGS__)

#define TCONV3D_WGMMA_N128(instruction, ab, immediates, ...)  \
  asm volatile(instruction " {"  \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "  \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "  \
               "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "  \
               "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"  \
               "}, " ab ", " immediates ";\n"  \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),  \
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),  \
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),  \
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),  \
                 "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),  \
                 "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),  \
                 "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),  \
                 "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])  \
               : __VA_ARGS__)

// The A and B operand text of each N: two descriptors, or four A registers
// and B's descriptor.
#define TCONV3D_SS_N32 "%16, %17"
#define TCONV3D_SS_N64 "%32, %33"
#define TCONV3D_SS_N128 "%64, %65"
#define TCONV3D_RS_N32 "{%16, %17, %18, %19}, %20"
#define TCONV3D_RS_N64 "{%32, %33, %34, %35}, %36"
#define TCONV3D_RS_N128 "{%64, %65, %66, %67}, %68"

// The three widths of one type: instruction prefix (shape k and types) and
// immediates.
#define TCONV3D_WGMMA_TYPE(scalar, k_and_types, immediates)  \
  TCONV3D_WGMMA_WIDTHS(Wgmma, scalar, k_and_types, immediates)
#define TCONV3D_WGMMA_WIDTH(name, scalar, n, k_and_types, immediates)  \
  template <>  \
  struct name<scalar, n> {  \
    __device__ __forceinline__ static void run(float (&d)[n / 2], uint64_t a, uint64_t b) {  \
      TCONV3D_WGMMA_N##n("wgmma.mma_async.sync.aligned.m64n" #n k_and_types, TCONV3D_SS_N##n,  \
                         immediates, "l"(a), "l"(b));  \
    }  \
  };
#define TCONV3D_WGMMA_WIDTHS(name, scalar, k_and_types, immediates)  \
  TCONV3D_WGMMA_WIDTH(name, scalar, 32, k_and_types, immediates)  \
  TCONV3D_WGMMA_WIDTH(name, scalar, 64, k_and_types, immediates)  \
  TCONV3D_WGMMA_WIDTH(name, scalar, 128, k_and_types, immediates)
#define TCONV3D_WGMMA_REGISTER_A_WIDTH(scalar, n, k_and_types, immediates)  \
  template <>  \
  struct WgmmaRegisterA<scalar, n> {  \
    __device__ __forceinline__ static void run(float (&d)[n / 2], const uint32_t (&a)[4], uint64_t b) {  \
      TCONV3D_WGMMA_N##n("wgmma.mma_async.sync.aligned.m64n" #n k_and_types, TCONV3D_RS_N##n,  \
                         immediates, "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));  \
    }  \
  };
// Register A takes no transpose (TF32 has no transpose immediates at all).
#define TCONV3D_WGMMA_REGISTER_A(scalar, k_and_types, immediates)  \
  TCONV3D_WGMMA_REGISTER_A_WIDTH(scalar, 32, k_and_types, immediates)  \
  TCONV3D_WGMMA_REGISTER_A_WIDTH(scalar, 64, k_and_types, immediates)  \
  TCONV3D_WGMMA_REGISTER_A_WIDTH(scalar, 128, k_and_types, immediates)

TCONV3D_WGMMA_TYPE(__nv_bfloat16, "k16.f32.bf16.bf16", "1, 1, 1, 0, 0")
TCONV3D_WGMMA_TYPE(__half, "k16.f32.f16.f16", "1, 1, 1, 0, 0")
// Group blocks (tensor_core_gemm.h): one group's m64n16k16 (16 columns of a
// 64-column tile) into its own 8 accumulators.  Kept apart from the tile's
// 32: m64n16 and m64n64 wgmmas on the same registers (a slice of them) made
// ptxas serialize every wgmma of the kernel (C7511).  fp16/bf16; TF32's
// exists so that every type's code compiles.
template <typename scalar_t>
struct WgmmaBlock;
#define TCONV3D_WGMMA_BLOCK(scalar, k_and_types, immediates)  \
  template <>  \
  struct WgmmaBlock<scalar> {  \
    __device__ __forceinline__ static void run(float (&d)[8], uint64_t a, uint64_t b) {  \
      asm volatile("wgmma.mma_async.sync.aligned.m64n16" k_and_types  \
                   " {%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, " immediates ";\n"  \
                   : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),  \
                     "+f"(d[6]), "+f"(d[7])  \
                   : "l"(a), "l"(b));  \
    }  \
  };
TCONV3D_WGMMA_BLOCK(__nv_bfloat16, "k16.f32.bf16.bf16", "1, 1, 1, 0, 0")
TCONV3D_WGMMA_BLOCK(__half, "k16.f32.f16.f16", "1, 1, 1, 0, 0")
TCONV3D_WGMMA_BLOCK(float, "k8.f32.tf32.tf32", "1, 1, 1")
#undef TCONV3D_WGMMA_BLOCK
// TF32 group blocks: one group's m64n16k8 with A through registers (rounded
// on the way, as every TF32 A of these kernels).
struct WgmmaBlockRegisterATf32 {
  __device__ __forceinline__ static void run(float (&d)[8], const uint32_t (&a)[4], uint64_t b) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n16k8.f32.tf32.tf32"
                 " {%0, %1, %2, %3, %4, %5, %6, %7}, {%8, %9, %10, %11}, %12, 1, 1, 1;\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
                   "+f"(d[6]), "+f"(d[7])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
  }
};
TCONV3D_WGMMA_TYPE(float, "k8.f32.tf32.tf32", "1, 1, 1")
TCONV3D_WGMMA_WIDTHS(WgmmaMnMajor, __nv_bfloat16, "k16.f32.bf16.bf16", "1, 1, 1, 1, 1")
TCONV3D_WGMMA_WIDTHS(WgmmaMnMajor, __half, "k16.f32.f16.f16", "1, 1, 1, 1, 1")
TCONV3D_WGMMA_REGISTER_A(float, "k8.f32.tf32.tf32", "1, 1, 1")

// One TF32 stage with A through registers (rounded on the way): two commit
// groups of kHalf k-steps, each with its own fragments, so that one group's
// MMAs run while the next one's fragments load; a group's registers are only
// rewritten after the wgmma_wait that retired it.  load_a(frag, ks) loads
// this thread's A fragment of k-step ks (the WgmmaRegisterA layout); every
// load of a group is issued before any fragment is used (with a branch
// around each load, each waited out its own latency: RESULTS.md, "Halo
// loader round").  mma(frag, ks) issues k-step ks's wgmma; between_groups
// runs once the previous stage's last group has retired (where a caller
// releases that stage).  The callables are taken by value, as the forward's
// own lambda took them before it called this: by reference, the forward's
// SASS changed (uniform-register names).
template <int kHalf, typename LoadA, typename Mma, typename BetweenGroups>
__device__ __forceinline__ void tf32_register_a_groups(uint32_t (&frag)[2][kHalf][4], LoadA load_a,
                                                       Mma mma, BetweenGroups between_groups) {
  const auto group = [&](auto which) {
    constexpr int G = decltype(which)::value;
#pragma unroll
    for (int j = 0; j < kHalf; ++j) load_a(frag[G][j], G * kHalf + j);
#pragma unroll
    for (int j = 0; j < kHalf; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) frag[G][j][e] = to_tf32(frag[G][j][e]);
    }
    wgmma_fence();
#pragma unroll
    for (int j = 0; j < kHalf; ++j) mma(frag[G][j], G * kHalf + j);
    wgmma_commit();
    wgmma_wait<1>();
  };
  group(std::integral_constant<int, 0>{});
  between_groups();
  group(std::integral_constant<int, 1>{});
}

// The stage's k-steps into one m64nN accumulator, B's descriptor at k-step
// ks b_desc(ks).
template <int N, int kHalf, typename LoadA, typename BDesc, typename BetweenGroups>
__device__ __forceinline__ void tf32_register_a_stage(float (&acc)[N / 2], uint32_t (&frag)[2][kHalf][4],
                                                      LoadA load_a, BDesc b_desc,
                                                      BetweenGroups between_groups) {
  tf32_register_a_groups(
      frag, load_a,
      [&](const uint32_t(&f)[4], int ks) { WgmmaRegisterA<float, N>::run(acc, f, b_desc(ks)); },
      between_groups);
}

#undef TCONV3D_WGMMA_TYPE
#undef TCONV3D_WGMMA_WIDTH
#undef TCONV3D_WGMMA_WIDTHS
#undef TCONV3D_WGMMA_REGISTER_A
#undef TCONV3D_WGMMA_REGISTER_A_WIDTH
#undef TCONV3D_SS_N32
#undef TCONV3D_SS_N64
#undef TCONV3D_SS_N128
#undef TCONV3D_RS_N32
#undef TCONV3D_RS_N64
#undef TCONV3D_RS_N128
#undef TCONV3D_WGMMA_N32
#undef TCONV3D_WGMMA_N64
#undef TCONV3D_WGMMA_N128

}  // namespace tconv3d::cuda::sm90
