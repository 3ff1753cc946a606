"""The four passes as torch operators, torch.ops.tconv3d.{forward, grad_input,
grad_weight, grad_bias}, grad_weight_and_bias (the last two from one pass
over grad_output where a kernel fuses them) and backward (all three, sharing
grad_output's channels-last copy).

Schemas, CPU/CUDA kernels and the autograd formulas (derivatives of any order)
are registered in C++ (csrc/op_registration.cpp), so a call costs one trip
through the dispatcher.  This module adds the fake implementations that let
torch.compile trace the ops without graph breaks.
"""
from typing import Sequence

import torch
from torch import Tensor

from . import _C  # noqa: F401  (loading the extension registers the operators)

forward = torch.ops.tconv3d.forward
grad_input = torch.ops.tconv3d.grad_input
grad_weight = torch.ops.tconv3d.grad_weight
grad_bias = torch.ops.tconv3d.grad_bias
grad_weight_and_bias = torch.ops.tconv3d.grad_weight_and_bias
backward = torch.ops.tconv3d.backward


def transposed_output_extent(size, kernel, stride, padding, dilation, output_padding):
    """O = (I - 1)·s - 2p + d·(K - 1) + op + 1; works on SymInts.

    csrc/problem.cpp is the authority (it also validates); this copy exists only
    so fake tensors can be shaped symbolically, and tests keep the two equal."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _batched_format(t: Tensor) -> torch.memory_format:
    # Mirrors the C++ op layer: a 4-D (unbatched) tensor is viewed as 5-D with
    # a leading 1, and that view's suggested memory format is the one results take.
    return torch._prims_common.suggest_memory_format(t if t.dim() == 5 else t.unsqueeze(0))


def _empty_like_format(shape: Sequence, format_source: Tensor) -> Tensor:
    batched = format_source.dim() == 5
    shape5 = list(shape) if batched else [1, *shape]
    out = torch.empty(shape5, dtype=format_source.dtype, device=format_source.device,
                      memory_format=_batched_format(format_source))
    return out if batched else out.squeeze(0)


def _grad_weight_like(weight_size: Sequence, input: Tensor) -> Tensor:
    # gw takes the input's memory format (csrc/ops.cpp).
    return torch.empty(list(weight_size), dtype=input.dtype, device=input.device,
                       memory_format=_batched_format(input))


# ---------------------------------------------------------------- fakes
@torch.library.register_fake("tconv3d::forward")
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


@torch.library.register_fake("tconv3d::grad_input")
def _(grad_output, weight, input_size, stride, padding, output_padding, groups, dilation):
    return _empty_like_format(input_size, grad_output)


@torch.library.register_fake("tconv3d::grad_weight")
def _(grad_output, input, weight_size, stride, padding, output_padding, groups, dilation):
    return _grad_weight_like(weight_size, input)


@torch.library.register_fake("tconv3d::grad_bias")
def _(grad_output):
    return grad_output.new_empty([grad_output.shape[-4]])


@torch.library.register_fake("tconv3d::grad_weight_and_bias")
def _(grad_output, input, weight_size, stride, padding, output_padding, groups, dilation):
    return _grad_weight_like(weight_size, input), grad_output.new_empty([grad_output.shape[-4]])


@torch.library.register_fake("tconv3d::backward")
def _(grad_output, input, weight, stride, padding, output_padding, groups, dilation, bias):
    return (_empty_like_format(input.shape, grad_output), _grad_weight_like(weight.shape, input),
            grad_output.new_empty([grad_output.shape[-4] if bias else 0]))
