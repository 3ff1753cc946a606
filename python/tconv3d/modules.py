"""ConvTranspose3d, a drop-in for torch.nn.ConvTranspose3d, and convert()."""
import copy
import warnings
from typing import List, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from . import _ops  # noqa: F401  (registers torch.ops.tconv3d)
from .autograd import forward_under_torch_func, python_autograd_needed


class ConvTranspose3d(nn.ConvTranspose3d):
    """torch.nn.ConvTranspose3d computed by tconv3d.

    Subclassing keeps the constructor, parameters, initialisation, state_dict
    keys, repr and output_size handling identical to torch's; only the
    computation differs.  forward calls the operator itself, as torch's calls
    its builtin, so a model holding the layer still goes through
    torch.jit.script."""

    def forward(self, input: Tensor, output_size: Optional[List[int]] = None) -> Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only 'zeros' padding mode is supported for ConvTranspose3d")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 3, self.dilation)
        if not torch.jit.is_scripting():  # TorchScript skips this block
            if python_autograd_needed():
                return forward_under_torch_func(input, self.weight, self.bias, self.stride,
                                                self.padding, output_padding, self.groups,
                                                self.dilation)
        return torch.ops.tconv3d.forward(input, self.weight, self.bias, self.stride,
                                         self.padding, output_padding, self.groups, self.dilation)


def convert(model: nn.Module) -> nn.Module:
    """Replaces every torch.nn.ConvTranspose3d inside `model` (the model itself
    included) by tconv3d.ConvTranspose3d sharing the same parameter tensors,
    and returns the model.  Subclasses of nn.ConvTranspose3d are left alone:
    they may compute something else.  That includes layers under
    torch.nn.utils.parametrize (weight_norm, spectral_norm), which are
    subclasses made at run time; a warning names them.  Convert first, then
    parametrize: tconv3d.ConvTranspose3d takes parametrizations as torch's
    layer does."""
    return _swap_layers(model, nn.ConvTranspose3d, ConvTranspose3d, "convert", {})


def revert(model: nn.Module) -> nn.Module:
    """convert()'s inverse: replaces every tconv3d.ConvTranspose3d inside
    `model` by torch.nn.ConvTranspose3d sharing the same parameter tensors,
    and returns the model.  For what needs torch's own layer: ONNX export
    (neither of torch's ONNX exporters can translate tconv3d's operator), or
    a run on torch's kernels.  A parametrized layer (weight_norm, ...) stays
    tconv3d's, with a warning: remove its parametrizations first."""
    return _swap_layers(model, ConvTranspose3d, nn.ConvTranspose3d, "revert", {})


# What a warning for a parametrized layer of the source type advises.
_PARAMETRIZED_ADVICE = {
    "convert": "convert before parametrizing",
    "revert": "remove its parametrizations (torch.nn.utils.parametrize."
              "remove_parametrizations) before reverting",
}


def _swap_layers(module: nn.Module, source: type, target: type, name: str,
                 done: dict) -> nn.Module:
    # `done` maps each module seen to its replacement, so a layer registered
    # under several names (or in several parents) stays one layer.  Not
    # named_children(), which yields such a layer under its first name only.
    if id(module) in done:
        return done[id(module)]
    if type(module) is source:
        swapped = copy.copy(module)  # shallow: the same Parameter objects, hooks and flags
        swapped.__class__ = target
        done[id(module)] = swapped
        return swapped
    # parametrize makes a subclass of the layer's own class at run time.
    if parametrize.is_parametrized(module) and type(module).__bases__[0] is source:
        owner = "tconv3d" if source is ConvTranspose3d else "torch.nn"
        warnings.warn(f"tconv3d.{name}: a parametrized {owner}.ConvTranspose3d (weight_norm, "
                      f"spectral_norm, ...) is left as it is; "
                      f"{_PARAMETRIZED_ADVICE[name]}", stacklevel=3)
    done[id(module)] = module
    for child_name, child in list(module._modules.items()):
        if child is not None:
            replaced = _swap_layers(child, source, target, name, done)
            if replaced is not child:
                setattr(module, child_name, replaced)
    return module
