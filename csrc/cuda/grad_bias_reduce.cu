// Grad-bias: grad_output summed over batch and space per channel, with the
// same fixed-order split reduction as grad-weight.
//
// Three kernels, by grad_output's layout:
// - dense channels-last, a [rows][C] matrix (rows = N·D·H·W): each block sums
//   a contiguous range of rows with coalesced 16-byte loads, each thread
//   keeping the sums of one fixed group of channels, then folds its threads'
//   sums per channel in a fixed tree;
// - contiguous D·H·W planes (NCDHW): one block per (channel, range of that
//   channel's N planes laid end to end), 16-byte loads;
// - anything else: one block per (channel, split) walks its positions.
// The split partials are then added per channel in a fixed order, by a
// second kernel that is launched before the first ends where it can be
// (launch_combine_channel_partials).
//
// The first two are bound by how many bytes each SM keeps in flight, so each
// thread issues kLoadsInFlight loads before adding any (sum_vectors): a loop
// over an unknown trip count, even unrolled, tests its exit between loads and
// the compiler does not hoist a load above that branch — one 16-byte load in
// flight a thread, 1.86 TB/s on a 64 MiB bf16 grad_output on the H200.  The
// grid is at most one wave of kBlocksPerSm blocks on each of the H200's SMs.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../direct_gather.h"
#include "deterministic_reduce.cuh"
#include "launch.h"
#include "mixed_radix.h"

namespace tconv3d::cuda {
namespace {

// 8 × 16 bytes a thread, 128 KB an SM at four blocks: a few times what an
// SM's share of the bandwidth times the memory's loaded latency needs (about
// 36 B/ns × 1 us on the H200).
constexpr int kLoadsInFlight = 8;
// The launch bounds hold the streaming kernels to 64 registers for this.
constexpr int kBlocksPerSm = 4;
// Shape-only (splits must not depend on the GPU): one wave on the H200's 132
// SMs, so no block waits for a second one while the memory idles.
constexpr int64_t kWaveBlocks = kBlocksPerSm * 132;
// At least two rounds of loads per thread: small tensors take fewer blocks,
// and so fewer partials to combine.
constexpr int64_t kMinBlockLoads = 2 * kThreads * kLoadsInFlight;

// V elements moved as one aligned load.
template <typename scalar_t, int V>
struct alignas(sizeof(scalar_t) * V) Elements {
  scalar_t v[V];
  // +0 is all-zero bits in each storage type (whose default constructors,
  // the 16-bit ones', may leave an element unset).
  __device__ __forceinline__ static Elements zeros() {
    Elements z;
    memset(&z, 0, sizeof(z));
    return z;
  }
};

// The main kernels let the combine kernel be placed on the SMs they leave
// (programmatic dependent launch, sm_90); it waits for their writes in
// wait_for_partials.  Both are no-ops where the launch did not ask for it.
__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void wait_for_partials() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// A thread's vectors in channels-last rows: one column, every step-th row.
template <typename Vec>
struct StridedWalk {
  const Vec* at;
  int64_t stride;
  __device__ __forceinline__ Vec load() const { return *at; }
  __device__ __forceinline__ void advance() { at += stride; }
};

// A channel's N planes of P vectors (V elements each), laid end to end as
// positions k = n · P + i, and the constant steps of a walk over every
// kThreads-th position with no division: kThreads = whole planes · P +
// in_plane_step.  Strides in vectors.  Set on the host, so that the walk's
// constants stay in the parameter bank (a register each pushed the 16-bit
// kernel past 64).
struct PlanesGeometry {
  int64_t channel_stride;
  int64_t batch_stride;
  int64_t plane;          // P
  int64_t positions;      // N · P
  int64_t step;           // whole planes · batch stride + in_plane_step
  int64_t in_plane_step;
  int64_t to_next_plane;  // batch stride − P: from a plane's end to the next one's start
};

PlanesGeometry planes_geometry(const ConvTranspose3dParams& p, int vec) {
  const int64_t P = p.axis[0].out * p.axis[1].out * p.axis[2].out / vec;
  const int64_t batch_stride = p.output.n / vec;
  return {p.output.c / vec,
          batch_stride,
          P,
          p.batch * P,
          (kThreads / P) * batch_stride + kThreads % P,
          kThreads % P,
          batch_stride - P};
}

template <typename Vec>
struct PlanesWalk {
  const Vec* at;
  int64_t in_plane;  // i
  const PlanesGeometry g;
  __device__ __forceinline__ Vec load() const { return *at; }
  __device__ __forceinline__ void advance() {
    at += g.step;
    in_plane += g.in_plane_step;
    if (in_plane >= g.plane) {
      in_plane -= g.plane;
      at += g.to_next_plane;
    }
  }
};

// add(x) for each of the `count` vectors the walk visits, in that order.  A
// round issues all of its loads before adding any.  In the last one the loads
// past `count` repeat the last vector and are added as zeros, which leave the
// sums as they are (a sum starts at +0 and so is never −0): skipping those
// adds instead would let the compiler sink their loads below the first add.
template <typename Vec, typename Walk, typename Add>
__device__ __forceinline__ void sum_vectors(Walk walk, int64_t count, Add add) {
  for (; count > 0; count -= kLoadsInFlight) {
    Vec x[kLoadsInFlight];
#pragma unroll
    for (int j = 0; j < kLoadsInFlight; ++j) {
      x[j] = walk.load();
      if (j + 1 < count) walk.advance();
    }
#pragma unroll
    for (int j = 0; j < kLoadsInFlight; ++j) add(j < count ? x[j] : Vec::zeros());
  }
}

// A channel's sum: the result itself when there is one split, else that
// split's partial (partial[split · C + c], combined per channel afterwards).
template <typename scalar_t>
__device__ __forceinline__ void store_channel_sum(acc_t<scalar_t> sum, int64_t c, int64_t split,
                                                  int64_t splits, int64_t channels,
                                                  scalar_t* grad_b, int64_t grad_b_stride,
                                                  acc_t<scalar_t>* partial) {
  if (splits == 1) {
    grad_b[c * grad_b_stride] = from_acc<scalar_t>(sum);
  } else {
    partial[split * channels + c] = sum;
  }
}

// Any strides: block (c, split) walks the split's share of the N·D·H·W
// positions, thread t every kThreads-th of them (not whole W rows: a long row
// summed by one thread would grow the error with its length), then the
// block's fixed tree.
template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    grad_bias_reduce_kernel(const ConvTranspose3dParams p, const scalar_t* __restrict__ grad_out,
                            scalar_t* __restrict__ grad_b, int64_t grad_b_stride,
                            acc_t<scalar_t>* __restrict__ partial, int64_t splits) {
  const int64_t co = blockIdx.x, split = blockIdx.y;
  const int64_t radix[4] = {p.axis[2].out, p.axis[1].out, p.axis[0].out, p.batch};
  const Strides5 s = p.output;
  const index_t stride[4] = {index_t(s.w), index_t(s.h), index_t(s.d), index_t(s.n)};
  const int64_t positions = radix[0] * radix[1] * radix[2] * radix[3];
  const int64_t begin = positions * split / splits, end = positions * (split + 1) / splits;
  int64_t digit[4], step[4];
  digits_of(begin + threadIdx.x, radix, digit);
  digits_of(blockDim.x, radix, step);
  const scalar_t* g = grad_out + index_t(co) * index_t(s.c);
  acc_t<scalar_t> acc = 0;
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    acc += to_acc(g[index_t(digit[0]) * stride[0] + index_t(digit[1]) * stride[1] +
                    index_t(digit[2]) * stride[2] + index_t(digit[3]) * stride[3]]);
    advance_digits(radix, step, digit);
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) {
    store_channel_sum(acc, co, split, splits, p.out_channels, grad_b, grad_b_stride, partial);
  }
}

// Channels-last rows.  V channels per thread (16 bytes when C allows it);
// C / V ≤ kThreads.  Thread t owns vector column t % (C/V) of the rows
// r ≡ t / (C/V) (mod step) of the block's range.
template <typename scalar_t, int V>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    grad_bias_rows_kernel(const scalar_t* __restrict__ grad_out, int64_t rows, int channels,
                          int64_t splits, scalar_t* __restrict__ grad_b, int64_t grad_b_stride,
                          acc_t<scalar_t>* __restrict__ partial) {
  allow_dependent_launch();
  using acc_type = acc_t<scalar_t>;
  using Vec = Elements<scalar_t, V>;
  __shared__ acc_type sums[kThreads * V];
  const int cols = channels / V, step = kThreads / cols;
  const int t = threadIdx.x, col = t % cols, row = t / cols;
  const int64_t begin = rows * blockIdx.x / splits, end = rows * (blockIdx.x + 1) / splits;
  acc_type acc[V] = {};
  if (row < step && begin + row < end) {
    const Vec* at = reinterpret_cast<const Vec*>(grad_out) + (begin + row) * cols + col;
    const StridedWalk<Vec> walk{at, int64_t(step) * cols};
    sum_vectors<Vec>(walk, (end - begin - row + step - 1) / step, [&](const Vec& x) {
#pragma unroll
      for (int v = 0; v < V; ++v) acc[v] += to_acc(x.v[v]);
    });
  }
  if (row < step) {
#pragma unroll
    for (int v = 0; v < V; ++v) sums[row * channels + col * V + v] = acc[v];
  }
  __syncthreads();
  // Fixed tree over the step row sums of each channel: fold the upper half
  // onto the lower, all threads at once (log2(step) barriers).
  for (int live = step; live > 1;) {
    const int half = (live + 1) / 2;
    for (int e = t; e < (live - half) * channels; e += kThreads) {
      sums[e] += sums[e + half * channels];
    }
    live = half;
    __syncthreads();
  }
  for (int c = t; c < channels; c += kThreads) {
    store_channel_sum(sums[c], c, blockIdx.x, splits, channels, grad_b, grad_b_stride, partial);
  }
}

// Contiguous planes: block (c, split) sums the split-th of `splits` equal
// ranges of channel c's positions, one vector of V elements per load.
template <typename scalar_t, int V>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    grad_bias_planes_kernel(const scalar_t* __restrict__ grad_out, const PlanesGeometry g,
                            int64_t splits, scalar_t* __restrict__ grad_b, int64_t grad_b_stride,
                            acc_t<scalar_t>* __restrict__ partial) {
  allow_dependent_launch();
  using acc_type = acc_t<scalar_t>;
  using Vec = Elements<scalar_t, V>;
  const int64_t c = blockIdx.x, split = blockIdx.y;
  const int64_t begin = g.positions * split / splits, end = g.positions * (split + 1) / splits;
  const int64_t first = begin + threadIdx.x;
  acc_type acc = 0;
  if (first < end) {
    const int64_t n = first / g.plane, in_plane = first % g.plane;
    const Vec* at = reinterpret_cast<const Vec*>(grad_out) + c * g.channel_stride +
                    n * g.batch_stride + in_plane;
    // One channel: a vector's elements are added first, then the vector to
    // the thread's sum (one accumulator, not V: 64 registers hold the loads).
    sum_vectors<Vec>(PlanesWalk<Vec>{at, in_plane, g}, (end - first + kThreads - 1) / kThreads,
                     [&](const Vec& x) {
                       acc_type vector_sum = to_acc(x.v[0]);
#pragma unroll
                       for (int v = 1; v < V; ++v) vector_sum += to_acc(x.v[v]);
                       acc += vector_sum;
                     });
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) {
    store_channel_sum(acc, c, split, splits, gridDim.x, grad_b, grad_b_stride, partial);
  }
}

// grad_b[c] = fixed-order sum of partial[s · C + c] over s: one block per
// channel, each thread a strided share of the splits, then the block's tree.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    combine_channel_partials_kernel(const acc_t<scalar_t>* __restrict__ partial, int64_t splits,
                                    int channels, scalar_t* __restrict__ grad_b,
                                    int64_t grad_b_stride) {
  wait_for_partials();
  const int c = blockIdx.x;
  acc_t<scalar_t> acc = 0;
  for (int64_t s = threadIdx.x; s < splits; s += kThreads) acc += partial[s * channels + c];
  acc = block_sum(acc);
  if (threadIdx.x == 0) grad_b[c * grad_b_stride] = from_acc<scalar_t>(acc);
}

// After the rows or planes kernel: launched as its dependent where its sm_90a
// code runs, so that its blocks are already placed, waiting in
// wait_for_partials, when the last partial lands, instead of its launch
// starting only then.  Elsewhere an ordinary launch.
template <typename scalar_t>
cudaError_t launch_combine_channel_partials(const acc_t<scalar_t>* partial, int64_t splits,
                                            int channels, scalar_t* grad_b, int64_t grad_b_stride,
                                            cudaStream_t stream) {
  constexpr auto kernel = combine_channel_partials_kernel<scalar_t>;
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned int>(channels));
  config.blockDim = dim3(kThreads);
  config.stream = stream;
  config.attrs = &overlap;
  config.numAttrs = kernel_runs_here<kernel, ArchNeed::Sm90a>() ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, partial, splits, channels, grad_b, grad_b_stride);
}

int64_t bias_rows(const ConvTranspose3dParams& p) {
  return p.batch * p.axis[0].out * p.axis[1].out * p.axis[2].out;
}

// Splits of `loads` loads (per channel for Planes, whose grid is C × splits):
// kMinBlockLoads or more each, at most `max_splits`.
int64_t stream_splits(int64_t loads, int64_t max_splits) {
  const int64_t splits = (loads + kMinBlockLoads - 1) / kMinBlockLoads;
  return splits < 1 ? 1 : splits > max_splits ? max_splits : splits;
}

enum class BiasKernel { Rows, Planes, Strided };

struct BiasPlan {
  BiasKernel kernel;
  int vec;  // elements per load (Rows, Planes)
  int64_t splits;
};

// Shape, strides and address only, so the op layer sizes the workspace with
// the same answer the launch uses.
BiasPlan bias_plan(const ConvTranspose3dParams& p, ScalarKind dtype, const void* grad_output) {
  const Strides5 s = p.output;
  const int64_t C = p.out_channels, W = p.axis[2].out, H = p.axis[1].out, D = p.axis[0].out;
  const int64_t vec = dtype == ScalarKind::Float64 ? 2 : dtype == ScalarKind::Float32 ? 4 : 8;
  const bool aligned = reinterpret_cast<uintptr_t>(grad_output) % 16 == 0;
  const int64_t rows = bias_rows(p), plane = D * H * W;
  const bool rows_dense = s.c == 1 && (W == 1 || s.w == C) && (H == 1 || s.h == W * C) &&
                          (D == 1 || s.d == H * W * C) && (p.batch == 1 || s.n == D * H * W * C);
  if (rows_dense && C > 0 && C <= kThreads * vec) {
    if (C % vec == 0 && C / vec <= kThreads && aligned) {
      return {BiasKernel::Rows, int(vec), stream_splits(rows * (C / vec), kWaveBlocks)};
    }
    if (C <= kThreads) return {BiasKernel::Rows, 1, stream_splits(rows * C, kWaveBlocks)};
  }
  const bool planes = (W == 1 || s.w == 1) && (H == 1 || s.h == W) && (D == 1 || s.d == H * W);
  if (planes && C > 0 && plane > 0) {
    const bool vectors = aligned && plane % vec == 0 && (C == 1 || s.c % vec == 0) &&
                         (p.batch == 1 || s.n % vec == 0);
    const int v = vectors ? int(vec) : 1;
    const int64_t in_one_wave = kWaveBlocks / C;  // a channel's splits with C × splits ≤ a wave
    return {BiasKernel::Planes, v,
            stream_splits(p.batch * (plane / v), in_one_wave < 1 ? 1 : in_one_wave)};
  }
  return {BiasKernel::Strided, 1, choose_splits(C, rows * W)};
}

}  // namespace

cudaError_t launch_combine_channel_sums(ScalarKind dtype, const float* partial, int64_t rows,
                                        int channels, void* grad_bias, int64_t grad_bias_stride,
                                        cudaStream_t stream) {
  cudaError_t launched = cudaErrorInvalidValue;
  dispatch_scalar(dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    if constexpr (std::is_same_v<acc_t<scalar_t>, float>) {
      launched = launch_combine_channel_partials<scalar_t>(
          partial, rows, channels, static_cast<scalar_t*>(grad_bias), grad_bias_stride, stream);
    }
  });
  return launched;
}

int64_t grad_bias_splits(const ConvTranspose3dParams& p, ScalarKind dtype,
                         const void* grad_output) {
  return bias_plan(p, dtype, grad_output).splits;
}

cudaError_t launch_grad_bias_reduce(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                    const void* grad_output, void* grad_bias,
                                    int64_t grad_bias_stride, void* workspace) {
  const BiasPlan bp = bias_plan(p, cfg.dtype, grad_output);
  const int64_t splits = bp.splits;
  if (p.out_channels == 0) return cudaSuccess;
  if (splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  cudaError_t combined = cudaSuccess;
  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    auto* partial = static_cast<acc_t<scalar_t>*>(workspace);
    auto* gb = static_cast<scalar_t*>(grad_bias);
    const auto* gy = static_cast<const scalar_t*>(grad_output);
    constexpr int kVec = int(16 / sizeof(scalar_t));
    const int C = int(p.out_channels);
    if (bp.kernel == BiasKernel::Rows) {
      const auto grid = static_cast<unsigned int>(splits);
      if (bp.vec == kVec) {
        grad_bias_rows_kernel<scalar_t, kVec><<<grid, kThreads, 0, cfg.stream>>>(
            gy, bias_rows(p), C, splits, gb, grad_bias_stride, partial);
      } else {
        grad_bias_rows_kernel<scalar_t, 1><<<grid, kThreads, 0, cfg.stream>>>(
            gy, bias_rows(p), C, splits, gb, grad_bias_stride, partial);
      }
    } else if (bp.kernel == BiasKernel::Planes) {
      const dim3 grid(static_cast<unsigned int>(C), static_cast<unsigned int>(splits));
      const PlanesGeometry g = planes_geometry(p, bp.vec);
      if (bp.vec == kVec) {
        grad_bias_planes_kernel<scalar_t, kVec><<<grid, kThreads, 0, cfg.stream>>>(
            gy, g, splits, gb, grad_bias_stride, partial);
      } else {
        grad_bias_planes_kernel<scalar_t, 1><<<grid, kThreads, 0, cfg.stream>>>(
            gy, g, splits, gb, grad_bias_stride, partial);
      }
    }
    if (bp.kernel != BiasKernel::Strided) {
      if (splits > 1) {
        combined = launch_combine_channel_partials<scalar_t>(partial, splits, C, gb,
                                                             grad_bias_stride, cfg.stream);
      }
      return;
    }
    dispatch_index(cfg.wide_index, [&](auto index) {
      using index_t = decltype(index);
      const dim3 grid(static_cast<unsigned int>(p.out_channels), static_cast<unsigned int>(splits));
      grad_bias_reduce_kernel<scalar_t, index_t><<<grid, kThreads, 0, cfg.stream>>>(
          p, gy, gb, grad_bias_stride, partial, splits);
    });
    if (splits > 1) {
      const Strides5 dst{0, grad_bias_stride, 0, 0, 0};
      combined = launch_combine_partials<scalar_t>(partial, splits, p.out_channels,
                                                   p.out_channels, 1, 1, 1, dst, gb, cfg.stream);
    }
  });
  const cudaError_t launched = cudaGetLastError();
  return launched != cudaSuccess ? launched : combined;
}

}  // namespace tconv3d::cuda
