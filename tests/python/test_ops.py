"""The torch.library registration: schemas, fake tensors, autograd
registration and torch.compile without graph breaks."""
import itertools

import pytest
import torch

import tconv3d
from tconv3d import _ops
from conftest import devices, layer_format, rel_err

GEOMETRY = ([2, 1, 2], [1, 0, 1], [1, 0, 0], 2, [1, 2, 1])


def sample(device, batched=True, channels_last=False, weight_channels_last=False):
    x = torch.randn(2, 4, 3, 4, 3, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    if not batched:
        x = x[0]
    w = torch.randn(4, 3, 3, 2, 3, device=device)
    if weight_channels_last:
        w = w.contiguous(memory_format=torch.channels_last_3d)
    b = torch.randn(6, device=device)
    return x, w, b


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("variant",
                         ["batched", "unbatched", "channels_last", "channels_last_weight"])
def test_opcheck_every_op(device, variant):
    x, w, b = sample(device, batched=variant != "unbatched",
                     channels_last=variant == "channels_last",
                     weight_channels_last=variant == "channels_last_weight")
    x.requires_grad_()
    w.requires_grad_()
    b.requires_grad_()
    y = _ops.forward(x, w, b, *GEOMETRY)
    gy = torch.randn_like(y).requires_grad_()
    torch.library.opcheck(torch.ops.tconv3d.forward.default, (x, w, b, *GEOMETRY))
    torch.library.opcheck(torch.ops.tconv3d.forward.default, (x, w, None, *GEOMETRY))
    torch.library.opcheck(torch.ops.tconv3d.grad_input.default,
                          (gy, w, list(x.shape), *GEOMETRY))
    torch.library.opcheck(torch.ops.tconv3d.grad_weight.default,
                          (gy, x, list(w.shape), *GEOMETRY))
    torch.library.opcheck(torch.ops.tconv3d.grad_bias.default, (gy,))
    torch.library.opcheck(torch.ops.tconv3d.grad_weight_and_bias.default,
                          (gy, x, list(w.shape), *GEOMETRY))
    for bias in (True, False):
        torch.library.opcheck(torch.ops.tconv3d.backward.default, (gy, x, w, *GEOMETRY, bias))


FORMATS = {"ncdhw": torch.contiguous_format, "cl": torch.channels_last_3d}
FORMAT_TRIPLES = list(itertools.product(FORMATS, repeat=3))


def in_format(t, name):
    return t.contiguous(memory_format=FORMATS[name])


def strides_in(shape, format, device):
    return torch.empty(shape, device=device, memory_format=format).stride()


# (x shape, weight shape, stride, groups): six output channels in groups; one
# output channel, so y and grad_output are dense in both formats; and x of
# one position, so x and grad-input are.
LAYER_SHAPES = {
    "six_channels": ((2, 4, 3, 4, 3), (4, 3, 3, 2, 3), 2, 2),
    "one_output_channel": ((2, 4, 3, 4, 3), (4, 1, 3, 2, 3), 2, 1),
    "one_input_position": ((2, 4, 1, 1, 1), (4, 3, 2, 2, 2), 2, 1),
}
LAYERS = {"conv_transpose3d": tconv3d.conv_transpose3d,
          "ConvTranspose3dFunction": tconv3d.ConvTranspose3dFunction.apply,
          "torch": torch.nn.functional.conv_transpose3d}


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16],
                         ids=str)
@pytest.mark.parametrize("wanted", ["x", "weight", "both"])
@pytest.mark.parametrize("shapes", list(LAYER_SHAPES))
@pytest.mark.parametrize("formats", FORMAT_TRIPLES, ids=lambda t: "x_{}-w_{}-gy_{}".format(*t))
def test_layer_takes_torchs_memory_formats(formats, shapes, wanted, dtype, device):
    """y, grad-input and grad-weight through autograd (functional and the
    Python Function), each gradient alone and both: channels-last where x or
    the weight is, whatever grad_output's format, contiguous in float64 (the
    rule, checked on each result's suggested format), with the strides
    torch's own layer gives them.  torch's CPU float16 has no channels-last
    kernel and stays contiguous (README): there the float32 layer's strides
    stand in for torch's.  On CUDA, torch's grad-input takes its format again
    from grad_output and the weight (cudnn_convolution_transpose_backward_input),
    so where grad_output of one channel is dense in both layouts it may
    follow neither x nor the forward: there the rule is checked alone."""
    x_format, w_format, gy_format = formats
    x_shape, w_shape, stride, groups = LAYER_SHAPES[shapes]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(x_shape, generator=g).to(device)
    w = torch.randn(w_shape, generator=g).to(device)
    b = torch.randn(w_shape[1] * groups, generator=g).to(device)
    gy = torch.randn_like(torch.nn.functional.conv_transpose3d(x, w, b, stride, 0, 0, groups))
    theirs_dtype = torch.float32 if (device, dtype) == ("cpu", torch.float16) else dtype

    def results(layer, dtype):
        xd = in_format(x.to(dtype), x_format).requires_grad_(wanted != "weight")
        wd = in_format(w.to(dtype), w_format).requires_grad_(wanted != "x")
        y = LAYERS[layer](xd, wd, b.to(dtype), [stride] * 3, [0] * 3, [0] * 3, groups, [1] * 3)
        leaves = [t for t in (xd, wd) if t.requires_grad]
        return [y, *torch.autograd.grad(y, leaves, in_format(gy.to(dtype), gy_format))]

    expected = layer_format(dtype, in_format(x, x_format), in_format(w, w_format))
    theirs = [t.stride() for t in results("torch", theirs_dtype)]
    for layer in ("conv_transpose3d", "ConvTranspose3dFunction"):
        ours = results(layer, dtype)
        assert [torch._prims_common.suggest_memory_format(t) for t in ours] == \
            [expected] * len(ours), layer
        if device == "cpu" or shapes == "six_channels":
            assert [t.stride() for t in ours] == theirs, layer


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("formats", FORMAT_TRIPLES, ids=lambda t: "x_{}-w_{}-gy_{}".format(*t))
def test_operators_and_fakes_take_the_results_format(formats, batched, dtype, device):
    """Each operator's results in the format the rule gives from its own
    operands (forward: x and w; grad_input: grad_output and w; grad_weight:
    x and grad_output; backward: x and w, the forward's), the same strides
    from the fakes torch.compile traces with, and the same values as from x
    and grad_output in that format beside a contiguous weight."""
    x_format, w_format, gy_format = formats
    x, w, b = sample(device, batched=batched)
    x, w, b = x.to(dtype), w.to(dtype), b.to(dtype)
    gy = torch.randn_like(_ops.forward(x, w, b, *GEOMETRY))
    batched_in = (lambda t, f: in_format(t, f)) if batched else (
        lambda t, f: in_format(t.unsqueeze(0), f).squeeze(0))
    x, w, gy = batched_in(x, x_format), in_format(w, w_format), batched_in(gy, gy_format)
    ws = list(w.shape)
    ops = torch.ops.tconv3d

    def results(gy, x, w):
        return {"forward": (ops.forward(x, w, None, *GEOMETRY),),
                "grad_input": (ops.grad_input(gy, w, list(x.shape), *GEOMETRY),),
                "grad_weight": (ops.grad_weight(gy, x, ws, *GEOMETRY),),
                "grad_weight_and_bias": ops.grad_weight_and_bias(gy, x, ws, *GEOMETRY)[:1],
                "backward": ops.backward(gy, x, w, *GEOMETRY, False)[:2]}

    expected = {"forward": layer_format(dtype, x, w), "grad_input": layer_format(dtype, gy, w),
                "grad_weight": layer_format(dtype, x, gy),
                "grad_weight_and_bias": layer_format(dtype, x, gy),
                "backward": layer_format(dtype, x, w)}
    real = results(gy, x, w)
    with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
        fake = results(*(mode.from_tensor(t) for t in (gy, x, w)))
    dense = {name: results(*(batched_in(t, "cl" if f == torch.channels_last_3d else "ncdhw")
                             for t in (gy, x)), in_format(w, "ncdhw"))[name]
             for name, f in expected.items()}
    for name, values in real.items():
        for value, fake_value, dense_value in zip(values, fake[name], dense[name]):
            value5 = value if value.dim() == 5 else value.unsqueeze(0)
            assert value5.is_contiguous(memory_format=expected[name]), (name, value.stride())
            assert fake_value.stride() == value.stride(), name
            assert rel_err(value, dense_value) <= 1e-6, name


@pytest.mark.parametrize("device", devices())
def test_opcheck_fused_grad_weight_and_bias(device):
    """Kernel == stride, NCDHW bf16: the shape the fused CUDA kernel takes."""
    x = torch.randn(2, 16, 4, 4, 8, device=device, dtype=torch.bfloat16, requires_grad=True)
    gy = torch.randn(2, 8, 8, 8, 16, device=device, dtype=torch.bfloat16, requires_grad=True)
    args = (gy, x, [16, 8, 2, 2, 2], [2, 2, 2], [0, 0, 0], [0, 0, 0], 1, [1, 1, 1])
    torch.library.opcheck(torch.ops.tconv3d.grad_weight_and_bias.default, args)
    plain = (gy.detach(), x.detach(), *args[2:])
    gw, gb = torch.ops.tconv3d.grad_weight_and_bias(*plain)
    if device == "cuda":
        assert tconv3d._C._last_cuda_kernels()["grad_bias"] == "grad_weight_tap_blocks_gemm"
    assert torch.equal(gw, torch.ops.tconv3d.grad_weight(*plain))
    w64 = torch.zeros(args[2], dtype=torch.float64, requires_grad=True)
    y64 = torch.nn.functional.conv_transpose3d(x.detach().double().cpu(), w64, stride=2)
    gw_reference, = torch.autograd.grad(y64, w64, gy.detach().double().cpu())
    assert rel_err(gw, gw_reference) < 8e-3
    reference = gy.detach().double().sum((0, 2, 3, 4))
    assert rel_err(gb, reference) < 4e-3


def test_python_shape_formula_agrees_with_the_cpp_one():
    for size in range(1, 6):
        for kernel in range(1, 5):
            for stride in range(1, 4):
                for dilation in range(1, 3):
                    for padding in range(0, 3):
                        for op in range(max(stride, dilation)):
                            args = ([1, 1, size, size, size], [1, 1, kernel, kernel, kernel],
                                    [stride], [padding], [op], 1, [dilation])
                            expected = _ops.transposed_output_extent(size, kernel, stride,
                                                                     padding, dilation, op)
                            if expected <= 0:
                                with pytest.raises(RuntimeError, match="too small"):
                                    tconv3d._C.output_shape(*args)
                            else:
                                assert tconv3d._C.output_shape(*args)[2:] == [expected] * 3


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = tconv3d.ConvTranspose3d(4, 6, 3, stride=2, padding=1, output_padding=1)
        self.act = torch.nn.SiLU()
        self.up2 = tconv3d.ConvTranspose3d(6, 2, 2, stride=2, groups=2)

    def forward(self, x):
        return self.up2(self.act(self.up(x)))


@pytest.mark.parametrize("device", devices())
def test_torch_compile_fullgraph_forward_and_backward(device):
    torch.manual_seed(0)
    model = Net().to(device)
    x = torch.randn(2, 4, 3, 4, 3, device=device, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    y_eager = model(x)
    y_compiled = compiled(x)
    assert rel_err(y_compiled, y_eager) < 1e-6
    gx_eager, = torch.autograd.grad(y_eager.square().sum(), x)
    gx_compiled, = torch.autograd.grad(y_compiled.square().sum(), x)
    assert rel_err(gx_compiled, gx_eager) < 1e-6


@pytest.mark.parametrize("device", devices())
def test_torch_compile_fullgraph_functional(device):
    """The functional's argument handling (ints, 1-sequences, tuples) traces
    without a graph break."""
    x, w, b = sample(device)

    def layer(x, w, b):
        return tconv3d.conv_transpose3d(x, w, b, 2, (1, 0, 1), [1], 2, (1, 2, 1))

    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x, w, b), layer(x, w, b))


def test_torch_compile_inductor():
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(2, 4, 3, 4, 3, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True)
    y = compiled(x)
    assert rel_err(y, model(x)) < 1e-5
    gy = torch.randn_like(y)
    gx_compiled, = torch.autograd.grad(y, x, gy)
    gx_eager, = torch.autograd.grad(model(x), x, gy)
    assert rel_err(gx_compiled, gx_eager) < 1e-5


def test_torch_compile_dynamic_channels_last_model():
    """A model converted to channels_last_3d, compiled with dynamic shapes and
    fed NCDHW and channels-last inputs of two sizes: the outputs' strides and
    values, and the gradients of x and of every parameter, are eager's (the
    fakes' formats are the operators')."""
    torch.manual_seed(0)
    model = Net().to(memory_format=torch.channels_last_3d)
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    for shape in [(2, 4, 3, 4, 3), (3, 4, 5, 3, 4)]:
        for format in FORMATS.values():
            x = torch.randn(shape).contiguous(memory_format=format).requires_grad_()
            y, y_eager = compiled(x), model(x)
            assert y.stride() == y_eager.stride()
            assert y.is_contiguous(memory_format=torch.channels_last_3d)
            assert rel_err(y, y_eager) < 1e-5
            gy = torch.randn_like(y)
            leaves = (x, *model.parameters())
            grads = torch.autograd.grad(y, leaves, gy)
            for g, g_eager in zip(grads, torch.autograd.grad(y_eager, leaves, gy)):
                assert g.stride() == g_eager.stride() and rel_err(g, g_eager) < 1e-5


@pytest.mark.parametrize("device", devices())
def test_torch_compile_fullgraph_under_autocast(device):
    """The operator's C++ Autocast kernel traces: compiled and eager agree in
    dtype and value under autocast, and float32 leaves get float32 gradients."""
    torch.manual_seed(0)
    model = Net().to(device)
    x = torch.randn(2, 4, 3, 4, 3, device=device, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.autocast(device, dtype=torch.bfloat16):
        y_eager = model(x)
        y_compiled = compiled(x)
    assert y_eager.dtype == y_compiled.dtype == torch.bfloat16
    assert torch.equal(y_compiled, y_eager)
    gx_eager, = torch.autograd.grad(y_eager.float().square().sum(), x)
    gx_compiled, = torch.autograd.grad(y_compiled.float().square().sum(), x)
    assert gx_compiled.dtype == torch.float32
    assert rel_err(gx_compiled, gx_eager) < 1e-6


@pytest.mark.parametrize("device", devices())
def test_operator_follows_autocast_like_torchs_conv(device):
    """The operator itself (not only the Python wrapper) casts under autocast,
    float64 excepted, and gradients reach the float32 leaves in float32."""
    x, w, b = sample(device)
    x.requires_grad_()
    w.requires_grad_()
    low = torch.bfloat16
    geometry = dict(stride=GEOMETRY[0], padding=GEOMETRY[1], output_padding=GEOMETRY[2],
                    groups=GEOMETRY[3], dilation=GEOMETRY[4])
    with torch.autocast(device, dtype=low):
        y = _ops.forward(x, w, b, *GEOMETRY)
        y_wrapper = tconv3d.conv_transpose3d(x, w, b, **geometry)
        y_torch = torch.nn.functional.conv_transpose3d(x, w, b, **geometry)
        y64 = _ops.forward(x.double(), w.double(), b.double(), *GEOMETRY)
    assert y.dtype == y_wrapper.dtype == y_torch.dtype == low
    assert y64.dtype == torch.float64
    reference = torch.nn.functional.conv_transpose3d(
        x.detach().to(low).double(), w.detach().to(low).double(), b.to(low).double(), **geometry)
    assert rel_err(y, reference) < 1e-2
    assert torch.equal(y, y_wrapper)
    y.float().square().sum().backward()
    assert x.grad.dtype == w.grad.dtype == torch.float32
    # torch's own convolution under the same autocast: the same casts, so
    # gradients within bf16 rounding of ours.
    xt, wt = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    with torch.autocast(device, dtype=low):
        yt = torch.nn.functional.conv_transpose3d(xt, wt, b, **geometry)
    yt.float().square().sum().backward()
    assert rel_err(x.grad, xt.grad) < 2e-2 and rel_err(w.grad, wt.grad) < 2e-2
    x.grad = w.grad = None
    # The Python autograd.Function over the same operator, under autocast:
    # its backward sees the operands in the forward's dtype.
    with torch.autocast(device, dtype=low):
        y_function = tconv3d.ConvTranspose3dFunction.apply(x, w, b, *GEOMETRY)
    assert y_function.dtype == low and torch.equal(y_function, y)
    gx, gw = torch.autograd.grad(y_function.float().square().sum(), (x, w))
    assert gx.dtype == gw.dtype == torch.float32
    with torch.autocast(device, dtype=low):
        y_again = _ops.forward(x, w, b, *GEOMETRY)
    gx_ref, gw_ref = torch.autograd.grad(y_again.float().square().sum(), (x, w))
    assert torch.equal(gx, gx_ref) and torch.equal(gw, gw_ref)
    # Outside autocast nothing is cast.
    assert _ops.forward(x, w, b, *GEOMETRY).dtype == torch.float32

