"""The four passes as torch.library custom ops over the pybind11 module.

Each op has a fake implementation (so torch.compile traces it without graph
breaks) and an autograd formula written with the other ops, so derivatives of
any order stay inside tconv3d:

  y  = forward(x, w, b)       gx = grad_input(gy, w)    gw = grad_weight(gy, x)
  d gx: gy <- forward(ggx, w),  w <- grad_weight(gy, ggx)
  d gw: gy <- forward(x, ggw),  x <- grad_input(gy, ggw)
  d gb: gy <- ggb broadcast
"""
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from . import _C


def transposed_output_extent(size, kernel, stride, padding, dilation, output_padding):
    """O = (I - 1)·s - 2p + d·(K - 1) + op + 1; works on SymInts.

    csrc/problem.cpp is the authority (it also validates); this copy exists only
    so fake tensors can be shaped symbolically, and tests keep the two equal."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _empty_like_format(shape: Sequence, format_source: Tensor) -> Tensor:
    # Mirrors the C++ op layer: a 4-D (unbatched) tensor is viewed as 5-D with
    # a leading 1, the result takes that view's suggested memory format.
    batched = format_source.dim() == 5
    source = format_source if batched else format_source.unsqueeze(0)
    shape5 = list(shape) if batched else [1, *shape]
    fmt = torch._prims_common.suggest_memory_format(source)
    out = torch.empty(shape5, dtype=source.dtype, device=source.device, memory_format=fmt)
    return out if batched else out.squeeze(0)


# ---------------------------------------------------------------- forward
@torch.library.custom_op("tconv3d::forward", mutates_args=())
def forward(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int],
            padding: List[int], output_padding: List[int], groups: int,
            dilation: List[int]) -> Tensor:
    return _C.forward(input, weight, bias, stride, padding, output_padding, groups, dilation)


@forward.register_fake
def _(input, weight, bias, stride, padding, output_padding, groups, dilation):
    spatial = [
        transposed_output_extent(input.shape[-3 + i], weight.shape[2 + i], stride[i], padding[i],
                                 dilation[i], output_padding[i])
        for i in range(3)
    ]
    shape = [weight.shape[1] * groups, *spatial]
    if input.dim() == 5:
        shape = [input.shape[0], *shape]
    return _empty_like_format(shape, input)


# ---------------------------------------------------------------- backward passes
@torch.library.custom_op("tconv3d::grad_input", mutates_args=())
def grad_input(grad_output: Tensor, weight: Tensor, input_size: List[int], stride: List[int],
               padding: List[int], output_padding: List[int], groups: int,
               dilation: List[int]) -> Tensor:
    return _C.grad_input(grad_output, weight, input_size, stride, padding, output_padding, groups,
                         dilation)


@grad_input.register_fake
def _(grad_output, weight, input_size, stride, padding, output_padding, groups, dilation):
    return _empty_like_format(input_size, grad_output)


@torch.library.custom_op("tconv3d::grad_weight", mutates_args=())
def grad_weight(grad_output: Tensor, input: Tensor, weight_size: List[int], stride: List[int],
                padding: List[int], output_padding: List[int], groups: int,
                dilation: List[int]) -> Tensor:
    return _C.grad_weight(grad_output, input, weight_size, stride, padding, output_padding, groups,
                          dilation)


@grad_weight.register_fake
def _(grad_output, input, weight_size, stride, padding, output_padding, groups, dilation):
    return grad_output.new_empty(weight_size)


@torch.library.custom_op("tconv3d::grad_bias", mutates_args=())
def grad_bias(grad_output: Tensor) -> Tensor:
    return _C.grad_bias(grad_output)


@grad_bias.register_fake
def _(grad_output):
    return grad_output.new_empty([grad_output.shape[-4]])


# ---------------------------------------------------------------- autograd formulas
def save_tensors_and_geometry(ctx, inputs, output):
    """setup_context of forward, grad_input and grad_weight alike: each takes two
    tensors, one size list, then (stride, padding, output_padding, groups, dilation)."""
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.geometry = tuple(inputs[3:8])


def conv_transpose3d_backward(grad_output: Tensor, input: Tensor, weight: Tensor, geometry,
                              needs_input_grad) -> tuple:
    """(grad_input, grad_weight, grad_bias) of the forward op, each None unless asked for."""
    gx = gw = gb = None
    if needs_input_grad[0]:
        gx = grad_input(grad_output, weight, list(input.shape), *geometry)
    if needs_input_grad[1]:
        gw = grad_weight(grad_output, input, list(weight.shape), *geometry)
    if needs_input_grad[2]:
        gb = grad_bias(grad_output)
    return gx, gw, gb


def forward_backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    grads = conv_transpose3d_backward(grad_output, input, weight, ctx.geometry,
                                      ctx.needs_input_grad)
    return (*grads, None, None, None, None, None)


def _grad_input_backward(ctx, ggx):
    grad_output, weight = ctx.saved_tensors
    d_gy = d_w = None
    if ctx.needs_input_grad[0]:
        d_gy = forward(ggx, weight, None, *ctx.geometry)
    if ctx.needs_input_grad[1]:
        d_w = grad_weight(grad_output, ggx, list(weight.shape), *ctx.geometry)
    return d_gy, d_w, None, None, None, None, None, None


def _grad_weight_backward(ctx, ggw):
    grad_output, input = ctx.saved_tensors
    d_gy = d_x = None
    if ctx.needs_input_grad[0]:
        d_gy = forward(input, ggw, None, *ctx.geometry)
    if ctx.needs_input_grad[1]:
        d_x = grad_input(grad_output, ggw, list(input.shape), *ctx.geometry)
    return d_gy, d_x, None, None, None, None, None, None


def _grad_bias_setup(ctx, inputs, output):
    ctx.grad_output_shape = inputs[0].shape


def _grad_bias_backward(ctx, ggb):
    shape = ctx.grad_output_shape
    view = [-1, 1, 1, 1] if len(shape) == 4 else [1, -1, 1, 1, 1]
    return ggb.reshape(view).expand(shape)


forward.register_autograd(forward_backward, setup_context=save_tensors_and_geometry)
grad_input.register_autograd(_grad_input_backward, setup_context=save_tensors_and_geometry)
grad_weight.register_autograd(_grad_weight_backward, setup_context=save_tensors_and_geometry)
grad_bias.register_autograd(_grad_bias_backward, setup_context=_grad_bias_setup)
