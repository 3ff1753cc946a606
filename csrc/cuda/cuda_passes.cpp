#include "cuda_passes.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

#include <ATen/ATen.h>
#include <ATen/cuda/EmptyTensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../problem.h"
#include "channel_vectors.h"
#include "channels_last_pack.h"
#include "grad_weight_gemm.h"
#include "launch.h"
#include "narrow_gather.h"
#include "tensor_core_gemm.h"
#include "weight_pack.h"

namespace tconv3d::cuda {

// The GEMM source: each group's channels contiguous, padded with zeros to
// whole 16-byte pieces.  Channels-last tensors whose strides and address are
// 16-byte multiples are read in place; anything else is copied once into
// [N, D, H, W, G, padded] (extra memory: that copy, reported in RESULTS.md).
struct GemmSource {
  at::Tensor tensor;
  int64_t n, d, h, w;  // element strides
};

// A copy SharedPacks keeps: what it was made from, and the copy.
struct SharedPacks::Entry {
  at::Tensor origin;
  int64_t groups, padded;
  GemmSource source;
};

namespace {

std::atomic<bool> g_force_wide_index{false};
// Test and benchmark hook: whether 16-channel groups may take group blocks
// (forward and grad-input: TensorCoreGemmOperands::group_blocks; grad-weight:
// GradWeightOperands::group_block).
std::atomic<bool> g_group_blocks{true};
// Test and benchmark hook: whether fp32 where TF32 is not allowed runs the
// mma.sync GEMMs of all three passes on split TF32 (TensorCoreGemmOperands::
// fp32_mma, GradWeightOperands::fp32_mma) or the gather kernels.  On: the
// gather kernels took 1.1-2600x its time (28x in geomean) on the benchmark
// layers that it takes (H200; RESULTS.md, "Split-TF32 on the GPU round").
std::atomic<bool> g_fp32_split{true};
std::atomic<KernelPolicy> g_policy{KernelPolicy::Auto};
// Channels-last copies of GEMM sources made, for tests.
std::atomic<int64_t> g_channels_last_copies{0};
// Last kernel family per pass (forward, grad-input, grad-weight, grad-bias), for tests.
std::atomic<const char*> g_last_kernel[4] = {"none", "none", "none", "none"};
constexpr int64_t kMinTensorCoreChannels = 8;

// allowTF32CuDNN's parameter: none before torch 2.9, then the op it is asked
// for (a string, later an optional enum).
template <typename Method>
struct TF32QueryArg;
template <typename C>
struct TF32QueryArg<bool (C::*)() const> {
  using type = void;
};
template <typename C, typename A>
struct TF32QueryArg<bool (C::*)(A) const> {
  using type = std::remove_cv_t<std::remove_reference_t<A>>;
};
template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};

// (Context a template parameter: each branch compiles only where it is taken.)
template <typename Arg, typename Context>
bool conv_tf32_allowed(const Context& context) {
  if constexpr (std::is_void_v<Arg>) {
    return context.allowTF32CuDNN();
  } else if constexpr (IsOptional<Arg>::value) {
    return context.allowTF32CuDNN(Arg::value_type::CONV);
  } else {
    return context.allowTF32CuDNN("conv");
  }
}

// TF32 follows the switch that governs torch's own convolutions: cuDNN's
// conv precision, which torch.backends.cudnn.allow_tf32 and (torch 2.9 on)
// torch.backends.cudnn.conv.fp32_precision set.  Asked without the op, torch
// throws once conv's and RNN's settings differ.
bool tf32_allowed() {
  using Arg = TF32QueryArg<decltype(&at::Context::allowTF32CuDNN)>::type;
  return conv_tf32_allowed<Arg>(at::globalContext());
}

// fp32 where TF32 is not allowed, on split TF32 (the hook allowing): only
// the mma.sync GEMMs have it; the Hopper and the other tensor-core kernels
// would round to TF32.  Tf32 where it does not apply.
Fp32Mma fp32_split(ScalarKind dtype) {
  return dtype == ScalarKind::Float32 && !tf32_allowed() && g_fp32_split.load() ? Fp32Mma::Split
                                                                                : Fp32Mma::Tf32;
}

// The CUDA-core stencil (narrow_gather.h) in the gather passes.  Tried before
// the tensor cores: in auto, for narrow groups (depthwise; at most 4 channels
// a group on one side and 16 on the other: RGB-like layers), their
// tensor-core tiles being mostly padding — except grad-input from a
// channels-last grad_output whose groups' channels make no 8-byte vector
// (the stencil reads them one element a load there, and lost to the GEMM:
// H200, bf16, 4 -> 8 channels, 8 x 64^3, 0.12 ms against 0.09; with vector
// loads and sample pairs it wins, 0.047 against 0.090, TF32 0.060 against
// 0.094, and 4 -> 8 at 64 x 16^3 0.041 against 0.088 in both; misaligned
// tensors, which plan_narrow reads element-wise, are not told apart here), and grad-input
// from more than 8 channels a group in any layout, where a destination's sum
// reads 9-16 source channels a tap (3 -> 16, 32 x 32^3 out, NCDHW: 0.190 ms
// TF32 and 0.152 bf16 against the mma.sync GEMM's 0.144 and 0.100;
// channels-last with vectors still 0.147 and 0.123 against 0.063 and 0.073
// on the tensor cores); under Gather, always.  Taken after them for whatever
// they did not run, but under the tensor-core policies.  Either only where
// the stencil runs the shape.
bool narrow_gather_first(const ConvTranspose3dParams& p, GatherPass pass, ScalarKind dtype) {
  const bool fwd = pass == GatherPass::Forward;
  switch (g_policy.load()) {
    case KernelPolicy::Gather:
      return narrow_gather_supports(p, dtype, fwd);
    case KernelPolicy::TensorCore:
    case KernelPolicy::Wgmma:
      return false;
    default: {
      const bool depthwise = p.in_per_group == 1 && p.out_per_group == 1;
      const bool source_vectors = p.out_per_group * element_bytes(dtype) % 8 == 0;
      // Not on split TF32, which issues three MMAs a k-step: 3 -> 16, 32 x
      // 32^3 out, its grad-input took 1.56x the stencil's time from
      // channels-last, 0.88x from NCDHW (H200; RESULTS.md, "Split-TF32 on
      // the GPU round").
      const bool gemm_grad_input =
          !fwd && fp32_split(dtype) == Fp32Mma::Tf32 &&
          ((p.output.c == 1 && p.out_channels > 1 && !source_vectors) ||
           (p.in_per_group > 1 && p.out_per_group > 8));
      const bool narrow = std::min(p.in_per_group, p.out_per_group) <= 4 &&
                          std::max(p.in_per_group, p.out_per_group) <= 16;
      return narrow && (depthwise || !gemm_grad_input) && narrow_gather_supports(p, dtype, fwd);
    }
  }
}

bool narrow_gather_after(const ConvTranspose3dParams& p, GatherPass pass, ScalarKind dtype) {
  const KernelPolicy policy = g_policy.load();
  return policy != KernelPolicy::TensorCore && policy != KernelPolicy::Wgmma &&
         narrow_gather_supports(p, dtype, pass == GatherPass::Forward);
}

// Auto: tensor-core tiles (64 channels wide) pay once a group has a few
// channels on at least one side; depthwise-like layers stay on the gather
// kernels.  TensorCore forces them wherever they support the shape.
bool may_use_tensor_cores(const ConvTranspose3dParams& p) {
  switch (g_policy.load()) {
    case KernelPolicy::Gather:
      return false;
    case KernelPolicy::TensorCore:
    case KernelPolicy::Wgmma:
      return true;
    default:
      return std::max(p.in_per_group, p.out_per_group) >= kMinTensorCoreChannels;
  }
}

// Largest element offset reachable in t, plus one.
int64_t span(const at::Tensor& t) {
  int64_t s = 1;
  for (int64_t d = 0; d < t.dim(); ++d) s += (t.size(d) - 1) * std::abs(t.stride(d));
  return t.numel() == 0 ? 0 : s;
}

bool needs_wide_index(std::initializer_list<at::Tensor> tensors) {
  if (g_force_wide_index.load()) return true;
  for (const at::Tensor& t : tensors) {
    if (t.defined() && (span(t) > std::numeric_limits<int32_t>::max() ||
                        t.numel() > std::numeric_limits<int32_t>::max())) {
      return true;
    }
  }
  return false;
}

LaunchConfig config_for(const at::Tensor& reference, std::initializer_list<at::Tensor> tensors) {
  return {scalar_kind(reference.scalar_type()), needs_wide_index(tensors),
          c10::cuda::getCurrentCUDAStream(reference.device().index()).stream()};
}

// Memory a kernel writes whole before anything reads it: workspaces, packed
// copies.  Allocated without the NaN fill that torch gives every `empty`
// under use_deterministic_algorithms (fill_uninitialized_memory): a memset
// per buffer per call there, which cuDNN's workspaces do not pay (it slowed
// our grad-weight by up to 1.4x in `bench.py --deterministic`).  The
// non-deterministic path always ran on unfilled memory, so nothing changes
// in what is read.
at::Tensor scratch(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return at::Tensor(at::detail::empty_cuda(sizes, options));
}

// fp32 workspace of `elems` (none when 0); freed when the tensor dies (the
// caching allocator keeps stream order safe).
at::Tensor float_workspace(int64_t elems, const at::Tensor& like) {
  return elems > 0 ? scratch({elems}, like.options().dtype(at::kFloat)) : at::Tensor();
}

// Workspace for split partial sums; freed when the caller's tensor dies (the
// caching allocator keeps stream order safe).
at::Tensor partials_workspace(int64_t splits, int64_t numel, const at::Tensor& like) {
  if (splits <= 1) return at::Tensor();
  const auto acc_type = like.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return scratch({splits * numel}, like.options().dtype(acc_type));
}

// Whether a channels-last tensor can be read in place in cp.async pieces of
// `piece` bytes: each group's channels whole pieces, strides and address
// multiples of a piece.
bool reads_in_pieces(const at::Tensor& t, int64_t groups, int64_t piece) {
  const int64_t vec = piece / static_cast<int64_t>(t.element_size());
  return vec >= 1 && (t.size(1) / groups) % vec == 0 && t.stride(1) == 1 &&
         t.stride(0) % vec == 0 && t.stride(2) % vec == 0 && t.stride(3) % vec == 0 &&
         t.stride(4) % vec == 0 && reinterpret_cast<uintptr_t>(t.const_data_ptr()) % piece == 0;
}

// The GEMM kernels read the source as is: each group's `padded` channels
// (its own channels, no padding needed) in 16-byte pieces.
bool readable_in_place(const at::Tensor& t, int64_t groups, int64_t padded) {
  return padded == t.size(1) / groups && reads_in_pieces(t, groups, 16);
}

// The largest cp.async piece (16 or 8 bytes) a tensor can be read in, else 0.
int cp_async_piece(const at::Tensor& t, int64_t groups) {
  return reads_in_pieces(t, groups, 16) ? 16 : reads_in_pieces(t, groups, 8) ? 8 : 0;
}

// Whether each (n, c) plane of D·H·W elements is contiguous (NCDHW-like).
bool planes_contiguous(const at::Tensor& t) {
  int64_t expected = 1;
  for (int64_t d = 4; d >= 2; --d) {
    if (t.size(d) != 1 && t.stride(d) != expected) return false;
    expected *= t.size(d);
  }
  return true;
}

// Whether the tap-columns forward reads t's NCDHW planes as they are: a
// tile's rows of one channel contiguous, in whole 16-byte pieces that never
// span two samples.
bool reads_planes_in_place(const at::Tensor& t, ScalarKind dtype) {
  const int64_t vec = vector_channels(dtype);
  return planes_contiguous(t) && t.size(2) * t.size(3) * t.size(4) % vec == 0 &&
         t.stride(0) % vec == 0 && t.stride(1) % vec == 0 &&
         reinterpret_cast<uintptr_t>(t.const_data_ptr()) % 16 == 0;
}

GemmSource in_place(const at::Tensor& t) {
  return {t, t.stride(0), t.stride(2), t.stride(3), t.stride(4)};
}

// A channels-last copy of t, each group's channels padded to `padded`; where
// grad_bias is given and the copy kernel sums (pack_sums_channels), t's
// channel sums land in it on the way and *summed is set.
GemmSource pack_source(const at::Tensor& t, int64_t groups, int64_t padded,
                       const at::Tensor& grad_bias = {}, bool* summed = nullptr) {
  g_channels_last_copies.fetch_add(1);
  const int64_t per_group = t.size(1) / groups;
  at::Tensor c;
  if (planes_contiguous(t)) {
    c = scratch({t.size(0), t.size(2), t.size(3), t.size(4), groups, padded}, t.options());
    const PlanarSource src{t.const_data_ptr(), t.size(0), t.size(1), groups,
                           t.size(2) * t.size(3) * t.size(4), t.stride(0), t.stride(1)};
    const int element_bytes = static_cast<int>(t.element_size());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
    if (grad_bias.defined() && pack_sums_channels(src, element_bytes, padded, c.const_data_ptr())) {
      const ScalarKind dtype = scalar_kind(t.scalar_type());
      const int64_t rows = pack_sum_rows(src);
      const at::Tensor partial = scratch({rows * t.size(1)}, t.options().dtype(at::kFloat));
      C10_CUDA_CHECK(launch_pack_channels_last_summing(src, dtype, padded, c.mutable_data_ptr(),
                                                       partial.data_ptr<float>(), stream));
      C10_CUDA_CHECK(launch_combine_channel_sums(dtype, partial.data_ptr<float>(), rows,
                                                 static_cast<int>(t.size(1)),
                                                 grad_bias.mutable_data_ptr(), grad_bias.stride(0),
                                                 stream));
      g_last_kernel[3] = "pack_channels_last_summing";
      *summed = true;
    } else {
      C10_CUDA_CHECK(
          launch_pack_channels_last(src, element_bytes, padded, c.mutable_data_ptr(), stream));
    }
  } else {
    const at::Tensor v = t.unflatten(1, {groups, per_group}).permute({0, 3, 4, 5, 1, 2});
    c = padded > per_group ? at::constant_pad_nd(v, {0, padded - per_group}).contiguous()
                           : v.contiguous();
  }
  return {c, c.stride(0), c.stride(1), c.stride(2), c.stride(3)};
}

// The same elements: data, sizes, strides and dtype.
bool same_tensor(const at::Tensor& a, const at::Tensor& b) {
  return a.defined() && b.defined() && a.const_data_ptr() == b.const_data_ptr() &&
         a.sizes() == b.sizes() && a.strides() == b.strides() &&
         a.scalar_type() == b.scalar_type();
}

}  // namespace

// gemm_source's way into the live SharedPacks.
struct SharedPacksAccess {
  // The active one on this thread (null when none is).
  static thread_local SharedPacks* active;

  // t in place where it can be read so, else a copy: the live SharedPacks'
  // one of the same tensor where there is one.
  static GemmSource gemm_source(const at::Tensor& t, int64_t groups, int64_t padded) {
    if (readable_in_place(t, groups, padded)) return in_place(t);
    SharedPacks* packs = active;
    if (packs == nullptr) return pack_source(t, groups, padded);
    for (const SharedPacks::Entry& e : packs->entries_) {
      if (same_tensor(e.origin, t) && e.groups == groups && e.padded == padded) return e.source;
    }
    const bool sums = !packs->bias_summed_ && same_tensor(t, packs->grad_output_) &&
                      packs->grad_bias_.defined();
    const GemmSource source = sums ? pack_source(t, groups, padded, packs->grad_bias_,
                                                 &packs->bias_summed_)
                                   : pack_source(t, groups, padded);
    packs->entries_.push_back({t, groups, padded, source});
    return source;
  }
};

thread_local SharedPacks* SharedPacksAccess::active = nullptr;

namespace {

GemmSource gemm_source(const at::Tensor& t, int64_t groups, int64_t padded) {
  return SharedPacksAccess::gemm_source(t, groups, padded);
}

// The element stride between consecutive D·H·W positions of t where it is
// uniform (NCDHW planes: 1; dense channels-last: C; broadcast, as the
// grad_output of y.sum(): 0), else -1.
int64_t uniform_position_stride(const at::Tensor& t) {
  int64_t stride = -1, expected = 0;
  for (int64_t d = 4; d >= 2; --d) {
    if (t.size(d) == 1) continue;
    if (stride < 0) {
      stride = t.stride(d);
    } else if (t.stride(d) != expected) {
      return -1;
    }
    expected = t.stride(d) * t.size(d);
  }
  return stride < 0 ? 1 : stride;
}

// The taps-folded grad-weight's gy: each group's channels kTapChannels wide,
// a (position, group) one cp.async piece — in place where groups are exactly
// that wide and read in such pieces, else [N, D, H, W, G, kTapChannels] with
// the channels padded with zeros, in one coalesced pass
// (launch_pad_groups_to_four) where positions are uniformly strided, else by
// ATen's pad.
GemmSource taps_gy_source(const at::Tensor& t, int64_t groups) {
  if (t.size(1) / groups == kTapChannels &&
      reads_in_pieces(t, groups, kTapChannels * int64_t(t.element_size()))) {
    return in_place(t);
  }
  const int64_t position_stride = uniform_position_stride(t);
  if (position_stride < 0) return gemm_source(t, groups, kTapChannels);
  at::Tensor c = scratch({t.size(0), t.size(2), t.size(3), t.size(4), groups, kTapChannels},
                         t.options());
  const StridedPositions src{t.const_data_ptr(), t.size(0),   t.size(2) * t.size(3) * t.size(4),
                             groups,             t.size(1) / groups, t.stride(0),
                             t.stride(1),        position_stride};
  C10_CUDA_CHECK(launch_pad_groups_to_four(
      src, static_cast<int>(t.element_size()), c.mutable_data_ptr(),
      c10::cuda::getCurrentCUDAStream(t.device().index()).stream()));
  return {c, c.stride(0), c.stride(1), c.stride(2), c.stride(3)};
}

// A grad-weight GEMM operand: read in place in the largest cp.async piece it
// allows, else (NCDHW) packed, each group's channels padded to 16-byte pieces.
struct GradWeightSource {
  GemmSource src;
  int64_t channels;  // a group's stride in the channel dimension
  int piece;
};

bool grad_weight_readable(const at::Tensor& t, int64_t groups) {
  return cp_async_piece(t, groups) > 0 || planes_contiguous(t);
}

GradWeightSource grad_weight_source(const at::Tensor& t, int64_t groups, int64_t per_group,
                                    ScalarKind dtype) {
  if (const int piece = cp_async_piece(t, groups)) return {in_place(t), per_group, piece};
  const int64_t padded = padded_channels(per_group, dtype);
  return {gemm_source(t, groups, padded), padded, 16};
}

// A channels-last grad-weight GEMM's operands for a launch of q's groups
// (the layer's, or four 16-channel groups each: group_block 16), the sources
// they point into kept alive beside them; workspace still unset.
struct GradWeightGemmOperands {
  GradWeightSource x, gy;
  GradWeightOperands ops;
};

GradWeightGemmOperands grad_weight_gemm_operands(const ConvTranspose3dParams& q,
                                                 const at::Tensor& input,
                                                 const at::Tensor& grad_output,
                                                 const at::Tensor& grad_weight, ScalarKind dtype,
                                                 int group_block) {
  const GradWeightSource x = grad_weight_source(input, q.groups, q.in_per_group, dtype);
  const GradWeightSource gy = grad_weight_source(grad_output, q.groups, q.out_per_group, dtype);
  return {x, gy,
          GradWeightOperands{x.src.tensor.const_data_ptr(), x.src.n, x.src.d, x.src.h, x.src.w,
                             x.channels, gy.src.tensor.const_data_ptr(), gy.src.n, gy.src.d,
                             gy.src.h, gy.src.w, gy.channels, grad_weight.mutable_data_ptr(),
                             nullptr, std::min(x.piece, gy.piece), group_block}};
}

// The Hopper grad-weight GEMM on o's operands for a launch of q's groups: its
// workspace (none where it writes gw itself), the launch.
void run_grad_weight_gemm_sm90(const ConvTranspose3dParams& q, GradWeightGemmOperands& o,
                               const at::Tensor& grad_output, const at::Tensor& grad_weight,
                               ScalarKind dtype) {
  const LaunchConfig cfg = config_for(grad_output, {o.x.src.tensor, o.gy.src.tensor, grad_weight});
  const at::Tensor partials =
      float_workspace(grad_weight_gemm_sm90_workspace_elems(q, dtype, o.ops), grad_output);
  o.ops.workspace = partials.defined() ? partials.data_ptr<float>() : nullptr;
  C10_CUDA_CHECK(launch_grad_weight_gemm_sm90(q, cfg, o.ops));
  g_last_kernel[2] = "grad_weight_gemm_sm90";
}

// [G·Cin/G, Cout/G, kD, kH, kW] → [G][kD·kH·kW][columns][padded], channels
// (the GEMM's K side) zero-padded: forward columns = Cout/G over Cin/G
// channels, grad-input Cin/G over Cout/G (weight_pack.h).
at::Tensor packed_weight(const at::Tensor& w, int64_t groups, GatherPass pass, int64_t padded,
                         bool round_tf32 = true) {
  // Dimension 0 of w holds the groups' input channels, dimension 1 a group's output channels.
  const int64_t in_per_group = w.size(0) / groups;
  const bool fwd = pass == GatherPass::Forward;
  const int column_dim = fwd ? 1 : 0, channel_dim = fwd ? 0 : 1;
  const int64_t columns = fwd ? w.size(1) : in_per_group, channels = fwd ? in_per_group : w.size(1);
  at::Tensor packed =
      scratch({groups, w.size(2) * w.size(3) * w.size(4), columns, padded}, w.options());
  const WeightPackGeometry geometry{w.const_data_ptr(),      groups,
                                    columns,                 channels,
                                    padded,                  in_per_group * w.stride(0),
                                    w.stride(column_dim),    w.stride(channel_dim),
                                    {w.size(2), w.size(3), w.size(4)},
                                    {w.stride(2), w.stride(3), w.stride(4)}};
  C10_CUDA_CHECK(launch_pack_weight(geometry, static_cast<int>(w.element_size()), round_tf32,
                                    packed.mutable_data_ptr(),
                                    c10::cuda::getCurrentCUDAStream(w.device().index()).stream()));
  return packed;
}

// Groups of 16 channels on both sides, four of them a 64-column
// tile of the Hopper kernel (TensorCoreGemmOperands::group_blocks): its
// launch sees a quarter as many groups of 64 channels, whose packed weight
// holds the four groups' blocks on its diagonal.  One group a tile used 32
// columns for 16 (grouped g4 grad-input, bf16 channels-last: 24.9 us against
// cuDNN's 14.8, H200; RESULTS.md, "Combine lanes round").
constexpr int64_t kGroupBlock = 16, kBlocksPerTile = 4;

ConvTranspose3dParams four_group_params(ConvTranspose3dParams p) {
  p.groups /= kBlocksPerTile;
  p.in_per_group *= kBlocksPerTile;
  p.out_per_group *= kBlocksPerTile;
  return p;
}

// Groups of 16 channels on both sides, four at a time, the hook allowing:
// the layers every pass's group blocks are for.
bool groups_of_16_in_fours(const ConvTranspose3dParams& p) {
  return g_group_blocks.load() && p.in_per_group == kGroupBlock &&
         p.out_per_group == kGroupBlock && p.groups % kBlocksPerTile == 0;
}

// Forward and grad-input: where the Hopper kernel's launch fits them
// (64-column tiles, the TMA loader's per-tap boxes).
bool takes_group_blocks(const ConvTranspose3dParams& p, GatherPass pass, const LaunchConfig& cfg) {
  return groups_of_16_in_fours(p) &&
         tensor_core_gemm_sm90_group_blocks_fit(four_group_params(p), pass, cfg);
}

// [G·16, 16, kD, kH, kW] → [G/4][kD·kH·kW][64][64], four groups' 16 × 16
// blocks on each tap's diagonal, zeros elsewhere (weight_pack.h's block).
at::Tensor group_block_packed_weight(const at::Tensor& w, int64_t groups, GatherPass pass) {
  const bool fwd = pass == GatherPass::Forward;
  const int column_dim = fwd ? 1 : 0, channel_dim = fwd ? 0 : 1;
  const int64_t tile = kGroupBlock * kBlocksPerTile;
  at::Tensor packed = scratch(
      {groups / kBlocksPerTile, w.size(2) * w.size(3) * w.size(4), tile, tile}, w.options());
  const WeightPackGeometry geometry{w.const_data_ptr(),        groups / kBlocksPerTile,
                                    tile,                      tile,
                                    tile,                      kGroupBlock * w.stride(0),
                                    w.stride(column_dim),      w.stride(channel_dim),
                                    {w.size(2), w.size(3), w.size(4)},
                                    {w.stride(2), w.stride(3), w.stride(4)},
                                    kGroupBlock};
  C10_CUDA_CHECK(launch_pack_weight(geometry, static_cast<int>(w.element_size()), true,
                                    packed.mutable_data_ptr(),
                                    c10::cuda::getCurrentCUDAStream(w.device().index()).stream()));
  return packed;
}

// For a shape the tensor-core GEMM supports: the Hopper version where it runs
// and pays (tensor_core_gemm.h), else the mma.sync one.
bool use_wgmma(const ConvTranspose3dParams& p, GatherPass pass, ScalarKind dtype) {
  const KernelPolicy policy = g_policy.load();
  if (policy == KernelPolicy::TensorCore || !tensor_core_gemm_sm90_runs_here() ||
      !tensor_core_gemm_sm90_handles(p, pass)) {
    return false;
  }
  return policy == KernelPolicy::Wgmma || tensor_core_gemm_sm90_pays(p, pass, dtype);
}

// Forward or grad-input on the tensor-core GEMM, when policy, dtype and shape
// allow it: gathers from `source` (x or grad_output) through the packed
// weight into `dest`.  Returns false (nothing launched) otherwise.
bool try_tensor_core_gemm(GatherPass pass, const ConvTranspose3dParams& p,
                          const at::Tensor& source, const at::Tensor& weight,
                          const at::Tensor& bias, const at::Tensor& dest) {
  const ScalarKind dtype = scalar_kind(source.scalar_type());
  // fp32 without TF32 on split TF32: the mma.sync phase GEMM, or the
  // taps-folded forward.
  const Fp32Mma math = fp32_split(dtype);
  const bool split = math != Fp32Mma::Tf32;
  if (!may_use_tensor_cores(p) ||
      !tensor_core_gemm_supports(p, pass, dtype, tf32_allowed() || split)) {
    return false;
  }
  const bool fwd = pass == GatherPass::Forward;
  // Auto only: the forced policies keep testing the phase GEMMs on these
  // shapes.  Tap columns round to TF32: not under split TF32.
  const bool auto_forward = fwd && g_policy.load() == KernelPolicy::Auto;
  const bool auto_tap_columns = auto_forward && !split;
  const bool hopper = !split && use_wgmma(p, pass, dtype);
  // From 64 columns the Hopper GEMM beat the tap-columns one in TF32 (U-Net
  // k2s2 128→64 and 256→128, RESULTS.md) and in fp16/bf16 into NCDHW outputs
  // (bf16 U-Net 128→64 0.117 against 0.164 ms; 256→128 and 256→256 within
  // 6 %), whose stores tap columns makes from its registers two bytes at a
  // time; into channels-last outputs tap columns' staged 16-byte stores won
  // (128→64 0.069 against 0.097 ms; with the Hopper epilogue's own 16-byte
  // stores still 0.066 against 0.075, 64→32 0.033 against 0.057, the big
  // U-Net 0.60 against 1.42: RESULTS.md, "Row-once and TF32 group blocks
  // round"; fp16/bf16 ones now take tap columns' Hopper version where it fits,
  // forward_tap_columns_sm90.cu: U-Net 128→64 0.039 ms, "Hopper tap-columns
  // round"; TF32 ones too where that version takes them: U-Net 128→64 0.077
  // against the Hopper GEMM's 0.122 ms, "Tap-columns TF32 round").  Narrower
  // ones were not measured
  // against it and stay on tap columns, as do NCDHW sources it reads in place
  // (no channels-last copy of x): bf16 U-Net 128→64 0.109 against Hopper's
  // 0.124 ms ("NCDHW planes round"; 0.070 since); at 512 bytes of channels
  // (one block an SM) TF32 128→64 0.139 against Hopper's 0.185, bf16
  // 256→128 0.041 against 0.054 (H200, graph replays; RESULTS.md, "Pack and
  // tap-columns round").
  const bool planes = fwd && reads_planes_in_place(source, dtype);
  // Its Hopper version's plan on the operands made below (x dense
  // channels-last, or its padded copy): TF32 too, and on the hook's
  // 32-column tiles up to 1 KB of channels, past the mma.sync version's 512
  // bytes.
  const bool tap_columns_sm90_takes =
      auto_tap_columns && !planes && forward_tap_columns_sm90_may_take(p, dtype);
  const bool tap_columns_sync_takes =
      auto_tap_columns && forward_tap_columns_gemm_supports(p, dtype);
  const bool hopper_over_tap_columns =
      hopper && !planes && p.out_per_group >= 64 &&
      (p.output.c != 1 || (dtype == ScalarKind::Float32 && !tap_columns_sm90_takes));
  const bool tap_columns =
      !hopper_over_tap_columns && (tap_columns_sync_takes || tap_columns_sm90_takes);
  const bool taps = auto_forward && !tap_columns && forward_taps_gemm_pays(p) &&
                    forward_taps_gemm_supports(p, dtype);
  const bool wgmma = !tap_columns && !taps && hopper;
  const bool blocks = wgmma && takes_group_blocks(p, pass, config_for(source, {source, dest}));
  // The launch's groups: four 16-channel groups each under group blocks.
  const ConvTranspose3dParams lp = blocks ? four_group_params(p) : p;
  const int64_t padded = padded_channels(fwd ? lp.in_per_group : lp.out_per_group, dtype);
  const bool planes_in_place = tap_columns && planes;
  const GemmSource src =
      planes_in_place ? in_place(source) : gemm_source(source, lp.groups, padded);
  const at::Tensor packed = blocks ? group_block_packed_weight(weight, p.groups, pass)
                                   : packed_weight(weight, p.groups, pass, padded, !split);
  const LaunchConfig cfg = config_for(source, {src.tensor, packed, bias, dest});
  TensorCoreGemmOperands ops{pass, src.tensor.const_data_ptr(), src.n, src.d, src.h, src.w,
                             padded, packed.const_data_ptr(),
                             fwd ? lp.out_per_group : lp.in_per_group,
                             bias.defined() ? bias.const_data_ptr() : nullptr,
                             dest.mutable_data_ptr()};
  if (planes_in_place) ops.source_c = source.stride(1);
  if (blocks) ops.group_blocks = int(kGroupBlock);
  ops.fp32_mma = math;
  // The Hopper grad-input's split K: a plane of fp32 partial sums of dest's
  // elements a split.
  const int splits = wgmma ? tensor_core_gemm_sm90_splits(lp, cfg, pass, blocks) : 1;
  const at::Tensor partials = float_workspace(splits > 1 ? splits * dest.numel() : 0, source);
  if (partials.defined()) {
    ops.partials = partials.data_ptr<float>();
    ops.splits = splits;
  }
  Sm90Loader loader = Sm90Loader::CpAsync;
  // Tap columns: the Hopper version, declining where the operands made do
  // not suit it (x in place but not one run of rows, an unaligned address);
  // then the mma.sync version, or past its 512 bytes of channels the mma.sync
  // phase GEMM, which takes the same operands.
  cudaError_t launched =
      tap_columns ? launch_forward_tap_columns_sm90(p, cfg, ops) : cudaErrorNotSupported;
  const bool tap_columns_sm90 = tap_columns && launched != cudaErrorNotSupported;
  const bool tap_columns_sync = tap_columns && !tap_columns_sm90 && tap_columns_sync_takes;
  if (!tap_columns_sm90) {
    launched = tap_columns_sync ? launch_forward_tap_columns_gemm(p, cfg, ops)
               : taps           ? launch_forward_taps_gemm(p, cfg, ops)
               : wgmma          ? launch_tensor_core_gemm_sm90(lp, cfg, ops, &loader)
                                : launch_tensor_core_gemm(p, cfg, ops);
  }
  C10_CUDA_CHECK(launched);
  g_last_kernel[fwd ? 0 : 1] = tap_columns_sm90               ? "forward_tap_columns_gemm_sm90"
                               : tap_columns_sync               ? "forward_tap_columns_gemm"
                               : taps && split                 ? "forward_taps_gemm_split_tf32"
                               : taps                          ? "forward_taps_gemm"
                               : split                         ? "tensor_core_gemm_split_tf32"
                               : !wgmma                        ? "tensor_core_gemm"
                               : loader == Sm90Loader::Halo    ? "tensor_core_gemm_sm90_halo"
                               : loader == Sm90Loader::Tma     ? "tensor_core_gemm_sm90_tma"
                               : loader == Sm90Loader::TmaResidentWeight
                                   ? "tensor_core_gemm_sm90_tma_resident_weight"
                                   : "tensor_core_gemm_sm90";
  return true;
}

// [G·Cin/G, Cout/G, kD, kH, kW] → [G·Cin/G][packed_taps][kTapChannels], zeros
// past the taps and the group's output channels (tensor_core_gemm.h).
at::Tensor taps_packed_weight(const at::Tensor& w, int64_t packed_taps) {
  const int64_t taps = w.size(2) * w.size(3) * w.size(4);
  const at::Tensor by_tap = w.reshape({w.size(0), w.size(1), taps}).transpose(1, 2);
  return at::constant_pad_nd(by_tap, {0, kTapChannels - w.size(1), 0, packed_taps - taps})
      .contiguous();
}

// Auto: groups of at most kTapChannels output channels (RGB outputs) take the
// taps-folded grad-input, whose K holds (tap, channel) pairs; the phase GEMM
// pads each tap's 1-4 channels to a whole k-step.  Not split TF32 from a
// channels-last grad_output of several channels: there the phase GEMM took
// 0.89-1.02x the taps' time (H200, the three RGB-output layers; RESULTS.md,
// "RGB-output fp32 round").  TF32 keeps the taps: against them auto's phase
// GEMM measured 0.90x, 0.99x and 1.10x; bf16 gained from them (0.275 ms
// against 0.470, rgb_out k4s2).  The forced policies keep testing the phase
// GEMMs on these shapes.  Returns false (nothing launched) where it does not
// apply.
bool try_grad_input_taps_gemm(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                              const at::Tensor& weight, const at::Tensor& grad_input) {
  const ScalarKind dtype = scalar_kind(grad_output.scalar_type());
  const Fp32Mma math = fp32_split(dtype);
  const bool split = math != Fp32Mma::Tf32;
  const bool split_channels_last = split && p.output.c == 1 && p.out_channels > 1;
  if (g_policy.load() != KernelPolicy::Auto || split_channels_last || !may_use_tensor_cores(p) ||
      !grad_input_taps_gemm_supports(p, dtype, tf32_allowed() || split)) {
    return false;
  }
  const GemmSource gy = taps_gy_source(grad_output, p.groups);
  const int64_t packed_taps = grad_input_taps_gemm_packed_taps(p, dtype);
  const at::Tensor packed = taps_packed_weight(weight, packed_taps);
  const TapsGradInputOperands ops{gy.tensor.const_data_ptr(), gy.n, gy.d, gy.h, gy.w,
                                  packed.const_data_ptr(), packed_taps,
                                  grad_input.mutable_data_ptr(), math};
  C10_CUDA_CHECK(launch_grad_input_taps_gemm(
      p, config_for(grad_output, {gy.tensor, packed, grad_input}), ops));
  g_last_kernel[1] = split ? "grad_input_taps_gemm_split_tf32" : "grad_input_taps_gemm";
  return true;
}

// Auto: NCDHW grad_output of kernel == stride layers (U-Net decoders) read
// in place, K in the weight's order: no channels-last copy of grad_output
// and no weight pack.  The forced policies keep testing the phase GEMMs on
// these shapes.  Returns false (nothing launched) where it does not apply.
bool try_grad_input_tap_blocks_gemm(const ConvTranspose3dParams& p,
                                    const at::Tensor& grad_output, const at::Tensor& weight,
                                    const at::Tensor& grad_input) {
  const ScalarKind dtype = scalar_kind(grad_output.scalar_type());
  if (g_policy.load() != KernelPolicy::Auto || !may_use_tensor_cores(p) ||
      !grad_input_tap_blocks_gemm_pays(p) ||
      !grad_input_tap_blocks_gemm_supports(p, dtype, tf32_allowed(),
                                           grad_output.const_data_ptr(),
                                           weight.const_data_ptr())) {
    return false;
  }
  const TapBlocksGradInputOperands ops{grad_output.const_data_ptr(), weight.const_data_ptr(),
                                       grad_input.mutable_data_ptr()};
  C10_CUDA_CHECK(launch_grad_input_tap_blocks_gemm(
      p, config_for(grad_output, {grad_output, weight, grad_input}), ops));
  g_last_kernel[1] = "grad_input_tap_blocks_gemm";
  return true;
}
}  // namespace

void set_force_wide_index(bool on) { g_force_wide_index.store(on); }

void set_group_blocks(bool on) { g_group_blocks.store(on); }

void set_fp32_split(bool on) { g_fp32_split.store(on); }

void set_kernel_policy(KernelPolicy policy) { g_policy.store(policy); }

const char* last_kernel(int pass) { return g_last_kernel[pass].load(); }

int64_t channels_last_copies() { return g_channels_last_copies.load(); }

void forward(const ConvTranspose3dParams& p, const at::Tensor& input, const at::Tensor& weight,
             const std::optional<at::Tensor>& bias, const at::Tensor& output) {
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor b = bias.value_or(at::Tensor());
  const ScalarKind dtype = scalar_kind(input.scalar_type());
  const bool narrow_first = narrow_gather_first(p, GatherPass::Forward, dtype);
  if (!narrow_first && try_tensor_core_gemm(GatherPass::Forward, p, input, weight, b, output)) {
    return;
  }
  const LaunchConfig cfg = config_for(input, {input, weight, b, output});
  if (narrow_first || narrow_gather_after(p, GatherPass::Forward, dtype)) {
    C10_CUDA_CHECK(launch_narrow_forward(p, cfg, input.const_data_ptr(), weight.const_data_ptr(),
                                         b.defined() ? b.const_data_ptr() : nullptr,
                                         output.mutable_data_ptr()));
    g_last_kernel[0] = "narrow_gather";
    return;
  }
  C10_CUDA_CHECK(launch_forward_gather(p, cfg, input.const_data_ptr(), weight.const_data_ptr(),
                                       b.defined() ? b.const_data_ptr() : nullptr,
                                       output.mutable_data_ptr()));
  g_last_kernel[0] = "forward_gather";
}

void grad_input(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                const at::Tensor& weight, const at::Tensor& grad_input) {
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const ScalarKind dtype = scalar_kind(grad_output.scalar_type());
  const bool narrow_first = narrow_gather_first(p, GatherPass::GradInput, dtype);
  if (!narrow_first && (try_grad_input_tap_blocks_gemm(p, grad_output, weight, grad_input) ||
                        try_grad_input_taps_gemm(p, grad_output, weight, grad_input) ||
                        try_tensor_core_gemm(GatherPass::GradInput, p, grad_output, weight,
                                             at::Tensor(), grad_input))) {
    return;
  }
  const LaunchConfig cfg = config_for(grad_output, {grad_output, weight, grad_input});
  if (narrow_first || narrow_gather_after(p, GatherPass::GradInput, dtype)) {
    C10_CUDA_CHECK(launch_narrow_grad_input(p, cfg, grad_output.const_data_ptr(),
                                            weight.const_data_ptr(),
                                            grad_input.mutable_data_ptr()));
    g_last_kernel[1] = "narrow_gather";
    return;
  }
  C10_CUDA_CHECK(launch_grad_input_gather(p, cfg, grad_output.const_data_ptr(),
                                          weight.const_data_ptr(), grad_input.mutable_data_ptr()));
  g_last_kernel[1] = "grad_input_gather";
}

namespace {

// x and grad_output channels-last (copied once where they are not; extra
// memory: the copies) and the parameters that describe them.
struct ChannelsLastOperands {
  at::Tensor x, gy;
  ConvTranspose3dParams p;
};

ChannelsLastOperands channels_last_operands(const ConvTranspose3dParams& p, const at::Tensor& input,
                                            const at::Tensor& grad_output) {
  ChannelsLastOperands o{input.contiguous(at::MemoryFormat::ChannelsLast3d),
                         grad_output.contiguous(at::MemoryFormat::ChannelsLast3d), p};
  o.p.input = strides_of(o.x);
  o.p.output = strides_of(o.gy);
  return o;
}

// The grad-weight kernels over channels-last operands share one launcher signature.
using ChannelsLastGradWeight = cudaError_t (*)(const ConvTranspose3dParams&, const LaunchConfig&,
                                               const void* input, const void* grad_output,
                                               void* grad_weight, float* workspace);

void run_channels_last_grad_weight(ChannelsLastGradWeight launch, const char* name,
                                   const ChannelsLastOperands& o, const at::Tensor& partials,
                                   const at::Tensor& grad_weight) {
  C10_CUDA_CHECK(launch(o.p, config_for(o.gy, {o.x, o.gy, grad_weight}), o.x.const_data_ptr(),
                        o.gy.const_data_ptr(), grad_weight.mutable_data_ptr(),
                        partials.defined() ? partials.data_ptr<float>() : nullptr));
  g_last_kernel[2] = name;
}

// Auto: groups of at most 4 input and 16 output channels (but depthwise,
// which has a kernel of its own) take the CUDA-core grad-weight, in every
// layout; a GEMM tile over them would be mostly padding.  (NCDHW operands of
// 9-16 output channels a group went to the tensor cores while this kernel
// read a channel a load; since it reads vectors it wins there too, copies
// included: H200, 3 -> 16 channels, 32 x 32^3 out, TF32 0.139 ms against
// the GEMM's 0.202, bf16 0.105 against 0.142.)  Gather takes it wherever it
// runs; the tensor-core policies never.
bool prefers_narrow_grad_weight(const ConvTranspose3dParams& p) {
  if (p.in_per_group == 1 && p.out_per_group == 1) return false;
  switch (g_policy.load()) {
    case KernelPolicy::Gather:
      return true;
    case KernelPolicy::TensorCore:
    case KernelPolicy::Wgmma:
      return false;
    default:
      return p.in_per_group <= 4;
  }
}

// Auto: kernel == stride, NCDHW x and grad_output (U-Net decoders): both
// read in place, no channels-last copies; grad-bias too where asked, in the
// same pass over grad_output.  The forced policies keep testing the
// channels-last GEMMs on these shapes.  Returns false (nothing launched)
// where it does not apply.
bool grad_weight_tap_blocks_takes(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                                  const at::Tensor& input, bool with_bias) {
  const ScalarKind dtype = scalar_kind(grad_output.scalar_type());
  return g_policy.load() == KernelPolicy::Auto && may_use_tensor_cores(p) &&
         !(p.in_per_group == 1 && p.out_per_group == 1) &&
         !(prefers_narrow_grad_weight(p) && narrow_grad_weight_supports(p, dtype)) &&
         grad_weight_tap_blocks_gemm_supports(p, dtype, tf32_allowed(), input.const_data_ptr(),
                                              grad_output.const_data_ptr(), with_bias);
}

bool try_grad_weight_tap_blocks_gemm(const ConvTranspose3dParams& p,
                                     const at::Tensor& grad_output, const at::Tensor& input,
                                     const at::Tensor& grad_weight, const at::Tensor* grad_bias) {
  if (!grad_weight_tap_blocks_takes(p, grad_output, input, grad_bias != nullptr)) return false;
  const at::Tensor partials = float_workspace(
      grad_weight_tap_blocks_gemm_workspace_elems(p, grad_bias != nullptr), grad_output);
  const TapBlocksGradWeightOperands ops{
      input.const_data_ptr(),
      grad_output.const_data_ptr(),
      grad_weight.mutable_data_ptr(),
      grad_bias != nullptr ? grad_bias->mutable_data_ptr() : nullptr,
      grad_bias != nullptr ? grad_bias->stride(0) : 0,
      partials.data_ptr<float>()};
  C10_CUDA_CHECK(launch_grad_weight_tap_blocks_gemm(
      p, config_for(grad_output, {input, grad_output, grad_weight}), ops));
  g_last_kernel[2] = "grad_weight_tap_blocks_gemm";
  if (grad_bias != nullptr) g_last_kernel[3] = "grad_weight_tap_blocks_gemm";
  return true;
}

}  // namespace

// A nested scope leaves the outer one's copies (and bias) in charge.
SharedPacks::SharedPacks(const at::Tensor& grad_output, const at::Tensor& grad_bias)
    : owner_(SharedPacksAccess::active == nullptr),
      grad_output_(grad_output),
      grad_bias_(grad_bias.defined() && grad_bias.numel() > 0 ? grad_bias : at::Tensor()) {
  if (owner_) SharedPacksAccess::active = this;
}

SharedPacks::~SharedPacks() {
  if (owner_) SharedPacksAccess::active = nullptr;
}

bool fuses_grad_weight_and_bias(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                                const at::Tensor& input) {
  return grad_weight_tap_blocks_takes(p, grad_output, input, true);
}

bool fused_grad_weight_and_bias(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                                const at::Tensor& input, const at::Tensor& grad_weight,
                                const at::Tensor& grad_bias) {
  const c10::cuda::CUDAGuard guard(grad_output.device());
  return try_grad_weight_tap_blocks_gemm(p, grad_output, input, grad_weight, &grad_bias);
}

void grad_weight(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                 const at::Tensor& input, const at::Tensor& grad_weight) {
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const ScalarKind dtype = scalar_kind(grad_output.scalar_type());
  if (prefers_narrow_grad_weight(p) && narrow_grad_weight_supports(p, dtype)) {
    // Channels-last operands: a thread's channels contiguous, neighbouring
    // threads on neighbouring positions.
    const ChannelsLastOperands o = channels_last_operands(p, input, grad_output);
    run_channels_last_grad_weight(
        launch_narrow_grad_weight, "narrow_grad_weight", o,
        partials_workspace(narrow_grad_weight_splits(o.p), grad_weight.numel(), grad_output),
        grad_weight);
    return;
  }
  if (try_grad_weight_tap_blocks_gemm(p, grad_output, input, grad_weight, nullptr)) return;
  const Fp32Mma math = fp32_split(dtype);
  const bool split = math != Fp32Mma::Tf32;
  if (may_use_tensor_cores(p) &&
      grad_weight_taps_gemm_supports(p, dtype, tf32_allowed() || split)) {
    // Few output channels a group: the per-tap GEMM would pad them to a
    // 16-wide tile and read x once per tap; this one's columns are (tap,
    // channel) pairs.  Every tensor-core policy takes it (the Hopper GEMM
    // needs 32-channel groups).  x in 16-byte pieces, in place where it can
    // be; gy's groups padded to kTapChannels, one cp.async piece a tap.
    const int64_t x_group = padded_channels(p.in_per_group, dtype);
    const GemmSource x = gemm_source(input, p.groups, x_group);
    const GemmSource gy = taps_gy_source(grad_output, p.groups);
    const at::Tensor partials = float_workspace(grad_weight_taps_gemm_workspace_elems(p), grad_output);
    const TapsGemmOperands ops{x.tensor.const_data_ptr(), x.n, x.d, x.h, x.w, x_group,
                               gy.tensor.const_data_ptr(), gy.n, gy.d, gy.h, gy.w,
                               grad_weight.mutable_data_ptr(),
                               partials.defined() ? partials.data_ptr<float>() : nullptr, math};
    C10_CUDA_CHECK(launch_grad_weight_taps_gemm(
        p, config_for(grad_output, {x.tensor, gy.tensor, grad_weight}), ops));
    g_last_kernel[2] = split ? "grad_weight_taps_gemm_split_tf32" : "grad_weight_taps_gemm";
    return;
  }
  if (may_use_tensor_cores(p)) {
    // Channels-last operands that can be read in place (whole 16-byte
    // pieces, else whole 8-byte ones) are; NCDHW ones are packed once
    // (channels_last_pack.h), which costs less than the strided kernel loses.
    // Anything else goes to the kernel that reads any strides element by element.
    // Groups of 16 channels on the Hopper kernel four at a time (group
    // blocks): 64 × 64 channels a tap, the diagonal blocks kept.  One group
    // a tile did not fit it (its tiles are 32 channels and up), and mma.sync
    // took 42.5 us for grouped g4's bf16 channels-last grad-weight against
    // cuDNN's 23 (H200; RESULTS.md, "Combine lanes round").
    if (groups_of_16_in_fours(p) && !split && g_policy.load() != KernelPolicy::TensorCore) {
      const ConvTranspose3dParams q = four_group_params(p);
      if (grad_weight_readable(input, q.groups) && grad_weight_readable(grad_output, q.groups)) {
        GradWeightGemmOperands o =
            grad_weight_gemm_operands(q, input, grad_output, grad_weight, dtype, int(kGroupBlock));
        if (grad_weight_gemm_sm90_supports(q, dtype, tf32_allowed(), o.ops)) {
          run_grad_weight_gemm_sm90(q, o, grad_output, grad_weight, dtype);
          return;
        }
      }
    }
    if (grad_weight_readable(input, p.groups) && grad_weight_readable(grad_output, p.groups) &&
        grad_weight_gemm_channels_last_supports(p, dtype, tf32_allowed() || split)) {
      GradWeightGemmOperands o =
          grad_weight_gemm_operands(p, input, grad_output, grad_weight, dtype, 0);
      o.ops.fp32_mma = math;
      // The wgmma kernel where it applies, unless the policy asks for mma.sync:
      // in TF32 too, since seven warps rewrite grad_output K-major and groups
      // of 128k input channels take 128-channel tiles (1.1-1.55x mma.sync
      // on every layer but one of the benchmark's wide groups, kernel_ab.py
      // at 362a933; RESULTS.md "Seven transposers round").
      if (!split && g_policy.load() != KernelPolicy::TensorCore &&
          grad_weight_gemm_sm90_supports(p, dtype, tf32_allowed(), o.ops)) {
        run_grad_weight_gemm_sm90(p, o, grad_output, grad_weight, dtype);
        return;
      }
      const LaunchConfig cfg =
          config_for(grad_output, {o.x.src.tensor, o.gy.src.tensor, grad_weight});
      const at::Tensor partials =
          float_workspace(grad_weight_gemm_channels_last_workspace_elems(p), grad_output);
      o.ops.workspace = partials.defined() ? partials.data_ptr<float>() : nullptr;
      C10_CUDA_CHECK(launch_grad_weight_gemm_channels_last(p, cfg, o.ops));
      g_last_kernel[2] =
          split ? "grad_weight_gemm_channels_last_split_tf32" : "grad_weight_gemm_channels_last";
      return;
    }
    if (grad_weight_gemm_supports(p, dtype, tf32_allowed())) {
      const at::Tensor partials = float_workspace(grad_weight_gemm_workspace_elems(p), grad_output);
      const LaunchConfig cfg = config_for(grad_output, {grad_output, input, grad_weight});
      C10_CUDA_CHECK(launch_grad_weight_gemm(
          p, cfg, input.const_data_ptr(), grad_output.const_data_ptr(),
          grad_weight.mutable_data_ptr(), partials.defined() ? partials.data_ptr<float>() : nullptr));
      g_last_kernel[2] = "grad_weight_gemm";
      return;
    }
  }
  if (depthwise_grad_weight_supports(p, dtype)) {
    // Channels-last operands: a warp walking each (channel, tap) along W was
    // instruction-bound, 2-4x slower than the copies plus the channels-last walk.
    const ChannelsLastOperands o = channels_last_operands(p, input, grad_output);
    run_channels_last_grad_weight(
        launch_depthwise_grad_weight, "depthwise_grad_weight", o,
        partials_workspace(depthwise_grad_weight_splits(o.p), grad_weight.numel(), grad_output),
        grad_weight);
    return;
  }
  const LaunchConfig cfg = config_for(grad_output, {grad_output, input, grad_weight});
  const at::Tensor workspace =
      partials_workspace(grad_weight_splits(p), grad_weight.numel(), grad_output);
  C10_CUDA_CHECK(launch_grad_weight_reduce(
      p, cfg, input.const_data_ptr(), grad_output.const_data_ptr(),
      grad_weight.mutable_data_ptr(), workspace.defined() ? workspace.mutable_data_ptr() : nullptr));
  g_last_kernel[2] = "grad_weight_reduce";
}

void grad_bias(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
               const at::Tensor& grad_bias) {
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const LaunchConfig cfg = config_for(grad_output, {grad_output, grad_bias});
  const int64_t splits = grad_bias_splits(p, cfg.dtype, grad_output.const_data_ptr());
  const at::Tensor workspace = partials_workspace(splits, grad_bias.numel(), grad_output);
  C10_CUDA_CHECK(launch_grad_bias_reduce(
      p, cfg, grad_output.const_data_ptr(), grad_bias.mutable_data_ptr(), grad_bias.stride(0),
      workspace.defined() ? workspace.mutable_data_ptr() : nullptr));
  g_last_kernel[3] = "grad_bias_reduce";
}

}  // namespace tconv3d::cuda
