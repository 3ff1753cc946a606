// Why does the weight pack take 25-29 us on the 512→256 bottleneck's 7 MB
// weight, bound in L2 (RESULTS.md, "Pack, combine and small-grid round")?
//
// Times, in one process and on the same buffers: the library's pack
// (csrc/cuda/weight_pack.cu, included as it is), a variant that reads the
// dense weight's contiguous runs with 16-byte loads and writes 16-byte
// stores (pack_dense_runs), and a 16-byte copy of as many bytes (the
// roofline), for both GEMM packings (forward: channels Cin stride Cout·taps;
// grad-input: channels Cout stride taps) of a few weights.  The variant's
// result must equal the library's, bit for bit.  (A variant with 16-byte
// stores alone bought 10-12 % at 44e88a8: RESULTS.md, "Seven transposers
// round".)
//
//   nvcc -std=c++17 -O3 -gencode arch=compute_90a,code=sm_90a -Icsrc/cuda -o /tmp/pack scripts/weight_pack_probe.cu && /tmp/pack
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "probe_check.h"
#include "weight_pack.cu"

namespace tconv3d::cuda {

// A dense weight holds each group as [outer][inner][taps], inner being the
// packing's columns (forward) or channels (grad-input): per outer index,
// inner × taps elements contiguous.  This variant reads such runs with
// 16-byte loads (a tile of KT channels × CT columns × every tap, CT·taps or
// KT·taps elements a run), stages the tile as loaded, and writes each (tap,
// column)'s KT channels with 16-byte stores.  Dense weights only, CT and KT
// whole multiples that keep every run 16-byte aligned (the host checks).
template <typename Bits>
__global__ void __launch_bounds__(256) pack_dense_runs(const WeightPackGeometry w, int kt, int ct,
                                                       bool inner_is_column, Bits* dst) {
  constexpr int V = 16 / sizeof(Bits);
  extern __shared__ __align__(16) unsigned char raw[];
  Bits* staged = reinterpret_cast<Bits*>(raw);
  const Bits* src = static_cast<const Bits*>(w.weight);
  const int taps = int(w.kernel[0] * w.kernel[1] * w.kernel[2]);
  const int64_t inner_total = inner_is_column ? w.columns : w.channels;
  const int64_t outer_total = inner_is_column ? w.channels : w.columns;
  const int on = inner_is_column ? kt : ct, in = inner_is_column ? ct : kt;
  const int run = in * taps;  // elements a staged row
  const int64_t col_tiles = (w.columns + ct - 1) / ct, k_tiles = (w.padded + kt - 1) / kt;
  const int64_t tiles = w.groups * col_tiles * k_tiles;
  for (int64_t b = blockIdx.x; b < tiles; b += gridDim.x) {
    const int64_t k0 = (b % k_tiles) * kt, c0 = (b / k_tiles % col_tiles) * ct, g = b / (k_tiles * col_tiles);
    const int64_t o0 = inner_is_column ? k0 : c0, i0 = inner_is_column ? c0 : k0;
    const Bits* base = src + g * w.group_stride + (o0 * inner_total + i0) * taps;
    // Loads: row o, 16-byte chunk q of its run.
    const int chunks = run / V;
    for (int e = threadIdx.x; e < on * chunks; e += 256) {
      const int o = e / chunks, q = e % chunks;
      const int i_last = (q * V + V - 1) / taps;  // the chunk's last inner index
      uint4 v = make_uint4(0, 0, 0, 0);
      if (o0 + o < outer_total && i0 + i_last < inner_total) {
        v = *reinterpret_cast<const uint4*>(base + int64_t(o) * inner_total * taps + q * V);
      }
      *reinterpret_cast<uint4*>(staged + o * run + q * V) = v;
    }
    __syncthreads();
    // Stores: (tap, column, 16-byte group of channels), channel groups fastest.
    const int groups_k = kt / V;
    for (int e = threadIdx.x; e < taps * ct * groups_k; e += 256) {
      const int kg = e % groups_k, cc = e / groups_k % ct, t = e / (groups_k * ct);
      if (c0 + cc >= w.columns || k0 + kg * V >= w.padded) continue;
      union {
        uint4 vec;
        Bits el[V];
      } out;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const int kk = kg * V + j;
        // Staged element (channel kk, column cc, tap t).
        const int o = inner_is_column ? kk : cc, i = inner_is_column ? cc : kk;
        Bits value = k0 + kk < w.channels ? staged[o * run + i * taps + t] : Bits(0);
        if constexpr (sizeof(Bits) == 4) value = to_tf32(value);
        out.el[j] = value;
      }
      *reinterpret_cast<uint4*>(dst + ((g * taps + t) * w.columns + c0 + cc) * w.padded + k0 + kg * V) = out.vec;
    }
    __syncthreads();
  }
}

__global__ void copy16(const uint4* src, uint4* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    dst[i] = src[i];
  }
}

template <typename F>
float median_us(F&& launch) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 5; ++i) launch();
  std::vector<float> t;
  for (int i = 0; i < 41; ++i) {
    CHECK(cudaEventRecord(a));
    launch();
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1e3f);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

template <typename Bits>
void run(const char* name, int64_t cin, int64_t cout, int64_t k, bool forward) {
  const int64_t taps = k * k * k, numel = cin * cout * taps;
  std::vector<Bits> host(numel);
  uint32_t s = 11;
  for (Bits& v : host) v = Bits((s = s * 1664525u + 1013904223u) >> 7);
  Bits* weight;
  CHECK(cudaMalloc(&weight, numel * sizeof(Bits)));
  CHECK(cudaMemcpy(weight, host.data(), numel * sizeof(Bits), cudaMemcpyHostToDevice));
  WeightPackGeometry w{};
  w.weight = weight;
  w.groups = 1;
  w.columns = forward ? cout : cin;
  w.channels = forward ? cin : cout;
  const int64_t piece = 16 / sizeof(Bits);
  w.padded = (w.channels + piece - 1) / piece * piece;
  w.group_stride = cin * cout * taps;
  w.column_stride = forward ? taps : cout * taps;
  w.channel_stride = forward ? cout * taps : taps;
  for (int a = 0; a < 3; ++a) w.kernel[a] = k;
  w.tap_stride[0] = k * k;
  w.tap_stride[1] = k;
  w.tap_stride[2] = 1;
  const int64_t packed = taps * w.columns * w.padded;
  // a: the library's pack; c: the dense-runs variant's; b: the copy's target.
  Bits *a, *b, *c;
  CHECK(cudaMalloc(&a, packed * sizeof(Bits)));
  CHECK(cudaMalloc(&b, packed * sizeof(Bits)));
  CHECK(cudaMalloc(&c, packed * sizeof(Bits)));
  CHECK(cudaMemset(a, 0xff, packed * sizeof(Bits)));
  CHECK(cudaMemset(c, 0xfd, packed * sizeof(Bits)));
  const float t_lib = median_us([&] { CHECK(launch_pack_weight(w, sizeof(Bits), a, nullptr)); });
  // The dense-runs variant: 128-byte channel runs (KT); columns a tile (CT)
  // a multiple of the step that keeps CT·taps whole 16-byte chunks, as many
  // as fit in 32 KB, no more than there are.
  const int kt = int(128 / sizeof(Bits)), vec = int(16 / sizeof(Bits));
  int step = vec;
  while (step > 1 && (step / 2 * taps) % vec == 0) step /= 2;
  const int64_t fit = 32768 / (kt * taps * int64_t(sizeof(Bits)));
  const int ct = int(std::max<int64_t>(step, std::min<int64_t>(fit, w.columns) / step * step));
  const bool inner_is_column = forward;
  const int in = inner_is_column ? ct : kt;
  const int64_t inner_total = inner_is_column ? w.columns : w.channels;
  const bool dense_ok = w.padded % kt == 0 && (in * taps) % vec == 0 && (inner_total * taps) % vec == 0 &&
                        w.channels == w.padded;
  const int smem = int((inner_is_column ? kt : ct) * in * taps * sizeof(Bits));
  const unsigned run_blocks = unsigned(std::min<int64_t>(
      w.groups * ((w.columns + ct - 1) / ct) * ((w.padded + kt - 1) / kt), 8192));
  float t_runs = -1.f;
  if (dense_ok) {
    CHECK(cudaFuncSetAttribute(pack_dense_runs<Bits>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    t_runs = median_us([&] { pack_dense_runs<Bits><<<run_blocks, 256, smem>>>(w, kt, ct, inner_is_column, c); });
    CHECK(cudaGetLastError());
  }
  // As many bytes as the pack writes, read from the weight (the smaller of the two).
  const int64_t n16 = std::min(packed, numel) * int64_t(sizeof(Bits)) / 16;
  const float t_copy = median_us([&] {
    copy16<<<unsigned(std::min<int64_t>((n16 + 255) / 256, 8192)), 256>>>(
        reinterpret_cast<const uint4*>(weight), reinterpret_cast<uint4*>(b), n16);
  });
  CHECK(cudaDeviceSynchronize());
  int64_t wrong = -1;  // -1: the variant does not apply to this shape
  if (dense_ok) {
    std::vector<Bits> ra(packed), rc(packed);
    CHECK(cudaMemcpy(ra.data(), a, packed * sizeof(Bits), cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(rc.data(), c, packed * sizeof(Bits), cudaMemcpyDeviceToHost));
    wrong = 0;
    for (int64_t i = 0; i < packed; ++i) wrong += ra[i] != rc[i];
  }
  const double mb = double(numel + packed) * sizeof(Bits) / 1e6;
  std::printf("%-22s %-10s %zu-byte %6.2f MB moved: library %7.2f us, dense runs (%d columns) %7.2f us, "
              "copy %7.2f us; mismatches %lld\n",
              name, forward ? "forward" : "grad-input", sizeof(Bits), mb, t_lib, ct, t_runs, t_copy,
              (long long)wrong);
  CHECK(cudaFree(weight));
  CHECK(cudaFree(a));
  CHECK(cudaFree(b));
  CHECK(cudaFree(c));
}

}  // namespace tconv3d::cuda

int main() {
  using tconv3d::cuda::run;
  for (bool forward : {true, false}) {
    run<uint16_t>("bottleneck 512→256 k3", 512, 256, 3, forward);
    run<uint32_t>("bottleneck 512→256 k3", 512, 256, 3, forward);
    run<uint16_t>("VAE 128→128 k4", 128, 128, 4, forward);
    run<uint16_t>("U-Net 256→128 k2", 256, 128, 2, forward);
    run<uint16_t>("1x1x1 1024→1024", 1024, 1024, 1, forward);
  }
  return 0;
}
