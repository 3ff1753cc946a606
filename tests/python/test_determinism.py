"""Bitwise-identical results run to run: no atomics, fixed reduction order."""
import pytest
import torch

import tconv3d
from conftest import devices, requires_cuda


def run_once(device, deterministic_mode=False, dtype=torch.float32, channels_last=False,
             in_channels=16, out_channels=12, groups=1, stride=2):
    # 16 -> out_channels (12, 24): wide enough for the tensor-core kernels in half precision,
    # and a grad-weight reduction long enough to be split across blocks.
    g = torch.Generator().manual_seed(1)
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    x = torch.randn(4, in_channels, 9, 7, 8, generator=g).to(device, dtype, memory_format=fmt)
    x.requires_grad_()
    w = torch.randn(in_channels, out_channels // groups, 3, 3, 3, generator=g).to(device, dtype).requires_grad_()
    b = torch.randn(out_channels, generator=g).to(device, dtype).requires_grad_()
    # kernel 3, padding 1, output padding stride - 1: the output is stride × the input.
    gy = torch.randn((4, out_channels, 9 * stride, 7 * stride, 8 * stride), generator=g).to(
        device, dtype, memory_format=fmt)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic_mode)
    try:
        y = tconv3d.conv_transpose3d(x, w, b, stride=stride, padding=1, output_padding=stride - 1,
                                     groups=groups)
        y.backward(gy)
    finally:
        torch.use_deterministic_algorithms(previous)
    return [t.detach().cpu() for t in (y, x.grad, w.grad, b.grad)]


def assert_bitwise_equal(runs):
    """Every run's results equal the first's, bit for bit."""
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_two_runs_are_bitwise_identical(device, dtype):
    first, second = run_once(device, dtype=dtype), run_once(device, dtype=dtype)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def hopper_runs_over_grids(grids, **run_kwargs):
    """run_once under the wgmma policy once per persistent-grid cap (0: one
    per SM); the runs and the kernels each one took (_last_cuda_kernels)."""
    tconv3d._C._set_kernel_policy("wgmma")
    runs, kernels = [], []
    try:
        for ctas in grids:
            tconv3d._C._set_wgmma_grid(ctas)
            runs.append(run_once("cuda", **run_kwargs))
            kernels.append(dict(tconv3d._C._last_cuda_kernels()))
    finally:
        tconv3d._C._set_wgmma_grid(0)
        tconv3d._C._set_kernel_policy("auto")
    return runs, kernels


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_persistent_hopper_gemm_is_bitwise_reproducible(dtype):
    """Same results whatever the CTA count: each output is one thread's sum in
    a fixed order, however the persistent grid hands out the tiles."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    torch.backends.cudnn.allow_tf32 = True  # float32 reaches the tensor cores as TF32 only
    runs, kernels = hopper_runs_over_grids((0, 0, 7), dtype=dtype)
    assert all(k[p].startswith("tensor_core_gemm_sm90")
               for k in kernels for p in ("forward", "grad_input")), kernels
    assert_bitwise_equal(runs)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_hopper_halo_loader_is_bitwise_reproducible(dtype):
    """The halo loader (64 input channels: whole 128-byte rows, two chunks of
    them in TF32; stride 1, 27 taps) gives the same results whatever the CTA
    count."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    torch.backends.cudnn.allow_tf32 = True  # float32 reaches the tensor cores as TF32 only
    runs, kernels = hopper_runs_over_grids((0, 0, 3), dtype=dtype, channels_last=True,
                                           in_channels=64, stride=1)
    assert [k["forward"] for k in kernels] == ["tensor_core_gemm_sm90_halo"] * 3
    assert_bitwise_equal(runs)


@requires_cuda
@pytest.mark.parametrize("splits", [3, 7])
@pytest.mark.parametrize("out_channels", [24, 64], ids=["cp_async", "tma"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_hopper_split_k_grad_input_is_bitwise_reproducible(dtype, out_channels, splits):
    """Grad-input with its K forced into ranges (_set_wgmma_splits; 24
    output channels: the cp.async loader, 64: the TMA loader) gives the same
    results whatever the CTA count: each split's partial sums are added in
    split order, however the persistent grid hands out the units."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    torch.backends.cudnn.allow_tf32 = True  # float32 reaches the tensor cores as TF32 only
    tconv3d._C._set_wgmma_splits(splits)
    try:
        runs, kernels = hopper_runs_over_grids((0, 0, 3), dtype=dtype, channels_last=True,
                                               out_channels=out_channels)
    finally:
        tconv3d._C._set_wgmma_splits(0)
    # 24 channels: 48- or 96-byte rows, no TMA row; 64: whole 128-byte rows.
    loader = "tensor_core_gemm_sm90_tma" if out_channels == 64 else "tensor_core_gemm_sm90"
    assert all(k["grad_input"] == loader for k in kernels), kernels
    assert_bitwise_equal(runs)


@requires_cuda
@pytest.mark.parametrize("dtype, in_channels", [(torch.bfloat16, 64), (torch.float32, 32)],
                         ids=["bf16", "tf32"])
def test_halo_loader_matches_the_per_tap_boxes(dtype, in_channels):
    """The same shape through the halo loader and, with it switched off
    (_set_wgmma_halo_min_taps, kernel_ab's wgmma_boxes), the per-tap boxes: with one
    channel chunk (64 bf16 or 32 fp32 channels) both walk the taps in the same
    order with the same k-steps, so the sums are bitwise equal — in TF32 too,
    where the halo is rounded in shared memory and the boxes' A in registers,
    both to nearest."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    torch.backends.cudnn.allow_tf32 = True  # float32 reaches the tensor cores as TF32 only
    tconv3d._C._set_kernel_policy("wgmma")
    runs, loaders = [], []
    try:
        for min_taps in (0, 1 << 30):
            tconv3d._C._set_wgmma_halo_min_taps(min_taps)
            runs.append(run_once("cuda", dtype=dtype, channels_last=True, in_channels=in_channels,
                                 stride=1))
            loaders.append(tconv3d._C._last_cuda_kernels()["forward"])
    finally:
        tconv3d._C._set_wgmma_halo_min_taps(0)
        tconv3d._C._set_kernel_policy("auto")
    assert loaders == ["tensor_core_gemm_sm90_halo", "tensor_core_gemm_sm90_tma"]
    assert_bitwise_equal(runs)


@requires_cuda
@pytest.mark.parametrize("tile", [(16, 16), (32, 32), (64, 64), (128, 128)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_channels_last_grad_weight_is_bitwise_reproducible(dtype, tile):
    """The channels-last grad-weight GEMM, split reduction and the k-split
    tiles' in-block sum included: identical gradients run to run (float32 in TF32)."""
    torch.backends.cudnn.allow_tf32 = True
    tconv3d._C._set_grad_weight_tile(*tile)
    try:
        # 24 output channels: whole 16-byte pieces in bf16, read in place.
        runs = [run_once("cuda", dtype=dtype, channels_last=True, out_channels=24)
                for _ in range(3)]
    finally:
        tconv3d._C._set_grad_weight_tile(0, 0)
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_gemm_channels_last"
    assert_bitwise_equal(runs)


@requires_cuda
@pytest.mark.parametrize("channels", [(64, 64), (32, 32), (64, 32)], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_hopper_grad_weight_is_bitwise_reproducible(channels_last, channels):
    """The wgmma grad-weight GEMM's split partials and their combine:
    identical gradients run to run (its shapes: 64 channels a side, the
    turned 32-channel product, 32-channel grad_output copies)."""
    in_channels, out_channels = channels
    runs = [run_once("cuda", dtype=torch.bfloat16, channels_last=channels_last,
                     in_channels=in_channels, out_channels=out_channels) for _ in range(3)]
    if tconv3d._C._wgmma_available():
        assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_gemm_sm90"
    assert_bitwise_equal(runs)


@requires_cuda
@pytest.mark.parametrize("channels", [(64, 64), (128, 32)], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_hopper_tf32_grad_weight_is_bitwise_reproducible(channels_last, channels):
    """The TF32 wgmma grad-weight GEMM (grad_output rewritten K-major by seven
    warps, x through the consumer's registers; 64- and 128-channel tiles):
    its split partials and their combine, identical gradients run to run."""
    torch.backends.cudnn.allow_tf32 = True
    in_channels, out_channels = channels
    runs = [run_once("cuda", dtype=torch.float32, channels_last=channels_last,
                     in_channels=in_channels, out_channels=out_channels) for _ in range(3)]
    if tconv3d._C._wgmma_available():
        assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_gemm_sm90"
    assert_bitwise_equal(runs)


@requires_cuda
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_depthwise_grad_weight_is_bitwise_reproducible(dtype, channels_last):
    """The depthwise grad-weight's split partials (a thread a channel vector
    and tap; NCDHW operands copied channels-last first) and their combine,
    run to run."""
    runs = [run_once("cuda", dtype=dtype, channels_last=channels_last, in_channels=16,
                     out_channels=16, groups=16) for _ in range(3)]
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "depthwise_grad_weight"
    assert_bitwise_equal(runs)


@pytest.mark.parametrize("device", devices())
def test_runs_under_use_deterministic_algorithms(device):
    for a, b in zip(run_once(device), run_once(device, deterministic_mode=True)):
        assert torch.equal(a, b)


@requires_cuda
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("policy", ["auto", "wgmma"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_wide_index_path_gives_identical_results(dtype, policy, channels_last):
    if policy == "wgmma" and not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    tconv3d._C._set_kernel_policy(policy)
    try:
        narrow = run_once("cuda", dtype=dtype, channels_last=channels_last)
        if policy == "wgmma":
            assert tconv3d._C._last_cuda_kernels()["forward"].startswith("tensor_core_gemm_sm90")
        tconv3d._C._set_force_wide_index(True)
        try:
            wide = run_once("cuda", dtype=dtype, channels_last=channels_last)
        finally:
            tconv3d._C._set_force_wide_index(False)
    finally:
        tconv3d._C._set_kernel_policy("auto")
    for a, b in zip(narrow, wide):
        assert torch.equal(a, b)


@requires_cuda
@pytest.mark.parametrize("allow_tf32, dtype", [(True, torch.float32), (False, torch.bfloat16)],
                         ids=["tf32", "bf16"])
def test_cuda_graph_replay_matches_eager(allow_tf32, dtype):
    """A training step captured in a CUDA graph (as torch.compile's
    reduce-overhead mode does) replays to the eager results bit for bit: the
    tensor maps baked into the captured launches, the workspaces from the
    graph's pool and the grad-bias combine's dependent launch all survive
    capture.  64 channels: the TMA-loaded GEMM on both gather passes."""
    torch.backends.cudnn.allow_tf32 = allow_tf32
    g = torch.Generator().manual_seed(21)
    fmt = torch.channels_last_3d
    x = torch.randn(2, 64, 6, 7, 5, generator=g).to("cuda", dtype, memory_format=fmt)
    w = (torch.randn(64, 64, 3, 3, 3, generator=g) / 16).to("cuda", dtype)
    b = torch.randn(64, generator=g).to("cuda", dtype)
    gy = torch.randn(2, 64, 12, 14, 10, generator=g).to("cuda", dtype, memory_format=fmt)
    leaves = [t.requires_grad_() for t in (x, w, b)]

    def step():
        y = tconv3d.conv_transpose3d(x, w, b, stride=2, padding=1, output_padding=1)
        return (y, *torch.autograd.grad(y, leaves, gy))

    # Detached: a clone of y would keep the eager graph, and with it the
    # leaves' AccumulateGrad nodes made on the default stream, alive into the
    # capture, whose backward would then wait on the default stream.
    eager = [t.detach().clone() for t in step()]
    if tconv3d._C._wgmma_available():
        kernels = tconv3d._C._last_cuda_kernels()
        assert (kernels["forward"], kernels["grad_input"]) == ("tensor_core_gemm_sm90_tma",) * 2
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream, as torch.cuda.graph asks
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    graph.replay()
    torch.cuda.synchronize()
    for name, e, c in zip(("output", "grad_input", "grad_weight", "grad_bias"), eager, captured):
        assert torch.equal(e, c), name


@requires_cuda
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("channels", [(4, 8), (3, 8)], ids=["4_to_8", "3_to_8"])
def test_narrow_grad_weight_is_bitwise_reproducible(channels, channels_last):
    """The CUDA-core grad-weight of narrow groups: its block trees, split
    partials and their combine, run to run."""
    cin, cout = channels
    runs = [run_once("cuda", dtype=torch.bfloat16, channels_last=channels_last, in_channels=cin,
                     out_channels=cout) for _ in range(3)]
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "narrow_grad_weight"
    assert_bitwise_equal(runs)


@requires_cuda
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_grad_weight_taps_gemm_is_bitwise_reproducible(dtype, channels_last):
    """The taps-folded grad-weight GEMM (64 -> 3, float32 in TF32): split
    partials and their combine, run to run."""
    torch.backends.cudnn.allow_tf32 = True
    runs = [run_once("cuda", dtype=dtype, channels_last=channels_last, in_channels=64,
                     out_channels=3) for _ in range(3)]
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_taps_gemm"
    assert_bitwise_equal(runs)


@requires_cuda
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_forward_taps_gemm_is_bitwise_reproducible(dtype, channels_last):
    """The taps-folded forward and grad-input (64 -> 3, float32 in TF32), run
    to run and with 64-bit indices."""
    torch.backends.cudnn.allow_tf32 = True
    runs = [run_once("cuda", dtype=dtype, channels_last=channels_last, in_channels=64,
                     out_channels=3) for _ in range(2)]
    kernels = tconv3d._C._last_cuda_kernels()
    assert (kernels["forward"], kernels["grad_input"]) == ("forward_taps_gemm",
                                                           "grad_input_taps_gemm")
    tconv3d._C._set_force_wide_index(True)
    try:
        runs.append(run_once("cuda", dtype=dtype, channels_last=channels_last, in_channels=64,
                             out_channels=3))
    finally:
        tconv3d._C._set_force_wide_index(False)
    assert_bitwise_equal(runs)
