// tconv3d._C: the extension module.  Loading it registers the operators
// (op_registration.cpp); pybind11 adds the shape helper and the test hooks.
#include <map>
#include <stdexcept>
#include <string>

#include <torch/extension.h>

#include "ops.h"
#include "problem.h"
#ifdef TCONV3D_WITH_CUDA
#include "cuda/cuda_passes.h"
#include "cuda/grad_weight_gemm.h"
#include "cuda/tensor_core_gemm.h"
#endif

namespace {

std::vector<int64_t> output_shape(std::vector<int64_t> input_size, std::vector<int64_t> weight_size,
                                  std::vector<int64_t> stride, std::vector<int64_t> padding,
                                  std::vector<int64_t> output_padding, int64_t groups,
                                  std::vector<int64_t> dilation) {
  return tconv3d::ConvTranspose3dProblem::from_sizes(input_size, weight_size, stride, padding,
                                                     output_padding, groups, dilation)
      .output_shape();
}

// Test hooks reject bad arguments with ValueError.  Known defect: on the GPU
// machine (torch 2.11, Python 3.12) any exception thrown through these
// lambdas, this one or c10::Error, crashes the interpreter; it raises
// normally here (torch 2.14, Python 3.11).  Tests pass them valid arguments.
template <typename... Args>
void require(bool ok, const Args&... message) {
  if (!ok) throw std::invalid_argument(c10::str(message...));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "tconv3d: 3-D transposed convolution kernels (forward, grad-input, grad-weight, grad-bias)";
  m.def("output_shape", &output_shape,
        "validated output shape of conv_transpose3d for the given input and weight shapes",
        py::arg("input_size"), py::arg("weight_size"), py::arg("stride"), py::arg("padding"),
        py::arg("output_padding"), py::arg("groups"), py::arg("dilation"));
  m.def("_set_poison_results", &tconv3d::set_poison_results,
        "test hook: NaN-fill every result before its kernel runs");
#ifdef TCONV3D_WITH_CUDA
  m.attr("with_cuda") = true;
  m.def("_set_force_wide_index", &tconv3d::cuda::set_force_wide_index,
        "test hook: use 64-bit offsets in every CUDA kernel");
  m.def("_channels_last_copies", &tconv3d::cuda::channels_last_copies,
        "test hook: how many channels-last copies of GEMM sources were made so far");
  m.def(
      "_set_kernel_policy",
      [](const std::string& policy) {
        using tconv3d::cuda::KernelPolicy;
        require(policy == "auto" || policy == "gather" || policy == "tensor_core" ||
                    policy == "wgmma",
                "kernel policy must be 'auto', 'gather', 'tensor_core' or 'wgmma', got '", policy,
                "'");
        tconv3d::cuda::set_kernel_policy(policy == "auto"          ? KernelPolicy::Auto
                                         : policy == "gather"      ? KernelPolicy::Gather
                                         : policy == "tensor_core" ? KernelPolicy::TensorCore
                                                                   : KernelPolicy::Wgmma);
      },
      "test hook: which CUDA kernels the passes may use");
  m.def(
      "_set_wgmma_grid",
      [](int ctas) {
        require(ctas >= 0, "CTA count must be >= 0 (0 = one per SM), got ", ctas);
        tconv3d::cuda::set_tensor_core_gemm_sm90_grid(ctas);
      },
      "test hook: cap the Hopper GEMM's persistent grid at this many CTAs (0 = one per SM)");
  m.def(
      "_set_wgmma_columns",
      [](int columns) {
        require(columns == 0 || columns == 32 || columns == 64,
                "column tile must be 0 (by shape), 32 or 64, got ", columns);
        tconv3d::cuda::set_tensor_core_gemm_sm90_columns(columns);
      },
      "test hook: the Hopper GEMM's column tiles at most this wide (0 = by shape)");
  m.def(
      "_set_wgmma_splits",
      [](int splits) {
        require(splits >= 0, "split count must be >= 0 (0 = by shape), got ", splits);
        tconv3d::cuda::set_tensor_core_gemm_sm90_splits(splits);
      },
      "test hook: the Hopper GEMM's grad-input summed in this many ranges of K (0 = by shape; "
      "clamped to a tile's K stages, 1 under the halo loader)");
  m.def(
      "_set_wgmma_halo_min_taps",
      [](int64_t taps) {
        require(taps >= 0, "tap count must be >= 0 (0 = the shipped threshold), got ", taps);
        tconv3d::cuda::set_tensor_core_gemm_sm90_halo_min_taps(taps);
      },
      "test hook: the fewest taps in the fullest phase at which the Hopper GEMM takes its halo "
      "loader where it fits (0 = the shipped threshold, 1 = wherever it fits, huge = never)");
  m.def("_set_wgmma_resident_weight", &tconv3d::cuda::set_tensor_core_gemm_sm90_resident_weight,
        "test hook: whether the Hopper GEMM's TMA loader may keep a launch's weight in shared "
        "memory where every tile walks the same slices (True, shipped) or streams it with every "
        "tile (False)");
  m.def("_set_group_blocks", &tconv3d::cuda::set_group_blocks,
        "test hook: whether groups of 16 channels run four at a time on the Hopper GEMMs (forward "
        "and grad-input four a 64-column tile, grad-weight four as one 64 x 64 GEMM; True, "
        "shipped), or one group a tile (False)");
  m.def("_set_fp32_split", &tconv3d::cuda::set_fp32_split,
        "test and benchmark hook: whether fp32 without TF32 runs the forward, grad-input and "
        "grad-weight GEMMs on split TF32, three TF32 MMAs for each fp32 one (True, shipped), or "
        "the CUDA-core gather kernels (False)");
  m.def("_set_tap_columns_wgmma", &tconv3d::cuda::set_forward_tap_columns_sm90,
        "test hook: whether the tap-columns forward (kernel == stride) may run on Hopper's "
        "warpgroup MMAs where it takes the shape (True, shipped) or stays on mma.sync (False)");
  m.def(
      "_set_tap_columns_wgmma_columns",
      [](int columns) {
        require(columns == 0 || columns == 32 || columns == 64 || columns == 128,
                "tap-columns wgmma columns must be 0 for automatic, or 32, 64 or 128; got ",
                columns);
        tconv3d::cuda::set_forward_tap_columns_sm90_columns(columns);
      },
      "test hook: the Hopper tap-columns forward's consumer tile width, 32 (K up to 1 KB), 64 or "
      "128 columns (128 in fp16/bf16 only); 0 (shipped): 64");
  m.def("_set_forward_taps_any_stride", &tconv3d::cuda::set_forward_taps_any_stride,
        "test and benchmark hook: whether auto's forward also folds the taps of groups of at "
        "most 4 output channels into the GEMM's columns where an axis with taps has stride 1 "
        "(False, shipped: only where every such axis is strided)");
  m.def("_set_smem_per_block_limit", &tconv3d::cuda::set_smem_per_block_limit,
        "test hook: the shared memory a block may take, as the mma.sync kernels' checks read it, "
        "where below the device's (A100: 166912, sm_86/89: 101376); 0 (shipped): the device's");
  m.def("_wgmma_available", &tconv3d::cuda::tensor_core_gemm_sm90_runs_here,
        "whether the Hopper (sm_90a) GEMM runs on the current device");
  m.def(
      "_set_tensor_core_tile",
      [](int rows, int columns) {
        require((rows == 0 && columns == 0) ||
                    ((rows == 64 || rows == 128) && (columns == 32 || columns == 64)),
                "tile must be (0, 0) for automatic, or rows 64/128 and columns 32/64");
        tconv3d::cuda::set_tensor_core_tile(rows, columns);
      },
      "test hook: force the tensor-core GEMM's block tile; (0, 0) = automatic");
  m.def(
      "_set_grad_weight_tile",
      [](int bm, int bn) {
        require((bm == 0 && bn == 0) || tconv3d::cuda::grad_weight_tile_exists(bm, bn),
                "grad-weight tile must be (0, 0) for automatic, or one of 16x16, 32x32, 64x64, "
                "64x128, 128x64, 128x128; got ", bm, "x", bn);
        tconv3d::cuda::set_grad_weight_tile(bm, bn);
      },
      "test hook: force the channels-last grad-weight GEMM's block tile (input x output "
      "channels); (0, 0) = automatic");
  m.def(
      "_set_grad_weight_split_policy",
      [](int64_t min_rows_per_split, int64_t target_warps) {
        require(min_rows_per_split >= 0 && target_warps >= 0,
                "split policy values must be >= 0 (0 = built in)");
        tconv3d::cuda::set_grad_weight_split_policy(min_rows_per_split, target_warps);
      },
      "tuning hook: the channels-last grad-weight GEMM's minimum rows per split and target "
      "warp count; (0, 0) = built in");
  m.def(
      "_last_cuda_kernels",
      [] {
        std::map<std::string, std::string> k;
        k["forward"] = tconv3d::cuda::last_kernel(0);
        k["grad_input"] = tconv3d::cuda::last_kernel(1);
        k["grad_weight"] = tconv3d::cuda::last_kernel(2);
        k["grad_bias"] = tconv3d::cuda::last_kernel(3);
        return k;
      },
      "test hook: the kernel family each pass last launched on CUDA");
#else
  m.attr("with_cuda") = false;
#endif
}
