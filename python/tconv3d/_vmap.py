"""vmap rules of the three differentiable operators (torch.library.register_vmap),
so torch.func.vmap runs one call of the operator instead of torch's per-sample loop.

A vmapped dimension of the source alone (x, or grad_output for grad-input) folds
into the batch: one call over B·N samples.  Anything else (per-sample weights, as
model ensembles stacked with torch.func.stack_module_state have, and every
per-sample grad-weight) folds into the groups: sample b's channels become groups
b·G … b·G + G − 1 of one grouped call, whose group-major channel order is
[b][channel] of the [B, N, C, …] tensors below.  Per-sample tensors may be
unbatched (C, D, H, W); they are given a batch of one here.
"""
import torch

from . import _ops

_LIBRARY_HAS_VMAP = hasattr(torch.library, "register_vmap")  # torch >= 2.5


def _stacked(t, bdim, size):
    """t with its vmapped dimension first, expanded to `size` where t is not
    vmapped."""
    return t.expand(size, *t.shape) if bdim is None else t.movedim(bdim, 0)


def _samples(t, bdim, size, batched):
    """A source as [B, N, C, D, H, W] (a batch of one where unbatched)."""
    t = _stacked(t, bdim, size)
    return t if batched else t.unsqueeze(1)


def _to_groups(t):
    """[B, N, C, ...] -> [N, B·C, ...]."""
    return t.transpose(0, 1).flatten(1, 2)


def _from_groups(t, size, batched):
    """[N, B·C, ...] -> [B, N, C, ...] (the batch of one dropped where unbatched)."""
    t = t.unflatten(1, (size, -1)).transpose(0, 1)
    return t if batched else t.squeeze(1)


def _forward_rule(info, in_dims, input, weight, bias, stride, padding, output_padding, groups,
                  dilation):
    x_dim, w_dim, b_dim = in_dims[:3]
    geometry = (stride, padding, output_padding)
    batched = input.dim() - (x_dim is not None) == 5
    if w_dim is None and b_dim is None:
        x = input.movedim(x_dim, 0)
        if not batched:  # [B, C, D, H, W]: B is the batch
            return _ops.forward(x, weight, bias, *geometry, groups, dilation), 0
        y = _ops.forward(x.flatten(0, 1), weight, bias, *geometry, groups, dilation)
        return y.unflatten(0, (x.shape[0], x.shape[1])), 0
    size = info.batch_size
    x = _to_groups(_samples(input, x_dim, size, batched))
    w = _stacked(weight, w_dim, size).flatten(0, 1)
    b = None if bias is None else _stacked(bias, b_dim, size).flatten()
    y = _ops.forward(x, w, b, *geometry, groups * size, dilation)
    return _from_groups(y, size, batched), 0


def _grad_input_rule(info, in_dims, grad_output, weight, input_size, stride, padding,
                     output_padding, groups, dilation):
    gy_dim, w_dim = in_dims[:2]
    geometry = (stride, padding, output_padding)
    batched = len(input_size) == 5
    if w_dim is None:
        gy = grad_output.movedim(gy_dim, 0)
        if not batched:
            return _ops.grad_input(gy, weight, [gy.shape[0], *input_size], *geometry, groups,
                                   dilation), 0
        gx = _ops.grad_input(gy.flatten(0, 1), weight,
                             [gy.shape[0] * input_size[0], *input_size[1:]], *geometry, groups,
                             dilation)
        return gx.unflatten(0, (gy.shape[0], input_size[0])), 0
    size = info.batch_size
    gy = _to_groups(_samples(grad_output, gy_dim, size, batched))
    w = weight.movedim(w_dim, 0).flatten(0, 1)
    n, c = (input_size[0], input_size[1]) if batched else (1, input_size[0])
    gx = _ops.grad_input(gy, w, [n, size * c, *input_size[-3:]], *geometry, groups * size,
                         dilation)
    return _from_groups(gx, size, batched), 0


def _grad_weight_rule(info, in_dims, grad_output, input, weight_size, stride, padding,
                      output_padding, groups, dilation):
    gy_dim, x_dim = in_dims[:2]
    size = info.batch_size
    batched = input.dim() - (x_dim is not None) == 5
    gy = _to_groups(_samples(grad_output, gy_dim, size, batched))
    x = _to_groups(_samples(input, x_dim, size, batched))
    gw = _ops.grad_weight(gy, x, [size * weight_size[0], *weight_size[1:]], stride, padding,
                          output_padding, groups * size, dilation)
    return gw.unflatten(0, (size, weight_size[0])), 0


if _LIBRARY_HAS_VMAP:
    torch.library.register_vmap("tconv3d::forward", _forward_rule)
    torch.library.register_vmap("tconv3d::grad_input", _grad_input_rule)
    torch.library.register_vmap("tconv3d::grad_weight", _grad_weight_rule)
