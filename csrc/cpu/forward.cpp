#include <algorithm>
#include <cstdlib>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "cpu_passes.h"
#include "tap_gemm.h"

namespace tconv3d::cpu {
namespace {

// kernel == stride with no padding, dilation or output padding (3-D U-Net
// decoders, one_tap_per_output): each input position's s_d·s_h·s_w outputs
// take one tap each, so the forward is one GEMM over input positions ×
// (tap, channel) columns.  A tile's x is copied once into the GEMM's buffer
// (the phase GEMMs gathered it once a phase: s_d·s_h·s_w times), and each
// product goes to its tap's output position.  wm: [G][taps · Cout/G][Cin/G],
// rows (tap, channel).  The offsets are grad_input_axis's geometry, written
// out here: tile_offsets' per-(row, tap) bounds tests, which k == s never
// fails, made these forwards 1.04-1.38x slower.
template <typename scalar_t>
void forward_tap_columns(const ConvTranspose3dParams& p, const scalar_t* x, const at::Tensor& wm,
                         const scalar_t* bias, scalar_t* y) {
  using acc = acc_t<scalar_t>;
  const int64_t cin = p.in_per_group, cout = p.out_per_group, G = p.groups;
  const int64_t stride[3] = {p.axis[0].stride, p.axis[1].stride, p.axis[2].stride};
  const int64_t taps = stride[0] * stride[1] * stride[2], columns = taps * cout;
  const int64_t H = p.axis[1].in, W = p.axis[2].in, positions = p.axis[0].in * H * W;
  const Strides5 &xs = p.input, &ys = p.output;
  const bool x_rows = channels_innermost(xs, cin), y_rows = channels_innermost(ys, cout);
  const int64_t per_tile = tile_rows(std::max(cin, columns));
  const int64_t tiles = ceil_div(positions, per_tile);
  at::parallel_for(0, p.batch * tiles, 1, [&](int64_t begin, int64_t end) {
    const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<acc>::value);
    at::Tensor xt = at::empty({cin * per_tile}, options);
    at::Tensor prod = at::empty({columns * per_tile}, options);
    std::vector<int64_t> x_off, y_off;
    std::vector<acc> bias_acc(size_t(cout), acc(0));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / tiles, row0 = task % tiles * per_tile;
      const int64_t rows = std::min(per_tile, positions - row0);
      x_off.resize(size_t(rows));
      y_off.resize(size_t(rows));
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t q = row0 + r, iw = q % W, ih = q / W % H, id = q / (W * H);
        x_off[size_t(r)] = id * xs.d + ih * xs.h + iw * xs.w;
        y_off[size_t(r)] = id * stride[0] * ys.d + ih * stride[1] * ys.h + iw * stride[2] * ys.w;
      }
      for (int64_t g = 0; g < G; ++g) {
        gather_columns(x + n * xs.n + g * cin * xs.c, xs.c, cin, 1, rows, x_off, x_rows,
                       xt.mutable_data_ptr<acc>());
        const at::Tensor xk = columns_kn(xt, cin, rows, x_rows);
        // The product as [rows][columns] where y's channels are innermost (a
        // tap's channels one run of stores), else [columns][rows].
        const at::Tensor out =
            y_rows ? as_matrix(prod, rows, columns) : as_matrix(prod, columns, rows);
        if (y_rows) {
          matmul<acc>(out, xk.t(), wm[g].t(), false);
        } else {
          matmul<acc>(out, wm[g], xk, false);
        }
        for (int64_t co = 0; co < cout; ++co) {
          bias_acc[size_t(co)] =
              bias == nullptr ? acc(0) : to_acc(bias[(g * cout + co) * p.bias_stride]);
        }
        // Tap t's columns of the product, [rows][columns] or [columns][rows].
        const acc* sums = out.const_data_ptr<acc>();
        const int64_t pitch = y_rows ? columns : rows;
        scalar_t* yg = y + n * ys.n + g * cout * ys.c;
        int64_t t = 0;
        for (int64_t td = 0; td < stride[0]; ++td)
          for (int64_t th = 0; th < stride[1]; ++th)
            for (int64_t tw = 0; tw < stride[2]; ++tw, ++t) {
              store_tile(sums + t * cout * (y_rows ? 1 : rows), pitch, bias_acc.data(), rows,
                         cout, y_off.data(), ys.c, y_rows, yg + td * ys.d + th * ys.h + tw * ys.w);
            }
      }
    }
  });
}

// A forward phase along one axis, on a zero-padded slab of x: output row j
// reads x at j + src_origin + t·src_per_tap (forward_phase_axis: one source
// position a row), so slab index u = j − j0 + t·src_per_tap − lowest holds
// x at j0 + src_origin + lowest + u, and tap t's operand is the slab shifted
// by a constant.
struct SlabAxis {
  int64_t rows, taps, per_tap, lowest, spread;
  explicit SlabAxis(const GemmAxis& a)
      : rows(a.rows), taps(a.taps), per_tap(a.src_per_tap),
        lowest(std::min<int64_t>(0, (a.taps - 1) * a.src_per_tap)),
        spread(std::abs((a.taps - 1) * a.src_per_tap)) {}
  int64_t shift(int64_t t) const { return t * per_tap - lowest; }
};

// Elements of a task's slab (or product), about: a block of whole D rows.
constexpr int64_t kSlabElements = int64_t(1) << 20;
constexpr int64_t kSmallSlabGemm = 4;  // M · K below which a tap's product runs small_mm
// A tap's weights a group (Cin/G · Cout/G) from which the slabs pay: fewer
// (depthwise: one) do too little a pass over the slab, and the gathered
// columns' one GEMM over every tap ran 1.3-2x faster; at 16 (groups of 4)
// the two were even, at 24 (3 → 8) the slabs 1.2-1.5x faster.
constexpr int64_t kSlabMinWeights = 16;

// The slab of sample n, group g, D rows [j0, j0 + S − spread) of a phase:
// [C][S][Eh][Ew], widened to acc, zero outside x.  Channel-major whatever
// x's layout: each tap's product is then [Cout][positions], a GEMM the BLAS
// runs well at 8 channels a side, where [positions][Cout] with channels-last
// x ran 1.3-1.7x slower than the gathered columns.
template <typename scalar_t, typename acc>
void fill_slab(const scalar_t* x, const Strides5& xs, int64_t channels, const Axis (&axis)[3],
               const int64_t (&origin)[3], const int64_t (&extent)[3], acc* slab) {
  const int64_t S = extent[0], Eh = extent[1], Ew = extent[2], plane = Eh * Ew;
  const int64_t w0 = std::clamp<int64_t>(-origin[2], 0, Ew);
  const int64_t w1 = std::clamp<int64_t>(axis[2].in - origin[2], w0, Ew);
  for (int64_t sd = 0; sd < S; ++sd)
    for (int64_t sh = 0; sh < Eh; ++sh) {
      const int64_t id = origin[0] + sd, ih = origin[1] + sh;
      const bool inside = id >= 0 && id < axis[0].in && ih >= 0 && ih < axis[1].in;
      const int64_t lo = inside ? w0 : Ew, hi = inside ? w1 : Ew;
      // (Rows outside x read nothing: no pointer is formed past it.)
      const scalar_t* line = inside ? x + id * xs.d + ih * xs.h + (origin[2] + lo) * xs.w : x;
      for (int64_t c = 0; c < channels; ++c) {
        acc* out = slab + c * S * plane + sd * plane + sh * Ew;
        const scalar_t* in = line + c * xs.c;
        std::fill(out, out + lo, acc(0));
        for (int64_t sw = lo; sw < hi; ++sw) out[sw] = to_acc(in[(sw - lo) * xs.w]);
        std::fill(out + hi, out + Ew, acc(0));
      }
    }
}

// The stride phases' GEMMs over a zero-padded copy of x instead of gathered
// columns: tap t's operand is the slab shifted by a constant (SlabAxis), so
// product[d][i] = Σ_t W_t[d][c] · slab[c][i + shift_t], one BLAS call a tap,
// i running over the slab's pitches (the Ew − rows columns past each H row
// and the rows past H's are computed and dropped).  run_tap_gemms' gather, an
// indexed load an element and the source copied once a tap, cost several
// times the GEMMs on these layers (RESULTS.md, "CPU padded-slab round").
// A task is one block of D rows of one phase, for one sample and group.
template <typename scalar_t>
void forward_padded_slabs(const ConvTranspose3dParams& p, const std::vector<TapGemm>& phases,
                          const std::vector<at::Tensor>& wm, const scalar_t* x,
                          const scalar_t* bias, scalar_t* y) {
  using acc = acc_t<scalar_t>;
  const int64_t cs = p.in_per_group, cd = p.out_per_group, G = p.groups;
  const Strides5 &xs = p.input, &ys = p.output;
  const bool y_rows = channels_innermost(ys, cd);
  // Task ranges: phase q owns tasks [first[q], first[q + 1]): batch · G · blocks.
  std::vector<int64_t> first(phases.size() + 1, 0), block_rows(phases.size());
  int64_t slab_buffer = 1, prod_buffer = 1;
  for (size_t q = 0; q < phases.size(); ++q) {
    const SlabAxis d(phases[q].axis[0]), h(phases[q].axis[1]), w(phases[q].axis[2]);
    const int64_t plane = (h.rows + h.spread) * (w.rows + w.spread);
    block_rows[q] = std::clamp<int64_t>(kSlabElements / (std::max(cs, cd) * plane) - d.spread,
                                        1, std::max<int64_t>(d.rows, 1));
    first[q + 1] = first[q] + p.batch * G * ceil_div(d.rows, block_rows[q]);
    slab_buffer = std::max(slab_buffer, cs * (block_rows[q] + d.spread) * plane);
    prod_buffer = std::max(prod_buffer, cd * block_rows[q] * plane);
  }
  at::parallel_for(0, first.back(), 1, [&](int64_t begin, int64_t end) {
    const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<acc>::value);
    at::Tensor slab = at::empty({slab_buffer}, options), prod = at::empty({prod_buffer}, options);
    std::vector<acc> bias_acc(size_t(cd), acc(0));
    for (int64_t task = begin; task < end; ++task) {
      const size_t q = size_t(std::upper_bound(first.begin(), first.end(), task) - first.begin() - 1);
      const TapGemm& gemm = phases[q];
      const SlabAxis a[3] = {SlabAxis(gemm.axis[0]), SlabAxis(gemm.axis[1]), SlabAxis(gemm.axis[2])};
      const int64_t blocks = ceil_div(a[0].rows, block_rows[q]);
      const int64_t block = (task - first[q]) % blocks, ng = (task - first[q]) / blocks;
      const int64_t n = ng / G, g = ng % G;
      const int64_t j0 = block * block_rows[q], nd = std::min(block_rows[q], a[0].rows - j0);
      const int64_t Eh = a[1].rows + a[1].spread, Ew = a[2].rows + a[2].spread, plane = Eh * Ew;
      const int64_t L = (nd - 1) * plane + (a[1].rows - 1) * Ew + a[2].rows;  // product columns
      for (int64_t d = 0; d < cd; ++d) {
        bias_acc[size_t(d)] = bias == nullptr ? acc(0) : to_acc(bias[(g * cd + d) * p.bias_stride]);
      }
      const acc* sums = nullptr;  // a phase no tap reaches: the bias alone
      if (gemm.taps > 0) {
        const int64_t origin[3] = {j0 + gemm.axis[0].src_origin + a[0].lowest,
                                   gemm.axis[1].src_origin + a[1].lowest,
                                   gemm.axis[2].src_origin + a[2].lowest};
        const int64_t extent[3] = {nd + a[0].spread, Eh, Ew};
        acc* slab_data = slab.mutable_data_ptr<acc>();
        fill_slab(x + n * xs.n + g * cs * xs.c, xs, cs, p.axis, origin, extent, slab_data);
        const at::Tensor out = as_matrix(prod, cd, L);
        const int64_t slab_stride = extent[0] * plane;  // a channel's, channel-major
        int64_t t = 0;
        for (int64_t td = 0; td < a[0].taps; ++td)
          for (int64_t th = 0; th < a[1].taps; ++th)
            for (int64_t tw = 0; tw < a[2].taps; ++tw, ++t) {
              const int64_t shift = a[0].shift(td) * plane + a[1].shift(th) * Ew + a[2].shift(tw);
              // Tap t's operand [C][L]: the slab from `shift` on.  N runs over
              // the whole slab, thousands of positions: the BLAS pays for all
              // but one or two channels a side.
              const at::Tensor b = slab.as_strided({cs, L}, {slab_stride, 1}, shift);
              matmul<acc>(out, wm[q][g].narrow(1, t * cs, cs), b, t > 0, kSmallSlabGemm);
            }
        sums = out.const_data_ptr<acc>();
      }
      scalar_t* yg = y + n * ys.n + g * cd * ys.c;
      const GemmAxis(&ga)[3] = gemm.axis;
      for (int64_t jd = 0; jd < nd; ++jd)
        for (int64_t jh = 0; jh < a[1].rows; ++jh) {
          const int64_t i0 = jd * plane + jh * Ew;
          scalar_t* line = yg + ((j0 + jd) * ga[0].dst_per_row + ga[0].dst_origin) * ys.d +
                           (jh * ga[1].dst_per_row + ga[1].dst_origin) * ys.h +
                           ga[2].dst_origin * ys.w;
          const int64_t step = ga[2].dst_per_row * ys.w;
          // Along y's innermost axis: a position's channels, or a channel's row.
          if (y_rows) {
            for (int64_t jw = 0; jw < a[2].rows; ++jw)
              for (int64_t d = 0; d < cd; ++d) {
                const acc sum = sums == nullptr ? acc(0) : sums[d * L + i0 + jw];
                line[jw * step + d * ys.c] = from_acc<scalar_t>(sum + bias_acc[size_t(d)]);
              }
          } else {
            for (int64_t d = 0; d < cd; ++d)
              for (int64_t jw = 0; jw < a[2].rows; ++jw) {
                const acc sum = sums == nullptr ? acc(0) : sums[d * L + i0 + jw];
                line[jw * step + d * ys.c] = from_acc<scalar_t>(sum + bias_acc[size_t(d)]);
              }
          }
        }
    }
  });
}

}  // namespace

// The GEMMs of the stride phases (forward_phase_axis): each output is written
// once, by the phase that owns it; a phase no tap reaches gets the bias
// alone.  Over padded slabs of x (forward_padded_slabs) but for the
// narrowest groups, which gather columns (run_tap_gemms); where every output
// takes one tap, the phases' GEMMs are one (forward_tap_columns).
void forward(const ConvTranspose3dParams& p, const at::Tensor& input, const at::Tensor& weight,
             const std::optional<at::Tensor>& bias, const at::Tensor& output) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "tconv3d_forward_cpu", [&] {
    std::vector<TapGemm> phases;
    std::vector<at::Tensor> wm;
    // Phases r ≥ the output's extent own no outputs: a stride past the output
    // (any stride torch accepts) must not cost a GEMM plan a stride phase.
    const auto owning = [&](int i) { return std::min(p.axis[i].stride, p.axis[i].out); };
    for (int64_t rd = 0; rd < owning(0); ++rd)
      for (int64_t rh = 0; rh < owning(1); ++rh)
        for (int64_t rw = 0; rw < owning(2); ++rw) {
          phases.push_back(make_tap_gemm(forward_phase_axis(p.axis[0], rd),
                                         forward_phase_axis(p.axis[1], rh),
                                         forward_phase_axis(p.axis[2], rw)));
          wm.push_back(weight_matrix(p, weight.const_data_ptr<scalar_t>(), phases.back(),
                                     /*dest_is_output=*/true));
        }
    const scalar_t* b = bias.has_value() ? bias->const_data_ptr<scalar_t>() : nullptr;
    if (one_tap_per_output(p.axis)) {
      // Phase t's one-tap matrix [G][Cout/G][Cin/G] is the tap's rows.
      forward_tap_columns(p, input.const_data_ptr<scalar_t>(), at::cat(wm, 1), b,
                          output.mutable_data_ptr<scalar_t>());
      return;
    }
    if (p.in_per_group * p.out_per_group >= kSlabMinWeights) {
      forward_padded_slabs(p, phases, wm, input.const_data_ptr<scalar_t>(), b,
                           output.mutable_data_ptr<scalar_t>());
      return;
    }
    run_tap_gemms(phases, wm, p.batch, p.groups, input.const_data_ptr<scalar_t>(), p.input,
                  p.in_per_group, output.mutable_data_ptr<scalar_t>(), p.output, p.out_per_group,
                  b, p.bias_stride);
  });
}

}  // namespace tconv3d::cpu
