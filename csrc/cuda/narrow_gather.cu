// Forward and grad-input of layers whose groups are narrow (depthwise, RGB-like,
// a few channels a group): tensor-core tiles would be mostly padding, and the
// work is a few multiply-adds per element moved, so these kernels are built
// around the loads and stores.  Both passes are one per-group stencil,
//
//     dst[n, c, p] = Σ_{j < S} Σ_{valid taps k} src[n, g(c)·S + j, q(p, k)] · Wt(c, j, k)
//                    (+ bias[c], forward),
//
// with g(c) = c / D for D destination and S source channels a group (forward:
// D = Cout/G, S = Cin/G, Wt = w[g·S + j, c − g·D, k]; grad-input: D = Cin/G,
// S = Cout/G, Wt = w[c, j, k]).  Each block tabulates the runs of taps of every
// destination coordinate (index_math.h) and stages its channels' weights as
// [tap][j][channel] once; threads walk the destination in memory order
// (channels fastest for channels_last_3d, in 16-byte vectors where aligned;
// W fastest otherwise, four channels an item where groups split in fours, so
// that each tap's index work feeds four independent loads), and advance their
// mixed-radix position by carries instead of dividing again (the plan and the
// walk: narrow_gather_plan.h).  Channels-last, a position's S source channels
// come as 8- or 16-byte vectors where aligned (the plan's src_vector): a warp's
// 32 positions lie S channels apart, so one element a load cost as many L1
// wavefronts as a whole vector, S times a tap (the 4 -> 8 grad-input spent
// its time there).  An item of the group form (all but depthwise layers'
// walks of several channels an item) holds two or four samples' positions
// (the plan's samples), so that each weight read from shared memory feeds
// them all: a warp's 16-byte read of one address costs four wavefronts, 32 a
// tap of 8 x 4 channels, two thirds of that grad-input's L1 traffic once its
// source loads were vectors (ncu).  Each sum runs over the taps and j in the
// same order in every form.
#include "narrow_gather.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../index_math.h"
#include "../scalar_convert.h"
#include "dispatch.cuh"
#include "narrow_gather_plan.h"
#include "vector_access.cuh"

namespace tconv3d::cuda {
namespace {

using namespace narrow;
constexpr int kItemsPerThread = 4;  // before the grid stops growing with the work

// One destination coordinate's taps along an axis: tap k = a + m·da reads source
// position b + m·db for m < count (da, db are the axis's).
struct Run32 {
  int a, b, count;
};

struct NarrowArgs {
  const void* src;
  const void* weight;
  const void* bias;  // forward only, else nullptr
  void* dst;
  int64_t src_stride[5], dst_stride[5];  // n, c, d, h, w
  int64_t weight_stride[5];              // w's own: ci, co-in-group, kd, kh, kw
  int64_t bias_stride;
  Axis axis[3];
  bool forward;
  int extent[3];  // destination D, H, W
  int kernel[3];
  int tap_step[3], src_step[3];  // da, db of every run of the axis
  int channels;                  // destination channels
  int dst_per_group, src_per_group;
  int batch;
  int slab;  // channels per grid row (blockIdx.y), a multiple of the item's
  int item_channels;  // the plan's: ChannelGroups items are a group's channels
  int radix[kDigits];
  int step[kDigits];  // blockDim.x written in the radix above
  int64_t items;      // per grid row
};

// Run of destination coordinate `coord` along `axis`: the forward gathers the
// inputs that reach an output, grad-input the outputs an input reached.
__device__ Run32 run_of(const NarrowArgs& a, int axis, int coord) {
  const Run r = a.forward ? forward_taps(a.axis[axis], coord) : grad_input_taps(a.axis[axis], coord);
  return {int(r.a), int(r.b), int(r.count)};
}

template <typename scalar_t, int kVec>
__device__ __forceinline__ Vec<scalar_t, kVec> load_strided(const scalar_t* p, int64_t stride,
                                                            int valid) {
  Vec<scalar_t, kVec> x;
#pragma unroll
  for (int j = 0; j < kVec; ++j) x.v[j] = j < valid ? p[j * stride] : from_acc<scalar_t>(0);
  return x;
}

// kVec accumulator-type weights from shared memory, in 16-byte reads where
// they make whole ones (the [tap][j][channel] rows keep vectors aligned).
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

// Channels an item holds at most (ChannelGroups: its group's, up to kStrided).
template <typename scalar_t, Walk kWalk>
constexpr int item_channels() {
  return kWalk == Walk::ChannelVectors                                 ? int(16 / sizeof(scalar_t))
         : kWalk == Walk::WidthFastest || kWalk == Walk::ChannelGroups ? kStrided
                                                                       : 1;
}

template <Walk kWalk>
constexpr bool walks_width() {
  return kWalk == Walk::WidthFastest || kWalk == Walk::Width;
}

// kDepthwise: one source and one destination channel a group, so an item's
// channels read as many source channels side by side (one load of them).
// Otherwise an item's channels share a group, and each of its S source
// channels is a value every channel of the item uses, loaded kSrcVector at a
// time, for kSamples samples (plan.samples).
template <typename scalar_t, Walk kWalk, bool kDepthwise, int kSrcVector, int kSamples>
__global__ void __launch_bounds__(kThreads) narrow_gather_kernel(const NarrowArgs a) {
  using acc = acc_t<scalar_t>;
  constexpr int kVec = item_channels<scalar_t, kWalk>();
  constexpr bool kWidthFastest = walks_width<kWalk>();
  // Items whose channels are loaded and stored one at a time, some masked.
  constexpr bool kStridedItems = kWidthFastest || kWalk == Walk::ChannelGroups;
  const int width = kWalk == Walk::ChannelGroups ? a.item_channels : kVec;
  constexpr int kV = kWidthFastest ? 3 : 0, kW = kWidthFastest ? 0 : 1;
  constexpr int kH = kW + 1, kD = kW + 2, kN = 4;
  static_assert(kDepthwise ? kSamples == 1 : kSamples >= 2);
  extern __shared__ __align__(16) unsigned char smem[];
  const int kvol = a.kernel[0] * a.kernel[1] * a.kernel[2];
  const int S = a.src_per_group, Dg = a.dst_per_group;
  acc* weights = reinterpret_cast<acc*>(smem);
  Run32* runs = reinterpret_cast<Run32*>(smem + kvol * S * a.slab * sizeof(acc));
  const int D = a.extent[0], H = a.extent[1], W = a.extent[2];
  const int c0 = int(blockIdx.y) * a.slab;
  const scalar_t* w = static_cast<const scalar_t*>(a.weight);
  const int64_t* ws = a.weight_stride;

  for (int e = threadIdx.x; e < D + H + W; e += blockDim.x) {
    const int axis = e < D ? 0 : (e < D + H ? 1 : 2);
    runs[e] = run_of(a, axis, e - (axis > 0 ? D : 0) - (axis > 1 ? H : 0));
  }
  for (int e = threadIdx.x; e < kvol * S * a.slab; e += blockDim.x) {
    const int c = c0 + e % a.slab, j = e / a.slab % S, tap = e / (a.slab * S);
    const int kw = tap % a.kernel[2], kh = tap / a.kernel[2] % a.kernel[1];
    const int kd = tap / (a.kernel[2] * a.kernel[1]);
    acc v = 0;
    if (c < a.channels) {
      const int g = c / Dg;
      const int64_t at = a.forward ? (g * S + j) * ws[0] + (c - g * Dg) * ws[1]
                                   : c * ws[0] + j * ws[1];
      v = to_acc(w[at + kd * ws[2] + kh * ws[3] + kw * ws[4]]);
    }
    weights[e] = v;
  }
  __syncthreads();

  // This block's share of the grid row's items, and this thread's first one.
  const int64_t begin = a.items * blockIdx.x / gridDim.x;
  const int64_t end = a.items * (blockIdx.x + 1) / gridDim.x;
  int digit[kDigits];
  digits_of(begin + threadIdx.x, a.radix, digit);
  const scalar_t* src = static_cast<const scalar_t*>(a.src);
  scalar_t* dst = static_cast<scalar_t*>(a.dst);
  const auto* bias = static_cast<const scalar_t*>(a.bias);
  const int64_t* ss = a.src_stride;
  const int64_t* ds = a.dst_stride;
  const int tap_stride = S * a.slab;  // weights from one tap to the next
  // An item's samples: n + i · sample_step.
  const int sample_step = (a.batch + kSamples - 1) / kSamples;
  const int64_t sample_src = int64_t(sample_step) * ss[0];

  for (int64_t item = begin + threadIdx.x; item < end; item += blockDim.x) {
    const int ow = digit[kW], oh = digit[kH], od = digit[kD], n = digit[kN];
    const int cl = digit[kV] * width, c = c0 + cl;  // first channel, and its place in the slab
    const int valid = min(width, a.channels - c);
    // Samples past the batch (its last items): nothing loaded or stored.
    bool has[kSamples];
#pragma unroll
    for (int i = 0; i < kSamples; ++i) has[i] = i == 0 || n + i * sample_step < a.batch;
    if (valid > 0) {
      const Run32 rd = runs[od], rh = runs[D + oh], rw = runs[D + H + ow];
      acc sum[kSamples][kVec] = {};
      // The item's first source channel: its own (depthwise) or its group's first.
      const scalar_t* src_n = src + n * ss[0] + int64_t(kDepthwise ? c : c / Dg * S) * ss[1];
      for (int md = 0; md < rd.count; ++md) {
        const int kd = rd.a + md * a.tap_step[0];
        const scalar_t* src_d = src_n + int64_t(rd.b + md * a.src_step[0]) * ss[2];
        for (int mh = 0; mh < rh.count; ++mh) {
          const int kh = rh.a + mh * a.tap_step[1];
          const scalar_t* src_row = src_d + int64_t(rh.b + mh * a.src_step[1]) * ss[3];
          const acc* w_row = weights + (kd * a.kernel[1] + kh) * a.kernel[2] * tap_stride + cl;
          for (int mw = 0; mw < rw.count; ++mw) {
            const int kw = rw.a + mw * a.tap_step[2];
            const scalar_t* sp = src_row + int64_t(rw.b + mw * a.src_step[2]) * ss[4];
            const acc* w_tap = w_row + kw * tap_stride;
            if constexpr (kDepthwise) {
              Vec<scalar_t, kVec> x;
              if constexpr (kWidthFastest) {
                x = load_strided<scalar_t, kVec>(sp, ss[1], valid);
              } else {
                x = load_vec<scalar_t, kVec>(sp);
              }
              acc wt[kVec];
              load_weights<acc, kVec>(w_tap, wt);
#pragma unroll
              for (int l = 0; l < kVec; ++l) sum[0][l] += to_acc(x.v[l]) * wt[l];
            } else {
              const auto add_source = [&](int j, const acc (&xj)[kSamples]) {
                acc wt[kVec];
                // A group item's weight rows are aligned where it has kVec channels.
                if (kWalk != Walk::ChannelGroups || width == kVec) {
                  load_weights<acc, kVec>(w_tap + j * a.slab, wt);
                } else {
#pragma unroll
                  for (int l = 0; l < kVec; ++l) wt[l] = l < valid ? w_tap[j * a.slab + l] : acc(0);
                }
#pragma unroll
                for (int i = 0; i < kSamples; ++i) {
#pragma unroll
                  for (int l = 0; l < kVec; ++l) sum[i][l] += xj[i] * wt[l];
                }
              };
              if constexpr (kSrcVector > 1) {
                for (int j = 0; j < S; j += kSrcVector) {
                  Vec<scalar_t, kSrcVector> x[kSamples] = {};
#pragma unroll
                  for (int i = 0; i < kSamples; ++i) {
                    if (has[i]) x[i] = load_vec<scalar_t, kSrcVector>(sp + i * sample_src + j);
                  }
#pragma unroll
                  for (int t = 0; t < kSrcVector; ++t) {
                    acc xt[kSamples];
#pragma unroll
                    for (int i = 0; i < kSamples; ++i) xt[i] = to_acc(x[i].v[t]);
                    add_source(j + t, xt);
                  }
                }
              } else {
                for (int j = 0; j < S; ++j) {
                  const scalar_t* sj = sp + j * ss[1];
                  acc xj[kSamples];
#pragma unroll
                  for (int i = 0; i < kSamples; ++i) {
                    xj[i] = has[i] ? to_acc(sj[i * sample_src]) : acc(0);
                  }
                  add_source(j, xj);
                }
              }
            }
          }
        }
      }
#pragma unroll
      for (int i = 0; i < kSamples; ++i) {
        if (!has[i]) break;
        scalar_t* dp = dst + int64_t(n + i * sample_step) * ds[0] + c * ds[1] + od * ds[2] +
                       oh * ds[3] + ow * ds[4];
        Vec<scalar_t, kVec> out;
#pragma unroll
        for (int l = 0; l < kVec; ++l) {
          if (bias != nullptr && l < valid) sum[i][l] += to_acc(bias[(c + l) * a.bias_stride]);
          out.v[l] = from_acc<scalar_t>(sum[i][l]);
        }
        if constexpr (kStridedItems) {
#pragma unroll
          for (int l = 0; l < kVec; ++l) {
            if (l < valid) dp[l * ds[1]] = out.v[l];
          }
        } else {
          *reinterpret_cast<Vec<scalar_t, kVec>*>(dp) = out;
        }
      }
    }
    advance_digits(a.radix, a.step, digit);
  }
}

void copy_strides(const Strides5& s, int64_t out[5]) {
  out[0] = s.n;
  out[1] = s.c;
  out[2] = s.d;
  out[3] = s.h;
  out[4] = s.w;
}

// The group form at the plan's samples an item (four only with vector loads).
template <typename scalar_t, Walk kWalk, int kSrcVector>
void launch_group_form(const Plan& plan, dim3 grid, size_t smem, cudaStream_t stream,
                       const NarrowArgs& a) {
  if constexpr (kSrcVector > 1) {
    if (plan.samples == kMaxSamples) {
      narrow_gather_kernel<scalar_t, kWalk, false, kSrcVector, kMaxSamples>
          <<<grid, kThreads, smem, stream>>>(a);
      return;
    }
  }
  narrow_gather_kernel<scalar_t, kWalk, false, kSrcVector, 2><<<grid, kThreads, smem, stream>>>(a);
}

// The depthwise form where the plan asks for it (it never does for the
// other walks); vector source loads only for the channels-last walks of
// items of several channels (plan_narrow).
template <typename scalar_t, Walk kWalk>
void launch_walk(const Plan& plan, dim3 grid, size_t smem, cudaStream_t stream,
                 const NarrowArgs& a) {
  if constexpr (kWalk == Walk::ChannelVectors || kWalk == Walk::WidthFastest) {
    if (plan.depthwise_form) {
      narrow_gather_kernel<scalar_t, kWalk, true, 1, 1><<<grid, kThreads, smem, stream>>>(a);
      return;
    }
  }
  if constexpr (kWalk == Walk::ChannelVectors || kWalk == Walk::ChannelGroups) {
    constexpr int k16 = 16 / sizeof(scalar_t), k8 = 8 / sizeof(scalar_t);
    if (plan.src_vector == k16) {
      launch_group_form<scalar_t, kWalk, k16>(plan, grid, smem, stream, a);
      return;
    }
    if constexpr (k8 > 1) {
      if (plan.src_vector == k8) {
        launch_group_form<scalar_t, kWalk, k8>(plan, grid, smem, stream, a);
        return;
      }
    }
  }
  launch_group_form<scalar_t, kWalk, 1>(plan, grid, smem, stream, a);
}

cudaError_t launch_narrow(bool forward, const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                          const void* src, const void* weight, const void* bias, void* dst) {
  const Plan plan = plan_narrow(p, cfg.dtype, forward, reinterpret_cast<uintptr_t>(src),
                                reinterpret_cast<uintptr_t>(dst), kThreads);
  if (!plan.walkable) return cudaErrorInvalidConfiguration;  // narrow_gather_supports
  NarrowArgs a{};
  a.src = src;
  a.weight = weight;
  a.bias = bias;
  a.dst = dst;
  copy_strides(forward ? p.input : p.output, a.src_stride);
  copy_strides(forward ? p.output : p.input, a.dst_stride);
  copy_strides(p.weight, a.weight_stride);
  a.bias_stride = p.bias_stride;
  a.forward = forward;
  a.batch = int(p.batch);
  a.channels = int(forward ? p.out_channels : p.in_channels);
  a.dst_per_group = int(forward ? p.out_per_group : p.in_per_group);
  a.src_per_group = int(forward ? p.in_per_group : p.out_per_group);
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
  if (plan.items == 0) return cudaSuccess;
  a.slab = int(plan.slab);
  a.item_channels = int(plan.item_channels);
  for (int i = 0; i < kDigits; ++i) {
    a.radix[i] = plan.radix[i];
    a.step[i] = plan.step[i];
  }
  a.items = plan.items;
  // An item of several samples counts as that many: the grid as it was without them.
  const int64_t target =
      (a.items * plan.samples + kThreads * kItemsPerThread - 1) / (kThreads * kItemsPerThread);
  const int64_t resident = std::max<int64_t>(1, 8 * int64_t(sm_count()) / plan.slabs);
  const dim3 grid(unsigned(std::max<int64_t>(1, std::min(target, resident))), unsigned(plan.slabs));
  const int64_t taps_j = kvol * a.src_per_group;
  const size_t smem = size_t(taps_j * plan.slab * accumulator_bytes(cfg.dtype)) +
                      size_t(a.extent[0] + a.extent[1] + a.extent[2]) * sizeof(Run32);

  dispatch_scalar(cfg.dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    switch (plan.walk) {
      case Walk::ChannelVectors:
        launch_walk<scalar_t, Walk::ChannelVectors>(plan, grid, smem, cfg.stream, a);
        break;
      case Walk::ChannelGroups:  // never depthwise
        launch_walk<scalar_t, Walk::ChannelGroups>(plan, grid, smem, cfg.stream, a);
        break;
      case Walk::Channels:  // one channel an item: the group form covers depthwise too
        launch_walk<scalar_t, Walk::Channels>(plan, grid, smem, cfg.stream, a);
        break;
      case Walk::WidthFastest:
        launch_walk<scalar_t, Walk::WidthFastest>(plan, grid, smem, cfg.stream, a);
        break;
      case Walk::Width:
        launch_walk<scalar_t, Walk::Width>(plan, grid, smem, cfg.stream, a);
        break;
    }
  });
  return cudaGetLastError();
}

}  // namespace

bool narrow_gather_supports(const ConvTranspose3dParams& p, ScalarKind dtype, bool forward) {
  return plan_narrow(p, dtype, forward, 0, 0, kThreads).walkable;
}

cudaError_t launch_narrow_forward(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                  const void* input, const void* weight, const void* bias,
                                  void* output) {
  return launch_narrow(true, p, cfg, input, weight, bias, output);
}

cudaError_t launch_narrow_grad_input(const ConvTranspose3dParams& p, const LaunchConfig& cfg,
                                     const void* grad_output, const void* weight,
                                     void* grad_input) {
  return launch_narrow(false, p, cfg, grad_output, weight, nullptr, grad_input);
}

}  // namespace tconv3d::cuda
