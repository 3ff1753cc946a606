"""tconv3d: fast, deterministic 3-D transposed convolution for PyTorch.

    y = tconv3d.conv_transpose3d(x, weight, bias, stride, padding, output_padding, groups, dilation)
    layer = tconv3d.ConvTranspose3d(in_channels, out_channels, kernel_size, ...)
    model = tconv3d.convert(model)   # swaps every nn.ConvTranspose3d inside
    model = tconv3d.revert(model)    # and back, for ONNX export
"""
from . import _ops, _vmap  # noqa: F401  (operators, fakes, vmap rules)
from .autograd import ConvTranspose3dFunction
from .functional import conv_transpose3d
from .modules import ConvTranspose3d, convert, revert

__version__ = "0.1.0"
__all__ = ["conv_transpose3d", "ConvTranspose3d", "ConvTranspose3dFunction", "convert", "revert"]
