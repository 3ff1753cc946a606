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


def _batched(t: Tensor) -> Tensor:
    # The C++ op layer views a 4-D (unbatched) tensor as 5-D with a leading 1.
    return t if t.dim() == 5 else t.unsqueeze(0)


def results_format(activation: Tensor, other: Tensor) -> torch.memory_format:
    """csrc/ops.cpp's results_format, for the fakes and the Python autograd
    (tests hold the fakes' strides to the operators'): channels-last where
    either operand (viewed 5-D) suggests it, contiguous in float64, as torch's
    cuDNN convolutions."""
    suggest = torch._prims_common.suggest_memory_format
    cl = torch.channels_last_3d
    if activation.dtype == torch.float64:
        return torch.contiguous_format
    if cl in (suggest(_batched(activation)), suggest(_batched(other))):
        return cl
    return torch.contiguous_format


def _in_format(t: Tensor, memory_format: torch.memory_format) -> Tensor:
    # csrc/ops.cpp's in_format: a copy where t suggests the other format, and
    # a tensor dense in both (one channel, one position) viewed at its strides.
    suggest = torch._prims_common.suggest_memory_format
    if suggest(t) == memory_format:
        return t
    dense = t.contiguous(memory_format=memory_format)
    if suggest(dense) == memory_format:
        return dense
    strides = (torch._prims_common.make_channels_last_strides_for
               if memory_format == torch.channels_last_3d
               else torch._prims_common.make_contiguous_strides_for)
    return dense.as_strided(dense.shape, strides(dense.shape))


def grad_output_in_results_format(grad_output: Tensor, input: Tensor, weight: Tensor) -> Tensor:
    """csrc/ops.h's: grad_output in the forward's format, where it is not."""
    gy = _in_format(_batched(grad_output), results_format(input, weight))
    return gy if input.dim() == 5 else gy.squeeze(0)


def _new_result(shape: Sequence, like: Tensor, memory_format: torch.memory_format) -> Tensor:
    batched = like.dim() == 5
    out = torch.empty(list(shape) if batched else [1, *shape], dtype=like.dtype,
                      device=like.device, memory_format=memory_format)
    return out if batched else out.squeeze(0)


def _grad_weight_like(weight_size: Sequence, input: Tensor,
                      memory_format: torch.memory_format) -> Tensor:
    return torch.empty(list(weight_size), dtype=input.dtype, device=input.device,
                       memory_format=memory_format)


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
    return _new_result(shape, input, results_format(input, weight))


@torch.library.register_fake("tconv3d::grad_input")
def _(grad_output, weight, input_size, stride, padding, output_padding, groups, dilation):
    return _new_result(input_size, grad_output, results_format(grad_output, weight))


@torch.library.register_fake("tconv3d::grad_weight")
def _(grad_output, input, weight_size, stride, padding, output_padding, groups, dilation):
    return _grad_weight_like(weight_size, input, results_format(input, grad_output))


@torch.library.register_fake("tconv3d::grad_bias")
def _(grad_output):
    return grad_output.new_empty([grad_output.shape[-4]])


@torch.library.register_fake("tconv3d::grad_weight_and_bias")
def _(grad_output, input, weight_size, stride, padding, output_padding, groups, dilation):
    return (_grad_weight_like(weight_size, input, results_format(input, grad_output)),
            grad_output.new_empty([grad_output.shape[-4]]))


@torch.library.register_fake("tconv3d::backward")
def _(grad_output, input, weight, stride, padding, output_padding, groups, dilation, bias):
    memory_format = results_format(input, weight)
    return (_new_result(input.shape, grad_output, memory_format),
            _grad_weight_like(weight.shape, input, memory_format),
            grad_output.new_empty([grad_output.shape[-4] if bias else 0]))
