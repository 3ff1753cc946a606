// Why does the weight pack take 25-29 us on the 512→256 bottleneck's 7 MB
// weight, bound in L2 (RESULTS.md, "Pack, combine and small-grid round")?
//
// Times, in one process and on the same buffers: the library's pack as it
// chooses (csrc/cuda/weight_pack.cu, included as it is: pack_dense_runs_kernel
// on dense weights, else the transpose), the transpose kernel forced, and a
// 16-byte copy of as many bytes (the roofline), for both GEMM packings
// (forward: channels Cin stride Cout·taps; grad-input: channels Cout stride
// taps, or 1 in a channels-last weight) of a few weights, contiguous and
// channels-last.  The two results must be equal, bit for bit.
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
void run(const char* name, int64_t cin, int64_t cout, int64_t k, int64_t groups, bool forward,
         bool channels_last = false) {
  const int64_t taps = k * k * k, numel = cin * (cout / groups) * taps;
  std::vector<Bits> host(numel);
  uint32_t s = 11;
  for (Bits& v : host) v = Bits((s = s * 1664525u + 1013904223u) >> 7);
  Bits* weight;
  CHECK(cudaMalloc(&weight, numel * sizeof(Bits)));
  CHECK(cudaMemcpy(weight, host.data(), numel * sizeof(Bits), cudaMemcpyHostToDevice));
  // Weight [Cin][Cout/G][k][k][k], contiguous or channels-last ([Cin][k][k][k][Cout/G]).
  const int64_t in_g = cin / groups, out_g = cout / groups;
  const int64_t co_stride = channels_last ? 1 : taps, ci_stride = out_g * taps;
  const int64_t tap_unit = channels_last ? out_g : 1;
  WeightPackGeometry w{};
  w.weight = weight;
  w.groups = groups;
  w.columns = forward ? out_g : in_g;
  w.channels = forward ? in_g : out_g;
  const int64_t piece = 16 / sizeof(Bits);
  w.padded = (w.channels + piece - 1) / piece * piece;
  w.group_stride = in_g * ci_stride;
  w.column_stride = forward ? co_stride : ci_stride;
  w.channel_stride = forward ? ci_stride : co_stride;
  for (int a = 0; a < 3; ++a) w.kernel[a] = k;
  w.tap_stride[0] = k * k * tap_unit;
  w.tap_stride[1] = k * tap_unit;
  w.tap_stride[2] = tap_unit;
  const int64_t packed = groups * taps * w.columns * w.padded;
  // a: the library's pack; c: the transpose kernel's; b: the copy's target.
  Bits *a, *b, *c;
  CHECK(cudaMalloc(&a, packed * sizeof(Bits)));
  CHECK(cudaMalloc(&b, packed * sizeof(Bits)));
  CHECK(cudaMalloc(&c, packed * sizeof(Bits)));
  CHECK(cudaMemset(a, 0xff, packed * sizeof(Bits)));
  CHECK(cudaMemset(c, 0xfd, packed * sizeof(Bits)));
  const float t_lib = median_us([&] { CHECK(launch_pack_weight(w, sizeof(Bits), a, nullptr)); });
  const DenseRunsTile dense = dense_runs_tile(w, sizeof(Bits));
  const TapTile tile = tap_tile(taps, w.padded);
  const int64_t tiles = w.groups * w.columns * tile.channel_tiles * tile.tap_tiles;
  const float t_transpose = median_us([&] {
    pack_weight_kernel<Bits><<<unsigned(std::min<int64_t>(tiles, 8192)), kThreads>>>(w, tile, c);
  });
  CHECK(cudaGetLastError());
  // As many bytes as the pack writes, read from the weight (the smaller of the two).
  const int64_t n16 = std::min(packed, numel) * int64_t(sizeof(Bits)) / 16;
  const float t_copy = median_us([&] {
    copy16<<<unsigned(std::min<int64_t>((n16 + 255) / 256, 8192)), 256>>>(
        reinterpret_cast<const uint4*>(weight), reinterpret_cast<uint4*>(b), n16);
  });
  CHECK(cudaDeviceSynchronize());
  std::vector<Bits> ra(packed), rc(packed);
  CHECK(cudaMemcpy(ra.data(), a, packed * sizeof(Bits), cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(rc.data(), c, packed * sizeof(Bits), cudaMemcpyDeviceToHost));
  int64_t wrong = 0;
  for (int64_t i = 0; i < packed; ++i) wrong += ra[i] != rc[i];
  const double mb = double(numel + packed) * sizeof(Bits) / 1e6;
  std::printf("%-24s %-10s %-5s %zu-byte %6.2f MB moved: library %7.2f us (%s %d x %d, %lld blocks), "
              "transpose %7.2f us, copy %7.2f us; mismatches %lld\n",
              name, forward ? "forward" : "grad-input", channels_last ? "CL" : "dense", sizeof(Bits), mb,
              t_lib,
              dense.kt > 0 ? "dense runs" : "transpose", dense.kt, dense.ct,
              (long long)(groups * dense.k_tiles * dense.c_tiles), t_transpose, t_copy,
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
    run<uint16_t>("bottleneck 512→256 k3", 512, 256, 3, 1, forward);
    run<uint32_t>("bottleneck 512→256 k3", 512, 256, 3, 1, forward);
    run<uint16_t>("VAE-video 256→128 k3", 256, 128, 3, 1, forward);
    run<uint32_t>("VAE-video 256→128 k3", 256, 128, 3, 1, forward);
    run<uint16_t>("VAE 128→128 k4", 128, 128, 4, 1, forward);
    run<uint16_t>("U-Net 256→128 k2", 256, 128, 2, 1, forward);
    run<uint16_t>("U-Net 128→64 k2", 128, 64, 2, 1, forward);
    run<uint32_t>("U-Net 64→32 k2", 64, 32, 2, 1, forward);
    run<uint16_t>("grouped g4 128→128 k4", 128, 128, 4, 4, forward);
    run<uint16_t>("k5 64→32", 64, 32, 5, 1, forward);
    run<uint16_t>("1x1x1 1024→1024", 1024, 1024, 1, 1, forward);
    run<uint16_t>("bottleneck 512→256 k3", 512, 256, 3, 1, forward, true);
    run<uint32_t>("bottleneck 512→256 k3", 512, 256, 3, 1, forward, true);
    run<uint16_t>("VAE-video 256→128 k3", 256, 128, 3, 1, forward, true);
    run<uint16_t>("U-Net 128→64 k2", 128, 64, 2, 1, forward, true);
    run<uint16_t>("grouped g4 128→128 k4", 128, 128, 4, 4, forward, true);
  }
  return 0;
}
