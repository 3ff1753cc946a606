// The standalone GPU probes' one error check: print the failing call and
// exit, so a probe run under the device's time limit ends at the first fault.
#pragma once

#include <cstdio>
#include <cstdlib>

#include <cuda_runtime.h>

#define CHECK(x)                                                     \
  do {                                                               \
    cudaError_t e = (x);                                             \
    if (e != cudaSuccess) {                                          \
      std::printf("%s failed: %s\n", #x, cudaGetErrorString(e));     \
      std::exit(1);                                                  \
    }                                                                \
  } while (0)
