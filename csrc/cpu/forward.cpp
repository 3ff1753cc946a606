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

}  // namespace

// One GEMM per stride phase (forward_phase_axis): each output is written once,
// by the phase that owns it; a phase no tap reaches gets the bias alone.
// Where every output takes one tap, the phases' GEMMs are one
// (forward_tap_columns).
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
    run_tap_gemms(phases, wm, p.batch, p.groups, input.const_data_ptr<scalar_t>(), p.input,
                  p.in_per_group, output.mutable_data_ptr<scalar_t>(), p.output, p.out_per_group,
                  b, p.bias_stride);
  });
}

}  // namespace tconv3d::cpu
