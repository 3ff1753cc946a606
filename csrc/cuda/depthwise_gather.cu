// Depthwise layers (one input and one output channel per group, G = Cin = Cout),
// forward and grad-input.  Both passes are per-channel 3-D stencils,
//
//     dst[n, c, p] = Σ_{valid taps k} src[n, c, q(p, k)] · w[c, 0, k]  (+ bias[c], forward),
//
// memory-bound by a wide margin (a few multiply-adds per element moved), so the
// kernel is built around the loads and stores.  The generic gather kernels find
// each position's taps with 64-bit divisions and walk channels across the
// memory's slow axis; here each block tabulates the runs of taps of every
// destination coordinate (index_math.h) once, threads walk the destination in
// memory order (channels fastest for channels_last_3d, in 16-byte vectors where
// aligned; W fastest otherwise), and advance their mixed-radix position by
// carries instead of dividing again.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../index_math.h"
#include "../scalar_convert.h"
#include "dispatch.cuh"
#include "launch.h"

namespace tconv3d::cuda {
namespace {

// Shared memory: the two together stay within the 48 KB a block gets unasked.
constexpr int kMaxRuns = 2048;               // D + H + W destination coordinates tabulated
constexpr int kMaxWeightBytes = 24 * 1024;   // a block's [tap][channel] weights (accumulator type)
constexpr int kItemsPerThread = 4;           // before the grid stops growing with the work

// One destination coordinate's taps along an axis: tap k = a + m·da reads source
// position b + m·db for m < count (da, db are the axis's).
struct Run32 {
  int a, b, count;
};

// The destination is walked as digits (v, w, h, d, c, n), v fastest: v the
// 16-byte channel vector of a channels-fastest walk, c the channel of a
// W-fastest walk (each a single value in the other walk).
constexpr int kDigits = 6;

struct DepthwiseArgs {
  const void* src;
  const void* weight;
  const void* bias;  // forward only, else nullptr
  void* dst;
  int64_t src_stride[5], dst_stride[5];  // n, c, d, h, w
  int64_t weight_stride[4];              // channel, kd, kh, kw
  int64_t bias_stride;
  Axis axis[3];
  bool forward;
  int extent[3];  // destination D, H, W
  int kernel[3];
  int tap_step[3], src_step[3];  // da, db of every run of the axis
  int channels;
  int slab;  // channels-fastest: channels per grid row (blockIdx.y); else 1
  int radix[kDigits];
  int step[kDigits];  // blockDim.x written in the radix above
  int64_t items;      // per grid row
};

// Run of destination coordinate `coord` along `axis`: the forward gathers the
// inputs that reach an output, grad-input the outputs an input reached.
__device__ Run32 run_of(const DepthwiseArgs& a, int axis, int coord) {
  const Run r = a.forward ? forward_taps(a.axis[axis], coord) : grad_input_taps(a.axis[axis], coord);
  return {int(r.a), int(r.b), int(r.count)};
}

template <typename scalar_t, int kVec>
struct alignas(sizeof(scalar_t) * kVec) Vec {
  scalar_t v[kVec];
};

template <typename scalar_t, int kVec>
__device__ __forceinline__ Vec<scalar_t, kVec> load_vec(const scalar_t* p) {
  if constexpr (kVec == 1) {
    return {{p[0]}};
  } else {
    static_assert(sizeof(Vec<scalar_t, kVec>) == 16);
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    return *reinterpret_cast<const Vec<scalar_t, kVec>*>(&raw);
  }
}

// kVec accumulator-type weights from shared memory, in 16-byte reads where
// they make whole ones (the [tap][channel] rows keep vectors aligned).
template <typename acc, int kVec>
__device__ __forceinline__ void load_weights(const acc* p, acc (&w)[kVec]) {
  if constexpr (kVec * sizeof(acc) % 16 == 0) {
#pragma unroll
    for (int j = 0; j < int(kVec * sizeof(acc) / 16); ++j) {
      const float4 raw = reinterpret_cast<const float4*>(p)[j];
      memcpy(&w[j * 16 / sizeof(acc)], &raw, 16);
    }
  } else {
#pragma unroll
    for (int j = 0; j < kVec; ++j) w[j] = p[j];
  }
}

// kVec: channels per thread item (16 bytes of them, or 1).  kChannelsFastest:
// the walk puts channels innermost and the block's channels' weights sit in
// shared memory as [tap][channel]; otherwise a block's consecutive threads
// share a channel and read its weights from L1.
template <typename scalar_t, int kVec, bool kChannelsFastest>
__global__ void __launch_bounds__(kThreads) depthwise_gather_kernel(const DepthwiseArgs a) {
  using acc = acc_t<scalar_t>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int kvol = a.kernel[0] * a.kernel[1] * a.kernel[2];
  acc* weights = reinterpret_cast<acc*>(smem);
  Run32* runs = reinterpret_cast<Run32*>(smem + (kChannelsFastest ? kvol * a.slab * sizeof(acc) : 0));
  const int D = a.extent[0], H = a.extent[1], W = a.extent[2];
  const int c0 = kChannelsFastest ? int(blockIdx.y) * a.slab : 0;
  const scalar_t* w = static_cast<const scalar_t*>(a.weight);

  for (int e = threadIdx.x; e < D + H + W; e += blockDim.x) {
    const int axis = e < D ? 0 : (e < D + H ? 1 : 2);
    runs[e] = run_of(a, axis, e - (axis > 0 ? D : 0) - (axis > 1 ? H : 0));
  }
  if constexpr (kChannelsFastest) {
    for (int e = threadIdx.x; e < kvol * a.slab; e += blockDim.x) {
      const int tap = e / a.slab, c = c0 + e % a.slab;
      const int kw = tap % a.kernel[2], kh = tap / a.kernel[2] % a.kernel[1];
      const int kd = tap / (a.kernel[2] * a.kernel[1]);
      weights[e] = c < a.channels ? to_acc(w[c * a.weight_stride[0] + kd * a.weight_stride[1] +
                                              kh * a.weight_stride[2] + kw * a.weight_stride[3]])
                                  : acc(0);
    }
  }
  __syncthreads();

  // This block's share of the grid row's items, and this thread's first one.
  const int64_t begin = a.items * blockIdx.x / gridDim.x;
  const int64_t end = a.items * (blockIdx.x + 1) / gridDim.x;
  int digit[kDigits];
  {
    int64_t rest = begin + threadIdx.x;
    for (int i = 0; i < kDigits; ++i) {
      digit[i] = int(rest % a.radix[i]);
      rest /= a.radix[i];
    }
  }
  const scalar_t* src = static_cast<const scalar_t*>(a.src);
  scalar_t* dst = static_cast<scalar_t*>(a.dst);
  const auto* bias = static_cast<const scalar_t*>(a.bias);
  const int64_t* ss = a.src_stride;
  const int64_t* ds = a.dst_stride;

  for (int64_t item = begin + threadIdx.x; item < end; item += blockDim.x) {
    const int v = digit[0], ow = digit[1], oh = digit[2], od = digit[3], n = digit[5];
    const int c = kChannelsFastest ? c0 + v * kVec : digit[4];
    if (c < a.channels) {
      const Run32 rd = runs[od], rh = runs[D + oh], rw = runs[D + H + ow];
      acc sum[kVec] = {};
      const scalar_t* src_nc = src + n * ss[0] + c * ss[1];
      const scalar_t* w_c = w + c * a.weight_stride[0];
      for (int md = 0; md < rd.count; ++md) {
        const int kd = rd.a + md * a.tap_step[0];
        const scalar_t* src_d = src_nc + int64_t(rd.b + md * a.src_step[0]) * ss[2];
        for (int mh = 0; mh < rh.count; ++mh) {
          const int kh = rh.a + mh * a.tap_step[1];
          const scalar_t* src_row = src_d + int64_t(rh.b + mh * a.src_step[1]) * ss[3];
          const int tap_row = (kd * a.kernel[1] + kh) * a.kernel[2];
          for (int mw = 0; mw < rw.count; ++mw) {
            const int kw = rw.a + mw * a.tap_step[2];
            const Vec<scalar_t, kVec> x =
                load_vec<scalar_t, kVec>(src_row + int64_t(rw.b + mw * a.src_step[2]) * ss[4]);
            if constexpr (kChannelsFastest) {
              acc wt[kVec];
              load_weights<acc, kVec>(weights + (tap_row + kw) * a.slab + (c - c0), wt);
#pragma unroll
              for (int j = 0; j < kVec; ++j) sum[j] += to_acc(x.v[j]) * wt[j];
            } else {
              sum[0] += to_acc(x.v[0]) * to_acc(__ldg(w_c + kd * a.weight_stride[1] +
                                                      kh * a.weight_stride[2] +
                                                      kw * a.weight_stride[3]));
            }
          }
        }
      }
      Vec<scalar_t, kVec> out;
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        if (bias != nullptr) sum[j] += to_acc(bias[(c + j) * a.bias_stride]);
        out.v[j] = from_acc<scalar_t>(sum[j]);
      }
      *reinterpret_cast<Vec<scalar_t, kVec>*>(dst + n * ds[0] + c * ds[1] + od * ds[2] +
                                               oh * ds[3] + ow * ds[4]) = out;
    }
    // Advance by blockDim.x: every digit and step is below its radix, so one
    // carry per digit suffices.
    int carry = 0;
#pragma unroll
    for (int i = 0; i < kDigits; ++i) {
      digit[i] += a.step[i] + carry;
      carry = digit[i] >= a.radix[i];
      if (carry) digit[i] -= a.radix[i];
    }
  }
}

int64_t vector_alignment(ScalarKind dtype) {
  switch (dtype) {
    case ScalarKind::Float64:
      return 2;
    case ScalarKind::Float32:
      return 4;
    default:
      return 8;
  }
}

int64_t accumulator_bytes(ScalarKind dtype) { return dtype == ScalarKind::Float64 ? 8 : 4; }

// Whether every offset a 16-byte vector of `vec` channels is read or written
// at is a multiple of 16 bytes.
bool vectors_aligned(const int64_t stride[5], const void* ptr, int64_t channels, int64_t vec,
                     int64_t elem_bytes) {
  if (stride[1] != 1 || channels % vec != 0) return false;
  for (int i : {0, 2, 3, 4}) {
    if (stride[i] % vec != 0) return false;
  }
  return reinterpret_cast<uintptr_t>(ptr) % (vec * elem_bytes) == 0;
}

void copy_strides(const Strides5& s, int64_t out[5]) {
  out[0] = s.n;
  out[1] = s.c;
  out[2] = s.d;
  out[3] = s.h;
  out[4] = s.w;
}

cudaError_t launch_depthwise(bool forward, const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                             const void* src, const void* weight, const void* bias, void* dst) {
  DepthwiseArgs a{};
  a.src = src;
  a.weight = weight;
  a.bias = bias;
  a.dst = dst;
  copy_strides(forward ? p.input : p.output, a.src_stride);
  copy_strides(forward ? p.output : p.input, a.dst_stride);
  a.weight_stride[0] = p.weight.n;
  a.weight_stride[1] = p.weight.d;
  a.weight_stride[2] = p.weight.h;
  a.weight_stride[3] = p.weight.w;
  a.bias_stride = p.bias_stride;
  a.forward = forward;
  a.channels = int(p.in_channels);
  int64_t kvol = 1;
  for (int i = 0; i < 3; ++i) {
    const Axis& ax = p.axis[i];
    a.axis[i] = ax;
    a.extent[i] = int(forward ? ax.out : ax.in);
    a.kernel[i] = int(ax.kernel);
    a.tap_step[i] = int(forward ? ax.tap_step : 1);
    a.src_step[i] = int(forward ? -ax.in_step : ax.dilation);
    kvol *= ax.kernel;
  }
  const int64_t positions = p.batch * a.extent[0] * a.extent[1] * a.extent[2];
  if (positions == 0 || p.in_channels == 0) return cudaSuccess;

  const int64_t elem_bytes = cfg.dtype == ScalarKind::Float64 ? 8
                             : cfg.dtype == ScalarKind::Float32 ? 4
                                                                : 2;
  const int64_t vec = vector_alignment(cfg.dtype);
  const int64_t acc_bytes = accumulator_bytes(cfg.dtype);
  // Channels fastest where both tensors keep channels innermost and the
  // weights of at least one vector of channels fit the block.
  const bool channels_last = a.src_stride[1] == 1 && a.dst_stride[1] == 1 && p.in_channels > 1;
  const bool vectors = channels_last &&
                       vectors_aligned(a.src_stride, src, p.in_channels, vec, elem_bytes) &&
                       vectors_aligned(a.dst_stride, dst, p.in_channels, vec, elem_bytes);
  const int64_t item_channels = vectors ? vec : 1;
  const int64_t max_slab = kMaxWeightBytes / (kvol * acc_bytes) / item_channels * item_channels;
  const bool channels_fastest = channels_last && max_slab >= item_channels;
  int64_t slab = 1, slabs = 1;
  if (channels_fastest) {
    const int64_t rounded = (p.in_channels + item_channels - 1) / item_channels * item_channels;
    slabs = (rounded + max_slab - 1) / max_slab;
    slab = (rounded / item_channels + slabs - 1) / slabs * item_channels;
  }
  a.slab = int(slab);
  const int64_t radix[kDigits] = {channels_fastest ? slab / item_channels : 1, a.extent[2],
                                  a.extent[1], a.extent[0],
                                  channels_fastest ? 1 : p.in_channels, p.batch};
  int64_t rest = kThreads;
  a.items = 1;
  for (int i = 0; i < kDigits; ++i) {
    a.radix[i] = int(radix[i]);
    a.step[i] = int(rest % radix[i]);
    rest /= radix[i];
    a.items *= radix[i];
  }
  const int64_t target = (a.items + kThreads * kItemsPerThread - 1) / (kThreads * kItemsPerThread);
  const int64_t resident = std::max<int64_t>(1, 8 * int64_t(sm_count()) / slabs);
  const dim3 grid(unsigned(std::max<int64_t>(1, std::min(target, resident))), unsigned(slabs));
  const size_t smem = size_t(channels_fastest ? kvol * slab * acc_bytes : 0) +
                      size_t(a.extent[0] + a.extent[1] + a.extent[2]) * sizeof(Run32);

  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    constexpr int kVec = int(16 / sizeof(scalar_t));
    if (!channels_fastest) {
      depthwise_gather_kernel<scalar_t, 1, false><<<grid, kThreads, smem, cfg.stream>>>(a);
    } else if (vectors) {
      depthwise_gather_kernel<scalar_t, kVec, true><<<grid, kThreads, smem, cfg.stream>>>(a);
    } else {
      depthwise_gather_kernel<scalar_t, 1, true><<<grid, kThreads, smem, cfg.stream>>>(a);
    }
  });
  return cudaGetLastError();
}

}  // namespace

bool depthwise_gather_supports(const ConvTranspose3dParams& p) {
  if (p.in_per_group != 1 || p.out_per_group != 1) return false;
  int64_t coords_out = 0, coords_in = 0;
  for (const Axis& ax : p.axis) {
    coords_out += ax.out;
    coords_in += ax.in;
  }
  // The walk's digits and the grid rows are 32-bit; the channel count bounds
  // the slabs (grid.y) since a slab holds at least one channel.
  return std::max(coords_out, coords_in) <= kMaxRuns && p.batch <= INT32_MAX &&
         p.in_channels <= 65535;
}

cudaError_t launch_depthwise_forward(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                     const void* input, const void* weight, const void* bias,
                                     void* output) {
  return launch_depthwise(true, p, cfg, input, weight, bias, output);
}

cudaError_t launch_depthwise_grad_input(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                        const void* grad_output, const void* weight,
                                        void* grad_input) {
  return launch_depthwise(false, p, cfg, grad_output, weight, nullptr, grad_input);
}

}  // namespace tconv3d::cuda
