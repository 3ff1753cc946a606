"""conv_transpose3d: a drop-in for torch.nn.functional.conv_transpose3d."""
import operator
from typing import Optional, Sequence, Union

import torch
from torch import Tensor
from torch.autograd import forward_ad

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


def python_autograd_needed() -> bool:
    """Whether a torch.func transform (grad, vmap, jvp, ...) or forward-mode AD
    (torch.autograd.forward_ad) is active: neither can run the operators' C++
    autograd Function; ConvTranspose3dFunction serves both."""
    return torch._C._are_functorch_transforms_active() or forward_ad._current_level >= 0


class _Static:
    """A call's non-tensor arguments as one opaque object: the vmap rules
    torch.func generates flatten lists into leaves, and nested transforms
    (hessian: vmap over jvp over vjp) then miscount them."""

    def __init__(self, geometry, size=None):
        self.geometry, self.size = tuple(geometry), None if size is None else list(size)

    def sized(self, size):
        return _Static(self.geometry, size)


def _sum_of(terms):
    present = [t for t in terms if t is not None]
    return None if not present else sum(present[1:], present[0])


def _forward_grads(needs, grad_output, input, weight, static):
    """The forward's (gx, gw, gb) through the Python Functions (any order,
    any torch.func transform)."""
    gx = gw = gb = None
    if needs[0]:
        gx = _GradInputFunction.apply(grad_output, weight, static.sized(input.shape))
    if needs[1]:
        gw = _GradWeightFunction.apply(grad_output, input, static.sized(weight.shape))
    if needs[2]:  # channels: dimension 1, or 0 unbatched
        channel = grad_output.dim() - 4
        gb = grad_output.sum([d for d in range(grad_output.dim()) if d != channel])
    return gx, gw, gb


def _forward_jvp(t_input, t_weight, t_bias, input, weight, static, output_shape):
    # Bilinear in (input, weight), plus the bias.
    apply = _ForwardFunction.apply
    return _sum_of([None if t_input is None else apply(t_input, weight, None, static),
                    None if t_weight is None else apply(input, t_weight, None, static),
                    None if t_bias is None else t_bias.view(-1, 1, 1, 1).expand(output_shape)])


def _save(ctx, output, input, weight, static):
    if output.dtype != input.dtype:
        # The operator ran under autocast (its C++ Autocast kernel cast the
        # operands): backward needs them in the dtype the forward used.
        input, weight = input.to(output.dtype), weight.to(output.dtype)
    ctx.save_for_backward(input, weight)
    ctx.save_for_forward(input, weight)
    ctx.static, ctx.output_shape = static, output.shape


class ConvTranspose3dFunction(torch.autograd.Function):
    """The layer as a Python autograd.Function, for code that composes them.
    In backward it computes only the gradients ctx.needs_input_grad asks for,
    with the differentiable tconv3d operators, so double backward works; under
    torch.func transforms and forward-mode AD it works as conv_transpose3d
    does there (_ForwardFunction's derivatives).  conv_transpose3d does not go
    through it: outside those, the operators carry their own C++ autograd,
    which costs less host time per call."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, weight, bias, stride, padding, output_padding, groups, dilation):
        return _ops.forward(input, weight, bias, stride, padding, output_padding, groups, dilation)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _save(ctx, output, inputs[0], inputs[1], _Static(inputs[3:8]))

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        geometry = ctx.static.geometry
        gx = gw = gb = None
        needs_input, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        if python_autograd_needed():
            gx, gw, gb = _forward_grads(ctx.needs_input_grad, grad_output, input, weight,
                                        ctx.static)
        elif needs_input and needs_weight:
            gx, gw, gb = _ops.backward(grad_output, input, weight, *geometry, needs_bias)
            gb = gb if needs_bias else None
        elif needs_input:
            gx = _ops.grad_input(grad_output, weight, list(input.shape), *geometry)
            gb = _ops.grad_bias(grad_output) if needs_bias else None
        elif needs_weight and needs_bias:
            gw, gb = _ops.grad_weight_and_bias(grad_output, input, list(weight.shape), *geometry)
        elif needs_weight:
            gw = _ops.grad_weight(grad_output, input, list(weight.shape), *geometry)
        elif needs_bias:
            gb = _ops.grad_bias(grad_output)
        return gx, gw, gb, None, None, None, None, None

    @staticmethod
    def jvp(ctx, t_input, t_weight, t_bias, *_):
        input, weight = ctx.saved_tensors
        return _forward_jvp(t_input, t_weight, t_bias, input, weight, ctx.static, ctx.output_shape)


# Under torch.func transforms and forward-mode AD, which cannot run the
# operators' C++ autograd Function: the three operators as Python Functions
# whose derivatives are one another (op_registration.cpp's formulas).

class _ForwardFunction(torch.autograd.Function):
    """y = forward(x, w, b)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, weight, bias, static):
        return _ops.forward(input, weight, bias, *static.geometry)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _save(ctx, output, inputs[0], inputs[1], inputs[3])

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        return (*_forward_grads(ctx.needs_input_grad, grad_output, input, weight, ctx.static),
                None)

    @staticmethod
    def jvp(ctx, t_input, t_weight, t_bias, _):
        input, weight = ctx.saved_tensors
        return _forward_jvp(t_input, t_weight, t_bias, input, weight, ctx.static, ctx.output_shape)


class _GradInputFunction(torch.autograd.Function):
    """gx = grad_input(gy, w), static.size = x's shape: linear in gy and in w."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad_output, weight, static):
        return _ops.grad_input(grad_output, weight, static.size, *static.geometry)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])
        ctx.save_for_forward(inputs[0], inputs[1])
        ctx.static = inputs[2]

    @staticmethod
    def backward(ctx, ggx):
        grad_output, weight = ctx.saved_tensors
        d_gy = d_w = None
        if ctx.needs_input_grad[0]:
            d_gy = _ForwardFunction.apply(ggx, weight, None, ctx.static)
        if ctx.needs_input_grad[1]:
            d_w = _GradWeightFunction.apply(grad_output, ggx, ctx.static.sized(weight.shape))
        return d_gy, d_w, None

    @staticmethod
    def jvp(ctx, t_gy, t_w, _):
        grad_output, weight = ctx.saved_tensors
        apply = _GradInputFunction.apply
        return _sum_of([None if t_gy is None else apply(t_gy, weight, ctx.static),
                        None if t_w is None else apply(grad_output, t_w, ctx.static)])


class _GradWeightFunction(torch.autograd.Function):
    """gw = grad_weight(gy, x), static.size = w's shape: linear in gy and in x."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad_output, input, static):
        return _ops.grad_weight(grad_output, input, static.size, *static.geometry)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])
        ctx.save_for_forward(inputs[0], inputs[1])
        ctx.static = inputs[2]

    @staticmethod
    def backward(ctx, ggw):
        grad_output, input = ctx.saved_tensors
        d_gy = d_x = None
        if ctx.needs_input_grad[0]:
            d_gy = _ForwardFunction.apply(input, ggw, None, ctx.static)
        if ctx.needs_input_grad[1]:
            d_x = _GradInputFunction.apply(grad_output, ggw, ctx.static.sized(input.shape))
        return d_gy, d_x, None

    @staticmethod
    def jvp(ctx, t_gy, t_x, _):
        grad_output, input = ctx.saved_tensors
        apply = _GradWeightFunction.apply
        return _sum_of([None if t_gy is None else apply(t_gy, input, ctx.static),
                        None if t_x is None else apply(grad_output, t_x, ctx.static)])


def forward_under_torch_func(input, weight, bias, stride, padding, output_padding, groups,
                             dilation):
    """The forward where python_autograd_needed(): the Python Functions'
    derivatives instead of the operators' C++ ones."""
    return _ForwardFunction.apply(input, weight, bias,
                                  _Static((stride, padding, output_padding, groups, dilation)))


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
    forward = forward_under_torch_func if python_autograd_needed() else _ops.forward
    return forward(input, weight, bias, _as_list(stride, "stride"), _as_list(padding, "padding"),
                   _as_list(output_padding, "output_padding"),
                   _as_int(groups, "groups", expected="int"), _as_list(dilation, "dilation"))
