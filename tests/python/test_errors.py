"""Every argument torch rejects, tconv3d rejects: a Python exception, never a
crash, never a result."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tconv3d
from conftest import devices

X = (2, 4, 3, 3, 3)
W = (4, 2, 2, 2, 2)


def bad_calls(device):
    def t(shape, dtype=torch.float32, dev=device):
        return torch.randn(shape, device=dev).to(dtype)

    x, w = t(X), t(W)
    calls = {
        "input_rank_3": ((t((4, 3, 3)), w), {}),
        "input_rank_6": ((t((1, 2, 4, 3, 3, 3)), w), {}),
        "weight_rank_4": ((x, t((4, 2, 2, 2))), {}),
        "channel_mismatch": ((x, t((3, 2, 2, 2, 2))), {}),
        "groups_not_dividing": ((x, w), {"groups": 3}),
        "zero_groups": ((x, w), {"groups": 0}),
        "negative_groups": ((x, w), {"groups": -1}),
        "zero_stride": ((x, w), {"stride": 0}),
        "negative_stride": ((x, w), {"stride": (1, -1, 1)}),
        "stride_wrong_length": ((x, w), {"stride": (1, 2)}),
        "zero_dilation": ((x, w), {"dilation": 0}),
        "negative_padding": ((x, w), {"padding": -1}),
        "output_padding_too_large": ((x, w), {"output_padding": 1}),
        "output_padding_negative": ((x, w), {"stride": 2, "output_padding": -1}),
        "output_too_small": ((x, w), {"padding": 3}),
        "bias_wrong_size": ((x, w, t((3,))), {}),
        "bias_wrong_rank": ((x, w, t((1, 2))), {}),
        "weight_dtype_mismatch": ((x, t(W, torch.float64)), {}),
        "bias_dtype_mismatch": ((x, w, t((2,), torch.float64)), {}),
        "integer_dtype": ((t(X, torch.int32), t(W, torch.int32)), {}),
        "zero_spatial_input": ((t((2, 4, 0, 3, 3)), w), {}),
        "zero_kernel": ((x, t((4, 2, 0, 2, 2))), {}),
        "sparse_weight": ((x, w.to_sparse()), {}),
    }
    if device == "cuda":
        calls["weight_on_cpu"] = ((x, t(W, dev="cpu")), {})
        calls["bias_on_cpu"] = ((x, w, t((2,), dev="cpu")), {})
    return calls


@pytest.mark.parametrize("device", devices())
def test_torch_and_tconv3d_reject_the_same_calls(device):
    for name, (args, kwargs) in bad_calls(device).items():
        with pytest.raises((RuntimeError, ValueError, NotImplementedError)):
            F.conv_transpose3d(*args, **kwargs)
        with pytest.raises((RuntimeError, ValueError), match=r"\S") as info:
            tconv3d.conv_transpose3d(*args, **kwargs)
        assert len(str(info.value)) > 20, f"{name}: message too terse: {info.value}"


def test_messages_say_what_is_wrong():
    x, w = torch.randn(X), torch.randn(W)
    cases = [
        ({"stride": 0}, "stride"),
        ({"padding": -1}, "padding"),
        ({"groups": 0}, "groups"),
        ({"dilation": 0}, "dilation"),
        ({"output_padding": 1}, "output padding"),
        ({"padding": 3}, "too small"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(RuntimeError, match=fragment):
            tconv3d.conv_transpose3d(x, w, **kwargs)
    with pytest.raises(RuntimeError, match="channels"):
        tconv3d.conv_transpose3d(x, torch.randn(3, 2, 2, 2, 2))
    with pytest.raises(RuntimeError, match="bias"):
        tconv3d.conv_transpose3d(x, w, torch.randn(5))
    with pytest.raises(RuntimeError, match="dtype"):
        tconv3d.conv_transpose3d(x.int(), w.int())


def test_backward_ops_validate_their_arguments():
    gy = torch.randn(2, 2, 4, 4, 4)
    w, x = torch.randn(W), torch.randn(X)
    geometry = ([1, 1, 1], [0, 0, 0], [0, 0, 0], 1, [1, 1, 1])
    with pytest.raises(RuntimeError, match="grad_output"):
        torch.ops.tconv3d.grad_input(gy[:, :, :3], w, list(X), *geometry)
    with pytest.raises(RuntimeError, match="grad_output"):
        torch.ops.tconv3d.grad_weight(gy[:, :1], x, list(W), *geometry)
    with pytest.raises(RuntimeError):
        torch.ops.tconv3d.grad_bias(torch.randn(2, 2, 2))


def test_padding_mode_other_than_zeros_is_rejected_like_torch():
    for mode in ("reflect", "replicate", "circular"):
        with pytest.raises(ValueError):
            torch.nn.ConvTranspose3d(2, 2, 3, padding_mode=mode)
        with pytest.raises(ValueError):
            tconv3d.ConvTranspose3d(2, 2, 3, padding_mode=mode)


@pytest.mark.parametrize("kwargs", [
    {"stride": 2.0}, {"stride": (2.5, 2, 2)}, {"stride": True}, {"groups": 2.5},
    {"groups": True}, {"padding": "same"}, {"stride": None}, {"dilation": [1.0]},
    {"stride": np.int64(2)}, {"stride": torch.tensor(2)}, {"groups": np.int64(2)},
    {"groups": torch.tensor(2)}, {"stride": (np.int64(2), 1, torch.tensor(2))},
    {"stride": [2]}, {"stride": torch.Size([2, 1, 2])},
], ids=repr)
def test_argument_types_as_torchs_parser(kwargs):
    """Integer arguments take what torch's parser takes (ints, numpy integers,
    integer 0-d tensors) and reject what it rejects (floats, which int() would
    truncate, bools, None, strings) with a TypeError naming the argument."""
    x, w = torch.randn(2, 4, 3, 3, 3), torch.randn(4, 1, 3, 3, 3)
    try:
        expected = F.conv_transpose3d(x, w, **kwargs)
    except TypeError:
        name = next(iter(kwargs))
        with pytest.raises(TypeError, match=f"'{name}'"):
            tconv3d.conv_transpose3d(x, w, **kwargs)
        return
    y = tconv3d.conv_transpose3d(x, w, **kwargs)
    assert y.shape == expected.shape
    assert ((y - expected).norm() / expected.norm()).item() < 1e-5


@pytest.mark.parametrize("kwargs", [
    {"padding": 2 ** 63 - 1},  # once wrapped around to a plausible output size
    {"stride": 2 ** 31}, {"dilation": 2 ** 40}, {"output_padding": 2 ** 31, "stride": 2 ** 32},
], ids=repr)
def test_arguments_past_32_bits_raise(kwargs):
    x, w = torch.randn(2, 4, 3, 3, 3), torch.randn(4, 2, 3, 3, 3)
    with pytest.raises(RuntimeError, match=r"above 2\^31 - 1 are not supported"):
        tconv3d.conv_transpose3d(x, w, **kwargs)


def test_output_size_past_int64_raises():
    """An input extent of 2^33 (a 32 GB fp32 tensor) at a stride near 2^31:
    its output extent overflows int64, which must raise, not wrap around."""
    with pytest.raises(RuntimeError, match="overflows int64"):
        tconv3d._C.output_shape([1, 1, 2 ** 33, 1, 1], [1, 1, 1, 1, 1], [2 ** 31 - 1], [0], [0],
                                1, [1])
