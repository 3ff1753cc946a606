"""conv_transpose3d: a drop-in for torch.nn.functional.conv_transpose3d."""
import operator
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from . import _ops

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


class ConvTranspose3dFunction(torch.autograd.Function):
    """The layer as a Python autograd.Function, for code that composes them.
    In backward it computes only the gradients ctx.needs_input_grad asks for,
    with the differentiable tconv3d operators, so double backward works.
    conv_transpose3d does not go through it: the operators carry their own
    C++ autograd, which costs less host time per call."""

    @staticmethod
    def forward(input, weight, bias, stride, padding, output_padding, groups, dilation):
        return _ops.forward(input, weight, bias, stride, padding, output_padding, groups, dilation)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight = inputs[0], inputs[1]
        if output.dtype != input.dtype:
            # The operator ran under autocast (its C++ Autocast kernel cast the
            # operands): backward needs them in the dtype the forward used.
            input, weight = input.to(output.dtype), weight.to(output.dtype)
        ctx.save_for_backward(input, weight)
        ctx.geometry = tuple(inputs[3:8])

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        gx = gw = gb = None
        needs_input, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        if needs_input and needs_weight:
            gx, gw, gb = _ops.backward(grad_output, input, weight, *ctx.geometry, needs_bias)
            gb = gb if needs_bias else None
        elif needs_input:
            gx = _ops.grad_input(grad_output, weight, list(input.shape), *ctx.geometry)
            gb = _ops.grad_bias(grad_output) if needs_bias else None
        elif needs_weight and needs_bias:
            gw, gb = _ops.grad_weight_and_bias(grad_output, input, list(weight.shape),
                                               *ctx.geometry)
        elif needs_weight:
            gw = _ops.grad_weight(grad_output, input, list(weight.shape), *ctx.geometry)
        elif needs_bias:
            gb = _ops.grad_bias(grad_output)
        return gx, gw, gb, None, None, None, None, None


def conv_transpose3d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                     stride: IntOrTriple = 1, padding: IntOrTriple = 0,
                     output_padding: IntOrTriple = 0, groups: int = 1,
                     dilation: IntOrTriple = 1) -> Tensor:
    """3-D transposed convolution with the signature and semantics of
    torch.nn.functional.conv_transpose3d.

    input: (N, Cin, D, H, W) or unbatched (Cin, D, H, W); weight:
    (Cin, Cout/groups, kD, kH, kW); bias: (Cout,) or None.  The output takes the
    input's memory format.  Under torch.autocast the input, weight and bias run
    in the autocast dtype, as nn.ConvTranspose3d's do (the operator's
    Autocast kernel, csrc/op_registration.cpp, does the casting)."""
    return _ops.forward(input, weight, bias, _as_list(stride, "stride"),
                        _as_list(padding, "padding"), _as_list(output_padding, "output_padding"),
                        _as_int(groups, "groups", expected="int"),
                        _as_list(dilation, "dilation"))
