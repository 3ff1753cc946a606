// Depthwise layers (one input and one output channel per group, G = Cin = Cout),
// forward and grad-input.  Both passes are per-channel 3-D stencils,
//
//     dst[n, c, p] = Σ_{valid taps k} src[n, c, q(p, k)] · w[c, 0, k]  (+ bias[c], forward),
//
// memory-bound by a wide margin (a few multiply-adds per element moved), so the
// kernel is built around the loads and stores.  The generic gather kernels find
// each position's taps with 64-bit divisions and walk channels across the
// memory's slow axis; here each block tabulates the runs of taps of every
// destination coordinate (index_math.h) and stages its channels' weights once,
// threads walk the destination in memory order (channels fastest for
// channels_last_3d, in 16-byte vectors where aligned; W fastest otherwise,
// four channels an item so that each tap's index work feeds four independent
// loads), and advance their mixed-radix position by carries instead of
// dividing again.
#include <algorithm>
#include <array>
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

// How a thread's items lie in memory.  ChannelVectors: kVec channels
// contiguous and 16-byte aligned, one load; Channels: one channel; WidthFastest:
// kStrided channels a plane apart, consecutive items along W.
enum class Walk { ChannelVectors, Channels, WidthFastest };
constexpr int kStrided = 4;

// The destination's items as digits, fastest first: (v, w, h, d, n) for the
// channels-fastest walks, (w, h, d, v, n) for W fastest; v indexes the
// item-wide channel vectors of the block's slab.
constexpr int kDigits = 5;

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
  int slab;  // channels per grid row (blockIdx.y), a multiple of the item's
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

template <typename scalar_t, int kVec>
__device__ __forceinline__ Vec<scalar_t, kVec> load_strided(const scalar_t* p, int64_t stride,
                                                            int valid) {
  Vec<scalar_t, kVec> x;
#pragma unroll
  for (int j = 0; j < kVec; ++j) x.v[j] = j < valid ? p[j * stride] : from_acc<scalar_t>(0);
  return x;
}

template <typename scalar_t, Walk kWalk>
constexpr int item_channels() {
  return kWalk == Walk::ChannelVectors ? int(16 / sizeof(scalar_t))
                                       : kWalk == Walk::WidthFastest ? kStrided : 1;
}

template <typename scalar_t, Walk kWalk>
__global__ void __launch_bounds__(kThreads) depthwise_gather_kernel(const DepthwiseArgs a) {
  using acc = acc_t<scalar_t>;
  constexpr int kVec = item_channels<scalar_t, kWalk>();
  constexpr bool kWidthFastest = kWalk == Walk::WidthFastest;
  constexpr int kV = kWidthFastest ? 3 : 0, kW = kWidthFastest ? 0 : 1;
  constexpr int kH = kW + 1, kD = kW + 2, kN = 4;
  extern __shared__ __align__(16) unsigned char smem[];
  const int kvol = a.kernel[0] * a.kernel[1] * a.kernel[2];
  acc* weights = reinterpret_cast<acc*>(smem);
  Run32* runs = reinterpret_cast<Run32*>(smem + kvol * a.slab * sizeof(acc));
  const int D = a.extent[0], H = a.extent[1], W = a.extent[2];
  const int c0 = int(blockIdx.y) * a.slab;
  const scalar_t* w = static_cast<const scalar_t*>(a.weight);

  for (int e = threadIdx.x; e < D + H + W; e += blockDim.x) {
    const int axis = e < D ? 0 : (e < D + H ? 1 : 2);
    runs[e] = run_of(a, axis, e - (axis > 0 ? D : 0) - (axis > 1 ? H : 0));
  }
  for (int e = threadIdx.x; e < kvol * a.slab; e += blockDim.x) {
    const int tap = e / a.slab, c = c0 + e % a.slab;
    const int kw = tap % a.kernel[2], kh = tap / a.kernel[2] % a.kernel[1];
    const int kd = tap / (a.kernel[2] * a.kernel[1]);
    weights[e] = c < a.channels ? to_acc(w[c * a.weight_stride[0] + kd * a.weight_stride[1] +
                                            kh * a.weight_stride[2] + kw * a.weight_stride[3]])
                                : acc(0);
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
    const int ow = digit[kW], oh = digit[kH], od = digit[kD], n = digit[kN];
    const int cl = digit[kV] * kVec, c = c0 + cl;  // first channel, and its place in the slab
    const int valid = min(kVec, a.channels - c);
    if (valid > 0) {
      const Run32 rd = runs[od], rh = runs[D + oh], rw = runs[D + H + ow];
      acc sum[kVec] = {};
      const scalar_t* src_nc = src + n * ss[0] + c * ss[1];
      for (int md = 0; md < rd.count; ++md) {
        const int kd = rd.a + md * a.tap_step[0];
        const scalar_t* src_d = src_nc + int64_t(rd.b + md * a.src_step[0]) * ss[2];
        for (int mh = 0; mh < rh.count; ++mh) {
          const int kh = rh.a + mh * a.tap_step[1];
          const scalar_t* src_row = src_d + int64_t(rh.b + mh * a.src_step[1]) * ss[3];
          const acc* w_row = weights + (kd * a.kernel[1] + kh) * a.kernel[2] * a.slab + cl;
          for (int mw = 0; mw < rw.count; ++mw) {
            const int kw = rw.a + mw * a.tap_step[2];
            const scalar_t* sp = src_row + int64_t(rw.b + mw * a.src_step[2]) * ss[4];
            Vec<scalar_t, kVec> x;
            if constexpr (kWidthFastest) {
              x = load_strided<scalar_t, kVec>(sp, ss[1], valid);
            } else {
              x = load_vec<scalar_t, kVec>(sp);
            }
            acc wt[kVec];
            load_weights<acc, kVec>(w_row + kw * a.slab, wt);
#pragma unroll
            for (int j = 0; j < kVec; ++j) sum[j] += to_acc(x.v[j]) * wt[j];
          }
        }
      }
      scalar_t* dp = dst + n * ds[0] + c * ds[1] + od * ds[2] + oh * ds[3] + ow * ds[4];
      Vec<scalar_t, kVec> out;
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        if (bias != nullptr && j < valid) sum[j] += to_acc(bias[(c + j) * a.bias_stride]);
        out.v[j] = from_acc<scalar_t>(sum[j]);
      }
      if constexpr (kWidthFastest) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          if (j < valid) dp[j * ds[1]] = out.v[j];
        }
      } else {
        *reinterpret_cast<Vec<scalar_t, kVec>*>(dp) = out;
      }
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
  // Channels fastest where both tensors keep channels innermost, in vectors
  // where those are whole and aligned; W fastest otherwise.
  const bool channels_last = a.src_stride[1] == 1 && a.dst_stride[1] == 1 && p.in_channels > 1;
  const bool vectors = channels_last &&
                       vectors_aligned(a.src_stride, src, p.in_channels, vec, elem_bytes) &&
                       vectors_aligned(a.dst_stride, dst, p.in_channels, vec, elem_bytes);
  const Walk walk = !channels_last ? Walk::WidthFastest
                                   : vectors ? Walk::ChannelVectors : Walk::Channels;
  int64_t item_channels = walk == Walk::ChannelVectors ? vec
                          : walk == Walk::WidthFastest ? kStrided
                                                       : 1;
  // The block's weights, [tap][slab] in the accumulator type, within
  // kMaxWeightBytes: slabs of whole items, spread evenly over grid rows.
  int64_t max_slab = kMaxWeightBytes / (kvol * acc_bytes) / item_channels * item_channels;
  if (max_slab == 0) return cudaErrorInvalidConfiguration;  // depthwise_gather_supports
  const int64_t rounded = (p.in_channels + item_channels - 1) / item_channels * item_channels;
  const int64_t slabs = (rounded + max_slab - 1) / max_slab;
  const int64_t slab = (rounded / item_channels + slabs - 1) / slabs * item_channels;
  a.slab = int(slab);
  const int64_t vectors_per_slab = slab / item_channels;
  const std::array<int64_t, kDigits> radix =
      walk == Walk::WidthFastest
          ? std::array<int64_t, kDigits>{a.extent[2], a.extent[1], a.extent[0], vectors_per_slab,
                                         p.batch}
          : std::array<int64_t, kDigits>{vectors_per_slab, a.extent[2], a.extent[1], a.extent[0],
                                         p.batch};
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
  const size_t smem = size_t(kvol * slab * acc_bytes) +
                      size_t(a.extent[0] + a.extent[1] + a.extent[2]) * sizeof(Run32);

  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    switch (walk) {
      case Walk::ChannelVectors:
        depthwise_gather_kernel<scalar_t, Walk::ChannelVectors>
            <<<grid, kThreads, smem, cfg.stream>>>(a);
        break;
      case Walk::Channels:
        depthwise_gather_kernel<scalar_t, Walk::Channels><<<grid, kThreads, smem, cfg.stream>>>(a);
        break;
      case Walk::WidthFastest:
        depthwise_gather_kernel<scalar_t, Walk::WidthFastest>
            <<<grid, kThreads, smem, cfg.stream>>>(a);
        break;
    }
  });
  return cudaGetLastError();
}

}  // namespace

bool depthwise_gather_supports(const ConvTranspose3dParams& p, ScalarKind dtype) {
  if (p.in_per_group != 1 || p.out_per_group != 1) return false;
  // Weights of one item's channels (at most kStrided or 16 bytes' worth) must
  // fit a block.
  const int64_t kvol = p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel;
  const int64_t most_item_channels = std::max<int64_t>(kStrided, vector_alignment(dtype));
  if (kvol * most_item_channels * accumulator_bytes(dtype) > kMaxWeightBytes) return false;
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
