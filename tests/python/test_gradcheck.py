"""Numerical gradients in float64, first and second order."""
import pytest
import torch

import tconv3d
from conftest import devices

GEOMETRIES = {
    "k3s2p1op1": dict(stride=2, padding=1, output_padding=1),
    "aniso_dilated_grouped": dict(stride=(1, 2, 3), padding=(0, 1, 1), output_padding=(0, 1, 0),
                                  groups=2, dilation=(2, 1, 1)),
}


def inputs(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 2, 3, generator=g, dtype=torch.float64).to(device)
    w = torch.randn(4, 3, 3, 2, 2, generator=g, dtype=torch.float64).to(device)
    b = torch.randn(6, generator=g, dtype=torch.float64).to(device)
    return [t.requires_grad_() for t in (x, w, b)]


def through_function(x, w, b, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The layer through the public Python autograd.Function."""
    triple = lambda v: list(v) if isinstance(v, tuple) else [v] * 3  # noqa: E731
    return tconv3d.ConvTranspose3dFunction.apply(x, w, b, triple(stride), triple(padding),
                                                 triple(output_padding), groups, triple(dilation))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("name", list(GEOMETRIES))
@pytest.mark.parametrize("check", [torch.autograd.gradcheck, torch.autograd.gradgradcheck],
                         ids=["gradcheck", "gradgradcheck"])
@pytest.mark.parametrize("entry", [tconv3d.conv_transpose3d, through_function],
                         ids=["functional", "autograd_function"])
def test_numerical_gradients(entry, check, name, device):
    x, w, b = inputs(device)
    geometry = dict(GEOMETRIES[name])
    if geometry.get("groups", 1) == 1:
        b = b[:3].detach().requires_grad_()
    fn = lambda x, w, b: entry(x, w, b, **geometry)  # noqa: E731
    assert check(fn, (x, w, b))


@pytest.mark.parametrize("device", devices())
def test_double_backward_matches_torch(device):
    x, w, b = inputs(device)
    b = b[:3].detach().requires_grad_()
    geometry = dict(stride=2, padding=1, output_padding=1)

    def penalty(conv):
        y = conv(x, w, b, **geometry)
        gx, gw = torch.autograd.grad((y * y).sum(), (x, w), create_graph=True)
        return torch.autograd.grad(gx.square().sum() + gw.square().sum(), (x, w, b))

    ours = penalty(tconv3d.conv_transpose3d)
    theirs = penalty(torch.nn.functional.conv_transpose3d)
    for a, t in zip(ours, theirs):
        torch.testing.assert_close(a, t)
