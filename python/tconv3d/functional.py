"""conv_transpose3d: a drop-in for torch.nn.functional.conv_transpose3d."""
import operator
from typing import Optional, Sequence, Union

from torch import Tensor

from . import _ops
from .autograd import forward_under_torch_func, python_autograd_needed

IntOrTriple = Union[int, Sequence[int]]


def _as_int(value, name: str, expected: str = "tuple of ints", position: int = -1) -> int:
    # As torch's argument parser: whatever has __index__ (ints, numpy integers,
    # integer 0-d tensors), not bools, nor floats, which int() would truncate.
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    found = (f"not {type(value).__name__}" if position < 0 else
             f"but found element of type {type(value).__name__} at pos {position}")
    raise TypeError(f"conv_transpose3d(): argument '{name}' must be {expected}, {found}")


def _as_list(value: IntOrTriple, name: str) -> list:
    """int or 1-sequence -> three equal ints; other lengths pass through for C++ to check."""
    if not isinstance(value, (list, tuple)):  # torch.Size is a tuple
        return [_as_int(value, name)] * 3
    values = [_as_int(v, name, position=i) for i, v in enumerate(value)]
    return values * 3 if len(values) == 1 else values


def conv_transpose3d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                     stride: IntOrTriple = 1, padding: IntOrTriple = 0,
                     output_padding: IntOrTriple = 0, groups: int = 1,
                     dilation: IntOrTriple = 1) -> Tensor:
    """3-D transposed convolution with the signature and semantics of
    torch.nn.functional.conv_transpose3d.

    input: (N, Cin, D, H, W) or unbatched (Cin, D, H, W); weight:
    (Cin, Cout/groups, kD, kH, kW); bias: (Cout,) or None.  The output is
    channels_last_3d where the input or the weight is (not in float64), as
    torch's.  Under torch.autocast the input, weight and bias run
    in the autocast dtype, as nn.ConvTranspose3d's do (the operator's
    Autocast kernel, csrc/op_registration.cpp, does the casting)."""
    forward = forward_under_torch_func if python_autograd_needed() else _ops.forward
    return forward(input, weight, bias, _as_list(stride, "stride"), _as_list(padding, "padding"),
                   _as_list(output_padding, "output_padding"),
                   _as_int(groups, "groups", expected="int"), _as_list(dilation, "dilation"))
