"""torch.func transforms and forward-mode AD: functorch cannot run the
operators' C++ autograd Function, so under them conv_transpose3d and
ConvTranspose3d go through ConvTranspose3dFunction (Python Functions with
setup_context, jvp and a generated vmap rule).  Each transform against the
same transform of torch's own layer, in float64."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, jvp, vmap

import tconv3d
from conftest import devices, rel_err

GEOMETRY = dict(stride=(2, 1, 2), padding=(1, 0, 1), output_padding=(1, 0, 0), dilation=(1, 2, 1))


def operands(device, groups=1):
    g = torch.Generator().manual_seed(13)
    x = torch.randn(3, 4, 3, 2, 3, generator=g, dtype=torch.float64).to(device)
    w = torch.randn(4, 6 // groups, 3, 2, 3, generator=g, dtype=torch.float64).to(device)
    b = torch.randn(6, generator=g, dtype=torch.float64).to(device)
    return x, w, b


def both(transform):
    """The transform of tconv3d's layer and of torch's, as flat lists of tensors."""
    ours = torch.utils._pytree.tree_leaves(transform(tconv3d.conv_transpose3d))
    theirs = torch.utils._pytree.tree_leaves(transform(F.conv_transpose3d))
    assert len(ours) == len(theirs) > 0
    return list(zip(ours, theirs))


def assert_same(pairs):
    for a, t in pairs:
        assert a.shape == t.shape
        assert rel_err(a, t) < 1e-12


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("groups", [1, 2])
def test_grad_of_every_operand(device, groups):
    x, w, b = operands(device, groups)

    def transform(conv):
        loss = lambda x, w, b: conv(x, w, b, groups=groups, **GEOMETRY).pow(3).sum()
        return grad(loss, argnums=(0, 1, 2))(x, w, b)
    assert_same(both(transform))


@pytest.mark.parametrize("device", devices())
def test_per_sample_gradients(device):
    """vmap of grad, as per-sample gradient clipping (DP-SGD) computes them."""
    x, w, b = operands(device)

    def transform(conv):
        loss = lambda w, b, xi: conv(xi[None], w, b, **GEOMETRY).square().sum()
        return vmap(grad(loss, argnums=(0, 1)), in_dims=(None, None, 0))(w, b, x)
    assert_same(both(transform))


@pytest.mark.parametrize("device", devices())
def test_jvp_and_forward_mode(device):
    x, w, b = operands(device)
    tangents = [torch.randn_like(t) for t in (x, w, b)]
    for argnums in ((0,), (1,), (2,), (0, 1, 2)):
        def transform(conv):
            def f(*chosen):
                args = [x, w, b]
                for i, t in zip(argnums, chosen):
                    args[i] = t
                return conv(*args, **GEOMETRY)
            return jvp(f, tuple((x, w, b)[i] for i in argnums),
                       tuple(tangents[i] for i in argnums))
        assert_same(both(transform))

    def dual_tangent(conv):
        with torch.autograd.forward_ad.dual_level():
            dual = torch.autograd.forward_ad.make_dual(x, tangents[0])
            return torch.autograd.forward_ad.unpack_dual(conv(dual, w, b, **GEOMETRY)).tangent
    assert_same(both(dual_tangent))


@pytest.mark.parametrize("device", devices())
def test_higher_derivatives(device):
    """Second derivatives through every pair of the three operators: grad of
    grad, jvp of grad (Hessian-vector products), jacrev and jacfwd, hessian."""
    x, w, b = operands(device)
    small = x[:1, :, :1]

    def grad_of_grad(conv):
        inner = lambda x: grad(lambda x2: conv(x2, w, b, **GEOMETRY).pow(3).sum())(x)
        return grad(lambda x: inner(x).square().sum())(x)

    def hvp(conv):
        g = grad(lambda w: conv(x, w, b, **GEOMETRY).pow(3).sum())
        return jvp(g, (w,), (torch.ones_like(w),))

    def jacobians(conv):
        f = lambda b: conv(small, w, b, **GEOMETRY).square().sum((0, 2, 3, 4))
        return jacrev(f)(b), jacfwd(f)(b)

    def hessian_in_w(conv):
        return hessian(lambda w: conv(small, w, b, **GEOMETRY).pow(3).sum())(w)

    for transform in (grad_of_grad, hvp, jacobians, hessian_in_w):
        assert_same(both(transform))


@pytest.mark.parametrize("device", devices())
def test_module_under_functional_call(device):
    """functional_call over the module's parameters (functorch-style
    training and meta-learning), unbatched input included."""
    torch.manual_seed(0)
    reference = nn.ConvTranspose3d(4, 6, 3, stride=2, padding=1, output_padding=1).double()
    reference = reference.to(device)
    ours = tconv3d.convert(copy.deepcopy(reference))
    params = {k: v.detach() for k, v in reference.named_parameters()}
    x, _, _ = operands(device)
    for inputs in (x, x[0]):
        got = grad(lambda p: functional_call(ours, p, (inputs,)).square().sum())(params)
        want = grad(lambda p: functional_call(reference, p, (inputs,)).square().sum())(params)
        assert_same([(got[k], want[k]) for k in params])


def test_plain_calls_keep_the_operators_autograd():
    """Outside torch.func the graph holds the operators' C++ autograd node
    (less host time a call), not the Python Function's."""
    x, w, b = (t.requires_grad_() for t in operands("cpu"))
    y = tconv3d.conv_transpose3d(x, w, b, **GEOMETRY)
    assert "ConvTranspose3dFunction" not in type(y.grad_fn).__name__
    y = tconv3d.ConvTranspose3d(4, 6, 3).double()(x)
    assert "ConvTranspose3dFunction" not in type(y.grad_fn).__name__
