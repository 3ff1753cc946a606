"""Shared helpers: devices, the float64 reference, error metric and tolerances."""
import pytest
import torch
import torch.nn.functional as F

import tconv3d

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device")

# DESIGN §2: relative error against a float64 reference.
TOLERANCE = {
    torch.float64: 1e-12,
    torch.float32: 1e-5,
    torch.float16: 5e-3,
    torch.bfloat16: 2e-2,
}


def layer_format(dtype, *operands):
    """The memory format of a layer's results, as README states torch's rule:
    channels-last where an operand (viewed 5-D) suggests it, contiguous in
    float64."""
    suggest = torch._prims_common.suggest_memory_format
    batched = (t if t.dim() == 5 else t.unsqueeze(0) for t in operands)
    if dtype != torch.float64 and torch.channels_last_3d in map(suggest, batched):
        return torch.channels_last_3d
    return torch.contiguous_format


def devices():
    """cpu always; cuda as a parameter that skips cleanly where there is no GPU."""
    return ["cpu", pytest.param("cuda", marks=requires_cuda)]


@pytest.fixture(autouse=True)
def poison_results():
    """Every tconv3d result is NaN-filled before its kernel runs: an element a
    kernel forgets to write makes the comparison fail."""
    tconv3d._C._set_poison_results(True)
    yield
    tconv3d._C._set_poison_results(False)


@pytest.fixture(autouse=True)
def full_fp32():
    """fp32 comparisons at fp32 tolerance: torch's own conv must not use TF32."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


def rel_err(value: torch.Tensor, reference: torch.Tensor) -> float:
    value = value.detach().double().cpu()
    reference = reference.detach().double().cpu()
    if not torch.isfinite(value).all():
        return float("inf")
    denom = reference.norm().item()
    return (value - reference).norm().item() / (denom if denom > 0 else 1.0)


def reference_conv(x, w, b, **geometry):
    """Forward and gradients in float64 on the CPU via torch's own implementation."""
    xr = x.detach().double().cpu().requires_grad_(True)
    wr = w.detach().double().cpu().requires_grad_(True)
    br = None if b is None else b.detach().double().cpu().requires_grad_(True)
    return xr, wr, br, F.conv_transpose3d(xr, wr, br, **geometry)


def pytest_addoption(parser):
    parser.addoption("--shard", default=None, metavar="I/N",
                     help="run every N-th collected test starting at I (0-based): the GPU "
                          "machine runs the suite as N processes side by side")


def pytest_collection_modifyitems(config, items):
    shard = config.getoption("--shard")
    if shard is None:
        return
    index, count = (int(v) for v in shard.split("/"))
    keep = [item for i, item in enumerate(items) if i % count == index]
    config.hook.pytest_deselected(items=[item for i, item in enumerate(items) if i % count != index])
    items[:] = keep
