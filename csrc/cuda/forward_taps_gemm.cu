// The forward of layers with few output channels a group (the RGB output of a
// volume VAE decoder: 64 → 3 channels, 4³ taps, stride 2), on tensor cores
// with the taps folded into the GEMM's columns:
//
//     Z[i, (t, co)] = Σ_ci X[i, ci] · W[ci, co, t]                 (K = Cin/G)
//     Y[o, co]      = b[co] + Σ_{(t, i) : o = i·s − p + t·d} Z[i, (t, co)]
//
// The phase GEMM (tensor_core_gemm*.cu) pads its 1-4 columns to a whole MMA
// tile and reads every input position once per output it reaches (64 times
// at k = 4, s = 2: 4 GB through L2 for the benchmark's layer, 0.75-2.4 ms).
// Here a block owns a box of output positions (tile L per axis, a multiple of
// the stride; index_math.h, forward_box_axis) and loads the box of input
// positions that reach it once, whole K; multiplies it 64 rows at a time into
// Z (shared memory, fp32, every column at once); and each thread adds its
// outputs' taps (forward_taps: the index mathematics the CPU kernel walks)
// from Z in a fixed order.  Halo inputs are multiplied by every block whose
// box holds them (≈ 2.5x the MMAs at k = 4, s = 2), cheap next to the reads
// they replace.  Every output is written once, by one thread, its sum in an
// order fixed by the shape: deterministic, no workspace.
//
// Operands as the phase GEMM's (tensor_core_gemm.h): x channels-last, a
// group's channels padded to 16-byte pieces; the packed weight's column
// j = tap·Cout/G + co holds channels contiguous — the tap-columns GEMM's B.
#include "tensor_core_gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../index_math.h"
#include "../scalar_convert.h"
#include "dispatch.cuh"
#include "forward_taps_plan.h"
#include "implicit_gemm_walk.cuh"
#include "mma_sm80.cuh"

namespace tconv3d::cuda {
namespace fwd_taps {

constexpr int kThreads = 256;
constexpr int kBN = 192;                  // every (tap, co) column at once
constexpr int kWarpsM = 2, kWarpM = 32, kWarpN = kBN / 4;  // 8 warps, 2 × 4
constexpr int kMI = kWarpM / 16, kNI = kWarpN / 8;
constexpr int kOutputsPerThread = 4;
static_assert(kMaxOutputs == kThreads * kOutputsPerThread, "four outputs a thread");
constexpr int kMaxColumns = 4;            // Cout/G
// fp32's 128 channels (a volume VAE's RGB output): whole K stays in shared
// memory, so the box shrinks as K grows (k_fit).
constexpr int kMaxKBytes = 512;
constexpr int kZPitch = kBN + 1;          // odd: a warp's gather reads spread over the banks
constexpr int kZBytes = kBM * kZPitch * int(sizeof(float));
constexpr int kStaticSmem = kMaxBoxRows * int(sizeof(int64_t));  // s_xrow, at most

struct Args {
  ConvTranspose3dParams p;
  TensorCoreGemmOperands ops;
  ForwardBoxAxis box[3];
  int64_t tiles;     // per sample
  int box_rows;      // extent product
  int passes;        // ⌈box_rows / kBM⌉
  int outputs;       // tile product
  int col_count;     // taps · Cout/G
  int b_rows;        // the weight's rows in shared memory: col_count up to whole warp columns
  int k_bytes;       // channels · element size, rounded up to 32
  int pitch;         // k_bytes + 16: an odd number of 16-byte pieces
  // Output u of the tile along axis a (forward_box_taps): its first box row
  // and tap, as offsets in the box's rows and the flat tap index, and its
  // tap count; the next tap along a is row_step[a] rows, tap_step[a] taps on.
  int first_row[3][kMaxTile], first_tap[3][kMaxTile], count[3][kMaxTile];
  int row_step[3], tap_step[3];
};

template <typename scalar_t, typename index_t, int kAxisTaps, Fp32Mma kMath>
__global__ void __launch_bounds__(kThreads, 2) forward_taps_kernel(const Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int ES = sizeof(scalar_t), VEC = 16 / ES;
  extern __shared__ __align__(128) unsigned char smem[];
  const ConvTranspose3dParams& p = a.p;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp % kWarpsM, wn = warp / kWarpsM;
  const int64_t g = blockIdx.y;
  const int64_t n = blockIdx.x / a.tiles;
  int64_t tile[3];
  {
    int64_t t = blockIdx.x % a.tiles;
    tile[2] = t % a.box[2].tiles;
    t /= a.box[2].tiles;
    tile[1] = t % a.box[1].tiles;
    tile[0] = t / a.box[1].tiles;
  }
  int64_t origin[3];  // the box's first input position
#pragma unroll
  for (int ax = 0; ax < 3; ++ax) origin[ax] = forward_box_origin(p.axis[ax], a.box[ax], tile[ax]);
  const int ew = int(a.box[2].extent), eh = int(a.box[1].extent);
  const int C = int(a.ops.channels), cog = int(a.ops.columns);
  const int pieces = a.k_bytes / 16, pitch = a.pitch;
  const uint32_t sa = smem_addr(smem), sb = sa + a.passes * kBM * pitch;
  float* const z = reinterpret_cast<float*>(smem + (a.passes * kBM + a.b_rows) * pitch);
  const scalar_t* x = static_cast<const scalar_t*>(a.ops.source);
  const scalar_t* wts = static_cast<const scalar_t*>(a.ops.packed_weight) + g * a.col_count * C;

  // Each box row's offset in x (−1 outside x or past the box's last row).
  // (Shared memory is at its limit for two blocks an SM in fp16/bf16: the
  // per-axis tap tables, read once, stay in the kernel's parameters.)
  __shared__ index_t s_xrow[kMaxBoxRows];
  static_assert(kThreads == kMaxBoxRows, "a thread a box row");
  {
    const int row = tid;
    const int64_t iw = origin[2] + row % ew, ih = origin[1] + row / ew % eh;
    const int64_t id = origin[0] + row / (ew * eh);
    const bool ok = row < a.box_rows && id >= 0 && id < p.axis[0].in && ih >= 0 &&
                    ih < p.axis[1].in && iw >= 0 && iw < p.axis[2].in;
    s_xrow[row] = ok ? index_t(n * a.ops.source_n + id * a.ops.source_d + ih * a.ops.source_h +
                               iw * a.ops.source_w + g * C)
                     : index_t(-1);
  }
  __syncthreads();

  // The weight's columns (zeros past the last) and the input box, one commit
  // group a pass: a pass's MMAs start while the later passes' rows land.
  for (int idx = tid; idx < a.b_rows * pieces; idx += kThreads) {
    const int col = idx / pieces, pc = idx % pieces;
    const bool ok = col < a.col_count && pc * VEC < C;
    cp_async16(sb + col * pitch + pc * 16, ok ? wts + index_t(col * C + pc * VEC) : wts, ok);
  }
  for (int pass = 0; pass < a.passes; ++pass) {
    for (int idx = tid; idx < kBM * pieces; idx += kThreads) {
      const int row = pass * kBM + idx / pieces, pc = idx % pieces;
      const index_t off = s_xrow[row];
      const bool ok = off >= 0 && pc * VEC < C;
      cp_async16(sa + row * pitch + pc * 16, ok ? x + off + pc * VEC : x, ok);
    }
    cp_async_commit();
  }

  // This thread's outputs: their first Z element (box row, tap) and run
  // lengths, from the tables; a further tap along axis a is z_step[a] on.
  int z_step[3];
#pragma unroll
  for (int ax = 0; ax < 3; ++ax) z_step[ax] = a.row_step[ax] * kZPitch + a.tap_step[ax] * cog;
  const int lw = int(a.box[2].tile), lh = int(a.box[1].tile);
  int first_row[kOutputsPerThread], first_z[kOutputsPerThread], counts[kOutputsPerThread];
  float acc[kOutputsPerThread][kMaxColumns];
#pragma unroll
  for (int j = 0; j < kOutputsPerThread; ++j) {
    const int u = tid + j * kThreads;
    // Past the tile (fewer than kMaxOutputs positions) u reads position 0's
    // tables, never beyond them, and is not written.
    const int uu = u < a.outputs ? u : 0;
    const int uw = uu % lw, uh = uu / lw % lh, ud = uu / (lw * lh);
    const bool valid =
        u < a.outputs && tile[0] * a.box[0].tile - a.box[0].shift + ud < p.axis[0].out &&
        tile[1] * a.box[1].tile - a.box[1].shift + uh < p.axis[1].out &&
        tile[2] * a.box[2].tile - a.box[2].shift + uw < p.axis[2].out &&
        ud >= (tile[0] == 0 ? a.box[0].shift : 0) && uh >= (tile[1] == 0 ? a.box[1].shift : 0) &&
        uw >= (tile[2] == 0 ? a.box[2].shift : 0);
    first_row[j] = a.first_row[0][ud] + a.first_row[1][uh] + a.first_row[2][uw];
    first_z[j] = first_row[j] * kZPitch +
                 (a.first_tap[0][ud] + a.first_tap[1][uh] + a.first_tap[2][uw]) * cog;
    counts[j] = valid ? a.count[0][ud] | a.count[1][uh] << 8 | a.count[2][uw] << 16 : -1;
#pragma unroll
    for (int c = 0; c < kMaxColumns; ++c) acc[j][c] = 0.f;
  }

  const int gq = lane / 4, tq = lane % 4;
  const uint32_t a_lane = (wm * kWarpM + lane % 16) * pitch + (lane / 16) * 16;
  const uint32_t b_lane = (wn * kWarpN + lane % 8 + 8 * (lane / 16)) * pitch + ((lane / 8) % 2) * 16;
  const bool warp_has_columns = wn * kWarpN < a.col_count;
  for (int pass = 0; pass < a.passes; ++pass) {
    switch (a.passes - 1 - pass) {  // this pass's rows (and the weights) landed
      case 0: cp_async_wait<0>(); break;
      case 1: cp_async_wait<1>(); break;
      case 2: cp_async_wait<2>(); break;
      default: cp_async_wait<3>(); break;
    }
    __syncthreads();  // ... for every thread; and the last pass's sums have read Z
    if (warp_has_columns) {
      float macc[kMI][kNI][4];
      zero_accumulators(macc);
      const uint32_t a_pass = sa + pass * kBM * pitch + a_lane;
#pragma unroll 2
      for (int kb = 0; kb < a.k_bytes; kb += 32) {
        mma_k_step<scalar_t, kMI, kNI, kMath>(macc, a_pass + kb, sb + b_lane + kb, pitch);
      }
#pragma unroll
      for (int i = 0; i < kMI; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float* zr = z + (wm * kWarpM + i * 16 + gq + 8 * h) * kZPitch + wn * kWarpN + 2 * tq;
#pragma unroll
          for (int jn = 0; jn < kNI; ++jn) {
            zr[jn * 8] = macc[i][jn][2 * h];
            zr[jn * 8 + 1] = macc[i][jn][2 * h + 1];
          }
        }
    }
    __syncthreads();  // Z of this pass complete

    const int row_lo = pass * kBM;
#pragma unroll
    for (int j = 0; j < kOutputsPerThread; ++j) {
      if (counts[j] <= 0) continue;
      const int cd = counts[j] & 0xff, ch = (counts[j] >> 8) & 0xff, cw = counts[j] >> 16;
      // Rows fall from first_row with each tap: skip the outputs this pass
      // holds no row of.
      const int first = first_row[j] - row_lo;
      const int last = first + (cd - 1) * a.row_step[0] + (ch - 1) * a.row_step[1] +
                       (cw - 1) * a.row_step[2];
      if (first < 0 || last >= kBM) continue;
      const float* zj = z + first_z[j] - row_lo * kZPitch;
      // kAxisTaps > 0: at most that many taps an axis (k ≤ 2s: the VAE
      // layers), the walk unrolled; 0: any number.
      const int nd = kAxisTaps > 0 ? kAxisTaps : cd, nh = kAxisTaps > 0 ? kAxisTaps : ch;
      const int nw = kAxisTaps > 0 ? kAxisTaps : cw;
#pragma unroll
      for (int md = 0; md < nd; ++md) {
        if (md >= cd) break;
#pragma unroll
        for (int mh = 0; mh < nh; ++mh) {
          if (mh >= ch) break;
#pragma unroll
          for (int mw = 0; mw < nw; ++mw) {
            if (mw >= cw) break;
            const int row = first + md * a.row_step[0] + mh * a.row_step[1] + mw * a.row_step[2];
            if (unsigned(row) >= unsigned(kBM)) continue;
            const float* zr = zj + md * z_step[0] + mh * z_step[1] + mw * z_step[2];
#pragma unroll
            for (int c = 0; c < kMaxColumns; ++c) {
              if (c < cog) acc[j][c] += zr[c];
            }
          }
        }
      }
    }
  }

  const scalar_t* bias = static_cast<const scalar_t*>(a.ops.bias);
  scalar_t* y = static_cast<scalar_t*>(a.ops.dest);
#pragma unroll
  for (int j = 0; j < kOutputsPerThread; ++j) {
    if (counts[j] < 0) continue;
    int u = tid + j * kThreads;
    const int uw = u % int(a.box[2].tile);
    u /= int(a.box[2].tile);
    const int uh = u % int(a.box[1].tile), ud = u / int(a.box[1].tile);
    const int64_t od = tile[0] * a.box[0].tile - a.box[0].shift + ud;
    const int64_t oh = tile[1] * a.box[1].tile - a.box[1].shift + uh;
    const int64_t ow = tile[2] * a.box[2].tile - a.box[2].shift + uw;
    scalar_t* yo = y + index_t(n * p.output.n + g * cog * p.output.c + od * p.output.d +
                               oh * p.output.h + ow * p.output.w);
#pragma unroll
    for (int c = 0; c < kMaxColumns; ++c) {
      if (c >= cog) continue;
      const float b = bias != nullptr ? to_acc(bias[index_t((g * cog + c) * p.bias_stride)]) : 0.f;
      yo[index_t(c * p.output.c)] = from_acc<scalar_t>(acc[j][c] + b);
    }
  }
#else
  __trap();  // never launched: forward_taps_gemm_supports requires sm_80 code
#endif
}

template <typename scalar_t, typename index_t, int kAxisTaps, Fp32Mma kMath>
cudaError_t launch_typed(const Args& a, int smem, int64_t batch, int64_t groups,
                         cudaStream_t stream) {
  constexpr auto kernel = forward_taps_kernel<scalar_t, index_t, kAxisTaps, kMath>;
  const cudaError_t err = opt_in_dynamic_smem<kernel>(smem);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned int>(batch * a.tiles), static_cast<unsigned int>(groups));
  kernel<<<grid, kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

// The (tap, co) columns, K and the shared memory they take: the weight's
// columns that warps read, and the most box rows the device's shared memory
// holds beside them (0 if unknown).
struct KFit {
  int64_t col_count;
  int k_bytes, pitch, b_rows;
  int64_t max_box_rows;
};

KFit k_fit(const ConvTranspose3dParams& p, int64_t channels, ScalarKind dtype) {
  KFit f{};
  f.col_count = p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel * p.out_per_group;
  f.k_bytes = int(k_step_bytes(channels, dtype));
  f.pitch = f.k_bytes + 16;
  f.b_rows = int(std::min<int64_t>((f.col_count + kWarpN - 1) / kWarpN * kWarpN, kBN));
  const int64_t room = block_smem_room(kStaticSmem) - kZBytes;
  f.max_box_rows = std::max<int64_t>(room / f.pitch - f.b_rows, 0) / kBM * kBM;
  return f;
}

int smem_bytes(const Plan& plan, const KFit& f) {
  return int((plan.passes * kBM + f.b_rows) * f.pitch + kZBytes);
}

}  // namespace fwd_taps

bool forward_taps_gemm_supports(const ConvTranspose3dParams& p, ScalarKind dtype) {
  using namespace fwd_taps;
  const KFit fit = k_fit(p, padded_channels(p.in_per_group, dtype), dtype);
  if (p.out_per_group > kMaxColumns || fit.col_count > kBN || p.groups > 65535 ||
      fit.k_bytes > kMaxKBytes) {
    return false;
  }
  for (const Axis& a : p.axis) {
    // Run lengths travel in 8 bits; box rows, taps and tiles in int.
    if (a.kernel > 255 || a.out > std::numeric_limits<int>::max() / 2) return false;
  }
  Plan plan;
  if (!plan_forward_taps(p, &plan, fit.max_box_rows) ||
      p.batch * plan.tiles > std::numeric_limits<int>::max()) {
    return false;
  }
  return sm80_kernel_runs_here<forward_taps_kernel<__half, int32_t, 0, Fp32Mma::Tf32>>();
}

namespace {
std::atomic<bool> g_any_stride{false};
}  // namespace

void set_forward_taps_any_stride(bool on) { g_any_stride.store(on); }

bool forward_taps_gemm_pays(const ConvTranspose3dParams& p) {
  // A stride-1 axis with taps makes the box L + (K−1)d long for L outputs:
  // the halo's MMAs and reads were expected to outgrow what folding the taps
  // saves.  Not measured: by MMA work a k3s1 RGB output (64 → 3) would take
  // about 0.4x the phase GEMM's (3.4 box rows × 96 columns an output, against
  // 27 taps × 32 columns), and read x about 8x less often.  The hook lets
  // kernel_ab.py time it (policy taps_any_stride).
  if (g_any_stride.load()) return true;
  for (const Axis& a : p.axis) {
    if (a.kernel > 1 && a.stride < 2) return false;
  }
  return true;
}

cudaError_t launch_forward_taps_gemm(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                     const TensorCoreGemmOperands& ops) {
  using namespace fwd_taps;
  Plan plan;
  const KFit fit = k_fit(p, ops.channels, cfg.dtype);
  if (fit.k_bytes > kMaxKBytes || !plan_forward_taps(p, &plan, fit.max_box_rows)) {
    return cudaErrorInvalidValue;
  }
  if (p.batch == 0 || plan.tiles == 0) return cudaSuccess;
  Args a{};
  a.p = p;
  a.ops = ops;
  std::copy(plan.box, plan.box + 3, a.box);
  a.tiles = plan.tiles;
  a.box_rows = int(plan.box_rows);
  a.passes = int(plan.passes);
  a.outputs = int(plan.box[0].tile * plan.box[1].tile * plan.box[2].tile);
  a.col_count = int(fit.col_count);
  a.b_rows = fit.b_rows;
  a.k_bytes = fit.k_bytes;
  a.pitch = fit.pitch;
  std::copy(&plan.first_row[0][0], &plan.first_row[0][0] + 3 * kMaxTile, &a.first_row[0][0]);
  std::copy(&plan.first_tap[0][0], &plan.first_tap[0][0] + 3 * kMaxTile, &a.first_tap[0][0]);
  std::copy(&plan.count[0][0], &plan.count[0][0] + 3 * kMaxTile, &a.count[0][0]);
  std::copy(plan.row_step, plan.row_step + 3, a.row_step);
  std::copy(plan.tap_step, plan.tap_step + 3, a.tap_step);
  const int smem = smem_bytes(plan, fit);
  cudaError_t err = cudaErrorInvalidValue;
  const bool two_taps = plan.max_count <= 2;
  igemm::dispatch_gemm_types(cfg, [&](auto scalar, auto index) {
    using S = decltype(scalar);
    using I = decltype(index);
    err = launch_fp32_mma<S>(ops.fp32_mma, [&](auto math) {
      constexpr Fp32Mma M = decltype(math)::value;
      return two_taps ? launch_typed<S, I, 2, M>(a, smem, p.batch, p.groups, cfg.stream)
                      : launch_typed<S, I, 0, M>(a, smem, p.batch, p.groups, cfg.stream);
    });
  });
  return err;
}

}  // namespace tconv3d::cuda
