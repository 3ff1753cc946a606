"""tconv3d.ConvTranspose3d, convert() and revert() as drop-ins for nn.ConvTranspose3d."""
import copy
import warnings

import pytest
import torch
from torch import nn

import tconv3d
from conftest import devices, rel_err, requires_cuda

CTOR_ARGS = [
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(1, 3, 2), stride=(1, 2, 3), groups=2,
         bias=False, dilation=(2, 1, 1)),
]


@pytest.mark.parametrize("kwargs", CTOR_ARGS)
def test_same_parameters_initialisation_and_repr(kwargs):
    torch.manual_seed(7)
    theirs = nn.ConvTranspose3d(**kwargs)
    torch.manual_seed(7)
    ours = tconv3d.ConvTranspose3d(**kwargs)
    assert repr(ours) == repr(theirs)
    assert ours.extra_repr() == theirs.extra_repr()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for (name_a, a), (name_b, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert name_a == name_b and a.shape == b.shape and torch.equal(a, b)


@pytest.mark.parametrize("kwargs", CTOR_ARGS)
def test_state_dict_loads_both_ways(kwargs):
    theirs, ours = nn.ConvTranspose3d(**kwargs), tconv3d.ConvTranspose3d(**kwargs)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 4, 3, 4, 3)
    torch.testing.assert_close(ours(x), theirs(x))
    again = nn.ConvTranspose3d(**kwargs)
    again.load_state_dict(ours.state_dict())
    torch.testing.assert_close(again(x), ours(x))


@pytest.mark.parametrize("device", devices())
def test_output_size_argument(device):
    theirs = nn.ConvTranspose3d(3, 2, 3, stride=2, padding=1).to(device)
    ours = tconv3d.ConvTranspose3d(3, 2, 3, stride=2, padding=1).to(device)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 4, 5, 3, device=device)
    for output_size in ([8, 10, 6], [7, 9, 5], (2, 2, 8, 9, 6)):
        expected = theirs(x, output_size=output_size)
        got = ours(x, output_size=output_size)
        assert got.shape == expected.shape
        assert rel_err(got, expected) < 1e-5
    with pytest.raises(ValueError):
        ours(x, output_size=[20, 20, 20])


def test_unbatched_module_call():
    layer = tconv3d.ConvTranspose3d(3, 2, 2, stride=2)
    x = torch.randn(3, 2, 3, 4)
    y = layer(x)
    assert y.shape == (2, 4, 6, 8)
    torch.testing.assert_close(y, layer(x.unsqueeze(0)).squeeze(0))


def _decoder_parts(device):
    torch.manual_seed(3)
    theirs = nn.Sequential(nn.ConvTranspose3d(4, 3, 3, stride=2, padding=1, output_padding=1),
                           nn.ReLU()).to(device)
    return theirs, tconv3d.convert(copy.deepcopy(theirs))


@pytest.mark.parametrize("device", devices())
@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_module_goes_through_torch_jit_script(device, tmp_path):
    theirs, ours = _decoder_parts(device)
    scripted = torch.jit.script(ours)
    assert "tconv3d::forward" in str(scripted.inlined_graph)
    torch.jit.save(scripted, tmp_path / "decoder.pt")
    loaded = torch.jit.load(tmp_path / "decoder.pt", map_location=device)
    x = torch.randn(2, 4, 3, 5, 4, device=device, requires_grad=True)
    expected = theirs(x)
    (gx_expected,) = torch.autograd.grad(expected.square().sum(), x)
    for model in (scripted, loaded):
        y = model(x)
        assert rel_err(y, expected) < 1e-5
        (gx,) = torch.autograd.grad(y.square().sum(), x)
        assert rel_err(gx, gx_expected) < 1e-5
    # output_size, a scripted Optional[List[int]] argument.
    layer = torch.jit.script(ours[0])
    expected = theirs[0](x, output_size=[6, 10, 8])
    assert layer(x, [6, 10, 8]).shape == expected.shape == (2, 3, 6, 10, 8)


@pytest.mark.parametrize("device", devices())
def test_module_goes_through_torch_export_with_a_dynamic_batch(device, tmp_path):
    theirs, ours = _decoder_parts(device)
    x = torch.randn(2, 4, 3, 5, 4, device=device)
    batch = torch.export.Dim("batch", min=1, max=16)
    program = torch.export.export(ours, (x,), dynamic_shapes=({0: batch},))
    assert "tconv3d.forward" in str(program.graph)
    torch.export.save(program, tmp_path / "decoder.pt2")
    loaded = torch.export.load(tmp_path / "decoder.pt2")
    x3 = torch.randn(3, 4, 3, 5, 4, device=device)
    for p in (program, loaded):
        assert rel_err(p.module()(x3), theirs(x3)) < 1e-5


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose3d(4, 3, 2, stride=2)
        self.block = nn.Sequential(nn.ReLU(), nn.ConvTranspose3d(3, 2, 3, padding=1, groups=1))
        self.head = nn.Conv3d(2, 1, 1)

    def forward(self, x):
        return self.head(self.block(self.up(x)))


@pytest.mark.parametrize("device", devices())
def test_activation_checkpointing_and_saved_tensor_hooks(device):
    """What 3-D models use to fit in memory: torch.utils.checkpoint (both
    kinds) and save_on_cpu give bitwise the gradients of a plain step, and
    the layer under inference_mode returns inference tensors as torch's."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    layer = tconv3d.ConvTranspose3d(4, 6, 3, stride=2, padding=1, output_padding=1).to(device)
    x = torch.randn(2, 4, 3, 4, 5, device=device, requires_grad=True)

    def gradients(run):  # .backward(): reentrant checkpoints refuse autograd.grad
        x.grad = None
        layer.zero_grad()
        run().square().sum().backward()
        return x.grad, layer.weight.grad, layer.bias.grad

    plain = gradients(lambda: layer(x))
    runs = {"reentrant": lambda: checkpoint(layer, x, use_reentrant=True),
            "non_reentrant": lambda: checkpoint(layer, x, use_reentrant=False)}
    for name, run in runs.items():
        assert all(torch.equal(a, b) for a, b in zip(gradients(run), plain)), name
    with torch.autograd.graph.save_on_cpu(pin_memory=device == "cuda"):
        offloaded = gradients(lambda: layer(x))
    assert all(torch.equal(a, b) for a, b in zip(offloaded, plain))
    with torch.inference_mode():
        y = layer(x)
    assert y.is_inference() and not y.requires_grad
    assert torch.equal(y, layer(x).detach())


def test_convert_swaps_every_layer_and_shares_parameters():
    model = Decoder()
    params_before = {name: p for name, p in model.named_parameters()}
    x = torch.randn(2, 4, 3, 3, 3)
    expected = model(x)
    converted = tconv3d.convert(model)
    assert converted is model
    assert type(model.up) is tconv3d.ConvTranspose3d
    assert type(model.block[1]) is tconv3d.ConvTranspose3d
    assert type(model.head) is nn.Conv3d
    for name, p in model.named_parameters():
        assert p is params_before[name]
    assert rel_err(model(x), expected) < 1e-5
    # An optimizer built before convert() still trains the converted model.
    assert list(model.state_dict()) == list(params_before)


def test_convert_keeps_a_shared_layer_one_layer():
    """A layer registered under two names and inside a child stays one
    module after convert, as it was before."""
    layer = nn.ConvTranspose3d(2, 3, 3)
    model = nn.Module()
    model.first = model.second = layer
    model.child = nn.Sequential(layer, nn.ReLU())
    tconv3d.convert(model)
    assert type(model.first) is tconv3d.ConvTranspose3d
    assert model.second is model.first and model.child[0] is model.first
    assert model.first.weight is layer.weight


def test_convert_warns_of_parametrized_layers_and_parametrizing_after_works():
    torch.manual_seed(0)
    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.ConvTranspose3d(4, 6, 3), dim=1))
    with pytest.warns(UserWarning, match="parametriz"):
        tconv3d.convert(model)
    assert type(model[0]) is not tconv3d.ConvTranspose3d
    torch.manual_seed(1)
    reference = nn.utils.parametrizations.weight_norm(nn.ConvTranspose3d(4, 6, 3, stride=2), dim=1)
    torch.manual_seed(1)
    ours = nn.utils.parametrizations.weight_norm(tconv3d.ConvTranspose3d(4, 6, 3, stride=2), dim=1)
    x = torch.randn(2, 4, 3, 4, 3)
    y, y_reference = ours(x), reference(x)
    assert rel_err(y, y_reference) < 1e-5
    y.square().sum().backward()
    y_reference.square().sum().backward()
    for p, q in zip(ours.parameters(), reference.parameters()):
        assert rel_err(p.grad, q.grad) < 1e-5
    # revert cannot give it torch's class either, and says so; convert leaves it be
    with pytest.warns(UserWarning, match="remove its parametrizations"):
        assert tconv3d.revert(ours) is ours
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tconv3d.convert(ours) is ours


def test_convert_on_a_bare_layer():
    layer = nn.ConvTranspose3d(2, 2, 3)
    swapped = tconv3d.convert(layer)
    assert type(swapped) is tconv3d.ConvTranspose3d and swapped.weight is layer.weight


def test_revert_undoes_convert_for_export():
    """revert() gives back torch's layers sharing the parameters (a shared
    layer stays one, the output stays the same), and torch.export of the
    reverted model holds aten operators alone, no tconv3d one: a graph
    torch's ONNX exporters translate (both do, onnx 1.23, onnxscript 0.7)."""
    torch.manual_seed(0)
    model = Decoder()
    model.again = model.up
    x = torch.randn(2, 4, 3, 3, 3)
    expected = model(x)
    params = dict(model.named_parameters())
    converted = tconv3d.convert(model)
    assert exported_namespaces(converted, x) == {"aten", "tconv3d"}
    reverted = tconv3d.revert(converted)
    assert reverted is model and type(model.up) is nn.ConvTranspose3d
    assert type(model.block[1]) is nn.ConvTranspose3d and model.again is model.up
    assert all(p is params[name] for name, p in model.named_parameters())
    assert rel_err(model(x), expected) < 1e-5
    assert exported_namespaces(model, x) == {"aten"}


def exported_namespaces(model, x):
    graph = torch.export.export(model, (x,)).graph
    return {node.target.namespace for node in graph.nodes if node.op == "call_function"}


@requires_cuda
@pytest.mark.parametrize("amp_dtype", [torch.float16, torch.bfloat16])
def test_amp_training_step_matches_torch(amp_dtype):
    torch.manual_seed(0)
    reference = nn.Sequential(nn.ConvTranspose3d(8, 6, 3, stride=2, padding=1, output_padding=1),
                              nn.ReLU(), nn.ConvTranspose3d(6, 4, 2, stride=2)).cuda()
    ours = tconv3d.convert(copy.deepcopy(reference))
    x = torch.randn(2, 8, 6, 5, 7, device="cuda")
    target = torch.randn(2, 4, 24, 20, 28, device="cuda")
    results = []
    for model in (reference, ours):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cuda")
        with torch.autocast("cuda", dtype=amp_dtype):
            y = model(x)
            assert y.dtype == amp_dtype
            loss = (y.float() - target).square().mean()
        scaler.scale(loss).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        assert all(g.dtype == torch.float32 for g in grads)
        scaler.step(optimizer)
        scaler.update()
        results.append((y.float(), grads, [p.detach().clone() for p in model.parameters()]))
    tol = 5e-3 if amp_dtype == torch.float16 else 3e-2
    (y_ref, g_ref, p_ref), (y_our, g_our, p_our) = results
    assert rel_err(y_our, y_ref) < tol
    for a, b in zip(g_our, g_ref):
        assert rel_err(a, b) < tol
    for a, b in zip(p_our, p_ref):
        assert rel_err(a, b) < tol
