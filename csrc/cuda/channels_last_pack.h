// NCDHW → the tensor-core GEMMs' source layout [N][D·H·W][G][padded], each
// group's channels contiguous and zero-padded to whole 16-byte pieces.
// torch's permuted copy cannot coalesce both sides of this transpose (it runs
// at 0.7–0.9 TB/s on an H200, pytorch#113560); a tile transposed in shared
// memory reads whole plane rows and writes whole channel rows.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "../params.h"

namespace tconv3d::cuda {

// Element (n, c, s) of the source at n·stride_n + c·stride_c + s: each
// (n, c) plane of `plane` = D·H·W elements contiguous.
struct PlanarSource {
  const void* data;
  int64_t batch, channels, groups, plane;
  int64_t stride_n, stride_c;
};

// element_bytes 2 or 4 (the copy moves bits, so any dtype of that size: the
// tensor-core GEMMs' fp16, bf16 and fp32);
// dst holds batch · plane · groups · padded elements, padded ≥ channels / groups.
cudaError_t launch_pack_channels_last(const PlanarSource& src, int element_bytes, int64_t padded,
                                      void* dst, cudaStream_t stream);

// The same copy summing each channel on the way (fp32): the bias gradient of
// an NCDHW grad_output the GEMMs copy anyway, without a pass of its own over
// it.  Row r < pack_sum_rows(src) of partial holds the sums of one sample's
// position tile, partial[r · channels + channel]; the caller adds the rows in
// a fixed order (launch_combine_channel_sums).  Only where the copy moves
// whole 16-byte pieces (pack_sums_channels), for fp32, fp16 and bf16.
bool pack_sums_channels(const PlanarSource& src, int element_bytes, int64_t padded,
                        const void* dst);
int64_t pack_sum_rows(const PlanarSource& src);
cudaError_t launch_pack_channels_last_summing(const PlanarSource& src, ScalarKind dtype,
                                              int64_t padded, void* dst, float* partial,
                                              cudaStream_t stream);

// The taps-folded grad-weight's gy: [N][positions][G][4], each group's
// channels (at most 4) padded with zeros to 4, from a source whose positions
// are uniformly strided (NCDHW planes: stride_s = 1; dense channels-last:
// stride_s = C, stride_c = 1).  A thread a (position, group): its channels'
// loads coalesce across the warp in either layout (consecutive positions),
// and so do its 8- or 16-byte stores — no transpose tile, which at 4
// channels would be mostly empty.
struct StridedPositions {
  const void* data;
  int64_t batch, positions, groups, per_group;  // per_group ≤ 4
  int64_t stride_n, stride_c, stride_s;
};

cudaError_t launch_pad_groups_to_four(const StridedPositions& src, int element_bytes, void* dst,
                                      cudaStream_t stream);

}  // namespace tconv3d::cuda
