#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "cpu_passes.h"
#include "tap_gemm.h"

namespace tconv3d::cpu {
namespace {

// Partial sums of grad-weight: at most this many elements in all, and at
// most kMaxChunks of them (each a fixed run of row tiles, so the sum's order
// is the shape's, not the thread count's).
constexpr int64_t kPartialElements = int64_t(1) << 22;
constexpr int64_t kMaxChunks = 16;

}  // namespace

// gw_g[ci][(tap, co)] = Σ over samples and input positions of x[ci] times
// grad-input's gathered columns of grad_output (grad_input_axis): a GEMM
// whose reduction runs over the rows, in tiles, each chunk of tiles summed by
// one task into its own partial, the partials then added in order.
void grad_weight(const ConvTranspose3dParams& p, const at::Tensor& grad_output,
                 const at::Tensor& input, const at::Tensor& grad_weight) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "tconv3d_grad_weight_cpu", [&] {
    using acc = acc_t<scalar_t>;
    const TapGemm columns = make_tap_gemm(grad_input_axis(p.axis[0]), grad_input_axis(p.axis[1]),
                                          grad_input_axis(p.axis[2]));
    const int64_t ci = p.in_per_group, co = p.out_per_group, G = p.groups;
    const int64_t k = co * columns.taps;
    const int64_t per_tile = tile_rows(std::max(k, ci));
    const int64_t tiles = ceil_div(columns.rows, per_tile), units = p.batch * tiles;
    const int64_t chunks = std::clamp<int64_t>(
        std::min(units, kPartialElements / std::max<int64_t>(G * ci * k, 1)), 1, kMaxChunks);
    const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<acc>::value);
    at::Tensor partial = at::empty({chunks, G, ci, k}, options);
    const bool gy_rows = channels_innermost(p.output, co), x_rows = channels_innermost(p.input, ci);
    const scalar_t* x = input.const_data_ptr<scalar_t>();
    const scalar_t* gy = grad_output.const_data_ptr<scalar_t>();
    at::parallel_for(0, chunks * G, 1, [&](int64_t begin, int64_t end) {
      at::Tensor cols = at::empty({k * per_tile}, options);
      at::Tensor xcols = at::empty({ci * per_tile}, options);
      // grad-input's rows are the input positions, so the destination
      // offsets tile_offsets finds (in x's strides) are x's own.
      std::vector<int64_t> gy_off, x_off;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t chunk = task / G, g = task % G;
        at::Tensor part = partial[chunk][g];
        const int64_t u_begin = chunk * units / chunks, u_end = (chunk + 1) * units / chunks;
        if (u_begin == u_end) part.zero_();
        for (int64_t u = u_begin; u < u_end; ++u) {
          const int64_t n = u / tiles, row0 = (u % tiles) * per_tile;
          const int64_t rows = std::min(per_tile, columns.rows - row0);
          tile_offsets(columns, p.output, p.input, row0, rows, gy_off, x_off);
          gather_columns(gy + n * p.output.n + g * co * p.output.c, p.output.c, co, columns.taps,
                         rows, gy_off, gy_rows, cols.mutable_data_ptr<acc>());
          gather_columns(x + n * p.input.n + g * ci * p.input.c, p.input.c, ci, 1, rows, x_off,
                         x_rows, xcols.mutable_data_ptr<acc>());
          matmul<acc>(part, columns_kn(xcols, ci, rows, x_rows),
                      columns_kn(cols, k, rows, gy_rows).t(), u != u_begin);
        }
      }
    });
    const acc* sums = partial.const_data_ptr<acc>();
    scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();
    const int64_t kH = p.axis[1].kernel, kW = p.axis[2].kernel;
    const int64_t per_chunk = G * ci * k;
    at::parallel_for(0, per_chunk, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        acc s = 0;
        for (int64_t c = 0; c < chunks; ++c) s += sums[c * per_chunk + e];
        // e = (g·ci + i)·k + t·co + o, t = (kd·kH + kh)·kW + kw.
        const int64_t o = e % co, t = e % k / co, row = e / k;
        const int64_t kw = t % kW, kh = t / kW % kH, kd = t / (kW * kH);
        gw[row * p.weight.n + o * p.weight.c + kd * p.weight.d + kh * p.weight.h +
           kw * p.weight.w] = from_acc<scalar_t>(s);
      }
    });
  });
}

}  // namespace tconv3d::cpu
