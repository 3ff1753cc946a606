// The weight in the tensor-core GEMMs' B layout [G][kD·kH·kW][columns][padded],
// each column's K side contiguous and zero-padded to whole 16-byte pieces
// (tensor_core_gemm.h, TensorCoreGemmOperands::packed_weight).  One launch
// from any weight strides: the same transpose through ATen views, a pad and
// a copy cost four dispatcher calls and a TensorIterator setup of host time on
// every forward and grad-input call.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace tconv3d::cuda {

// Element (g, t, column, k) of the packed weight, k < channels, is the weight
// element at g·group_stride + column·column_stride + k·channel_stride + the
// tap's offset, tap t = (kd·kH + kh)·kW + kw at kd·tap_stride[0] +
// kh·tap_stride[1] + kw·tap_stride[2]; k ≥ channels is zero.
//   forward:    columns Cout/G (stride w.stride(1)), channels Cin/G (w.stride(0))
//   grad-input: columns Cin/G (w.stride(0)), channels Cout/G (w.stride(1))
struct WeightPackGeometry {
  const void* weight;
  int64_t groups, columns, channels, padded;
  int64_t group_stride, column_stride, channel_stride;
  int64_t kernel[3];
  int64_t tap_stride[3];
  // 0, or the width of the weight's own groups where each packed group holds
  // columns / block of them block-diagonally (TensorCoreGemmOperands::
  // group_blocks): column c and channel k of packed group g are the weight's
  // group g·columns/block + c/block, its column c % block and channel
  // k % block where c and k share a block, zeros elsewhere; group_stride is
  // then the weight's groups' stride.
  int64_t block = 0;
};

// element_bytes 2 (fp16, bf16: bits moved) or 4 (fp32, rounded to TF32 where
// round_tf32: the TF32 GEMMs then round one operand, not two, per stage; the
// split-TF32 GEMM needs the bits whole); dst holds groups · taps · columns ·
// padded elements.
cudaError_t launch_pack_weight(const WeightPackGeometry& w, int element_bytes, bool round_tf32,
                               void* dst, cudaStream_t stream);

}  // namespace tconv3d::cuda
