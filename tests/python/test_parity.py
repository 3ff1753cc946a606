"""Forward and all three gradients against a float64 reference, over odd
shapes, every geometry feature, three memory layouts and four dtypes."""
import contextlib
import math
import zlib

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import tconv3d
from tconv3d._ops import transposed_output_extent
from cases import (BROADCAST_CONFIGS, CONFIGS, FORWARD_TAPS_CONFIGS, GRAD_INPUT_TAPS_CONFIGS,
                   GRAD_WEIGHT_CONFIGS, GRAD_WEIGHT_SM90_CONFIGS, HALO_CONFIGS, NARROW_GATHER_CONFIGS,
                   NARROW_GRAD_WEIGHT_CONFIGS, TAP_BLOCK_CONFIGS, TAP_COLUMN_CONFIGS,
                   TAPS_GEMM_CONFIGS, TENSOR_CORE_CONFIGS, TMA_CONFIGS, geometry_of, shapes_of,
                   widen)
from conftest import TOLERANCE, devices, layer_format, reference_conv, rel_err, requires_cuda

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["contiguous", "channels_last", "sliced"]

# Below these, a 2x-of-torch's-error bound would be comparing rounding noise.
ERROR_FLOOR = {torch.float64: 1e-13, torch.float32: 1e-6, torch.float16: 5e-4,
               torch.bfloat16: 4e-3}
TF32_TOLERANCE, TF32_ERROR_FLOOR = 3e-3, 5e-4


def use_precision(precision):
    """The dtype of a tensor-core precision ("tf32", "split_tf32", "fp16",
    "bf16"); float32 runs as TF32 exactly when "tf32", as torch's convolutions
    would, and on split TF32 where TF32 is off."""
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    return {"tf32": torch.float32, "split_tf32": torch.float32, "fp16": torch.float16,
            "bf16": torch.bfloat16}[precision]


def triple(v):
    """A per-axis argument as a 3-tuple."""
    return (v,) * 3 if isinstance(v, int) else tuple(v)


def padded_group_bytes(channels, groups, dtype):
    """A group's channels in bytes, padded to 16-byte pieces as the op layer
    pads a tensor-core GEMM's source (padded_channels)."""
    return -(-(channels // groups * dtype.itemsize) // 16) * 16


def make_tensor(shape, layout, dtype, device, generator):
    """Random data (never zeros) in the requested memory layout."""
    if layout == "sliced":
        # Every dimension strided or offset inside a larger buffer.  Sliced
        # after the conversion: .to() of a strided tensor returns a contiguous
        # one, which made this layout contiguous on CUDA and in 16/32-bit.
        big = torch.randn([2 * s + 1 for s in shape], generator=generator, dtype=torch.float64)
        t = big.to(dtype=dtype, device=device)[tuple(slice(1, 1 + 2 * s, 2) for s in shape)]
        assert not t.is_contiguous()
        return t
    t = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
    if layout == "channels_last" and t.dim() == 5:
        t = t.contiguous(memory_format=torch.channels_last_3d)
    return t


def torch_same_dtype(x, w, b, gy, geometry):
    """torch's own result in the same dtype and device, or None where torch
    has no kernel for it."""
    try:
        xt, wt = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
        bt = None if b is None else b.detach().clone().requires_grad_()
        y = F.conv_transpose3d(xt, wt, bt, **geometry)
        y.backward(gy)
        return y, xt.grad, wt.grad, None if bt is None else bt.grad
    except (RuntimeError, NotImplementedError):
        return None


def memory_beyond_results(run):
    """run()'s result, and the CUDA memory it held at its peak beyond what
    stays allocated after it (its results, however the allocator rounded
    them): the workspaces and copies a call makes."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    result = run()
    torch.cuda.synchronize()
    return result, torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()


def assert_repeats_bitwise(result, run, pass_name, kernel):
    """run() gives `result` bit for bit again, and with 64-bit indices on the
    same kernel."""
    assert torch.equal(result, run())
    with hook_set(tconv3d._C._set_force_wide_index, True, False):
        wide = run()
    assert tconv3d._C._last_cuda_kernels()[pass_name] == kernel
    assert torch.equal(result, wide)


def check(what, value, reference, torch_value, dtype):
    tf32 = dtype == torch.float32 and value.is_cuda and torch.backends.cudnn.allow_tf32
    tolerance = TF32_TOLERANCE if tf32 else TOLERANCE[dtype]
    floor = TF32_ERROR_FLOOR if tf32 else ERROR_FLOOR[dtype]
    err = rel_err(value, reference)
    assert err <= tolerance, f"{what}: relative error {err:.3g} > {tolerance:.3g}"
    if torch_value is not None:
        err_torch = rel_err(torch_value, reference)
        bound = max(2 * err_torch, floor)
        assert err <= bound, f"{what}: error {err:.3g} > 2x torch's ({err_torch:.3g})"


def run_parity(config, layout, dtype, device, unbatched=False):
    # A fixed seed per case (str hashes are salted per process): failures reproduce.
    gen = torch.Generator().manual_seed(zlib.crc32(repr((config, layout, dtype)).encode()))
    x_shape, w_shape, cout = shapes_of(config)
    if unbatched:
        x_shape = x_shape[1:]
    geometry = geometry_of(config)
    has_bias = config[-1]
    x = make_tensor(x_shape, layout, dtype, device, gen).requires_grad_()
    w = make_tensor(w_shape, layout, dtype, device, gen).requires_grad_()
    b = make_tensor((cout,), "contiguous", dtype, device, gen).requires_grad_() if has_bias else None

    y = tconv3d.conv_transpose3d(x, w, b, **geometry)
    xr, wr, br, yr = reference_conv(x, w, b, **geometry)
    assert y.shape == yr.shape and y.dtype == dtype and y.device == x.device
    if not unbatched:
        assert y.is_contiguous(memory_format=layer_format(dtype, x, w))
    # (x of one position is both layouts at once, and torch's rule reads it as contiguous.)
    if (layout == "channels_last" and dtype != torch.float64 and not unbatched
            and not x.is_contiguous()):
        assert y.is_contiguous(memory_format=torch.channels_last_3d)

    gy = make_tensor(y.shape, layout, dtype, device, gen)
    y.backward(gy)
    yr.backward(gy.double().cpu())
    theirs = torch_same_dtype(x, w, b, gy, geometry) or (None,) * 4

    check("output", y, yr, theirs[0], dtype)
    check("grad_input", x.grad, xr.grad, theirs[1], dtype)
    check("grad_weight", w.grad, wr.grad, theirs[2], dtype)
    if has_bias:
        check("grad_bias", b.grad, br.grad, theirs[3], dtype)


def run_parity_with_policy(policy, config, layout, dtype):
    """run_parity on CUDA with the kernel policy forced, back to auto after."""
    tconv3d._C._set_kernel_policy(policy)
    try:
        run_parity(config, layout, dtype, "cuda")
    finally:
        tconv3d._C._set_kernel_policy("auto")


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_and_gradients_match_reference(name, layout, dtype, device):
    run_parity(CONFIGS[name], layout, dtype, device)


@pytest.fixture
def kernel_policy(request):
    tconv3d._C._set_kernel_policy(request.param)
    yield request.param
    tconv3d._C._set_kernel_policy("auto")


@requires_cuda
@pytest.mark.parametrize("kernel_policy", ["gather", "tensor_core", "wgmma"], indirect=True)
@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(TENSOR_CORE_CONFIGS))
def test_every_cuda_kernel_variant(name, layout, precision, kernel_policy):
    """Each kernel family forced through the sweep, in the precisions that
    have tensor-core paths (fp32 runs as TF32 here, as torch's conv would)."""
    dtype = use_precision(precision)
    run_parity(TENSOR_CORE_CONFIGS[name], layout, dtype, "cuda")
    kernels = tconv3d._C._last_cuda_kernels()
    expected = expected_kernels(kernel_policy, TENSOR_CORE_CONFIGS[name], dtype, layout)
    assert kernels["forward"] == expected["forward"]
    assert kernels["grad_input"] == expected["grad_input"]
    assert kernels["grad_weight"] in expected["grad_weight"]


@pytest.fixture
def forced_tile(request):
    tconv3d._C._set_tensor_core_tile(*request.param)
    yield request.param
    tconv3d._C._set_tensor_core_tile(0, 0)


@requires_cuda
@pytest.mark.parametrize("forced_tile", [(64, 32), (64, 64), (128, 32), (128, 64)],
                         indirect=True, ids=lambda t: f"{t[0]}x{t[1]}")
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
@pytest.mark.parametrize("name", list(TENSOR_CORE_CONFIGS))
def test_every_tensor_core_tile(name, layout, precision, forced_tile):
    """Each block tile of the tensor-core GEMM forced through the sweep (the
    shape-based choice reaches only some of them on these small shapes)."""
    dtype = use_precision(precision)
    run_parity_with_policy("tensor_core", TENSOR_CORE_CONFIGS[name], layout, dtype)
    kernels = tconv3d._C._last_cuda_kernels()
    assert kernels["forward"] == kernels["grad_input"] == "tensor_core_gemm"


def torch_grad_weight(x, w, gy, dtype, geometry):
    """torch's grad-weight of conv_transpose3d in `dtype`, on x's device."""
    w_ = w.to(x.device, dtype).requires_grad_()
    y_ = F.conv_transpose3d(x.to(dtype), w_, **geometry)
    return torch.autograd.grad(y_, w_, gy.to(x.device, dtype))[0]


def torch_grad_input(x, w, gy, dtype, geometry):
    """torch's grad-input of conv_transpose3d in `dtype`, on x's device."""
    x_ = x.to(dtype).requires_grad_()
    y_ = F.conv_transpose3d(x_, w.to(x.device, dtype), **geometry)
    return torch.autograd.grad(y_, x_, gy.to(x.device, dtype))[0]


@requires_cuda
@pytest.mark.parametrize("forced_tile", [(64, 32), (64, 64), (128, 32), (128, 64)],
                         indirect=True, ids=lambda t: f"{t[0]}x{t[1]}")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(TENSOR_CORE_CONFIGS))
def test_split_tf32_gemm_every_tile(name, layout, forced_tile):
    """fp32 without TF32 on split TF32, each block tile of the forward and
    grad-input GEMM forced: fp32's tolerance, and at most twice torch's own
    full-fp32 error, in all three passes.  grad-weight takes the taps-folded
    GEMM for at most 4 output channels a group, else its channels-last GEMM
    where it reads the operands in place or packs them (NCDHW: always)."""
    config = TENSOR_CORE_CONFIGS[name]
    run_parity_with_policy("tensor_core", config, layout, torch.float32)
    kernels = tconv3d._C._last_cuda_kernels()
    assert kernels["forward"] == kernels["grad_input"] == "tensor_core_gemm_split_tf32"
    split_gw = "grad_weight_gemm_channels_last_split_tf32"
    if taps_gemm_takes(config):
        assert kernels["grad_weight"] == "grad_weight_taps_gemm_split_tf32"
    elif layout == "contiguous":
        assert kernels["grad_weight"] == split_gw
    else:  # strides no cp.async piece reads: the CUDA-core reductions
        assert kernels["grad_weight"] in {split_gw, "grad_weight_reduce", "depthwise_grad_weight"}


@requires_cuda
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_split_tf32_gemm_in_auto(layout):
    """Auto, fp32 without TF32: a dense strided layer's three passes on split
    TF32 (never the Hopper or tap-columns kernels, which round to TF32),
    bitwise repeatable, the same with 64-bit offsets; an infinity in x or
    grad_output leaves the results it does not reach as they were and the
    ones it reaches non-finite, where float64's are."""
    fmt = torch.channels_last_3d if layout == "channels_last" else torch.contiguous_format
    g = torch.Generator().manual_seed(29)
    x = torch.randn(2, 64, 5, 6, 7, generator=g).cuda().contiguous(memory_format=fmt)
    w = (torch.randn(64, 48, 3, 3, 3, generator=g) / 40).cuda()
    b = torch.randn(48, generator=g).cuda()
    geometry = dict(stride=2, padding=1, output_padding=1)
    op_geometry = ([2, 2, 2], [1, 1, 1], [1, 1, 1], 1, [1, 1, 1])

    def forward(x_):
        return tconv3d.conv_transpose3d(x_, w, b, **geometry)

    def grad_input(gy_):
        return torch.ops.tconv3d.grad_input(gy_, w, list(x.shape), *op_geometry)

    def grad_weight(x_):
        return torch.ops.tconv3d.grad_weight(gy, x_, list(w.shape), *op_geometry)

    def forward_reference(x_):
        return F.conv_transpose3d(x_.double(), w.double(), b.double(), **geometry)

    def grad_input_reference(gy_):
        return F.conv3d(gy_.double(), w.double(), stride=2, padding=1)

    split_gemm = "tensor_core_gemm_split_tf32"
    y = forward(x)
    assert tconv3d._C._last_cuda_kernels()["forward"] == split_gemm
    y_torch = F.conv_transpose3d(x, w, b, **geometry)
    check("forward", y, forward_reference(x), y_torch, torch.float32)
    assert_repeats_bitwise(y, lambda: forward(x), "forward", split_gemm)
    gy = torch.randn(y.shape, generator=g).cuda().contiguous(memory_format=fmt)
    gx = grad_input(gy)
    assert tconv3d._C._last_cuda_kernels()["grad_input"] == split_gemm
    gx_torch = F.conv3d(gy, w, stride=2, padding=1)
    check("grad_input", gx, grad_input_reference(gy), gx_torch, torch.float32)
    assert_repeats_bitwise(gx, lambda: grad_input(gy), "grad_input", split_gemm)
    gw = grad_weight(x)
    split_gw = "grad_weight_gemm_channels_last_split_tf32"
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == split_gw
    check("grad_weight", gw, torch_grad_weight(x.cpu(), w, gy, torch.float64, geometry),
          torch_grad_weight(x, w, gy, torch.float32, geometry), torch.float32)
    assert_repeats_bitwise(gw, lambda: grad_weight(x), "grad_weight", split_gw)

    x_inf, gy_inf = x.clone(), gy.clone()
    x_inf[1, 5, 2, 3, 4] = float("inf")
    gy_inf[0, 3, 4, 5, 6] = float("-inf")
    for result, before, reference in ((forward(x_inf), y, forward_reference(x_inf)),
                                      (grad_input(gy_inf), gx, grad_input_reference(gy_inf)),
                                      (grad_weight(x_inf), gw, torch_grad_weight(
                                          x_inf.cpu(), w, gy, torch.float64, geometry))):
        finite = torch.isfinite(reference).cpu()
        assert not finite.all()
        assert torch.equal(torch.isfinite(result).cpu(), finite)
        assert torch.equal(result.cpu()[finite], before.cpu()[finite])


@requires_cuda
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("geometry", [dict(kernel=4, stride=2, padding=1),
                                      dict(kernel=3, stride=2, padding=1, output_padding=1)],
                         ids=["k4s2p1", "k3s2p1op1"])
@pytest.mark.parametrize("channels", [40, 128])
def test_split_tf32_taps_gemms_in_auto(channels, geometry, layout):
    """Auto, fp32 without TF32, 3 output channels (RGB-output layers): the
    taps-folded forward (128 channels: its widest K, 512 bytes, in a smaller
    box), grad-input (the phase GEMM from channels-last grad_output) and
    grad-weight GEMMs on split TF32, at fp32's tolerance
    and within twice torch's full-fp32 error, bitwise repeatable, the same
    with 64-bit offsets; with the hook off, the CUDA-core kernels (the
    stencil where it fits)."""
    fmt = torch.channels_last_3d if layout == "channels_last" else torch.contiguous_format
    g = torch.Generator().manual_seed(31)
    geometry = dict(geometry)  # the parameter is shared by every test it labels
    kernel = geometry.pop("kernel")
    x = torch.randn(3, channels, 7, 6, 9, generator=g).cuda().contiguous(memory_format=fmt)
    w = (torch.randn(channels, 3, kernel, kernel, kernel, generator=g) / 16).cuda()
    b = torch.randn(3, generator=g).cuda()
    y = tconv3d.conv_transpose3d(x, w, b, **geometry)
    assert tconv3d._C._last_cuda_kernels()["forward"] == "forward_taps_gemm_split_tf32"
    xr = x.double().cpu()
    check("forward", y, F.conv_transpose3d(xr, w.double().cpu(), b.double().cpu(), **geometry),
          F.conv_transpose3d(x, w, b, **geometry), torch.float32)
    assert_repeats_bitwise(y, lambda: tconv3d.conv_transpose3d(x, w, b, **geometry), "forward",
                           "forward_taps_gemm_split_tf32")
    gy = torch.randn(y.shape, generator=g).cuda().contiguous(memory_format=fmt)
    stride, padding = geometry["stride"], geometry["padding"]
    op_geometry = ([stride] * 3, [padding] * 3, [geometry.get("output_padding", 0)] * 3, 1,
                   [1, 1, 1])

    def grad_input():
        return torch.ops.tconv3d.grad_input(gy, w, list(x.shape), *op_geometry)

    def grad_weight():
        return torch.ops.tconv3d.grad_weight(gy, x, list(w.shape), *op_geometry)

    gx = grad_input()
    split_gi = ("tensor_core_gemm_split_tf32" if layout == "channels_last"
                else "grad_input_taps_gemm_split_tf32")
    assert tconv3d._C._last_cuda_kernels()["grad_input"] == split_gi
    check("grad_input", gx, torch_grad_input(xr, w, gy.cpu(), torch.float64, geometry),
          torch_grad_input(x, w, gy, torch.float32, geometry), torch.float32)
    assert_repeats_bitwise(gx, grad_input, "grad_input", split_gi)
    gw = grad_weight()
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_taps_gemm_split_tf32"
    check("grad_weight", gw, torch_grad_weight(xr, w, gy.cpu(), torch.float64, geometry),
          torch_grad_weight(x, w, gy, torch.float32, geometry), torch.float32)
    assert_repeats_bitwise(gw, grad_weight, "grad_weight", "grad_weight_taps_gemm_split_tf32")
    with hook_set(tconv3d._C._set_fp32_split, False, True):
        tconv3d.conv_transpose3d(x, w, b, **geometry)
        assert tconv3d._C._last_cuda_kernels()["forward"] in {"narrow_gather", "forward_gather"}
        grad_input()
        assert tconv3d._C._last_cuda_kernels()["grad_input"] in {"narrow_gather",
                                                                 "grad_input_gather"}
        grad_weight()
        assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_reduce"


def narrow_gather_takes(config, layout, dtype, forward):
    """Whether the narrow-group stencil (narrow_gather.cu, plan_narrow) takes
    a pass: its destination coordinates tabulate in a block (at most 2048 of
    D + H + W), and one item's weights, taps × S source channels × the item's
    channels in the accumulator type, fit a block's 24 KB.  An item is a
    16-byte vector of channels channels-last (where the channel count and, but
    for depthwise, the destination channels a group split into whole vectors),
    else a group of 2-4 channels, else one; four channels W-fastest where a
    group's destination channels split in fours (or depthwise), else one."""
    n, cin, cout, groups, size, kernel, stride, padding, output_padding, dilation, _ = config
    kernel = triple(kernel)
    out = list(map(transposed_output_extent, size, kernel, triple(stride), triple(padding),
                   triple(dilation), triple(output_padding)))
    coordinates = sum(out) if forward else sum(size)
    channels, dst_pg, src_pg = ((cout, cout // groups, cin // groups) if forward
                                else (cin, cin // groups, cout // groups))
    depthwise = dst_pg == src_pg == 1
    vec = 16 // dtype.itemsize
    if layout == "channels_last" and channels > 1:
        if channels % vec == 0 and (depthwise or dst_pg % vec == 0):
            item = vec
        else:  # a group's 2-4 channels, else one
            item = dst_pg if not depthwise and 1 < dst_pg <= 4 else 1
    else:
        item = 4 if depthwise or dst_pg % 4 == 0 else 1
    acc_bytes = 8 if dtype == torch.float64 else 4
    return coordinates <= 2048 and math.prod(kernel) * src_pg * item * acc_bytes <= 24 * 1024


def taps_gemm_takes(config):
    """Whether the tensor-core policies send a grad-weight to the taps-folded
    GEMM (TF32 or half precision assumed): at most 4 output channels a group."""
    _, _, cout, groups, *_ = config
    return cout // groups <= 4


def grad_input_taps_takes(config):
    """Whether auto sends a tensor-core grad-input to the taps-folded GEMM
    (TF32 or half precision): at most 4 output channels a group and 512 taps."""
    _, _, cout, groups, _, kernel, *_ = config
    return cout // groups <= 4 and math.prod(triple(kernel)) <= 512


def expected_kernels(policy, config, dtype, layout):
    """The kernel families a forced policy runs; wgmma falls back to the
    mma.sync GEMM where the Hopper one does not run (test_wgmma_runs_on_hopper
    makes sure that is only off Hopper), its loader as the shape allows
    (expected_wgmma_loaders); gather takes the narrow-group stencil where it
    runs (narrow_gather_takes), else the generic gather kernels."""
    _, cin, cout, groups, *_ = config
    tensor_core = {"forward": "tensor_core_gemm", "grad_input": "tensor_core_gemm",
                   "grad_weight": ({"grad_weight_taps_gemm"} if taps_gemm_takes(config)
                                   else {"grad_weight_gemm", "grad_weight_gemm_channels_last"})}
    if policy == "gather":
        depthwise = cin == cout == groups
        narrow = [narrow_gather_takes(config, layout, dtype, forward) for forward in (True, False)]
        narrow_gw = cin // groups <= 4 and cout // groups <= 16
        return {"forward": "narrow_gather" if narrow[0] else "forward_gather",
                "grad_input": "narrow_gather" if narrow[1] else "grad_input_gather",
                "grad_weight": {"depthwise_grad_weight" if depthwise
                                else "narrow_grad_weight" if narrow_gw else "grad_weight_reduce"}}
    if policy == "wgmma" and tconv3d._C._wgmma_available():
        forward, grad_input = expected_wgmma_loaders(config, dtype)
        return dict(tensor_core, forward=forward, grad_input=grad_input,
                    grad_weight=tensor_core["grad_weight"] | {"grad_weight_gemm_sm90"})
    return tensor_core


@requires_cuda
def test_wgmma_runs_on_hopper():
    """On a compute-capability-9.0 GPU the build must carry the sm_90a kernels."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("not a Hopper GPU")
    assert tconv3d._C._wgmma_available()


@requires_cuda
def test_auto_policy_takes_wgmma_where_it_pays():
    """Auto, bf16: the Hopper GEMM for a grad-input 96 columns wide over more
    tiles than SMs; for the forward's 48 columns the tap-columns GEMM where
    kernel == stride (on Hopper's MMAs into this channels-last output), else
    the mma.sync one; all exact."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 96, 16, 16, 18, generator=g).to("cuda", torch.bfloat16)
    w = (torch.randn(96, 48, 2, 2, 2, generator=g) / 16).to("cuda", torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    y = tconv3d.conv_transpose3d(x, w, stride=2)
    gy = torch.randn(y.shape, generator=g).to("cuda", torch.bfloat16)
    gx, = torch.autograd.grad(y, x, gy)
    kernels = tconv3d._C._last_cuda_kernels()
    assert kernels["forward"] == "forward_tap_columns_gemm_sm90"
    assert kernels["grad_input"] == "tensor_core_gemm_sm90"
    xr = x.detach().double().requires_grad_()
    yr = F.conv_transpose3d(xr, w.double(), stride=2)
    gxr, = torch.autograd.grad(yr, xr, gy.double())
    assert rel_err(y, yr) <= TOLERANCE[torch.bfloat16]
    assert rel_err(gx, gxr) <= TOLERANCE[torch.bfloat16]
    y_padded = tconv3d.conv_transpose3d(x, w, stride=2, padding=1)  # not one tap per output
    assert tconv3d._C._last_cuda_kernels()["forward"] == "tensor_core_gemm"
    yr_padded = F.conv_transpose3d(xr.detach(), w.double(), stride=2, padding=1)
    assert rel_err(y_padded, yr_padded) <= TOLERANCE[torch.bfloat16]


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_auto_forward_of_kernel_equal_stride_at_64_columns(layout, precision):
    """Auto, kernel == stride, 64 output channels: the Hopper GEMM into an
    NCDHW output, the tap-columns GEMM (its Hopper version, bf16 and TF32)
    into a channels-last one; both against the float64 reference."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    run_parity((2, 128, 64, 1, (6, 7, 9), 2, 2, 0, 0, 1, True), layout, use_precision(precision),
               "cuda")
    expected = ("tensor_core_gemm_sm90_tma" if layout == "contiguous"
                else "forward_tap_columns_gemm_sm90")
    assert tconv3d._C._last_cuda_kernels()["forward"] == expected


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_auto_policy_grad_input_on_wgmma_above_32_columns(precision):
    """Auto: a bf16 grad-input takes the Hopper GEMM from 33 columns (input
    channels per group), given the tiles, and stays on mma.sync at 32; TF32
    stays on mma.sync; all exact."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    dtype = use_precision(precision)
    wide = "tensor_core_gemm" if precision == "tf32" else "tensor_core_gemm_sm90"
    g = torch.Generator().manual_seed(5)
    for in_channels, expected in ((64, wide), (32, "tensor_core_gemm")):
        # 4·16·16·18 input positions: 144 row tiles of 128, more than 3/4 of 132 SMs.
        w = (torch.randn(in_channels, 24, 3, 3, 3, generator=g) / 16).to("cuda", dtype)
        gy = torch.randn(4, 24, 31, 31, 35, generator=g).to("cuda", dtype)
        gy = gy.contiguous(memory_format=torch.channels_last_3d)
        gx = torch.ops.tconv3d.grad_input(gy, w, [4, in_channels, 16, 16, 18], [2, 2, 2],
                                          [1, 1, 1], [0, 0, 0], 1, [1, 1, 1])
        assert tconv3d._C._last_cuda_kernels()["grad_input"] == expected
        x_ref = torch.zeros(4, in_channels, 16, 16, 18, dtype=torch.float64, requires_grad=True)
        y_ref = F.conv_transpose3d(x_ref, w.double().cpu(), stride=2, padding=1)
        gx_ref, = torch.autograd.grad(y_ref, x_ref, gy.double().cpu())
        tolerance = TF32_TOLERANCE if precision == "tf32" else TOLERANCE[dtype]
        assert rel_err(gx, gx_ref) <= tolerance


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("case", [
    # (in_channels, out_channels, groups, input DHW, kernel, stride, padding, output_padding,
    #  expected bf16 forward, grad-input, expected TF32 forward, grad-input)
    # 64 -> 64: whole 128-byte rows on both sides, 64 columns; k3s2's forward
    # phases hold 2 and 1 taps a side, k4s2's 2 each.
    (64, 64, 1, (5, 6, 7), 3, 2, 1, 1, "tma", "tma", "tma", "tma"),
    (64, 64, 1, (5, 6, 7), 4, 2, 1, 0, "tma", "tma", "tma", "tma"),
    # 256 -> 64, k3s2: TF32 rows of 1 KB.
    (256, 64, 1, (3, 4, 5), 3, 2, 1, 1, "tma", "tma", "tma", "tma"),
    # 64 -> 32: forward 128-byte rows over 32 columns; grad-input's 32 source
    # channels one 64-byte row in bf16, a whole 128-byte row in TF32.
    (64, 32, 1, (5, 6, 7), 3, 2, 1, 1, "tma", "tma", "tma", "tma"),
    # 32 -> 32, stride 1: 64-byte rows in bf16, 128-byte rows over 32 columns in TF32.
    (32, 32, 1, (6, 5, 7), 3, 1, 1, 0, "tma", "tma", "tma", "tma"),
    # 16 channels per group of 4: 32-byte rows over 16 columns in bf16,
    # 64-byte rows in TF32.
    (64, 64, 4, (4, 5, 6), 3, 2, 1, 1, "tma", "tma", "tma", "tma"),
    # 8 input channels per group: no TMA row in bf16 (16 bytes) and 32-byte
    # rows in TF32, so both forwards stay on mma.sync; grad-input's 32
    # channels per group 64- or 128-byte rows.
    (64, 256, 8, (4, 5, 6), 3, 2, 1, 1, "mma", "tma", "mma", "tma"),
], ids=["64to64", "64to64_k4s2", "256to64", "64to32", "32to32_k3s1", "groups4_of_16",
        "groups8_of_8_to_32"])
def test_auto_policy_takes_the_tma_loader_where_it_fits(case, precision):
    """Auto: the Hopper GEMM with its TMA loader wherever the source's
    channels per group suit it (whole 128-byte rows, or exactly one 64- or
    32-byte row), whatever the column and tile counts — except TF32's
    32-byte rows (8 channels), which stay on mma.sync; all exact."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    cin, cout, groups, size, kernel, stride, padding, output_padding, *expected = case
    expected = expected[:2] if precision == "bf16" else expected[2:]
    dtype = use_precision(precision)
    config = (2, cin, cout, groups, size, kernel, stride, padding, output_padding, 1, False)
    # The Hopper GEMM's TMA loader, in its halo form where the taps overlap.
    expected = tuple("tensor_core_gemm" if e == "mma"
                     else "tensor_core_gemm_sm90_halo" if halo_loader_takes(config, dtype, forward)
                     else "tensor_core_gemm_sm90_tma"
                     for e, forward in zip(expected, (True, False)))
    tolerance = TF32_TOLERANCE if precision == "tf32" else TOLERANCE[dtype]
    geometry = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups)
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, cin, *size, generator=g).to("cuda", dtype)
    x = x.contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    w = (torch.randn(cin, cout // groups, kernel, kernel, kernel, generator=g) / 16).to("cuda", dtype)
    y = tconv3d.conv_transpose3d(x, w, **geometry)
    gy = torch.randn(y.shape, generator=g).to("cuda", dtype)
    gx, = torch.autograd.grad(y, x, gy)
    kernels = tconv3d._C._last_cuda_kernels()
    assert (kernels["forward"], kernels["grad_input"]) == expected
    xr = x.detach().double().requires_grad_()
    yr = F.conv_transpose3d(xr, w.double(), **geometry)
    gxr, = torch.autograd.grad(yr, xr, gy.double())
    assert rel_err(y, yr) <= tolerance
    assert rel_err(gx, gxr) <= tolerance


@requires_cuda
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_auto_grad_input_onto_few_columns(precision, layout):
    """Auto, RGB-like 3 -> 16 grad-input (16 source channels, 3 columns): the
    Hopper GEMM's TMA loader in TF32 (64-byte rows), mma.sync in bf16, where
    a tile of 32 columns holding 3 lost to it; exact both ways."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    dtype = use_precision(precision)
    g = torch.Generator().manual_seed(13)
    w = (torch.randn(3, 16, 3, 3, 3, generator=g) / 8).to("cuda", dtype)
    gy = make_tensor((4, 16, 12, 12, 14), layout, dtype, "cuda", g)
    geometry = ([2, 2, 2], [1, 1, 1], [1, 1, 1], 1, [1, 1, 1])
    gx = torch.ops.tconv3d.grad_input(gy, w, [4, 3, 6, 6, 7], *geometry)
    expected = "tensor_core_gemm_sm90_tma" if precision == "tf32" else "tensor_core_gemm"
    assert tconv3d._C._last_cuda_kernels()["grad_input"] == expected
    x_ref = torch.zeros(4, 3, 6, 6, 7, dtype=torch.float64, requires_grad=True)
    y_ref = F.conv_transpose3d(x_ref, w.double().cpu(), stride=2, padding=1, output_padding=1)
    gx_ref, = torch.autograd.grad(y_ref, x_ref, gy.double().cpu())
    tolerance = TF32_TOLERANCE if precision == "tf32" else TOLERANCE[dtype]
    assert rel_err(gx, gx_ref) <= tolerance


# 0.75 of a TF32 unit above 1: rounds to 1 + 2^-10, truncates to 1.  Its
# products with 1, summed in fp32, are exact: the TF32 rounding tests tell a
# rounded operand from a truncated one by the bits of such sums.
TF32_ROUNDS_UP = 1 + 3 * 2.0 ** -12
TF32_ROUNDED = 1 + 2.0 ** -10


def tf32_rounding_operands(value_in_x):
    """The TF32 rounding tests' x, 2 × 64 × 5 × 6 × 7 channels-last, holding
    TF32_ROUNDS_UP where the value sits in x, else 1; and the other operand's
    fill (TF32_ROUNDS_UP where it sits there)."""
    data, other = (TF32_ROUNDS_UP, 1.0) if value_in_x else (1.0, TF32_ROUNDS_UP)
    x = torch.full((2, 64, 5, 6, 7), data, device="cuda").contiguous(
        memory_format=torch.channels_last_3d)
    return x, other


@requires_cuda
def test_tf32_follows_cudnn_conv_precision():
    """torch 2.9's switch for convolutions, cudnn.conv.fp32_precision, set
    apart from RNN's (where asking cuDNN's TF32 flag without naming the op
    throws): "ieee" runs float32 at fp32's tolerance (split TF32), "tf32" in
    TF32, as torch's own convolutions do."""
    cudnn = torch.backends.cudnn
    if not hasattr(getattr(cudnn, "conv", None), "fp32_precision"):
        pytest.skip("torch before 2.9: allow_tf32 is the only switch")
    g = torch.Generator().manual_seed(43)
    x = torch.randn(2, 64, 5, 6, 7, generator=g).cuda()
    w = (torch.randn(64, 48, 3, 3, 3, generator=g) / 40).cuda()
    geometry = dict(stride=2, padding=1, output_padding=1)
    reference = F.conv_transpose3d(x.double(), w.double(), **geometry)
    saved = (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision)
    try:
        cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = "ieee", "tf32"
        y = tconv3d.conv_transpose3d(x, w, **geometry)
        assert tconv3d._C._last_cuda_kernels()["forward"] == "tensor_core_gemm_split_tf32"
        assert rel_err(y, reference) <= TOLERANCE[torch.float32]
        cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = "tf32", "ieee"
        y = tconv3d.conv_transpose3d(x, w, **geometry)
        assert "split" not in tconv3d._C._last_cuda_kernels()["forward"]
        assert TOLERANCE[torch.float32] < rel_err(y, reference) <= TF32_TOLERANCE
    finally:
        cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = saved


@requires_cuda
@pytest.mark.parametrize("operand", ["data", "weight"])
@pytest.mark.parametrize("kernel_policy", ["auto", "tensor_core"], indirect=True)
def test_tf32_operands_round_to_nearest(kernel_policy, operand):
    """TF32 on either GEMM rounds each fp32 operand to the nearest TF32 value
    (as cuDNN does), never truncates: 1 + 3·2^-12 is 0.75 of a TF32 unit above
    1, so 64 products of it with 1 (the centre tap's; the other taps' weights
    are 0, exact products) sum exactly to 64·(1 + 2^-10); truncated operands
    would give 64.  The value sits in x and grad_output (rounded as the GEMMs
    load them) or in the weight (rounded once, as it is packed).  Kernel 3,
    padding 1: the phase GEMMs, not the U-Net one; 64 columns over whole
    128-byte rows, stride 1: auto takes the Hopper GEMM's halo loader in both
    passes (its halos rounded in shared memory by the producer warps), and
    with the halo switched off its per-tap boxes (A rounded in the
    consumers' registers)."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    use_precision("tf32")
    x, tap = tf32_rounding_operands(operand == "data")
    x.requires_grad_()
    grad = TF32_ROUNDS_UP if operand == "data" else 1.0  # grad_output holds what x holds
    w = torch.zeros(64, 64, 3, 3, 3, device="cuda")
    w[:, :, 1, 1, 1] = tap
    loaders = {"tensor_core_gemm_sm90_halo": 0, "tensor_core_gemm_sm90_tma": 1 << 30}
    if kernel_policy != "auto":
        loaders = {"tensor_core_gemm": 0}
    expected = 64 * TF32_ROUNDED
    for kernel, halo_min_taps in loaders.items():
        tconv3d._C._set_wgmma_halo_min_taps(halo_min_taps)
        try:
            y = tconv3d.conv_transpose3d(x, w, padding=1)
            gx, = torch.autograd.grad(y, x, torch.full_like(y, grad))
        finally:
            tconv3d._C._set_wgmma_halo_min_taps(0)
        assert torch.equal(y, torch.full_like(y, expected)), kernel
        assert torch.equal(gx, torch.full_like(gx, expected)), kernel
        kernels = tconv3d._C._last_cuda_kernels()
        assert kernels["forward"] == kernels["grad_input"] == kernel


@requires_cuda
@pytest.mark.parametrize("operand", ["input", "grad_output"])
@pytest.mark.parametrize("kernel_policy", ["wgmma", "tensor_core"], indirect=True)
def test_tf32_grad_weight_rounds_operands_to_nearest(kernel_policy, operand):
    """TF32 grad-weight rounds x and grad_output to the nearest TF32 value,
    never truncates (as test_tf32_operands_round_to_nearest): 1 + 3·2^-12
    against 1 makes each tap's sum its count of products times 1 + 2^-10,
    exact in fp32 at every partial sum whatever the splits; truncated, the
    count.  64 -> 64 channels-last: wgmma forces the Hopper kernel, whose
    consumers round x in registers and whose producer warps round
    grad_output as they rewrite it K-major; tensor_core the mma.sync one."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    use_precision("tf32")
    x, grad = tf32_rounding_operands(operand == "input")
    w = torch.zeros(64, 64, 3, 3, 3, device="cuda", requires_grad=True)
    y = tconv3d.conv_transpose3d(x, w, padding=1)
    gw, = torch.autograd.grad(y, w, torch.full_like(y, grad))
    # Each tap's count of products: the same layer over ones, in float64.
    w_ones = torch.zeros(1, 1, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    y_ones = F.conv_transpose3d(torch.ones(2, 1, 5, 6, 7, dtype=torch.float64), w_ones, padding=1)
    counts, = torch.autograd.grad(y_ones, w_ones, torch.ones_like(y_ones))
    assert torch.equal(gw.double().cpu(), (counts * TF32_ROUNDED).expand(64, 64, 3, 3, 3))
    expected = "grad_weight_gemm_sm90" if kernel_policy == "wgmma" else "grad_weight_gemm_channels_last"
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == expected


@requires_cuda
def test_wgmma_leaves_strides_beyond_its_phase_table_to_mma_sync():
    """Forward strides above 8 have more phases than the Hopper GEMM's table:
    that pass takes the mma.sync GEMM (grad-input has no phases), still exact."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    config = (1, 16, 24, 1, (3, 4, 2), (3, 2, 10), (2, 1, 9), 1, (1, 0, 3), 1, True)
    run_parity_with_policy("wgmma", config, "channels_last", torch.bfloat16)
    kernels = tconv3d._C._last_cuda_kernels()
    assert kernels["forward"] == "tensor_core_gemm"
    assert kernels["grad_input"] == "tensor_core_gemm_sm90"


@contextlib.contextmanager
def hook_set(hook, value, default=0):
    """One of the extension's test hooks set, reset to `default` after."""
    hook(value)
    try:
        yield value
    finally:
        hook(default)


@contextlib.contextmanager
def wgmma_with(hook, value, default=0):
    """The wgmma policy with one of its test hooks set, both reset after."""
    with hook_set(tconv3d._C._set_kernel_policy, "wgmma", "auto"), hook_set(hook, value, default):
        yield value


@pytest.fixture
def wgmma_grid(request):
    with wgmma_with(tconv3d._C._set_wgmma_grid, request.param) as ctas:
        yield ctas


@requires_cuda
@pytest.mark.parametrize("wgmma_grid", [1, 3], indirect=True, ids=lambda n: f"{n}cta")
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
@pytest.mark.parametrize("name", ["many_m_tiles", "k4s2p1_vae_wide",
                                  "phases_without_taps_wide", "partial_n_tile", "columns_48",
                                  "input_columns_56"])
def test_wgmma_walks_many_tiles_per_cta(name, layout, precision, wgmma_grid):
    """The persistent Hopper GEMM with its grid capped: each CTA walks many
    tiles, its stage ring wraps around mid-tile and across tiles (barrier
    phases flip), and the producer runs ahead into the next tile.  The
    cp.async loader, except where a group's 16 source channels are one TMA
    row (many_m_tiles' forward, input_columns_56's grad-input)."""
    run_wgmma_parity(TENSOR_CORE_CONFIGS[name], layout, precision)


# kHaloMinTaps (tensor_core_gemm_sm90.cu): the shipped halo threshold.
HALO_MIN_TAPS = 27


def run_wgmma_parity(config, layout, precision, halo_min_taps=HALO_MIN_TAPS):
    """Parity under the wgmma policy (the caller's fixture forces it, and the
    halo threshold where not the shipped one), each gather pass on the loader
    expected_wgmma_loaders names."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    dtype = use_precision(precision)
    run_parity(config, layout, dtype, "cuda")
    kernels = tconv3d._C._last_cuda_kernels()
    assert (kernels["forward"], kernels["grad_input"]) == expected_wgmma_loaders(
        config, dtype, halo_min_taps)


def tma_row_bytes(channels_per_group, dtype):
    """The Hopper GEMM's TMA rows for a group's source channels: 128 bytes
    where they are whole 128-byte rows, 64 or 32 where they are exactly one
    row that wide, else None (the cp.async loader)."""
    row_bytes = channels_per_group * dtype.itemsize
    return 128 if row_bytes % 128 == 0 else row_bytes if row_bytes in (32, 64) else None


def padded_rows(rows, box):
    return math.prod(-(-n // b) * b for n, b in zip(rows, box))


def choose_row_boxes(rows, reach, log_rows=7, descriptor_blocks=False, element_stride=(1, 1, 1)):
    """Mirror of row_boxes.h's choose_row_boxes: the power-of-two split of
    2^log_rows rows (d, h, w), each side times its element stride plus the
    reach within TMA's 256, padding the grid least, then growing least by
    the reach, then widest w, then widest h; with descriptor_blocks, only
    boxes 8 wide along w and at least 8 along h."""
    best = None
    for lw in range(log_rows, -1, -1):
        for lh in range(log_rows - lw, -1, -1):
            if descriptor_blocks and (lw != 3 or lh < 3):
                continue
            box = (1 << (log_rows - lw - lh), 1 << lh, 1 << lw)
            if any(b * e + r > 256 for b, e, r in zip(box, element_stride, reach)):
                continue
            padded = padded_rows(rows, box)
            halo = math.prod(b * e + r for b, e, r in zip(box, element_stride, reach))
            if best is None or (padded, halo) < best[:2]:
                best = (padded, halo, box)
    return None if best is None else best[2]


def halo_loader_takes(config, dtype, forward, min_taps=HALO_MIN_TAPS):
    """Mirror of tma_tiling's halo loader choice (tensor_core_gemm_sm90.cu):
    128- or 64-byte rows (fp16/bf16, and TF32 with its halos rounded in
    shared memory), every axis's rows consecutive source
    positions (forward phases, grad-input of stride 1), at least min_taps taps
    in the fullest phase, a box 8 wide and at least 8 high (descriptor_blocks)
    padding the grid to at most 5/4 of the per-tap boxes' rows, and two
    halos beside the 4-stage ring of B (kHaloStages, halo_stage_k bytes a
    row) within the shared memory."""
    _, cin, cout, groups, size, kernel, stride, padding, output_padding, dilation, _ = config
    kernel, stride, padding, output_padding, dilation = (
        triple(v) for v in (kernel, stride, padding, output_padding, dilation))
    source, columns = (cin, cout) if forward else (cout, cin)
    row_bytes = tma_row_bytes(source // groups, dtype)
    if row_bytes not in (64, 128) or (not forward and max(stride) > 1):
        return False
    reach, rows, most_taps = [], [], 1
    for i, k, s, p, op, d in zip(size, kernel, stride, padding, output_padding, dilation):
        out = (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        if forward:
            taps = max(sum(1 for t in range(k) if (r + p - t * d) % s == 0) for r in range(s))
            step = d // math.gcd(s, d)
            rows.append((out - 1) // s + 1)
        else:
            taps, step = k, d
            rows.append(i)
        reach.append((taps - 1) * step)
        most_taps *= taps
    if most_taps < min_taps:
        return False
    box = choose_row_boxes(rows, reach, descriptor_blocks=True)
    per_tap = choose_row_boxes(rows, (0, 0, 0))
    if box is None or per_tap is None or 4 * padded_rows(rows, box) > 5 * padded_rows(rows, per_tap):
        return False
    halo_rows = math.prod(b + r for b, r in zip(box, reach))
    slot = -(-halo_rows * row_bytes // 1024) * 1024
    bn = 32 if columns // groups <= 32 else 64 if columns // groups <= 64 else 128
    stage_k = 256 if bn <= 64 else 128  # halo_stage_k
    return 2 * slot + 4 * bn * stage_k + 1024 <= 232448 - 4096


def resident_weight_fits(stages, bn):
    """Mirror of resident_weight_stages' shared-memory test: A-only slots of
    128 rows × 128 bytes (resident_stages: five at 128 columns, else four)
    and `stages` weight stages of bn rows, the swizzle atom's alignment,
    within a CTA's dynamic shared memory and as many CTAs an SM as the TMA
    loader runs (two up to 64 columns), each with its 2080 bytes of static
    SharedState and 1 KB the driver reserves."""
    smem = (5 if bn == 128 else 4) * 128 * 128 + stages * bn * 128 + 1024
    ctas = 2 if bn <= 64 else 1
    return smem <= 232448 - 4096 and 233472 // (smem + 2080 + 1024) >= ctas


def grad_input_splits(config, dtype, bn):
    """Mirror of choose_splits (tensor_core_gemm_sm90.cu) for a grad-input on
    the TMA loader's per-tap boxes, one group: split only where 4 × the
    plain 128-row tiles fit in 132 SMs (few_tiles), then into as many ranges
    as the CTAs of 132 SMs (two each up to 64 columns) over the row boxes'
    tiles allow, each at least 4 of a tile's stages, at most 16."""
    n, cin, cout, groups, size, kernel, stride, *_ = config
    ntiles = -(-cin // bn)
    if 4 * -(-n * math.prod(size) // 128) * ntiles > 132:
        return 1
    box = choose_row_boxes(size, (0, 0, 0), element_stride=triple(stride))
    tiles = n * math.prod(-(-i // b) for i, b in zip(size, box)) * ntiles
    stages = -(-math.prod(triple(kernel)) * padded_group_bytes(cout, groups, dtype) // 128)
    ctas = (2 if bn <= 64 else 1) * 132
    return max(1, min(ctas // tiles, stages // 4, 16, stages))


def keeps_weight_resident(config, dtype, forward):
    """Mirror of resident_weight_stages (tensor_core_gemm_sm90.cu) for a pass
    the TMA loader's per-tap boxes take: every tile on the same weight
    slices — one phase (grad-input; a forward of stride 1), one group, one
    column tile (choose_columns: 32, 64 or 128, 64 where 128-wide tiles would
    fill at most half the SMs) — whose stages (longest_tile_stages: taps ×
    the source's bytes in 128-byte rows) fit beside the A ring, K whole (no
    split: grad_input_splits)."""
    _, cin, cout, groups, size, kernel, stride, padding, output_padding, dilation, _ = config
    kernel, stride, padding, output_padding, dilation = (
        triple(v) for v in (kernel, stride, padding, output_padding, dilation))
    source, columns = (cin, cout) if forward else (cout, cin)
    if groups != 1 or (forward and max(stride) > 1) or columns > 128:
        return False
    bn = 32 if columns <= 32 else 64 if columns <= 64 else 128
    if bn == 128:
        rows = config[0] * math.prod(
            (i - 1) * s - 2 * p + d * (k - 1) + op + 1 if forward else i
            for i, k, s, p, op, d in zip(size, kernel, stride, padding, output_padding, dilation))
        # The device's SMs where there is one; else the H100's and H200's 132
        # (the row-width tests ask without a GPU).
        sms = (torch.cuda.get_device_properties(0).multi_processor_count
               if torch.cuda.is_available() else 132)
        if 2 * -(-rows // 128) <= sms:
            return False  # two 64-wide column tiles
    stages = -(-math.prod(kernel) * padded_group_bytes(source, groups, dtype) // 128)
    return resident_weight_fits(stages, bn) and (forward or grad_input_splits(config, dtype, bn) == 1)


def takes_group_blocks(config):
    """Mirror of groups_of_16_in_fours (cuda_passes.cpp), its hook on: groups
    of 16 channels on both sides, four at a time."""
    _, cin, cout, groups, *_ = config
    return cin // groups == 16 and cout // groups == 16 and groups % 4 == 0


def expected_wgmma_loaders(config, dtype, halo_min_taps=HALO_MIN_TAPS):
    """The kernels a config runs under the wgmma policy: the halo loader where
    a tile's taps overlap and its halo fits (halo_loader_takes), else the TMA
    loader where the source's channels per group suit its rows (tma_row_bytes;
    grad-input, strides at most 8), keeping the weight in shared memory where
    every tile walks the same few slices (keeps_weight_resident), the
    cp.async one elsewhere, and mma.sync for forward strides beyond the phase
    table.  Group blocks (takes_group_blocks) launch a quarter of the groups,
    64 channels each, never on the halo loader (plan_launch)."""
    blocks = takes_group_blocks(config)
    if blocks:
        config = (*config[:3], config[3] // 4, *config[4:])
    _, cin, cout, groups, _, _, stride, *_ = config
    strides = triple(stride)

    def loader(channels, forward):
        if not blocks and halo_loader_takes(config, dtype, forward, halo_min_taps):
            return "tensor_core_gemm_sm90_halo"
        if tma_row_bytes(channels // groups, dtype) and (forward or max(strides) <= 8):
            if keeps_weight_resident(config, dtype, forward):
                return "tensor_core_gemm_sm90_tma_resident_weight"
            return "tensor_core_gemm_sm90_tma"
        return "tensor_core_gemm_sm90"

    forward = "tensor_core_gemm" if max(strides) > 8 else loader(cin, True)
    return forward, loader(cout, False)


def test_tma_configs_cover_every_row_width():
    """TMA_CONFIGS reach the loader with each row width in each precision
    family, both passes (so test_wgmma_tma_loader asserts each was taken):
    128, 64 and 32 bytes in fp16/bf16 and TF32."""
    for dtype in (torch.bfloat16, torch.float32):
        for pass_ in ("forward", "grad_input"):
            widths = set()
            for config in TMA_CONFIGS.values():
                loader = dict(zip(("forward", "grad_input"), expected_wgmma_loaders(config, dtype)))
                _, cin, cout, groups, *_ = config
                if loader[pass_].startswith("tensor_core_gemm_sm90_"):
                    channels = cin // groups if pass_ == "forward" else cout // groups
                    widths.add(tma_row_bytes(64 if takes_group_blocks(config) else channels, dtype))
            assert widths == {32, 64, 128}, (dtype, pass_, widths)


def test_tma_configs_reach_both_tma_loaders():
    """TMA_CONFIGS run the halo loader and the per-tap boxes with 128-byte
    rows in fp16/bf16 and TF32, both passes (stride-1 layers of 27 taps take
    the halo; strided grad-input and forward phases of few taps keep the
    boxes), so test_wgmma_tma_loader asserts both."""
    for dtype in (torch.bfloat16, torch.float32):
        for index, pass_ in enumerate(("forward", "grad_input")):
            loaders = set()
            for config in TMA_CONFIGS.values():
                _, cin, cout, groups, *_ = config
                channels = cin // groups if pass_ == "forward" else cout // groups
                if tma_row_bytes(64 if takes_group_blocks(config) else channels, dtype) == 128:
                    loaders.add(expected_wgmma_loaders(config, dtype)[index].rsplit("_", 1)[1])
            assert {"halo", "tma"} <= loaders, (dtype, pass_, loaders)


def test_halo_anywhere_reaches_strided_phases():
    """Under the halo threshold's test hook at 1 tap (kernel_ab's wgmma_halo),
    TMA_CONFIGS take the halo loader on strided forwards, whose phases hold
    1 to 8 taps (a stage's live taps 1 to 4 and its padding), so that
    test_wgmma_halo_loader_at_any_tap_count reaches them."""
    strided = [name for name, config in {**TMA_CONFIGS, **HALO_CONFIGS}.items()
               if max(triple(config[6])) > 1 and max(triple(config[6])) <= 8
               and halo_loader_takes(config, torch.bfloat16, True, min_taps=1)
               and not halo_loader_takes(config, torch.bfloat16, True)]
    assert len(strided) >= 4, strided


@pytest.fixture
def halo_anywhere():
    with wgmma_with(tconv3d._C._set_wgmma_halo_min_taps, 1):
        yield


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", [*TMA_CONFIGS, *HALO_CONFIGS])
def test_wgmma_halo_loader_at_any_tap_count(name, layout, precision, halo_anywhere):
    """The halo loader wherever it fits, whatever the fullest phase's tap
    count (the shipped threshold is 27): strided forwards' phases of 1-8 taps,
    phases without taps, 15- and 1-tap kernels, against the float64
    reference."""
    run_wgmma_parity({**TMA_CONFIGS, **HALO_CONFIGS}[name], layout, precision, halo_min_taps=1)


# Layers wider than 64 columns on a gather pass (forward Cout/G, grad-input
# Cin/G): 128, 192 and 72 (TMA loader), 72 (cp.async).
NARROW_COLUMN_CONFIGS = {
    **{name: TMA_CONFIGS[name] for name in ("aniso_dilated", "channels_192_many_tiles", "columns_72")},
    "partial_n_tile": TENSOR_CORE_CONFIGS["partial_n_tile"],
}


def test_narrow_column_configs_are_wide():
    """Each NARROW_COLUMN_CONFIGS layer has more than 64 columns on a pass,
    so test_wgmma_narrow_column_tiles splits it over more column tiles."""
    for name, (_, cin, cout, groups, *_) in NARROW_COLUMN_CONFIGS.items():
        assert max(cin, cout) // groups > 64, name


@pytest.fixture
def wgmma_columns(request):
    with wgmma_with(tconv3d._C._set_wgmma_columns, request.param) as columns:
        yield columns


@requires_cuda
@pytest.mark.parametrize("wgmma_columns", [32, 64], indirect=True, ids=lambda n: f"{n}cols")
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(NARROW_COLUMN_CONFIGS))
def test_wgmma_narrow_column_tiles(name, layout, precision, wgmma_columns):
    """The Hopper GEMM with column tiles narrower than its shape's
    (_set_wgmma_columns, kernel_ab's wgmma_narrow): a layer's columns over 2-6
    tiles, the last one partial, each loader, against float64; results do
    not depend on the tiling, and each gather pass stays on the Hopper GEMM."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    dtype = use_precision(precision)
    run_parity(NARROW_COLUMN_CONFIGS[name], layout, dtype, "cuda")
    kernels = tconv3d._C._last_cuda_kernels()
    for pass_ in ("forward", "grad_input"):
        assert kernels[pass_].startswith("tensor_core_gemm_sm90"), kernels


# Layers for split K (_set_wgmma_splits forces it on both gather passes; the
# forward's phases of different tap counts leave some ranges of the lighter
# tiles empty, which write zeros): each loader of
# grad-input, whose source is grad_output (Cout/G channels), K = taps ×
# Cout/G: the cp.async gather (40 channels: not whole TMA rows; odd
# columns, Cin/G = 9: single-float partial stores), the TMA loader's
# 128-byte rows (64 channels; TF32 two a tap), 64-byte rows (32 fp16/bf16
# channels, two taps a stage; 128-byte in TF32) and 32-byte rows (16
# channels, four taps a stage), the last stage of a tile part padding, with
# groups, batches and strides up to 2, dilation; four groups of 16 channels
# a tile (group blocks: fp16/bf16 split, TF32 takes a tap's two stages as a
# pair and never splits); and a stride-1 layer that fp16/bf16 and TF32 run
# on the halo loader, which never splits.
SPLIT_K_CONFIGS = {
    "cp_async_40_channels": (2, 24, 40, 1, (5, 6, 7), 3, 2, 1, 1, 1, False),
    "cp_async_odd_columns": (2, 18, 40, 2, (4, 5, 3), (3, 2, 3), (2, 1, 2), (1, 0, 1), (1, 0, 1),
                             1, False),
    "tma_64_channels": (2, 48, 64, 1, (5, 4, 6), 3, 2, 1, 1, 1, False),
    "tma_groups_of_32": (2, 64, 64, 2, (4, 5, 6), 3, 2, 1, 1, 1, False),
    "tma_groups_of_16_dilated": (3, 48, 64, 4, (3, 4, 5), 3, (2, 1, 2), 1, (1, 0, 1), (1, 2, 1),
                                 False),
    "halo_stride_1": (1, 40, 64, 1, (6, 5, 7), 3, 1, 1, 0, 1, False),
    "group_blocks_g8": (2, 128, 128, 8, (3, 5, 4), 3, 2, 1, 1, 1, True),
    # 32 channels at k4s2, w padded by 2: fp16/bf16 merge w taps in pairs
    # (TmaTiling::log_merge), eight pairs a tile.
    "tma_merged_w_taps": (2, 48, 32, 1, (5, 4, 6), 4, 2, (1, 1, 2), 0, 1, False),
}


@pytest.fixture
def wgmma_splits(request):
    with wgmma_with(tconv3d._C._set_wgmma_splits, request.param) as splits:
        yield splits


@requires_cuda
@pytest.mark.parametrize("wgmma_splits", [2, 3, 5, 1000], indirect=True, ids=lambda n: f"{n}splits")
@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(SPLIT_K_CONFIGS))
def test_wgmma_split_k_grad_input(name, layout, precision, wgmma_splits):
    """Grad-input and forward with their K forced into 2, 3, 5 ranges of
    stages, or one stage each (1000: more than any layer here has, clamped
    to the longest tile's stage count), against float64 on NaN-poisoned
    results (the forward's bias added in the second pass): every split's
    partials written and summed, uneven ranges (the first ones a stage
    longer), the TMA loader's padded last stage in the last split only,
    grad_input channels-last (four channels a store), NCDHW or strided."""
    run_wgmma_parity(SPLIT_K_CONFIGS[name], layout, precision)


# The batch-1 bottleneck of bottleneck_operands as a parity config.
BOTTLENECK_CONFIG = (1, 512, 256, 1, (8, 8, 8), 3, 2, 1, 1, 1, False)


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_bottleneck_grad_input_splits_k_by_shape(precision):
    """The 512 -> 256, k3 s2 p1 op1 bottleneck at 8³, batch 1, under the auto
    policy: its grad-input (32 tiles) is split along K by shape — bitwise
    what forcing choose_splits' mirror's count gives, not what one split
    gives — on the TMA loader, within the dtype's tolerance of float64."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    dtype = use_precision(precision)
    cl = torch.channels_last_3d
    g, x, w = bottleneck_operands(7, dtype, cl)
    gy = torch.randn(1, 256, 16, 16, 16, generator=g).to("cuda", dtype, memory_format=cl)

    def grad_input(splits):
        with hook_set(tconv3d._C._set_wgmma_splits, splits):
            xg = x.detach().requires_grad_()
            y = tconv3d.conv_transpose3d(xg, w, stride=2, padding=1, output_padding=1)
            gx, = torch.autograd.grad(y, xg, gy)
        assert tconv3d._C._last_cuda_kernels()["grad_input"] == "tensor_core_gemm_sm90_tma"
        return gx

    # 64 columns: choose_columns narrows 128-wide tiles on small grids.
    by_shape, splits = grad_input(0), grad_input_splits(BOTTLENECK_CONFIG, dtype, 64)
    assert splits > 1
    assert torch.equal(by_shape, grad_input(splits))
    assert not torch.equal(by_shape, grad_input(1))
    # A transposed convolution's grad-input is the convolution of grad_output.
    reference = F.conv3d(gy.double(), w.double(), stride=2, padding=1)
    check("grad_input", by_shape, reference, None, dtype)


def bottleneck_operands(seed, dtype, memory_format):
    """The batch-1 bottleneck's x (1 × 512 × 8³) and weight (512 → 256,
    k3), and the generator for whatever else the test draws."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 512, 8, 8, 8, generator=g).to("cuda", dtype, memory_format=memory_format)
    w = (torch.randn(512, 256, 3, 3, 3, generator=g) / 48).to("cuda", dtype)
    return g, x, w


@requires_cuda
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_bottleneck_tf32_grad_weight_cuts_ranges(layout):
    """The bottleneck's TF32 grad-weight on the Hopper kernel: its 432 tiles
    of 8 boxes (four waves of 132 only 82 % full as whole splits) cut into
    132 equal ranges, a tile in one or two pieces summed in box order
    (grad_weight_sm90_plan.h): against float64 within twice torch's error
    (every element: gw comes from the combine, which writes each once),
    bitwise again, and with 64-bit indices."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    dtype = use_precision("tf32")
    fmt = torch.channels_last_3d if layout == "channels_last" else torch.contiguous_format
    g, x, w = bottleneck_operands(11, dtype, fmt)
    gy = torch.randn(1, 256, 16, 16, 16, generator=g).to("cuda", dtype, memory_format=fmt)
    geometry = ([2, 2, 2], [1, 1, 1], [1, 1, 1], 1, [1, 1, 1])

    def run():
        return torch.ops.tconv3d.grad_weight(gy, x, list(w.shape), *geometry)

    gw = run()
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_gemm_sm90"
    w_ref = w.double().requires_grad_()
    y_ref = F.conv_transpose3d(x.double(), w_ref, stride=2, padding=1, output_padding=1)
    gw_ref, = torch.autograd.grad(y_ref, w_ref, gy.double())
    w_torch = w.detach().requires_grad_()
    y_torch = F.conv_transpose3d(x, w_torch, stride=2, padding=1, output_padding=1)
    gw_torch, = torch.autograd.grad(y_torch, w_torch, gy)
    check("grad_weight", gw, gw_ref, gw_torch, dtype)
    assert_repeats_bitwise(gw, run, "grad_weight", "grad_weight_gemm_sm90")


@requires_cuda
@pytest.mark.parametrize("precision", ["bf16", "tf32"])
def test_hopper_grad_weight_writes_a_channels_last_gw_itself(precision):
    """256 -> 128, k3s2, on a 4 × 5 × 6 grid: one split of every tile.  A
    channels-last x gives a channels-last gw ([ci][tap][co]), which the
    Hopper grad-weight's epilogue writes itself (writes_grad_weight): no
    memory beyond gw, every element of the NaN-poisoned gw within twice
    torch's error of float64, bitwise again.  The NCDHW layer's contiguous
    gw takes partials and the combine (more memory), from the same sums
    rounded once: equal to the last bit."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    dtype = use_precision(precision)
    g = torch.Generator().manual_seed(23)
    x = torch.randn(1, 256, 4, 5, 6, generator=g).to("cuda", dtype)
    gy = torch.randn(1, 128, 8, 10, 12, generator=g).to("cuda", dtype)
    weight_shape = [256, 128, 3, 3, 3]
    geometry = ([2, 2, 2], [1, 1, 1], [1, 1, 1], 1, [1, 1, 1])
    cl = torch.channels_last_3d
    x_cl, gy_cl = x.contiguous(memory_format=cl), gy.contiguous(memory_format=cl)

    def run(gy, x):
        return torch.ops.tconv3d.grad_weight(gy, x, weight_shape, *geometry)

    gw, extra = memory_beyond_results(lambda: run(gy_cl, x_cl))
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_gemm_sm90"
    assert gw.is_contiguous(memory_format=cl) and not gw.is_contiguous()
    assert extra == 0
    w_ref = torch.zeros(weight_shape, dtype=torch.float64, device="cuda", requires_grad=True)
    y_ref = F.conv_transpose3d(x.double(), w_ref, stride=2, padding=1, output_padding=1)
    gw_ref, = torch.autograd.grad(y_ref, w_ref, gy.double())
    w_torch = torch.zeros(weight_shape, dtype=dtype, device="cuda", requires_grad=True)
    y_torch = F.conv_transpose3d(x, w_torch, stride=2, padding=1, output_padding=1)
    gw_torch, = torch.autograd.grad(y_torch, w_torch, gy)
    check("grad_weight", gw, gw_ref, gw_torch, dtype)
    assert_repeats_bitwise(gw, lambda: run(gy_cl, x_cl), "grad_weight", "grad_weight_gemm_sm90")
    gw_combined, extra_combined = memory_beyond_results(lambda: run(gy, x))
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_gemm_sm90"
    assert gw_combined.is_contiguous() and extra_combined > 0
    assert torch.equal(gw, gw_combined)


def bottleneck_forward_split_count(dtype):
    """Mirror of choose_splits for the bottleneck's forward: 8 phases of 4
    boxes of 128 output positions × 4 column tiles of 64 (choose_columns
    narrows 128 on small grids): 128 tiles, at most one wave, phases of 1 to
    8 taps, so split; two CTAs an SM on the 132 SMs the choice assumes; the
    8-tap phase's 8 · 512 · itemsize / 128 stages at least 4 a split."""
    sms, tiles, stages = 132, 128, 8 * 512 * dtype.itemsize // 128
    return min(2 * sms // tiles, stages // 4, 16)


@requires_cuda
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_bottleneck_forward_splits_k_by_shape(precision, layout):
    """The same bottleneck's forward under the auto policy: one wave of 128
    tiles whose phases hold 1 to 8 taps is split along K by shape, into a
    channels-last output and an NCDHW one alike (whose second pass
    transposes) — bitwise what forcing bottleneck_forward_split_count's
    splits gives, not what one split gives, the bias added once, in the
    second pass; on a NaN-poisoned output's every element, within tolerance
    of float64."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    dtype = use_precision(precision)
    channels_last = layout == "channels_last"
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    g, x, w = bottleneck_operands(9, dtype, fmt)
    b = torch.randn(256, generator=g).to("cuda", dtype)

    def forward(splits):
        with hook_set(tconv3d._C._set_wgmma_splits, splits):
            y = tconv3d.conv_transpose3d(x, w, b, stride=2, padding=1, output_padding=1)
        assert tconv3d._C._last_cuda_kernels()["forward"] == "tensor_core_gemm_sm90_tma"
        return y

    by_shape, splits = forward(0), bottleneck_forward_split_count(dtype)
    assert splits > 1
    assert torch.isfinite(by_shape).all()
    assert torch.equal(by_shape, forward(splits))
    assert not torch.equal(by_shape, forward(1))
    reference = F.conv_transpose3d(x.double(), w.double(), b.double(), stride=2, padding=1,
                                   output_padding=1)
    check("output", by_shape, reference, None, dtype)


@requires_cuda
@pytest.mark.parametrize("wgmma_grid", [0, 3], indirect=True, ids=["sm_count", "3cta"])
@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(TMA_CONFIGS))
def test_wgmma_tma_loader(name, layout, precision, wgmma_grid):
    """The Hopper GEMM's tensor-map loader through the sweep: row boxes past
    the phase grid's ends, taps reaching outside the source (zero-filled by
    TMA), element strides up to 8, phases without taps, groups, several
    128-byte stages per tap, single 64- and 32-byte rows (the narrower
    swizzles, 2 or 4 taps a stage, a tile's last stage padded with zero
    boxes), partial column tiles, TF32 operands rounded on the way in; with 3 CTAs
    the stage ring wraps across tiles."""
    run_wgmma_parity(TMA_CONFIGS[name], layout, precision)


@requires_cuda
@pytest.mark.parametrize("wgmma_grid", [0, 3], indirect=True, ids=["sm_count", "3cta"])
@pytest.mark.parametrize("name, precision", [
    ("unet_k2s2_merged", "bf16"), ("unmerged_odd_extent", "fp16"), ("taps_15_padded_stage", "bf16"),
    ("unet_k2s2_32_many_tiles", "tf32"), ("one_tap", "tf32"), ("unet_k2s2_128_columns", "bf16")])
def test_wgmma_resident_weight_matches_streamed_weight(name, precision, wgmma_grid):
    """The TMA loader keeping the weight resident (a CTA's first tile loads
    its stages beside a ring of A-only slots, later tiles' stages carry A
    alone) against the same launch reading it with every tile
    (_set_wgmma_resident_weight(False), kernel_ab's wgmma_streamed_weight):
    the same B bytes in the same k-steps, so bitwise the same forward and
    grad-input, and within tolerance of float64 — with 3 CTAs over many
    tiles, merged w taps, a padded last stage (both passes of
    taps_15_padded_stage in bf16), more weight stages than A slots (TF32's
    8 of 128-byte rows over 35 tiles, too many to split K; 128 columns),
    one tap."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    dtype = use_precision(precision)
    config = TMA_CONFIGS[name]
    n, cin, cout, groups, size, kernel, stride, padding, output_padding, dilation, _ = config
    resident = tuple(keeps_weight_resident(config, dtype, forward) for forward in (True, False))
    assert resident[1], name  # the grad-input keeps it wherever these layers run on TMA
    geometry = dict(stride=stride, padding=padding, output_padding=output_padding,
                    dilation=dilation, groups=groups)
    g = torch.Generator().manual_seed(17)
    x = torch.randn(n, cin, *size, generator=g).to("cuda", dtype)
    x = x.contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    w = (torch.randn(cin, cout // groups, *triple(kernel), generator=g) / 8).to("cuda", dtype)
    gy = None
    runs, kernels = [], []
    for keep in (True, False):
        with hook_set(tconv3d._C._set_wgmma_resident_weight, keep, True):
            y = tconv3d.conv_transpose3d(x, w, **geometry)
            if gy is None:
                gy = torch.randn(y.shape, generator=g).to("cuda", dtype)
                gy = gy.contiguous(memory_format=torch.channels_last_3d)
            gx, = torch.autograd.grad(y, x, gy)
            runs.append((y, gx))
            kernels.append(tconv3d._C._last_cuda_kernels())
    for index, pass_ in enumerate(("forward", "grad_input")):
        assert kernels[1][pass_] != "tensor_core_gemm_sm90_tma_resident_weight", pass_
        if resident[index]:
            assert kernels[0][pass_] == "tensor_core_gemm_sm90_tma_resident_weight", pass_
            assert kernels[1][pass_] == "tensor_core_gemm_sm90_tma", pass_
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    xr = x.detach().double().requires_grad_()
    yr = F.conv_transpose3d(xr, w.double(), **geometry)
    gxr, = torch.autograd.grad(yr, xr, gy.double())
    tolerance = TF32_TOLERANCE if precision == "tf32" else TOLERANCE[dtype]
    assert rel_err(runs[0][0], yr) <= tolerance
    assert rel_err(runs[0][1], gxr) <= tolerance


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(TAP_COLUMN_CONFIGS))
def test_forward_tap_columns_gemm(name, layout, precision):
    """Kernel == stride: the forward as one GEMM over (tap, co) columns —
    partial row and column tiles, odd Cout/G (no paired stores), groups, K
    padded to a whole k-step, several column tiles per block, both block counts
    (three an SM into channels-last outputs where shared memory holds three;
    two into NCDHW and for the widest channels) — and the phase GEMM beyond
    512 bytes of channels."""
    dtype = use_precision(precision)
    config = TAP_COLUMN_CONFIGS[name]
    run_parity(config, layout, dtype, "cuda")
    cin_bytes = padded_group_bytes(config[1], config[3], dtype)
    expected = "forward_tap_columns_gemm" if cin_bytes <= 512 else "tensor_core_gemm"
    if expected == "forward_tap_columns_gemm" and layout != "sliced":
        expected += "_sm90" if takes_tap_columns_wgmma(config, layout, dtype) else ""
        assert tconv3d._C._last_cuda_kernels()["forward"] == expected
    assert tconv3d._C._last_cuda_kernels()["forward"].startswith(expected)


def takes_tap_columns_wgmma(config, layout, dtype):
    """Mirror of launch_forward_tap_columns_sm90's choice, for a shape the
    tap-columns forward takes, x contiguous or channels-last: fp16/bf16, or
    float32 as TF32, on a device with the Hopper kernels, a channels-last
    output, Cout/G in whole 8-channel pieces, at most 512 bytes of channels a
    group."""
    cin, cout, groups = config[1], config[2], config[3]
    tensor_core = dtype in (torch.float16, torch.bfloat16) or (
        dtype == torch.float32 and torch.backends.cudnn.allow_tf32)
    return (tconv3d._C._wgmma_available() and tensor_core
            and layout == "channels_last" and (cout // groups) % 8 == 0
            and padded_group_bytes(cin, groups, dtype) <= 512)


@requires_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16", "tf32"])
def test_tap_columns_wgmma_walks_more_tiles_than_stages(precision):
    """The Hopper tap-columns forward on 520 row tiles (two waves of two CTAs
    an SM on 132 SMs, so a CTA walks all six column tiles: each consumer
    three, the first stage loaded twice, past the ring of four; TF32's x
    rounded in shared memory) against the float64 reference with bias;
    bitwise the same run to run; and the mma.sync version, the hook off,
    within the same tolerance."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper kernels do not run on this device")
    dtype = use_precision(precision)
    tolerance = TF32_TOLERANCE if precision == "tf32" else TOLERANCE[dtype]
    g = torch.Generator().manual_seed(11)
    x = torch.randn(1, 64, 16, 40, 104, generator=g).to("cuda", dtype)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    w = (torch.randn(64, 48, 2, 2, 2, generator=g) / 8).to("cuda", dtype)
    b = torch.randn(48, generator=g).to("cuda", dtype)
    ref = F.conv_transpose3d(x.double(), w.double(), b.double(), stride=2)
    y = tconv3d.conv_transpose3d(x, w, b, stride=2)
    assert tconv3d._C._last_cuda_kernels()["forward"] == "forward_tap_columns_gemm_sm90"
    assert y.is_contiguous(memory_format=torch.channels_last_3d)
    assert rel_err(y, ref) <= tolerance
    assert torch.equal(y, tconv3d.conv_transpose3d(x, w, b, stride=2))
    with hook_set(tconv3d._C._set_tap_columns_wgmma, False, True):
        y_sync = tconv3d.conv_transpose3d(x, w, b, stride=2)
        assert tconv3d._C._last_cuda_kernels()["forward"] == "forward_tap_columns_gemm"
    assert rel_err(y_sync, ref) <= tolerance


@requires_cuda
@pytest.mark.parametrize("columns", [32, 64, 128, 0], ids=["slim", "narrow", "wide", "shipped"])
@pytest.mark.parametrize("shape", [
    # 33 792 rows: 264 row tiles, two waves, so a CTA walks all eight 128-column
    # tiles (each consumer four, the ring of two stages wrapping twice).
    (1, 256, 128, (16, 32, 66)),
    # Three chunks of K, the last partly past the channels; 47 row tiles; 160
    # columns a tap, so 128-column tiles straddle taps and the last is partial.
    (2, 168, 160, (3, 7, 11)),
], ids=["ring_wraps", "partial_tiles"])
def test_tap_columns_wgmma_column_tiles(shape, columns):
    """The Hopper tap-columns forward's consumer tiles of 32, 64 and 128
    columns (the hook; 0: shipped, 64) in bf16 with bias, against the float64
    reference, bitwise the same run to run."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper kernels do not run on this device")
    n, cin, cout, size = shape
    g = torch.Generator().manual_seed(19)
    x = torch.randn(n, cin, *size, generator=g).to("cuda", torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    w = (torch.randn(cin, cout, 2, 2, 2, generator=g) / 16).to("cuda", torch.bfloat16)
    b = torch.randn(cout, generator=g).to("cuda", torch.bfloat16)
    with hook_set(tconv3d._C._set_tap_columns_wgmma_columns, columns):
        y = tconv3d.conv_transpose3d(x, w, b, stride=2)  # into a NaN-poisoned output
        assert tconv3d._C._last_cuda_kernels()["forward"] == "forward_tap_columns_gemm_sm90"
        assert torch.equal(y, tconv3d.conv_transpose3d(x, w, b, stride=2))
    ref = F.conv_transpose3d(x.double(), w.double(), b.double(), stride=2)
    assert torch.isfinite(y).all()
    assert rel_err(y, ref) <= TOLERANCE[torch.bfloat16]


@requires_cuda
@pytest.mark.parametrize("precision, channels", [("tf32", 256), ("bf16", 456)])
def test_tap_columns_wgmma_slim_tiles_take_k_to_1kb(precision, channels):
    """The hook's 32-column tiles take K past the other widths' 512 bytes —
    TF32 256 channels (eight whole chunks, x's rows rounded in shared memory),
    bf16 456 (the eighth chunk 16 bytes of channels, zeros past them) — on 35
    row tiles whose CTAs walk four column tiles (the ring of three stages
    wrapping): against float64 with bias, bitwise the same run to run; shipped,
    the layer stays on the phase GEMM, within the same tolerance."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper kernels do not run on this device")
    dtype = use_precision(precision)
    tolerance = TF32_TOLERANCE if precision == "tf32" else TOLERANCE[dtype]
    g = torch.Generator().manual_seed(23)
    x = torch.randn(2, channels, 12, 13, 14, generator=g).to("cuda", dtype)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    w = (torch.randn(channels, 48, 2, 2, 2, generator=g) / 16).to("cuda", dtype)
    b = torch.randn(48, generator=g).to("cuda", dtype)
    ref = F.conv_transpose3d(x.double(), w.double(), b.double(), stride=2)
    with hook_set(tconv3d._C._set_tap_columns_wgmma_columns, 32):
        y = tconv3d.conv_transpose3d(x, w, b, stride=2)
        assert tconv3d._C._last_cuda_kernels()["forward"] == "forward_tap_columns_gemm_sm90"
        assert torch.equal(y, tconv3d.conv_transpose3d(x, w, b, stride=2))
    assert rel_err(y, ref) <= tolerance
    shipped = tconv3d.conv_transpose3d(x, w, b, stride=2)
    assert tconv3d._C._last_cuda_kernels()["forward"].startswith("tensor_core_gemm")
    assert rel_err(shipped, ref) <= tolerance


@requires_cuda
@pytest.mark.parametrize("operand", ["data", "weight"])
def test_tap_columns_wgmma_rounds_tf32_operands_to_nearest(operand):
    """TF32 on the Hopper tap-columns forward: x rounded to nearest in shared
    memory (wgmma would truncate what it reads there), the weight when
    packed.  1 + 3·2^-12 rounds to 1 + 2^-10 and truncates to 1; every
    output takes one tap (kernel == stride), so 64 channels of it times 1 sum
    exactly to 64·(1 + 2^-10), truncated operands to 64."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper kernels do not run on this device")
    use_precision("tf32")
    x, tap = tf32_rounding_operands(operand == "data")
    w = torch.full((64, 32, 2, 2, 2), tap, device="cuda")
    y = tconv3d.conv_transpose3d(x, w, stride=2)
    assert tconv3d._C._last_cuda_kernels()["forward"] == "forward_tap_columns_gemm_sm90"
    assert torch.equal(y, torch.full_like(y, 64 * TF32_ROUNDED))


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_tap_columns_planes_on_a_long_grid(precision):
    """NCDHW planes read in place on a grid of 1200 blocks (at least three
    waves of two an SM on 132 SMs: the three-block instance) against float64,
    gradients too."""
    run_parity((2, 16, 8, 1, (16, 32, 150), 2, 2, 0, 0, 1, True), "contiguous",
               use_precision(precision), "cuda")
    assert tconv3d._C._last_cuda_kernels()["forward"] == "forward_tap_columns_gemm"


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_tap_columns_channels_last_pairs_on_a_long_grid(precision):
    """Channels-last output whose staging tile would cost the third block an
    SM (TF32 64 channels, bf16 128: 256 bytes), on a grid of 816 blocks (at
    least three waves of two): pairs of channels stored from the registers at
    three blocks, against float64."""
    channels = 64 if precision == "tf32" else 128
    # The Hopper version off: it would take the bf16 one.
    with hook_set(tconv3d._C._set_tap_columns_wgmma, False, True):
        run_parity((1, channels, 16, 1, (24, 68, 64), 2, 2, 0, 0, 1, True), "channels_last",
                   use_precision(precision), "cuda")
        assert tconv3d._C._last_cuda_kernels()["forward"] == "forward_tap_columns_gemm"


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_tap_columns_reads_channel_sliced_planes(precision):
    """Every other channel of an NCDHW tensor: the planes stay contiguous,
    the channel stride doubles (read in place at that stride, groups at an
    offset of it), against float64 and bitwise what a contiguous copy gives;
    nothing beside the output but the packed weight."""
    dtype = use_precision(precision)
    g = torch.Generator().manual_seed(13)
    big = torch.randn(2, 48, 4, 6, 8, generator=g).to("cuda", dtype)
    x = big[:, ::2]
    assert x.stride(1) == 2 * 4 * 6 * 8 and not x.is_contiguous()
    w = (torch.randn(24, 10, 2, 2, 2, generator=g) / 4).to("cuda", dtype)
    b = torch.randn(20, generator=g).to("cuda", dtype)
    y, extra = memory_beyond_results(
        lambda: tconv3d.conv_transpose3d(x, w, b, stride=2, groups=2))
    assert extra <= 1 << 20
    assert tconv3d._C._last_cuda_kernels()["forward"] == "forward_tap_columns_gemm"
    assert torch.equal(y, tconv3d.conv_transpose3d(x.contiguous(), w, b, stride=2, groups=2))
    yr = F.conv_transpose3d(x.double(), w.double(), b.double(), stride=2, groups=2)
    check("output", y, yr, None, dtype)


@requires_cuda
@pytest.mark.parametrize("rows", [(2, 4, 6, 8), (2, 16, 32, 150)], ids=["two_blocks", "three_blocks"])
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_tap_columns_planes_wide_index(precision, rows):
    """The 64-bit-index instances of the k-major tap-columns forward (two and
    three blocks an SM) give bitwise the 32-bit ones' results."""
    dtype = use_precision(precision)
    g = torch.Generator().manual_seed(17)
    n, *size = rows
    x = torch.randn(n, 16, *size, generator=g).to("cuda", dtype)
    w = (torch.randn(16, 8, 2, 2, 2, generator=g) / 4).to("cuda", dtype)
    narrow = tconv3d.conv_transpose3d(x, w, stride=2)
    with hook_set(tconv3d._C._set_force_wide_index, True, False):
        wide = tconv3d.conv_transpose3d(x, w, stride=2)
    assert tconv3d._C._last_cuda_kernels()["forward"] == "forward_tap_columns_gemm"
    assert torch.equal(narrow, wide)


@requires_cuda
@pytest.mark.parametrize("channel_bytes", [256, 512])
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_tap_columns_reads_ncdhw_input_in_place(precision, channel_bytes):
    """Kernel == stride, NCDHW: the forward reads x's planes as they are —
    no channels-last copy of x (6-12 MB here) beside the output, only the
    packed weight — and matches the float64 reference; up to 512 bytes of
    channels (one block an SM)."""
    dtype = use_precision(precision)
    channels = channel_bytes // torch.tensor([], dtype=dtype).element_size()
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, channels, 16, 24, 32, generator=g).to("cuda", dtype)
    w = (torch.randn(channels, 32, 2, 2, 2, generator=g) / channels ** 0.5).to("cuda", dtype)
    b = torch.randn(32, generator=g).to("cuda", dtype)
    y, extra = memory_beyond_results(lambda: tconv3d.conv_transpose3d(x, w, b, stride=2))
    assert tconv3d._C._last_cuda_kernels()["forward"] == "forward_tap_columns_gemm"
    assert extra <= 1 << 20, f"{extra} bytes beyond the output"
    assert y.is_contiguous()
    yr = F.conv_transpose3d(x.double(), w.double(), b.double(), stride=2)
    check("output", y, yr, None, dtype)


def tap_blocks_read_grad_output(config, layout, dtype):
    """Mirror of tap_blocks_read_grad_output (tap_blocks.h) for run_parity's
    tensors: kernel == stride, no padding or dilation, stride 2 along W,
    grad_output contiguous, its strides in 16-byte pieces and its W lines in
    whole pieces of (kw 0, 1) pairs."""
    _, cin, cout, groups, size, kernel, stride, padding, output_padding, dilation, _ = config
    kernel, stride, padding, output_padding, dilation = map(
        triple, (kernel, stride, padding, output_padding, dilation))
    if layout != "contiguous" or kernel != stride or stride[2] != 2:
        return False
    if any(padding) or any(d != 1 for d in dilation):
        return False
    vec = 16 // dtype.itemsize
    out = [s * i + op for s, i, op in zip(stride, size, output_padding)]
    gy_strides = (out[2], out[1] * out[2], math.prod(out))
    return all(st % vec == 0 for st in gy_strides) and size[2] % (vec // 2) == 0


def tap_blocks_takes(config, layout, dtype):
    """Mirror of grad_input_tap_blocks_gemm_supports and _pays
    (tensor_core_gemm.h): grad_output as above, the weight contiguous, its
    rows whole 16-byte pieces; a K of at most 256 q-rows (Cout/G · kD · kH)."""
    _, cin, cout, groups, size, kernel, *_ = config
    kernel = triple(kernel)
    if cout // groups * kernel[0] * kernel[1] > 256:
        return False  # grad_input_tap_blocks_gemm_pays: the phase GEMMs split long K
    return (tap_blocks_read_grad_output(config, layout, dtype)
            and cout // groups * math.prod(kernel) % (16 // dtype.itemsize) == 0)


def tap_blocks_grad_weight_takes(config, layout, dtype):
    """Mirror of grad_weight_tap_blocks_gemm_supports (grad_weight_gemm.h)
    and its auto routing (cuda_passes.cpp): grad_output as above, x
    contiguous with its planes in 16-byte pieces; not the narrow groups (at
    most 4 input and 16 output channels) nor depthwise."""
    _, cin, cout, groups, size, *_ = config
    if cin // groups <= 4 and cout // groups <= 16:
        return False
    return (tap_blocks_read_grad_output(config, layout, dtype)
            and math.prod(triple(size)) % (16 // dtype.itemsize) == 0)


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(TAP_BLOCK_CONFIGS))
def test_tap_blocks_gemms(name, layout, precision):
    """Kernel == stride, NCDHW operands read from the planes in place.
    Grad-input: partial row and column tiles, 64- and 128-column tiles, K
    ending mid-stage, samples inside a tile, groups, strides 1 and 3 on D and
    H, output padding — and the phase GEMMs where W lines split 16-byte
    pieces, the stride along W is not 2, the layout is not NCDHW, or K is
    longer than 256 q-rows.  Grad-weight: partial channel and q tiles, 64-
    and 128-channel tiles, stages past a plane's end, one split and many
    (uneven, across samples), odd q counts, grad-bias from the same pass
    (not with output padding: rows no tap reads) — and the channels-last
    GEMMs and grad_bias_reduce where the mirror says."""
    dtype = use_precision(precision)
    config = TAP_BLOCK_CONFIGS[name]
    run_parity(config, layout, dtype, "cuda")
    kernels = tconv3d._C._last_cuda_kernels()
    chosen = kernels["grad_input"]
    assert (chosen == "grad_input_tap_blocks_gemm") == tap_blocks_takes(config, layout, dtype), chosen
    chosen = kernels["grad_weight"]
    takes = tap_blocks_grad_weight_takes(config, layout, dtype)
    assert (chosen == "grad_weight_tap_blocks_gemm") == takes, chosen
    if config[-1]:  # bias: from the same pass where the kernel reads all of grad_output
        fused = takes and not any(triple(config[8]))  # no output padding
        assert kernels["grad_bias"] == bias_pass_expected(config, layout, dtype, kernels, fused)


def bias_pass_expected(config, layout, dtype, kernels, fused):
    """Mirror of where the backward op's grad-bias runs: in the grad-weight
    kernel where `fused` says it takes it, else in the channels-last copy of
    an NCDHW grad_output that a phase GEMM makes (grad-input's or
    grad-weight's) where its planes are whole 16-byte pieces
    (pack_sums_channels), else in a pass of its own."""
    geometry = geometry_of(config)
    x_shape, w_shape, _ = shapes_of(config)
    plane = math.prod(transposed_output_extent(i, k, s, p, d, op) for i, k, s, p, d, op in zip(
        x_shape[2:], w_shape[2:], triple(geometry["stride"]), triple(geometry["padding"]),
        triple(geometry["dilation"]), triple(geometry["output_padding"])))
    element_size = torch.empty((), dtype=dtype).element_size()
    if fused:
        return "grad_weight_tap_blocks_gemm"
    in_pieces = layout == "contiguous" and plane % (16 // element_size) == 0
    copies_gy = (kernels["grad_input"].startswith("tensor_core_gemm")
                 or kernels["grad_weight"] in ("grad_weight_gemm_sm90",
                                               "grad_weight_gemm_channels_last"))
    return "pack_channels_last_summing" if in_pieces and copies_gy else "grad_bias_reduce"


@requires_cuda
@pytest.mark.parametrize("in_channels", [64, 96], ids=["64_columns", "128_columns"])
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_tap_blocks_reads_ncdhw_grad_output_in_place(precision, in_channels):
    """Kernel == stride, NCDHW: grad-input reads grad_output (12 MB in TF32)
    as it is, in 64- and 128-column tiles — nothing beyond grad_input, no
    channels-last copy, no weight pack — matches the float64 reference, and
    repeats bitwise, also with 64-bit indices."""
    dtype = use_precision(precision)
    g = torch.Generator().manual_seed(19)
    w = (torch.randn(in_channels, 32, 2, 2, 2, generator=g) / 16).to("cuda", dtype)
    gy = torch.randn(2, 32, 32, 48, 64, generator=g).to("cuda", dtype)

    def run():
        return torch.ops.tconv3d.grad_input(gy, w, [2, in_channels, 16, 24, 32], [2, 2, 2],
                                            [0, 0, 0], [0, 0, 0], 1, [1, 1, 1])

    gx, extra = memory_beyond_results(run)
    assert tconv3d._C._last_cuda_kernels()["grad_input"] == "grad_input_tap_blocks_gemm"
    assert extra <= 1 << 20, f"{extra} bytes beyond grad_input"
    assert gx.is_contiguous()
    x_ref = torch.zeros(gx.shape, dtype=torch.float64, device="cuda", requires_grad=True)
    y_ref = F.conv_transpose3d(x_ref, w.double(), stride=2)
    gx_ref, = torch.autograd.grad(y_ref, x_ref, gy.double())
    check("grad_input", gx, gx_ref, None, dtype)
    assert_repeats_bitwise(gx, run, "grad_input", "grad_input_tap_blocks_gemm")


@requires_cuda
@pytest.mark.parametrize("in_channels", [64, 96], ids=["64_channels", "128_channels"])
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_tap_blocks_grad_weight_reads_ncdhw_operands_in_place(precision, in_channels):
    """Kernel == stride, NCDHW: grad-weight reads x and grad_output (12 MB in
    TF32) as they are, in 64- and 128-channel tiles, K split 48 ways — no
    channels-last copy of either: nothing allocated beyond gw but the split
    partials — matches the float64 reference, and repeats bitwise, also with
    64-bit indices."""
    dtype = use_precision(precision)
    g = torch.Generator().manual_seed(23)
    x = torch.randn(2, in_channels, 16, 24, 32, generator=g).to("cuda", dtype)
    gy = torch.randn(2, 32, 32, 48, 64, generator=g).to("cuda", dtype)
    weight_shape = [in_channels, 32, 2, 2, 2]
    geometry = ([2, 2, 2], [0, 0, 0], [0, 0, 0], 1, [1, 1, 1])

    def run():
        return torch.ops.tconv3d.grad_weight(gy, x, weight_shape, *geometry)

    def fused():
        return torch.ops.tconv3d.grad_weight_and_bias(gy, x, weight_shape, *geometry)

    gw, extra = memory_beyond_results(run)
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_tap_blocks_gemm"
    # 2 × 12288 positions: 768 stages of 32; 128 q-rows: two tiles of 64.
    tiles = (2 if in_channels > 64 else 1) * 2
    splits = min(768 // 16, -(-264 // tiles))
    partials = splits * gw.numel() * 4
    assert extra <= partials + (1 << 20), f"{extra} bytes beyond gw, partials {partials}"
    assert partials < gy.numel() * gy.element_size()  # less than a copy of grad_output
    w_ref = torch.zeros(weight_shape, dtype=torch.float64, device="cuda", requires_grad=True)
    y_ref = F.conv_transpose3d(x.double(), w_ref, stride=2)
    gw_ref, = torch.autograd.grad(y_ref, w_ref, gy.double())
    check("grad_weight", gw, gw_ref, None, dtype)
    assert_repeats_bitwise(gw, run, "grad_weight", "grad_weight_tap_blocks_gemm")
    # With grad-bias in the same pass: gw unchanged, gb against float64 and
    # grad_bias_reduce, bitwise repeatable; no more memory than the partials.
    (fused_gw, gb), extra = memory_beyond_results(fused)
    assert tconv3d._C._last_cuda_kernels()["grad_bias"] == "grad_weight_tap_blocks_gemm"
    assert extra <= partials + (1 << 20), f"{extra} bytes beyond gw and gb"
    assert torch.equal(fused_gw, gw)
    gb_ref = gy.double().sum((0, 2, 3, 4))
    check("grad_bias", gb, gb_ref, torch.ops.tconv3d.grad_bias(gy), dtype)
    assert torch.equal(gb, fused()[1])


@requires_cuda
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_backward_copies_grad_output_once(precision, bias):
    """NCDHW k3s2p1op1 (the phase GEMMs, which read grad_output channels-last):
    the backward op copies grad_output once for grad-input and grad-weight,
    where the two ops copy it once each, with bitwise the same gradients and no
    more memory; the copy sums the bias on the way (test below)."""
    dtype = use_precision(precision)
    g = torch.Generator().manual_seed(29)
    x = torch.randn(2, 48, 7, 9, 10, generator=g).to("cuda", dtype)
    w = (torch.randn(48, 40, 3, 3, 3, generator=g) / 20).to("cuda", dtype)
    geometry = ([2, 2, 2], [1, 1, 1], [1, 1, 1], 1, [1, 1, 1])
    gy = torch.randn(2, 40, 14, 18, 20, generator=g).to("cuda", dtype)

    def measured(run):
        copies = tconv3d._C._channels_last_copies()
        results, extra = memory_beyond_results(run)
        return results, tconv3d._C._channels_last_copies() - copies, extra

    def separate():
        gx = torch.ops.tconv3d.grad_input(gy, w, list(x.shape), *geometry)
        gw = torch.ops.tconv3d.grad_weight(gy, x, list(w.shape), *geometry)
        gb = torch.ops.tconv3d.grad_bias(gy) if bias else gy.new_empty(0)
        return gx, gw, gb

    (gx, gw, gb), copies, extra = measured(separate)
    kernels = tconv3d._C._last_cuda_kernels()
    assert kernels["grad_input"].startswith("tensor_core_gemm")
    assert kernels["grad_weight"].startswith("grad_weight_gemm")
    (bx, bw, bb), shared_copies, shared_extra = measured(
        lambda: torch.ops.tconv3d.backward(gy, x, w, *geometry, bias))
    assert shared_copies == copies - 1, (shared_copies, copies)
    assert shared_extra <= extra + (1 << 20), (shared_extra, extra)
    assert torch.equal(bx, gx) and torch.equal(bw, gw)
    assert bb.shape == gb.shape
    if bias:
        assert tconv3d._C._last_cuda_kernels()["grad_bias"] == "pack_channels_last_summing"
        check("grad_bias", bb, gy.double().sum((0, 2, 3, 4)), gb, dtype)


# (batch, Cin, Cout, groups, kernel, stride, padding, output_padding, input
# size): grad_output planes of whole 16-byte pieces walked one tile a block,
# and several (the 48^3 planes of 4 samples: 1728 tiles, 512 blocks a
# sample); groups; and a plane of 7 x 9 x 11, in no whole pieces.
BIAS_SUMMING_CONFIGS = [
    (4, 24, 40, 1, 3, 2, 1, 1, (24, 24, 24)),
    (3, 64, 72, 2, 4, 2, 1, 0, (5, 7, 9)),
    (2, 16, 136, 1, (3, 4, 3), (2, 2, 1), 1, (1, 0, 0), (6, 5, 8)),
    (2, 32, 48, 1, 3, 2, 1, 0, (4, 5, 6)),
]


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16", "fp16"])
@pytest.mark.parametrize("config", BIAS_SUMMING_CONFIGS, ids=str)
def test_backward_sums_bias_in_grad_output_copy(config, precision):
    """Where the backward copies an NCDHW grad_output channels-last for the
    phase GEMMs in 16-byte pieces, the copy also sums each channel: grad_bias
    from it against float64 (within twice torch's own error), bitwise
    repeatable (also with 64-bit indices), the other gradients bitwise those
    of the separate ops.  A plane in no whole pieces leaves the bias to its
    own pass."""
    batch, cin, cout, groups, kernel, stride, padding, output_padding, size = config
    dtype = use_precision(precision)
    g = torch.Generator().manual_seed(31)
    kernel, stride = triple(kernel), triple(stride)
    padding, output_padding = triple(padding), triple(output_padding)
    x = torch.randn(batch, cin, *size, generator=g).to("cuda", dtype)
    w = (torch.randn(cin, cout // groups, *kernel, generator=g) / 20).to("cuda", dtype)
    geometry = (list(stride), list(padding), list(output_padding), groups, [1, 1, 1])
    out_size = [transposed_output_extent(i, k, s, p, 1, op) for i, k, s, p, op in zip(
        size, kernel, stride, padding, output_padding)]
    # Off zero on average, small enough that fp16 sums of 4 · 48^3 stay finite.
    gy = ((torch.randn(batch, cout, *out_size, generator=g) + 0.5) / 16).to("cuda", dtype)
    summed = math.prod(out_size) % (16 // gy.element_size()) == 0
    kernel_name = "pack_channels_last_summing" if summed else "grad_bias_reduce"

    def run():
        return torch.ops.tconv3d.backward(gy, x, w, *geometry, True)

    gx, gw, gb = run()
    assert tconv3d._C._last_cuda_kernels()["grad_bias"] == kernel_name
    assert torch.equal(gx, torch.ops.tconv3d.grad_input(gy, w, list(x.shape), *geometry))
    assert tconv3d._C._last_cuda_kernels()["grad_input"].startswith("tensor_core_gemm")
    assert torch.equal(gw, torch.ops.tconv3d.grad_weight(gy, x, list(w.shape), *geometry))
    check("grad_bias", gb, gy.double().sum((0, 2, 3, 4)), gy.sum((0, 2, 3, 4)), dtype)
    assert_repeats_bitwise(gb, lambda: run()[2], "grad_bias", kernel_name)


def forward_taps_expected(config, dtype):
    """Mirror of forward_taps_gemm_supports and _pays (tensor_core_gemm.h)."""
    _, cin, cout, groups, _, kernel, stride, *_ = config
    kernel, stride = triple(kernel), triple(stride)
    k_bytes = -(-padded_group_bytes(cin, groups, dtype) // 32) * 32  # whole k-steps
    columns = math.prod(kernel) * (cout // groups)
    strided = all(k == 1 or s >= 2 for k, s in zip(kernel, stride))
    # (k_bytes ≤ 512 leaves room for a box on H100/H200's 227 KB a block.)
    return cout // groups <= 4 and columns <= 192 and k_bytes <= 512 and strided


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(FORWARD_TAPS_CONFIGS))
def test_forward_taps_gemm(name, layout, precision):
    """Few output channels a group: the forward with its taps folded into the
    GEMM's columns — boxes cut by x's ends and by partial tiles, one to four
    output channels, groups, dilation, anisotropic kernels and strides,
    stride 3, the widest input channels (512 bytes of TF32's, a smaller box)
    — and the phase GEMMs past its limits (256 columns, a stride-1 axis,
    640 bytes of TF32 channels)."""
    dtype = use_precision(precision)
    config = FORWARD_TAPS_CONFIGS[name]
    run_parity(config, layout, dtype, "cuda")
    chosen = tconv3d._C._last_cuda_kernels()["forward"]
    assert (chosen == "forward_taps_gemm") == forward_taps_expected(config, dtype), chosen


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16", "split_tf32"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ["stride_one_axis", "stride_one_k3"])
def test_forward_taps_gemm_on_stride_one_axes(name, layout, precision):
    """The taps-folded forward where an axis with taps has stride 1, which
    only the benchmark hook sends there (whether its halo pays is kernel_ab's
    question): parity in every precision and layout, fp32 without TF32 on
    split TF32."""
    dtype = use_precision(precision)
    config = FORWARD_TAPS_CONFIGS[name]
    with hook_set(tconv3d._C._set_forward_taps_any_stride, True, False):
        run_parity(config, layout, dtype, "cuda")
    expected = "forward_taps_gemm_split_tf32" if precision == "split_tf32" else "forward_taps_gemm"
    assert tconv3d._C._last_cuda_kernels()["forward"] == expected


# cudaDevAttrMaxSharedMemoryPerBlockOptin of smaller GPUs than H100's 232448.
SMEM_LIMITS = {"a100": 166912, "sm86": 101376}
# The mma.sync kernels whose blocks can pass those limits (block_smem_fits):
# (config, layout, precision, policy, pass, kernel).  Each has a variant that
# fits A100 and none that fits sm_86/89.
SMEM_SCENARIOS = {
    # 512 bytes of fp32 channels, 81 columns: 64-row boxes within 163 KB.
    "taps_forward": ((1, 128, 3, 1, (3, 4, 5), 3, 2, 1, 1, 1, True), "channels_last",
                     "split_tf32", "auto", "forward", "forward_taps_gemm_split_tf32"),
    # 512 bytes of TF32 channels: 137 KB, 172 KB with the staged stores.
    "tap_columns": ((2, 128, 32, 1, (3, 4, 5), 2, 2, 0, 0, 1, True), "channels_last", "tf32",
                    "auto", "forward", "forward_tap_columns_gemm"),
    # 128 x 128 TF32 tiles: 102 KB.
    "grad_weight_channels_last": ((1, 128, 128, 1, (3, 3, 3), 3, 2, 1, 1, 1, False),
                                  "channels_last", "tf32", "tensor_core", "grad_weight",
                                  "grad_weight_gemm_channels_last"),
    # 128-channel TF32 tiles: 108 KB.
    "grad_weight_tap_blocks": (TAP_BLOCK_CONFIGS["wide_columns"], "contiguous", "tf32", "auto",
                               "grad_weight", "grad_weight_tap_blocks_gemm"),
}


@requires_cuda
@pytest.mark.parametrize("limit", list(SMEM_LIMITS))
@pytest.mark.parametrize("scenario", list(SMEM_SCENARIOS))
def test_kernels_fit_smaller_shared_memory(scenario, limit):
    """With the shared memory a block may take held to A100's or sm_86/89's
    limit: the kernel keeps a variant that fits A100 (a smaller box, no
    staged stores) and on sm_86/89 the router takes another kernel, where
    the launch used to fail; parity either way.  (The tap-columns forward's
    mma.sync version, its Hopper one off.)"""
    config, layout, precision, policy, pass_, kernel = SMEM_SCENARIOS[scenario]
    dtype = use_precision(precision)

    def chosen():
        run_parity_with_policy(policy, config, layout, dtype)
        return tconv3d._C._last_cuda_kernels()[pass_]

    with hook_set(tconv3d._C._set_tap_columns_wgmma, False, True):
        assert chosen() == kernel  # the device's own limit (H100/H200)
        with hook_set(tconv3d._C._set_smem_per_block_limit, SMEM_LIMITS[limit], 0):
            under_limit = chosen()
    assert (under_limit == kernel) == (limit == "a100"), under_limit


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(GRAD_INPUT_TAPS_CONFIGS))
def test_grad_input_taps_gemm(name, layout, precision):
    """Few output channels a group: grad-input with its taps folded into K —
    stages of 16 (fp16/bf16) or 8 (TF32) taps with partial last stages, gy
    padded to 4 channels or read in place (4 channels, channels-last), taps
    reaching past gy's ends, groups, dilation, anisotropic kernels and
    strides, stride 1, two column tiles (128 channels) — and the phase GEMMs
    past 512 taps."""
    dtype = use_precision(precision)
    config = GRAD_INPUT_TAPS_CONFIGS[name]
    run_parity(config, layout, dtype, "cuda")
    chosen = tconv3d._C._last_cuda_kernels()["grad_input"]
    assert (chosen == "grad_input_taps_gemm") == grad_input_taps_takes(config), chosen


@requires_cuda
def test_taps_gemms_round_tf32_to_nearest():
    """TF32 operands rounded to nearest in the taps-folded forward and grad-input (as in
    test_tf32_operands_round_to_nearest): one tap of weight 1, x = 1 + 3·2^-12
    (0.75 of a TF32 unit above 1): the outputs that tap reaches sum 64 rounded
    products exactly, 64·(1 + 2^-10); truncation would give 64."""
    use_precision("tf32")
    x = torch.full((2, 64, 5, 6, 7), TF32_ROUNDS_UP, device="cuda")
    w = torch.zeros(64, 3, 4, 4, 4, device="cuda")
    w[:, :, 3, 2, 1] = 1  # tap 3 along D reaches past the last input: some gx stay 0
    x.requires_grad_()
    y = tconv3d.conv_transpose3d(x, w, stride=2, padding=1)
    assert tconv3d._C._last_cuda_kernels()["forward"] == "forward_taps_gemm"
    reached = F.conv_transpose3d(x.double(), w.double(), stride=2, padding=1) != 0
    assert reached.any() and not reached.all()
    expected = torch.where(reached, 64 * TF32_ROUNDED, 0.0).float()
    assert torch.equal(y, expected)
    # Grad-input (taps folded into K): each input position sums the tap's 3
    # channels of grad_output, 3·(1 + 2^-10) where the tap lands inside it.
    gx, = torch.autograd.grad(y, x, torch.full_like(y, TF32_ROUNDS_UP))
    assert tconv3d._C._last_cuda_kernels()["grad_input"] == "grad_input_taps_gemm"
    landed = F.conv3d(torch.ones_like(y, dtype=torch.float64), w.double(), stride=2,
                      padding=1) != 0
    assert landed.any() and not landed.all()
    assert torch.equal(gx, torch.where(landed, 3 * TF32_ROUNDED, 0.0).float())


@requires_cuda
@pytest.mark.parametrize("case", [
    # (layout, in_channels, out_channels, groups, expected grad-weight kernel)
    ("channels_last", 16, 24, 1, "grad_weight_gemm_channels_last"),
    ("channels_last", 32, 16, 2, "grad_weight_gemm_channels_last"),
    ("channels_last", 12, 16, 1, "grad_weight_gemm_channels_last"),  # 8-byte pieces
    ("channels_last", 10, 16, 1, "grad_weight_gemm"),  # 10 bf16 channels: not 8-byte pieces
    ("contiguous", 16, 24, 1, "grad_weight_gemm_channels_last"),  # packed
    ("contiguous", 10, 7, 1, "grad_weight_gemm_channels_last"),  # packed, padded
    ("sliced", 16, 24, 1, "grad_weight_gemm"),
], ids=str)
def test_grad_weight_kernel_follows_the_layout(case):
    """Channels-last operands that can be read in place, and NCDHW ones
    (packed), take the cp.async kernel; everything else the strided one, and
    both stay exact."""
    layout, cin, cout, groups, expected = case
    config = (2, cin, cout, groups, (5, 4, 6), 3, 2, 1, 1, 1, True)
    run_parity(config, layout, torch.bfloat16, "cuda")
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == expected


@pytest.fixture
def forced_grad_weight_tile(request):
    tconv3d._C._set_grad_weight_tile(*request.param)
    yield request.param
    tconv3d._C._set_grad_weight_tile(0, 0)


@requires_cuda
@pytest.mark.parametrize("forced_grad_weight_tile",
                         [(16, 16), (32, 32), (64, 64), (64, 128), (128, 64), (128, 128)],
                         indirect=True, ids=lambda t: f"{t[0]}x{t[1]}")
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("name", list(GRAD_WEIGHT_CONFIGS))
def test_every_grad_weight_tile(name, layout, precision, forced_grad_weight_tile):
    """Each tile of the channels-last grad-weight GEMM (the shape picks one per
    layer) forced through shapes with partial tiles on both sides, groups,
    split reductions, stride and dilation: channels-last operands read in
    place, NCDHW ones packed."""
    dtype = use_precision(precision)
    run_parity(GRAD_WEIGHT_CONFIGS[name], layout, dtype, "cuda")
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_gemm_channels_last"


@requires_cuda
@pytest.mark.parametrize("forced_grad_weight_tile", [(16, 16), (64, 64), (128, 128)],
                         indirect=True, ids=lambda t: f"{t[0]}x{t[1]}")
@pytest.mark.parametrize("channels", [
    # (precision, Cin, Cout, groups): some group's channels are 8-byte, not 16-byte, pieces
    ("bf16", 4, 8, 1), ("bf16", 12, 20, 1), ("bf16", 24, 16, 2), ("tf32", 6, 10, 1),
    ("tf32", 2, 8, 1)], ids=str)
@pytest.mark.parametrize("kernel_policy", ["tensor_core"], indirect=True)
def test_grad_weight_reads_8_byte_pieces_in_place(channels, forced_grad_weight_tile, kernel_policy):
    """Channels-last operands with 4 (bf16) or 2 (fp32) channels to a piece
    take the cp.async kernel's 8-byte copies, exact, however wide the tile
    (forced: auto sends groups this narrow to the CUDA-core grad-weight)."""
    precision, cin, cout, groups = channels
    dtype = use_precision(precision)
    config = (3, cin, cout, groups, (7, 6, 9), 3, 2, 1, 1, 1, True)
    run_parity(config, "channels_last", dtype, "cuda")
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_gemm_channels_last"


@requires_cuda
@pytest.mark.parametrize("forced_grad_weight_tile", [(16, 16), (64, 64), (128, 128)],
                         indirect=True, ids=lambda t: f"{t[0]}x{t[1]}")
@pytest.mark.parametrize("size", [(1, (3, 4, 5)), (3, (8, 6, 9))], ids=["one_split", "splits"])
@pytest.mark.parametrize("channels", [
    # (precision, Cin, Cout, groups): odd and padded channel counts per group
    ("bf16", 24, 21, 1), ("bf16", 9, 13, 1), ("bf16", 30, 10, 2), ("tf32", 9, 5, 1),
    ("tf32", 24, 15, 3)], ids=str)
@pytest.mark.parametrize("kernel_policy", ["tensor_core"], indirect=True)
def test_grad_weight_of_packed_ncdhw(channels, size, forced_grad_weight_tile, kernel_policy):
    """NCDHW x and grad_output packed into zero-padded channels-last copies:
    the padding never reaches gw, odd Cout/G included (its last column is a
    lone store, in gw and in the partials).  Planes of 60 and 432 positions:
    the pack's element-wise and 16-byte kernels both run."""
    precision, cin, cout, groups = channels
    batch, spatial = size
    dtype = use_precision(precision)
    config = (batch, cin, cout, groups, spatial, 3, 2, 1, 1, 1, True)
    run_parity(config, "contiguous", dtype, "cuda")
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_gemm_channels_last"


def hopper_grad_weight_fits(name, precision):
    """Whether the wgmma grad-weight GEMM can run a GRAD_WEIGHT_SM90_CONFIGS
    case: on Hopper, not the fallbacks, and in TF32 only groups of multiples
    of 64 input and 32 output channels (its tiles); auto takes it wherever
    it can."""
    _, cin, cout, groups, *_ = GRAD_WEIGHT_SM90_CONFIGS[name]
    if not tconv3d._C._wgmma_available() or name.startswith("fallback"):
        return False
    return precision != "tf32" or (cin // groups % 64 == 0 and cout // groups % 32 == 0)


@requires_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16", "tf32"])
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("name", list(GRAD_WEIGHT_SM90_CONFIGS))
def test_hopper_grad_weight_gemm(name, layout, precision):
    """The wgmma grad-weight GEMM (TMA boxes of x and of grad_output at each
    tap's offset, MN-major operands) on every tile, split and unsplit
    reductions, strides 1-8, dilation, groups; channels-last operands read in
    place, NCDHW ones packed.  TF32 (fp32 with TF32 allowed): x through
    registers, grad_output rewritten K-major in shared memory, tiles of 64
    or 128 input channels × 64 columns in copies of 32 channels, at TF32's
    tolerance.  Elsewhere the
    mma.sync kernel, which the tensor_core policy also forces here: both
    exact."""
    dtype = use_precision(precision)
    run_parity(GRAD_WEIGHT_SM90_CONFIGS[name], layout, dtype, "cuda")
    hopper = hopper_grad_weight_fits(name, precision)
    expected = "grad_weight_gemm_sm90" if hopper else "grad_weight_gemm_channels_last"
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == expected
    run_parity_with_policy("tensor_core", GRAD_WEIGHT_SM90_CONFIGS[name], layout, dtype)
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_gemm_channels_last"


@requires_cuda
@pytest.mark.parametrize("spatial", [(1, 1, 2), (1, 2, 4)], ids=["elements", "pieces"])
def test_packing_walks_more_than_65535_batch_groups(spatial):
    """The NCDHW → channels-last pack (both kernels: planes of 2 and of 8
    positions) loops over (n, g) beyond grid z's limit."""
    config = (33000, 16, 16, 2, spatial, 2, 2, 0, 0, 1, True)
    # The mma.sync policy: under auto, kernel == stride layers read NCDHW in place.
    run_parity_with_policy("tensor_core", config, "contiguous", torch.bfloat16)
    kernels = tconv3d._C._last_cuda_kernels()
    assert kernels["forward"] == "tensor_core_gemm"
    assert kernels["grad_weight"] == "grad_weight_gemm_channels_last"


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "offset"])
@pytest.mark.parametrize("channels", [3, 24, 264, 300])
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_grad_bias_of_dense_grad_output(dtype, layout, channels, aligned, device):
    """Dense grad_output in both layouts: 16-byte vectors, single elements (odd
    counts, an address off 16 bytes), past 256 channels, split reductions
    (all channels-last cases and some NCDHW ones: a bf16 channel's 3·8832
    elements are one block's work, and 300 channels fill a wave unsplit)."""
    g = torch.Generator().manual_seed(channels)
    n, d, h, w = 3, 12, 23, 32  # planes of 8832: whole 16-byte vectors
    shape = (n, d, h, w, channels) if layout == "channels_last" else (n, channels, d, h, w)
    flat = torch.randn(math.prod(shape) + 1, generator=g).to(device, dtype)
    gy = flat[0 if aligned else 1:][:math.prod(shape)].view(shape)
    if layout == "channels_last":
        gy = gy.permute(0, 4, 1, 2, 3)
        assert gy.is_contiguous(memory_format=torch.channels_last_3d)
    grad_bias = torch.ops.tconv3d.grad_bias(gy)
    reference = gy.double().sum((0, 2, 3, 4))
    assert rel_err(grad_bias, reference) <= TOLERANCE[dtype]
    assert torch.equal(grad_bias, torch.ops.tconv3d.grad_bias(gy))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("name", ["k3s2p1op1_vae", "groups2", "dilated"])
def test_unbatched_input(name, device):
    run_parity(CONFIGS[name], "contiguous", torch.float32, device, unbatched=True)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layouts", [("contiguous", "channels_last", "channels_last"),
                                     ("channels_last", "contiguous", "contiguous"),
                                     ("contiguous", "contiguous", "channels_last")],
                         ids=lambda t: "x_{}-w_{}-gy_{}".format(*t))
@pytest.mark.parametrize("name", ["k3s2p1op1_vae", "groups2"])
def test_mixed_memory_formats(name, layouts, dtype, device):
    """x, the weight and grad_output each in its own memory format (the parity
    sweep gives all three one): values against float64; the output and both
    gradients in the layer's format, from x and the weight, whatever
    grad_output's (test_ops.py holds them to torch's strides).  Channels wide
    enough for the tensor-core kernels on CUDA."""
    config = widen(CONFIGS[name], 16)
    gen = torch.Generator().manual_seed(zlib.crc32(repr((name, layouts, dtype)).encode()))
    x_shape, w_shape, cout = shapes_of(config)
    geometry = geometry_of(config)
    x_layout, w_layout, gy_layout = layouts
    x = make_tensor(x_shape, x_layout, dtype, device, gen).requires_grad_()
    w = make_tensor(w_shape, w_layout, dtype, device, gen).requires_grad_()
    b = make_tensor((cout,), "contiguous", dtype, device, gen).requires_grad_()
    y = tconv3d.conv_transpose3d(x, w, b, **geometry)
    xr, wr, br, yr = reference_conv(x, w, b, **geometry)
    expected = layer_format(dtype, x, w)
    assert y.is_contiguous(memory_format=expected)
    gy = make_tensor(y.shape, gy_layout, dtype, device, gen)
    gx, gw, gb = torch.autograd.grad(y, (x, w, b), gy)
    refs = torch.autograd.grad(yr, (xr, wr, br), gy.double().cpu())
    assert gx.is_contiguous(memory_format=expected) and gw.is_contiguous(memory_format=expected)
    check("output", y, yr, None, dtype)
    for what, value, reference in zip(("grad_input", "grad_weight", "grad_bias"), (gx, gw, gb),
                                      refs):
        check(what, value, reference, None, dtype)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("shape", [
    # (x, weight, stride, padding): D rows in three blocks of a phase, the
    # last ragged (4 · 130 · 130 positions a row: 13 rows a block)
    ((1, 4, 30, 128, 128), (4, 4, 3, 3, 3), 1, 1),
    # stride past the kernel: phases no tap reaches store the bias alone
    ((2, 8, 5, 6, 7), (8, 4, 2, 2, 2), 3, 0),
], ids=["three_blocks", "phases_without_taps"])
def test_cpu_forward_padded_slabs(shape, layout):
    """The CPU forward's padded slabs (forward.cpp; 16 weights a tap and up)
    where they split a phase's D rows into blocks, and where a phase has no
    tap: against the float64 reference, results NaN-poisoned first."""
    x_shape, w_shape, stride, padding = shape
    g = torch.Generator().manual_seed(41)
    x = make_tensor(x_shape, layout, torch.float32, "cpu", g)
    w = make_tensor(w_shape, layout, torch.float32, "cpu", g)
    b = torch.randn(w_shape[1], generator=g)
    y = tconv3d.conv_transpose3d(x, w, b, stride=stride, padding=padding)
    _, _, _, yr = reference_conv(x, w, b, stride=stride, padding=padding)
    check("output", y, yr, None, torch.float32)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("channels", [(2, 3), (32, 24)], ids=str)
def test_strides_past_the_output(channels, device):
    """Strides far past the kernel and the output (torch takes them): exact,
    and no plan or table sized by the stride phases (the CPU forward planned
    a GEMM for each of s_d·s_h·s_w phases: 2 GB at stride 128)."""
    cin, cout = channels
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, cin, 1, 2, 3, generator=g).to(device)
    w = torch.randn(cin, cout, 2, 2, 3, generator=g).to(device)
    b = torch.randn(cout, generator=g).to(device)
    geometry = dict(stride=(300, 5, 257), padding=(0, 1, 0))
    y = tconv3d.conv_transpose3d(x, w, b, **geometry)
    _, _, _, yr = reference_conv(x, w, b, **geometry)
    assert y.shape == yr.shape
    check("output", y, yr, None, torch.float32)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("policy", ["auto", "gather", "tensor_core", "wgmma"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("base_layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("name", list(BROADCAST_CONFIGS))
def test_broadcast_operands(name, base_layout, dtype, policy, device):
    """Stride-0 operands, as users make them: x expanded along the batch from
    one sample, and grad_output of `(y * c).sum().backward()` — one value a
    channel broadcast over batch and space (strides 0, 1, 0, 0, 0) — and of
    `y.sum().backward()` (every stride 0).  Every kernel family must read
    them as the repeated values they are, against the float64 reference."""
    if device == "cpu" and policy != "auto":
        pytest.skip("kernel policies choose among CUDA kernels")
    torch.backends.cudnn.allow_tf32 = True
    # A CPU-only build has no CUDA hooks.
    forced = (hook_set(tconv3d._C._set_kernel_policy, policy, "auto") if device == "cuda"
              else contextlib.nullcontext())
    with forced:
        config = BROADCAST_CONFIGS[name]
        gen = torch.Generator().manual_seed(zlib.crc32(repr((name, base_layout, dtype)).encode()))
        x_shape, w_shape, cout = shapes_of(config)
        geometry = geometry_of(config)
        one = make_tensor((1, *x_shape[1:]), base_layout, dtype, device, gen)
        x = one.expand(x_shape).requires_grad_()
        w = make_tensor(w_shape, "contiguous", dtype, device, gen).requires_grad_()
        b = make_tensor((cout,), "contiguous", dtype, device, gen).requires_grad_()
        y = tconv3d.conv_transpose3d(x, w, b, **geometry)
        xr, wr, br, yr = reference_conv(x, w, b, **geometry)
        check("output", y, yr, None, dtype)
        per_channel = torch.randn(1, cout, 1, 1, 1, generator=gen, dtype=torch.float64)
        for gy in (per_channel.to(device, dtype).expand(y.shape),
                   torch.ones((), device=device, dtype=dtype).expand(y.shape)):
            grads = torch.autograd.grad(y, (x, w, b), gy, retain_graph=True)
            refs = torch.autograd.grad(yr, (xr, wr, br), gy.double().cpu(), retain_graph=True)
            for what, value, reference in zip(("grad_input", "grad_weight", "grad_bias"), grads,
                                              refs):
                check(what, value, reference, None, dtype)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("channels", [
    # (Cin, Cout, groups): each CUDA kernel family's host plan meets a zero batch
    (4, 2, 1),     # narrow stencil
    (64, 3, 1),    # taps-folded forward and grad-input GEMMs
    (8, 8, 8),     # depthwise stencil
    (32, 48, 1),   # tensor-core GEMMs
    (64, 64, 1),   # and the Hopper GEMM (bf16)
], ids=str)
def test_empty_batch(channels, layout, dtype, device):
    """A zero batch: an empty output of the right shape and zero gradients
    for weight and bias (results are NaN-poisoned first).  The forward, and
    grad-input where only x needs it, run each kernel family's host code (a
    zero radix in a host plan once killed the interpreter with SIGFPE); the
    joint backward and grad-weight return zeros before any kernel (ops.cpp)."""
    cin, cout, groups = channels
    fmt = torch.channels_last_3d if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(0, cin, 3, 3, 3, device=device, dtype=dtype).contiguous(memory_format=fmt)
    x.requires_grad_()
    w = torch.randn(cin, cout // groups, 3, 3, 3, device=device, dtype=dtype, requires_grad=True)
    b = torch.randn(cout, device=device, dtype=dtype, requires_grad=True)
    y = tconv3d.conv_transpose3d(x, w, b, stride=2, groups=groups)
    assert y.shape == (0, cout, 7, 7, 7)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w))
    assert torch.equal(b.grad, torch.zeros_like(b))
    y_frozen = tconv3d.conv_transpose3d(x, w.detach(), b.detach(), stride=2, groups=groups)
    gx, = torch.autograd.grad(y_frozen, x, torch.randn_like(y_frozen))
    assert gx.shape == x.shape


class TconvOpsSeen(TorchDispatchMode):
    """Records the tconv3d operators that run under it."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name.startswith("tconv3d."):
            self.names.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("device", devices())
def test_only_requested_gradients_are_computed(device):
    """Only w requires grad: the backward runs grad_weight alone (no
    grad-input, no grad-bias), and its value is the float64 reference's."""
    x = torch.randn(2, 3, 4, 5, 3, device=device)
    w = torch.randn(3, 2, 3, 3, 3, device=device, requires_grad=True)
    b = torch.randn(2, device=device)
    y = tconv3d.conv_transpose3d(x, w, b, stride=2)
    gy = torch.randn_like(y)
    with TconvOpsSeen() as seen:
        gw, = torch.autograd.grad(y, [w], gy)
    assert seen.names == ["tconv3d.grad_weight"]
    _, wr, _, yr = reference_conv(x, w, b, stride=2)
    gw_reference, = torch.autograd.grad(yr, wr, gy.double().cpu())
    check("grad_weight", gw, gw_reference, None, torch.float32)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(NARROW_GATHER_CONFIGS))
def test_narrow_gather(name, layout, dtype):
    """Auto policy: the narrow-group stencil, forward and grad-input (but
    channels-last grad-input of groups whose channels make no 8-byte vector,
    and grad-input from more than 8 channels a group), in each
    of its walks (channels-last in 16-byte vectors or single channels; W
    fastest four channels or one an item) and both source forms (depthwise,
    a group's channels), the generic gather kernels past its weight and
    coordinate limits; depthwise layers' grad-weight on its own kernel but in
    fp64."""
    config = NARROW_GATHER_CONFIGS[name]
    run_parity(config, layout, dtype, "cuda")
    kernels = tconv3d._C._last_cuda_kernels()
    generic = name in ("kernel_1584_taps", "too_many_coordinates")
    assert kernels["forward"] == ("forward_gather" if generic else "narrow_gather")
    _, cin, cout, groups, *_ = config
    # Grad-input from a channels-last grad_output whose groups' channels make
    # no 8-byte vector, or from more than 8 channels a group (onto at least
    # 2), stays on the tensor cores where they run (fp16/bf16, 8+ channels a
    # group on a side): the taps-folded GEMM for groups of at most 4 output
    # channels.
    source_vectors = (cout // groups) * dtype.itemsize % 8 == 0
    gemm_grad_input = (layout == "channels_last" and cout > 1 and not source_vectors) or (
        cin // groups > 1 and cout // groups > 8)
    tensor_cores = (gemm_grad_input and not cin == cout == groups
                    and dtype in (torch.float16, torch.bfloat16) and max(cin, cout) // groups >= 8)
    if tensor_cores and grad_input_taps_takes(config):
        assert kernels["grad_input"] == "grad_input_taps_gemm"
    elif tensor_cores:
        assert kernels["grad_input"].startswith("tensor_core_gemm")
    else:
        assert kernels["grad_input"] == ("grad_input_gather" if generic else "narrow_gather")
    if cin == cout == groups:
        expected = "grad_weight_reduce" if dtype == torch.float64 else "depthwise_grad_weight"
        assert kernels["grad_weight"] == expected


def shifted_channels_last(t):
    """t's values channels-last, one element into their buffer: every
    position's channels contiguous but off the 8- and 16-byte boundaries."""
    n, c, d, h, w = t.shape
    storage = torch.empty(t.numel() + 1, device=t.device, dtype=t.dtype)
    shifted = storage[1:].view(n, d, h, w, c).permute(0, 4, 1, 2, 3)
    shifted.copy_(t)
    assert shifted.is_contiguous(memory_format=torch.channels_last_3d)
    assert shifted.data_ptr() % 8 != 0
    return shifted


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("channels", [(4, 8), (3, 16), (8, 4)], ids=["4_to_8", "3_to_16", "8_to_4"])
def test_narrow_gather_vector_and_element_source_loads_agree(channels, dtype):
    """The narrow-group stencil reads a position's source channels of a group
    as 8- or 16-byte vectors where a channels-last source aligns them, one at
    a time where not (the source one element into its buffer): the same
    values summed in the same order, so bitwise the same forward and
    grad-input, each within tolerance of float64."""
    torch.backends.cudnn.allow_tf32 = False
    cin, cout = channels
    g = torch.Generator().manual_seed(37)
    geometry = ([2, 2, 2], [1, 1, 1], [1, 1, 1], 1, [1, 1, 1])
    x = torch.randn(3, cin, 5, 7, 6, generator=g).to("cuda", dtype)
    w = (torch.randn(cin, cout, 3, 3, 3, generator=g) / 4).to("cuda", dtype)
    gy = torch.randn(3, cout, 10, 14, 12, generator=g).to("cuda", dtype)
    cl = torch.channels_last_3d
    xr = x.double().cpu().requires_grad_()
    yr = F.conv_transpose3d(xr, w.double().cpu(), stride=2, padding=1, output_padding=1)
    yr.backward(gy.double().cpu())
    with hook_set(tconv3d._C._set_kernel_policy, "gather", "auto"):
        results = []
        for source in (x.contiguous(memory_format=cl), shifted_channels_last(x)):
            results.append(torch.ops.tconv3d.forward(source, w, None, *geometry))
            assert tconv3d._C._last_cuda_kernels()["forward"] == "narrow_gather"
        assert torch.equal(*results)
        check("output", results[0], yr, None, dtype)
        results = []
        for source in (gy.contiguous(memory_format=cl), shifted_channels_last(gy)):
            results.append(torch.ops.tconv3d.grad_input(source, w, list(x.shape), *geometry))
            assert tconv3d._C._last_cuda_kernels()["grad_input"] == "narrow_gather"
        assert torch.equal(*results)
        check("grad_input", results[0], xr.grad, None, dtype)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(NARROW_GRAD_WEIGHT_CONFIGS))
def test_narrow_grad_weight(name, layout, dtype):
    """Auto policy: groups of at most 4 input and 16 output channels take the
    CUDA-core grad-weight (splits and one split) in every layout; fp64 the
    generic reduction (fp32 runs without TF32 here)."""
    run_parity(NARROW_GRAD_WEIGHT_CONFIGS[name], layout, dtype, "cuda")
    kernel = tconv3d._C._last_cuda_kernels()["grad_weight"]
    assert kernel == ("grad_weight_reduce" if dtype == torch.float64 else "narrow_grad_weight")


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("channels", [(3, 16), (4, 8), (2, 4)], ids=["3_to_16", "4_to_8", "2_to_4"])
def test_narrow_grad_weight_vector_and_element_loads_agree(channels, dtype):
    """The CUDA-core grad-weight reads a position's grad_output channels as 8-
    or 16-byte vectors where they are aligned, one at a time where not (a
    channels-last grad_output one element into its buffer): the same values
    in the same order, so bitwise the same gradient, and within tolerance of
    float64."""
    torch.backends.cudnn.allow_tf32 = False
    cin, cout = channels
    g = torch.Generator().manual_seed(31)
    x = torch.randn(3, cin, 5, 7, 6, generator=g).to("cuda", dtype)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    geometry = ([2, 2, 2], [1, 1, 1], [1, 1, 1], 1, [1, 1, 1])
    weight_shape = [cin, cout, 3, 3, 3]
    gy_ncdhw = torch.randn(3, cout, 10, 14, 12, generator=g).to("cuda", dtype)
    aligned = gy_ncdhw.contiguous(memory_format=torch.channels_last_3d)
    shifted = shifted_channels_last(gy_ncdhw)

    gw_vectors = torch.ops.tconv3d.grad_weight(aligned, x, weight_shape, *geometry)
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "narrow_grad_weight"
    gw_elements = torch.ops.tconv3d.grad_weight(shifted, x, weight_shape, *geometry)
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "narrow_grad_weight"
    assert torch.equal(gw_vectors, gw_elements)

    xr = x.double().cpu().requires_grad_()
    wr = torch.randn(weight_shape, generator=g, dtype=torch.float64).requires_grad_()
    F.conv_transpose3d(xr, wr, stride=2, padding=1, output_padding=1).backward(
        gy_ncdhw.double().cpu())
    check("grad_weight", gw_vectors, wr.grad, None, dtype)


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(TAPS_GEMM_CONFIGS))
def test_grad_weight_taps_gemm(name, layout, precision):
    """Auto policy: at most 4 output channels a group (and 8+ input ones) take
    the taps-folded grad-weight GEMM — every tap and input tile edge, groups,
    input groups read in place and padded, gy's groups padded to 4 channels
    or read in place, stride, dilation, gy positions no tap reaches, one
    split and many — exact in every layout."""
    dtype = use_precision(precision)
    run_parity(TAPS_GEMM_CONFIGS[name], layout, dtype, "cuda")
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_taps_gemm"


# Grad-weights whose reduction is split into planes of fp32 partial sums,
# each element's planes added on 2^combine_log_lanes(splits, items) threads
# (tap_tile.h): (policy, kernel, layout, x's shape, output channels, groups,
# kernel size, stride, padding, output padding).  Tap-major partials
# (combine_tap_major_kernel): the taps-folded GEMM (k3, 3 output channels)
# splits its positions into min(⌈positions / 1024⌉, 512) planes, 1 and 35
# here from 64 input channels (1 and 8 lanes), 512 from 16 (1296 elements:
# 128 lanes, past a warp, the warps' sums through shared memory); the Hopper
# GEMM on a U-Net k2s2 64 -> 32 layer (bf16: 2 tiles, 132 splits, 32 lanes;
# TF32: 4 tiles, 66 splits, 16 lanes); groups of 16 channels (the
# benchmark's grouped g4 layer) on mma.sync and, four at a time, on the
# Hopper GEMM (group blocks: the combine keeps the diagonal blocks).
# Partials in gw's order (combine_partials_kernel, at most 8 lanes): the
# tap-blocks GEMM on the U-Net layer in NCDHW (132 splits), the CUDA-core
# narrow (4 -> 8: 38 splits) and depthwise grad-weights.
COMBINE_LANES_LAYERS = {
    "taps_1_split": ("auto", "grad_weight_taps_gemm", "cl", (1, 64, 9, 10, 11), 3, 1, 3, 1, 1, 0),
    "taps_35_splits": ("auto", "grad_weight_taps_gemm", "cl", (2, 64, 24, 26, 28), 3, 1, 3, 1, 1,
                       0),
    "taps_512_splits": ("auto", "grad_weight_taps_gemm", "cl", (2, 16, 64, 64, 66), 3, 1, 3, 1, 1,
                        0),
    "hopper_unet_k2s2": ("wgmma", "grad_weight_gemm_sm90", "cl", (2, 64, 32, 33, 34), 32, 1, 2, 2,
                         0, 0),
    # One split (a 4 × 5 × 6 grid), channels-last gw: the epilogue writes it.
    "hopper_one_split_cl": ("wgmma", "grad_weight_gemm_sm90", "cl", (1, 256, 4, 5, 6), 128, 1, 3,
                            2, 1, 1),
    # The same with 96 output channels: copies of 32 co (32 mod 64), the
    # fp16/bf16 epilogue's 16-byte stores one quad transpose a copy.
    "hopper_one_split_cl_co_32": ("wgmma", "grad_weight_gemm_sm90", "cl", (1, 128, 4, 5, 6), 96, 1,
                                  3, 2, 1, 1),
    "mma_grouped_g4": ("tensor_core", "grad_weight_gemm_channels_last", "cl", (4, 64, 16, 15, 17),
                       64, 4, 3, 2, 1, 1),
    # The same layer's four groups as one 64-channel GEMM (group blocks), the
    # combine keeping the diagonal blocks.
    "hopper_group_blocks_g4": ("auto", "grad_weight_gemm_sm90", "cl", (4, 64, 16, 15, 17), 64, 4,
                               3, 2, 1, 1),
    # W 36: grad_output's rows of 72 whole 16-byte pieces in bf16 too (tap_blocks.h).
    "tap_blocks_unet_k2s2": ("auto", "grad_weight_tap_blocks_gemm", "ncdhw", (2, 64, 32, 33, 36),
                             32, 1, 2, 2, 0, 0),
    "narrow_4_to_8": ("auto", "narrow_grad_weight", "cl", (8, 4, 16, 15, 17), 8, 1, 3, 1, 1, 0),
    "depthwise_32": ("auto", "depthwise_grad_weight", "cl", (2, 32, 16, 15, 17), 32, 32, 3, 1, 1,
                     0),
}


@requires_cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("name", list(COMBINE_LANES_LAYERS))
def test_grad_weight_combine_is_exact_on_integers(name, precision):
    """x and grad_output of small integers (exact in bf16 and TF32, their
    products and every partial sum exact in fp32: below 2^24), so gw is
    exact whatever the order of its sums: every element of the NaN-poisoned
    gw equals the float64 gradient rounded once to the dtype — a plane added
    twice, skipped or taken from the wrong element would show — and repeats
    bitwise, also with 64-bit indices."""
    policy, kernel, layout, x_shape, cout, groups, k, stride, padding, output_padding = (
        COMBINE_LANES_LAYERS[name])
    dtype = use_precision(precision)
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    fmt = torch.channels_last_3d if layout == "cl" else torch.contiguous_format
    x = torch.randint(-2, 3, x_shape, generator=g).to("cuda", dtype, memory_format=fmt)
    weight_shape = [x_shape[1], cout // groups, k, k, k]
    out_shape = [x_shape[0], cout] + [
        transposed_output_extent(n, k, stride, padding, 1, output_padding) for n in x_shape[2:]]
    gy = torch.randint(-2, 3, out_shape, generator=g).to("cuda", dtype, memory_format=fmt)
    geometry = ([stride] * 3, [padding] * 3, [output_padding] * 3, groups, [1, 1, 1])

    def run():
        return torch.ops.tconv3d.grad_weight(gy, x, weight_shape, *geometry)

    tconv3d._C._set_kernel_policy(policy)
    try:
        gw = run()
        assert tconv3d._C._last_cuda_kernels()["grad_weight"] == kernel
        w_ref = torch.zeros(weight_shape, dtype=torch.float64, device="cuda", requires_grad=True)
        y_ref = F.conv_transpose3d(x.double(), w_ref, stride=stride, padding=padding,
                                   output_padding=output_padding, groups=groups)
        gw_ref, = torch.autograd.grad(y_ref, w_ref, gy.double())
        assert gw_ref.abs().max() < 2 ** 24
        assert torch.equal(gw, gw_ref.to(dtype))
        assert_repeats_bitwise(gw, run, "grad_weight", kernel)
    finally:
        tconv3d._C._set_kernel_policy("auto")


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_grad_weight_taps_gemm_in_full_precision(dtype):
    """fp64 keeps the full-precision reduction; fp32 with TF32 off takes the
    taps-folded GEMM on split TF32, at fp32's tolerance."""
    torch.backends.cudnn.allow_tf32 = False
    run_parity(TAPS_GEMM_CONFIGS["rgb_out_64_to_3"], "contiguous", dtype, "cuda")
    expected = {torch.float64: "grad_weight_reduce",
                torch.float32: "grad_weight_taps_gemm_split_tf32"}[dtype]
    assert tconv3d._C._last_cuda_kernels()["grad_weight"] == expected


@requires_cuda
@pytest.mark.parametrize("group_blocks", [True, False], ids=["four_a_tile", "one_a_tile"])
@pytest.mark.parametrize("precision", ["bf16", "fp16", "tf32"])
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_groups_of_16_channels_four_a_tile(layout, precision, group_blocks):
    """Groups of 16 channels on the Hopper GEMM: four a 64-column tile, one
    m64n16k16 a group and tap (TF32: two m64n16k8, a tap's two stages a
    pair; TensorCoreGemmOperands::group_blocks), or one a tile
    (_set_group_blocks(False), kernel_ab's wgmma_group_a_tile).  Eight groups
    (two tiles of four), k3s2: forward with bias and grad-input on
    NaN-poisoned results against float64; then an infinity in one position
    of group 0's channels (x for the forward, grad_output for the grad-input)
    must leave every other group's results finite and as before — a
    block-diagonal weight run densely would spread NaNs (its zeros times the
    infinity) into groups 1-3.  TF32 blocks never split K: a forced split
    (_set_wgmma_splits) leaves the grad-input bitwise as it was."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    dtype = use_precision(precision)
    fmt = torch.channels_last_3d if layout == "channels_last" else torch.contiguous_format
    g = torch.Generator().manual_seed(61)
    geometry = dict(stride=2, padding=1, output_padding=1, groups=8)
    x = torch.randn(2, 128, 5, 6, 7, generator=g)
    w = torch.randn(128, 16, 3, 3, 3, generator=g) / 12
    b = torch.randn(128, generator=g)
    gy = torch.randn(2, 128, 10, 12, 14, generator=g)
    op_geometry = ([2, 2, 2], [1, 1, 1], [1, 1, 1], 8, [1, 1, 1])

    def on_gpu(t):
        return t.to("cuda", dtype).contiguous(memory_format=fmt if t.dim() == 5 else
                                              torch.contiguous_format)

    def forward(x_):
        return tconv3d.conv_transpose3d(on_gpu(x_), w.to("cuda", dtype), b.to("cuda", dtype),
                                        **geometry)

    def grad_input(gy_):
        return torch.ops.tconv3d.grad_input(on_gpu(gy_), w.to("cuda", dtype), list(x.shape),
                                            *op_geometry)

    def forward_reference(x_):
        return F.conv_transpose3d(x_.double(), w.to(dtype).double(), b.to(dtype).double(),
                                  **geometry)

    def grad_input_reference(gy_):
        # A transposed convolution's grad-input is the convolution of grad_output.
        return F.conv3d(gy_.to(dtype).double(), w.to(dtype).double(), stride=2, padding=1,
                        groups=8)

    xq = x.to(dtype).float()
    with hook_set(tconv3d._C._set_group_blocks, group_blocks, True):
        y = forward(xq)
        assert tconv3d._C._last_cuda_kernels()["forward"].startswith("tensor_core_gemm_sm90")
        check("forward", y, forward_reference(xq), None, dtype)
        gx = grad_input(gy)
        assert tconv3d._C._last_cuda_kernels()["grad_input"].startswith("tensor_core_gemm_sm90")
        check("grad_input", gx, grad_input_reference(gy), None, dtype)
        if precision == "tf32" and group_blocks:
            with hook_set(tconv3d._C._set_wgmma_splits, 3):
                assert torch.equal(grad_input(gy), gx)

        x_inf, gy_inf = xq.clone(), gy.clone()
        x_inf[1, 5, 2, 3, 4] = float("inf")     # group 0's channel 5
        gy_inf[0, 3, 4, 5, 6] = float("inf")    # group 0's channel 3
        y_inf, gx_inf = forward(x_inf), grad_input(gy_inf)
    for result, before, reference in ((y_inf, y, forward_reference(x_inf)),
                                      (gx_inf, gx, grad_input_reference(gy_inf))):
        others = result[:, 16:].cpu()
        assert torch.isfinite(others).all(), "an infinity in group 0 reached another group"
        assert torch.equal(others, before[:, 16:].cpu())
        # Group 0 is non-finite exactly where float64 is.
        assert torch.equal(torch.isfinite(result[:, :16].cpu()),
                           torch.isfinite(reference[:, :16]))


@requires_cuda
@pytest.mark.parametrize("group_blocks", [True, False], ids=["four_a_launch", "one_a_tile"])
@pytest.mark.parametrize("precision", ["bf16", "tf32"])
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_groups_of_16_channels_grad_weight_four_a_launch(layout, precision, group_blocks):
    """The grad-weight of groups of 16 channels: four at a time on the Hopper
    GEMM (GradWeightOperands::group_block: 64 × 64 channels a tap, the
    combine keeping the diagonal blocks), or on mma.sync one group a tile
    (_set_group_blocks(False)).  x and grad_output of small integers, so
    every element of the NaN-poisoned gw equals the float64 gradient rounded
    once; then an infinity in group 0's channels of x leaves every other
    group's gw bitwise as before (the dropped off-diagonal sums took it)."""
    if not tconv3d._C._wgmma_available():
        pytest.skip("the Hopper GEMM does not run on this device")
    dtype = use_precision(precision)
    fmt = torch.channels_last_3d if layout == "channels_last" else torch.contiguous_format
    g = torch.Generator().manual_seed(67)
    x = torch.randint(-2, 3, (2, 128, 5, 6, 7), generator=g).to("cuda", dtype, memory_format=fmt)
    gy = torch.randint(-2, 3, (2, 128, 10, 12, 14), generator=g).to("cuda", dtype,
                                                                    memory_format=fmt)
    weight_shape = [128, 16, 3, 3, 3]
    geometry = ([2, 2, 2], [1, 1, 1], [1, 1, 1], 8, [1, 1, 1])

    def run(x_):
        return torch.ops.tconv3d.grad_weight(gy, x_, weight_shape, *geometry)

    expected = "grad_weight_gemm_sm90" if group_blocks else "grad_weight_gemm_channels_last"
    with hook_set(tconv3d._C._set_group_blocks, group_blocks, True):
        gw = run(x)
        assert tconv3d._C._last_cuda_kernels()["grad_weight"] == expected
        w_ref = torch.zeros(weight_shape, dtype=torch.float64, device="cuda", requires_grad=True)
        y_ref = F.conv_transpose3d(x.double(), w_ref, stride=2, padding=1, output_padding=1,
                                   groups=8)
        gw_ref, = torch.autograd.grad(y_ref, w_ref, gy.double())
        assert torch.equal(gw, gw_ref.to(dtype))
        assert_repeats_bitwise(gw, lambda: run(x), "grad_weight", expected)
        x_inf = x.clone()
        x_inf[1, 5, 2, 3, 4] = float("inf")  # group 0's input channel 5
        gw_inf = run(x_inf)
    assert torch.isfinite(gw_inf[16:]).all(), "an infinity in group 0 reached another group"
    assert torch.equal(gw_inf[16:], gw[16:])
    assert not torch.isfinite(gw_inf[5]).all()
