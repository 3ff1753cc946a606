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
def test_per_sample_gradients_of_a_channels_last_layer(device):
    """float32, x and the weight channels-last, a .sum() loss (grad_output of
    stride 0, which the plain backward copies channels-last, and vmap cannot),
    through conv_transpose3d and through ConvTranspose3dFunction: the same
    values as torch's layer under the same transform."""
    x, w, b = (t.float() for t in operands(device))
    x, w = (t.contiguous(memory_format=torch.channels_last_3d) for t in (x, w))
    geometry = [list(GEOMETRY[k]) for k in ("stride", "padding", "output_padding")]

    def function(x, w, b, **_):  # GEOMETRY's, in the Function's order
        return tconv3d.ConvTranspose3dFunction.apply(x, w, b, *geometry, 1,
                                                     list(GEOMETRY["dilation"]))

    def transform(conv):
        loss = lambda w, b, xi: conv(xi[None], w, b, **GEOMETRY).sum()
        return vmap(grad(loss, argnums=(0, 1)), in_dims=(None, None, 0))(w, b, x)
    theirs = transform(F.conv_transpose3d)
    for conv in (tconv3d.conv_transpose3d, function):
        for ours, reference in zip(transform(conv), theirs):
            assert ours.shape == reference.shape and rel_err(ours, reference) < 1e-5


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


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
@pytest.mark.parametrize("groups", [1, 2])
def test_vmap_rules_of_the_operators(groups, unbatched, device):
    """Each operator under vmap over every combination of its tensor
    arguments (the source alone folds into the batch, the rest into the
    groups), with the vmapped dimension not first, against torch's layer
    under the same vmap; per-sample samples batched or unbatched."""
    x, w, b = operands(device, groups)
    if unbatched:
        x = x[0]
    g = torch.Generator().manual_seed(17)
    stack = lambda t: torch.stack([t, t * 0.5 + torch.randn(t.shape, generator=g,
                                                            dtype=t.dtype).to(t.device)], -1)
    xs, ws, bs = stack(x), stack(w), stack(b)
    kw = dict(groups=groups, **GEOMETRY)
    for dims in ((-1, None, None), (None, -1, None), (None, None, -1), (-1, -1, -1)):
        args = tuple(s if d is not None else t for s, t, d in zip((xs, ws, bs), (x, w, b), dims))
        assert_same(both(lambda conv: vmap(lambda *a: conv(*a, **kw), in_dims=dims)(*args)))
    y = F.conv_transpose3d(x, w, b, **kw)
    gys = stack(torch.randn(y.shape, generator=g, dtype=y.dtype).to(device))

    def backward_pass(conv, wrt, partner, partners):
        """The vjp of x (grad_input's rule) or of w (grad_weight's), vmapped
        over grad_output, the other operand, or both."""
        def pullback(gy, other):
            if wrt == 0:
                _, vjp_fn = torch.func.vjp(lambda t: conv(t, other, b, **kw), x)
            else:
                _, vjp_fn = torch.func.vjp(lambda t: conv(other, t, b, **kw), w)
            return vjp_fn(gy)
        return (vmap(pullback, in_dims=(-1, None))(gys, partner),
                vmap(pullback, in_dims=(-1, -1))(gys, partners),
                vmap(pullback, in_dims=(None, -1))(gys[..., 0], partners))
    for wrt, partner in ((0, w), (1, x)):
        partners = stack(partner)
        assert_same(both(lambda conv: backward_pass(conv, wrt, partner, partners)))


def test_vmap_runs_the_rules_not_the_per_sample_loop(capfd):
    """torch's per-sample fallback warns of a performance drop, from C++ to
    stderr (not Python's warnings): grad_bias, which has no rule, shows the
    capture sees it."""
    x, w, b = operands("cpu")
    torch._C._set_warnAlways(True)
    try:
        capfd.readouterr()
        vmap(torch.ops.tconv3d.grad_bias)(torch.randn(2, 3, 4, 2, 2, 2, dtype=torch.float64))
        assert "performance drop" in capfd.readouterr().err
        vmap(lambda w: tconv3d.conv_transpose3d(x, w, b, **GEOMETRY))(torch.stack([w, w]))
        vmap(grad(lambda w, xi: tconv3d.conv_transpose3d(xi[None], w, b, **GEOMETRY).sum()),
             in_dims=(None, 0))(w, x)
        vmap(lambda xi: tconv3d.conv_transpose3d(xi, w, b, **GEOMETRY))(x)
        assert "performance drop" not in capfd.readouterr().err
    finally:
        torch._C._set_warnAlways(False)


def test_nested_forward_mode_raises():
    """jvp of jvp and jacfwd of jacfwd would drop the second-order term of the
    Functions' jvp (pytorch/pytorch#197867): an error, not zeros."""
    x, w, b = operands("cpu")
    conv = lambda x, w: tconv3d.conv_transpose3d(x, w, b, **GEOMETRY)
    with pytest.raises(RuntimeError, match="nested forward-mode"):
        jvp(lambda x: jvp(lambda w: conv(x, w), (w,), (w,))[1], (x,), (x,))
    with pytest.raises(RuntimeError, match="nested forward-mode"):
        jacfwd(jacfwd(lambda w: conv(x[:1, :, :1], w).pow(3).sum()))(w)


def test_compile_over_a_transform_is_exact_or_refuses():
    """torch.compile of a function that applies grad to the layer: the
    transformed operator breaks the graph (Dynamo traces the Python
    Function's forward with functorch-wrapped tensors, which the operator's
    C++ autograd refuses), so fullgraph=True raises and the default splits the
    graph, exactly."""
    x, w, b = operands("cpu")
    f = lambda x, w: grad(lambda w: tconv3d.conv_transpose3d(x, w, b, **GEOMETRY).pow(3).sum())(w)
    expected = grad(lambda w: F.conv_transpose3d(x, w, b, **GEOMETRY).pow(3).sum())(w)
    torch._dynamo.reset()
    assert rel_err(torch.compile(f, backend="aot_eager")(x, w), expected) < 1e-12
    torch._dynamo.reset()
    with pytest.raises(Exception, match="functorch"):
        torch.compile(f, fullgraph=True, backend="aot_eager")(x, w)


def test_plain_calls_keep_the_operators_autograd():
    """Outside torch.func the graph holds the operators' C++ autograd node
    (less host time a call), not the Python Function's."""
    x, w, b = (t.requires_grad_() for t in operands("cpu"))
    y = tconv3d.conv_transpose3d(x, w, b, **GEOMETRY)
    assert "ConvTranspose3dFunction" not in type(y.grad_fn).__name__
    y = tconv3d.ConvTranspose3d(4, 6, 3).double()(x)
    assert "ConvTranspose3dFunction" not in type(y.grad_fn).__name__


def test_operators_refuse_a_tangent_they_cannot_carry():
    """The operators called directly (not through conv_transpose3d, which
    routes dual tensors to the Python Functions) raise on a forward-mode
    tangent: their C++ autograd has no jvp, and skipping it where nothing is
    tracked (or, for the joint ops, taking the fused kernel) must not drop
    the tangent silently."""
    x, w, b = operands("cpu")
    geometry = ([2, 1, 2], [1, 0, 1], [1, 0, 0], 1, [1, 2, 1])
    y = torch.ops.tconv3d.forward(x, w, b, *geometry)
    with torch.autograd.forward_ad.dual_level():
        dual = lambda t: torch.autograd.forward_ad.make_dual(t, torch.ones_like(t))
        for call in (lambda: torch.ops.tconv3d.forward(dual(x), w, b, *geometry),
                     lambda: torch.ops.tconv3d.grad_input(dual(y), w, list(x.shape), *geometry),
                     lambda: torch.ops.tconv3d.grad_weight(y, dual(x), list(w.shape), *geometry),
                     lambda: torch.ops.tconv3d.grad_bias(dual(y)),
                     lambda: torch.ops.tconv3d.grad_weight_and_bias(dual(y), x, list(w.shape),
                                                                    *geometry),
                     lambda: torch.ops.tconv3d.backward(dual(y), x, w, *geometry, True)):
            with pytest.raises(RuntimeError, match="jvp"):
                call()
