"""The TF32 Hopper grad-weight over K-major operands (grad_weight_kmajor_sm90.cu):
x and grad_output rewritten w-fastest and rounded to TF32, grad_output split
into its stride phases (kmajor_pack.cu), so that every tap's operand is a
plain TMA box and wgmma reads both from shared memory.  Against the float64
reference on odd shapes, every geometry feature, both box widths (32-wide
boxes where W is a multiple of 32, else 8-wide; each forced on every shape),
three layouts, split and unsplit reductions; bitwise reproducible."""
import pytest
import torch

import tconv3d
from conftest import requires_cuda
from test_determinism import assert_bitwise_equal, run_once
from test_parity import LAYOUTS, run_parity, use_precision

# (batch, Cin, Cout, groups, spatial, kernel, stride, padding, output_padding, dilation, bias);
# groups of multiples of 64 channels on both sides, the kernel's domain.
KMAJOR_CONFIGS = {
    "vae_k4s2p1": (1, 64, 64, 1, (5, 6, 7), 4, 2, 1, 0, 1, True),
    # W 32: 32-wide boxes by shape; 128 input channels: the 128-wide ci tile.
    "k3s2_w32": (2, 128, 64, 1, (3, 4, 32), 3, 2, 1, 1, 1, True),
    "unet_k2s2_w32": (2, 128, 128, 1, (3, 5, 32), 2, 2, 0, 0, 1, True),
    # Anisotropic everything; 128 output channels: two copies a tap.
    "aniso_dilated": (1, 64, 128, 1, (4, 5, 9), (3, 2, 3), (1, 2, 3), (1, 0, 2), (0, 1, 1),
                      (2, 1, 1), False),
    # 192 input channels a group (three 64-wide ci tiles), two groups.
    "two_groups_192": (2, 384, 128, 2, (3, 5, 6), 3, 2, 1, 1, 1, True),
    "stride1_k3_splits": (3, 64, 64, 1, (7, 9, 11), 3, 1, 1, 0, 1, False),
    # Padding past half the kernel: shifts below zero and past the phase grid.
    "wide_padding": (1, 64, 64, 1, (4, 4, 4), 3, 2, 2, 1, 1, False),
    # 125 taps × 64 channels: the last 256-row tile a quarter full; stride 3.
    "k5s3_partial_tile": (1, 64, 64, 1, (3, 3, 3), 5, 3, 2, 2, 1, True),
    # Kernel 1 at stride 4: phases no tap reaches (zeros in grad_output's split).
    "k1s4": (2, 64, 64, 1, (3, 4, 5), 1, 4, 0, 3, 1, True),
}


def takes_kmajor(config):
    _, cin, cout, groups, *_ = config
    return tconv3d._C._wgmma_available() and cin // groups % 64 == 0 and cout // groups % 64 == 0


@requires_cuda
@pytest.mark.parametrize("box_w", [0, 8, 32], ids=["by_shape", "box8", "box32"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(KMAJOR_CONFIGS))
def test_kmajor_grad_weight(name, layout, box_w):
    dtype = use_precision("tf32")
    tconv3d._C._set_kmajor_box_w(box_w)
    try:
        run_parity(KMAJOR_CONFIGS[name], layout, dtype, "cuda")
    finally:
        tconv3d._C._set_kmajor_box_w(0)
    kernel = tconv3d._C._last_cuda_kernels()["grad_weight"]
    if takes_kmajor(KMAJOR_CONFIGS[name]):
        assert kernel == "grad_weight_kmajor_sm90"
    else:
        assert kernel != "grad_weight_kmajor_sm90"


@requires_cuda
@pytest.mark.parametrize("box_w", [8, 32], ids=["box8", "box32"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_kmajor_grad_weight_is_bitwise_reproducible(channels_last, box_w):
    """Split partials combined in a fixed order: identical gradients run to run."""
    torch.backends.cudnn.allow_tf32 = True
    tconv3d._C._set_kmajor_box_w(box_w)
    try:
        runs = [run_once("cuda", dtype=torch.float32, channels_last=channels_last, in_channels=64,
                         out_channels=64) for _ in range(3)]
    finally:
        tconv3d._C._set_kmajor_box_w(0)
    if tconv3d._C._wgmma_available():
        assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_kmajor_sm90"
    assert_bitwise_equal(runs)


@pytest.mark.skipif(not tconv3d._C.with_cuda, reason="built without CUDA")
def test_kmajor_box_width_hook_refuses_other_widths():
    with pytest.raises(Exception, match="box width"):
        tconv3d._C._set_kmajor_box_w(16)
