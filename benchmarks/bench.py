#!/usr/bin/env python3
"""Benchmark tconv3d.conv_transpose3d against torch's F.conv_transpose3d (cuDNN on CUDA).

    python benchmarks/bench.py                 # every case, dtype, layout and pass on this device
    python benchmarks/bench.py --quick         # the representative cases, fewer dtypes (CUDA) / iterations (CPU)
    python benchmarks/bench.py --only unet --dtypes bf16 --passes fwd
    python benchmarks/bench.py --quick --passes dgrad,wgrad   # each backward pass on its own
    python benchmarks/bench.py --quick --deterministic  # both sides under use_deterministic_algorithms
    python benchmarks/bench.py --quick --graphs        # CUDA-graph replays: GPU time without host overhead

Method (DESIGN.md §5): same process, dtype, TF32 setting and memory format for both sides;
cuDNN with benchmark=False and, in a separate column, its best setting (channels_last_3d with
benchmark=True); CUDA events, warm-up, median of >= 20 interleaved runs over random inputs
rotated beyond L2. Each row is also checked against a float64 reference (DESIGN.md §2).

Without a GPU it compares against torch's CPU path on the small `cpu_cases` of cases.json.
TCONV3D_BENCH_FAKE=1 benchmarks torch against itself, to check the harness without tconv3d.
Writes results.json, results.md and speedup.png to --out (default benchmarks/results/).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
FAKE_ENV = "TCONV3D_BENCH_FAKE"

DTYPES = {"tf32": torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16,
          "fp16": torch.float16, "fp64": torch.float64}
LAYOUTS = ("ncdhw", "cl")
# fwd: forward; fwdbwd: training step through autograd; dgrad / wgrad: grad-input / grad-weight
# alone, against cuDNN's matching pass (aten.convolution_backward asked for that one gradient).
PASSES = ("fwd", "fwdbwd", "dgrad", "wgrad")
# The key of tconv3d._C._last_cuda_kernels() naming the kernel a single pass ran.
PASS_KERNEL = {"fwd": "forward", "dgrad": "grad_input", "wgrad": "grad_weight"}
# Kernel policies to force (force_kernel): tconv3d's own, wgmma_boxes (the wgmma policy with the
# halo loader off: the Hopper GEMM's per-tap boxes), wgmma_halo (the halo loader wherever it fits),
# wgmma_one_cta (one CTA an SM where the Hopper GEMM would run two), wgmma_narrow (column tiles
# of at most 64), wgmma_unsplit (grad-input never split along K) and wgmma_group_a_tile (16-channel
# groups one a tile, not four), to take its loaders, its occupancy, its tiles and its split K
# apart; the tap_columns ones take the Hopper tap-columns forward apart; fp32_gather runs the
# fp32 dtype (TF32 off) on the gather kernels instead of the split-TF32 GEMMs.
KERNEL_POLICIES = ("auto", "gather", "tensor_core", "wgmma", "wgmma_boxes", "wgmma_halo",
                   "wgmma_one_cta", "wgmma_narrow", "wgmma_unsplit", "wgmma_streamed_weight",
                   "wgmma_group_a_tile", "tap_columns_wide", "tap_columns_slim", "tap_columns_mma_sync",
                   "fp32_gather", "taps_any_stride")


def force_kernel(policy: str) -> None:
    """Runs tconv3d's CUDA passes on one kernel family from now on ("auto": the shipped choice).

    Seven pseudo-policies take the Hopper GEMM apart: "wgmma_boxes" without its halo loader,
    "wgmma_halo" with it wherever it fits (whatever the phases' tap counts), "wgmma_one_cta"
    with one CTA an SM where it would run two (a grid of one CTA an SM), "wgmma_narrow" with
    column tiles of at most 64 (more CTAs on small grids), "wgmma_unsplit" with grad-input's K
    never split (small grids: one unit a tile), "wgmma_streamed_weight" with the weight read
    again by every tile where the TMA loader would keep it in shared memory, and
    "wgmma_group_a_tile" with groups of 16 channels one a tile instead of four (group blocks).
    Three take the Hopper tap-columns forward apart, auto otherwise: "tap_columns_wide" with
    128-column consumer tiles (fp16/bf16), "tap_columns_slim" with 32-column ones (which take
    K up to 1 KB: TF32 256 channels), "tap_columns_mma_sync" without it (its mma.sync version, or
    for TF32 of 64 columns or more the phase GEMM).  "fp32_gather" is auto with fp32 without
    TF32 (the fp32 dtype) run on the CUDA-core gather kernels, as before split TF32 shipped.
    "taps_any_stride" is auto with the taps-folded forward also on layers with stride-1 axes
    (groups of at most 4 output channels)."""
    import tconv3d

    base = ("wgmma" if policy.startswith("wgmma")
            else "auto" if policy.startswith("tap_columns") or policy in ("fp32_gather",
                                                                         "taps_any_stride")
            else policy)
    tconv3d._C._set_kernel_policy(base)
    tconv3d._C._set_tap_columns_wgmma(policy != "tap_columns_mma_sync")
    tconv3d._C._set_tap_columns_wgmma_columns(
        {"tap_columns_wide": 128, "tap_columns_slim": 32}.get(policy, 0))
    tconv3d._C._set_wgmma_halo_min_taps({"wgmma_boxes": 1 << 30, "wgmma_halo": 1}.get(policy, 0))
    tconv3d._C._set_wgmma_columns(64 if policy == "wgmma_narrow" else 0)
    tconv3d._C._set_wgmma_splits(1 if policy == "wgmma_unsplit" else 0)
    tconv3d._C._set_wgmma_resident_weight(policy != "wgmma_streamed_weight")
    tconv3d._C._set_group_blocks(policy != "wgmma_group_a_tile")
    tconv3d._C._set_fp32_split(policy != "fp32_gather")
    tconv3d._C._set_forward_taps_any_stride(policy == "taps_any_stride")
    one_cta = policy == "wgmma_one_cta"
    tconv3d._C._set_wgmma_grid(torch.cuda.get_device_properties(0).multi_processor_count if one_cta else 0)

def forced_call(call: Callable, policy: str) -> Callable:
    """call with force_kernel(policy) set around it, auto after (each call sets the hooks on
    the host first: under --graphs, during capture)."""
    def run(s):
        force_kernel(policy)
        try:
            return call(s)
        finally:
            force_kernel("auto")
    return run


DEFAULT_PASSES = "fwd,fwdbwd"
# DESIGN.md §2: relative error against a float64 reference (fp64 itself: a loose sanity bound).
TOLERANCE = {"fp32": 1e-5, "tf32": 3e-3, "fp16": 5e-3, "bf16": 2e-2, "fp64": 1e-10}
# DESIGN.md §5, measured on an H100: dtype -> TFLOP/s, "copy" -> GB/s (read + write).
H100_CEILINGS = {"tf32": 396.0, "fp32": 51.0, "bf16": 765.0, "fp16": 765.0, "copy": 2990.0}

CUDA_DEFAULTS = {"dtypes": "tf32,fp32,bf16,fp16", "iters": 20, "warmup": 5}
CUDA_QUICK = {"dtypes": "tf32,bf16", "iters": 20, "warmup": 3}
CPU_DEFAULTS = {"dtypes": "fp32,fp64", "iters": 5, "warmup": 1}
CPU_QUICK = {"dtypes": "fp32", "iters": 3, "warmup": 1}

UNNAMED_CONV_BACKENDS = {9: "MkldnnTranspose"}
MAX_INPUT_SETS = 64
CHECK_CHUNK_NUMEL = 1 << 26


# ----------------------------------------------------------------------------- cases

@dataclasses.dataclass
class Case:
    name: str
    batch: int
    in_channels: int
    out_channels: int
    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    padding: tuple[int, int, int]
    output_padding: tuple[int, int, int]
    dilation: tuple[int, int, int]
    groups: int
    bias: bool
    input_size: tuple[int, int, int]
    tags: tuple[str, ...] = ()
    cudnn_h100_ms: dict | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.input_size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.out_channels // self.groups, *self.kernel)

    @property
    def output_size(self) -> tuple[int, ...]:
        return tuple((i - 1) * s - 2 * p + d * (k - 1) + op + 1 for i, s, p, d, k, op in zip(
            self.input_size, self.stride, self.padding, self.dilation, self.kernel, self.output_padding))

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.batch, self.out_channels, *self.output_size)

    @property
    def conv_args(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    groups=self.groups, dilation=self.dilation)

    def flops(self, pass_: str) -> float:
        fwd = (2.0 * self.batch * self.in_channels * (self.out_channels // self.groups)
               * math.prod(self.kernel) * math.prod(self.input_size))
        return fwd * (3 if pass_ == "fwdbwd" else 1)

    def bytes_moved(self, pass_: str, elem_size: int) -> float:
        once = (math.prod(self.input_shape) + math.prod(self.weight_shape)
                + math.prod(self.output_shape)) * elem_size
        return once * (3 if pass_ == "fwdbwd" else 1)


def parse_case(entry: dict) -> Case:
    def triple(key, default=None):
        value = entry.get(key, default)
        value = [value] * 3 if isinstance(value, int) else list(value)
        if len(value) != 3:
            raise ValueError(f"case {entry.get('name')!r}: {key} must have 3 entries, got {value}")
        return tuple(int(v) for v in value)

    case = Case(
        name=str(entry["name"]), batch=int(entry["batch"]), in_channels=int(entry["in_channels"]),
        out_channels=int(entry["out_channels"]), kernel=triple("kernel"), stride=triple("stride", 1),
        padding=triple("padding", 0), output_padding=triple("output_padding", 0),
        dilation=triple("dilation", 1), groups=int(entry.get("groups", 1)), bias=bool(entry.get("bias", True)),
        input_size=triple("input_size"), tags=tuple(entry.get("tags", ())),
        cudnn_h100_ms=entry.get("cudnn_h100_ms"))
    if case.in_channels % case.groups or case.out_channels % case.groups:
        raise ValueError(f"case {case.name!r}: channels not divisible by groups={case.groups}")
    if min(case.output_size) <= 0:
        raise ValueError(f"case {case.name!r}: empty output size {case.output_size}")
    return case


def load_cases(path: Path, on_cpu: bool) -> list[Case]:
    doc = json.loads(path.read_text())
    if isinstance(doc, list):
        entries = doc
    else:
        entries = doc["cpu_cases"] if on_cpu and "cpu_cases" in doc else doc["cases"]
    cases = [parse_case(e) for e in entries]
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate case names {duplicates}")
    return cases


def cuda_case(name: str) -> Case:
    """The CUDA case of cases.json called `name` (for the one-case profiling scripts)."""
    for case in load_cases(HERE / "cases.json", on_cpu=False):
        if case.name == name:
            return case
    raise SystemExit(f"no CUDA case named {name!r} in {HERE / 'cases.json'}")


# ----------------------------------------------------------------------------- settings

def implementation_under_test() -> tuple[Callable, dict]:
    """tconv3d.conv_transpose3d, or torch's own function when TCONV3D_BENCH_FAKE=1."""
    if os.environ.get(FAKE_ENV, "") not in ("", "0"):
        return F.conv_transpose3d, {"name": "FAKE: torch.nn.functional.conv_transpose3d", "fake": True}
    try:
        import tconv3d
    except Exception as exc:
        sys.exit(f"bench.py: cannot import tconv3d ({type(exc).__name__}: {exc}).\n"
                 f"Build it with `pip install --no-build-isolation -e .`, or set {FAKE_ENV}=1 "
                 f"to check the harness against torch itself.")
    return tconv3d.conv_transpose3d, {"name": "tconv3d.conv_transpose3d", "fake": False,
                                      "version": getattr(tconv3d, "__version__", None),
                                      "file": getattr(tconv3d, "__file__", None)}


def _backend_flags(new: tuple | None = None) -> tuple:
    """(cudnn.allow_tf32, cuda.matmul.allow_tf32, cudnn.benchmark); sets them first when given."""
    with warnings.catch_warnings():  # newer torch calls these flags legacy; they still rule both sides
        warnings.simplefilter("ignore")
        if new is not None:
            (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.benchmark) = new
        return (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
                torch.backends.cudnn.benchmark)


@contextlib.contextmanager
def torch_settings(dtype_name: str, cudnn_benchmark: bool):
    """TF32 on for 'tf32', off for 'fp32' (the switch tconv3d honours too), and cudnn.benchmark."""
    saved = _backend_flags()
    cudnn_tf32, matmul_tf32 = saved[0], saved[1]
    if dtype_name in ("tf32", "fp32"):
        cudnn_tf32 = matmul_tf32 = dtype_name == "tf32"
    _backend_flags((cudnn_tf32, matmul_tf32, cudnn_benchmark))
    try:
        yield
    finally:
        _backend_flags(saved)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def available_bytes(device: torch.device) -> int:
    if device.type != "cuda":
        return 16 << 30
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def short_error(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line[:160]}"


# ----------------------------------------------------------------------------- inputs and calls

@dataclasses.dataclass
class InputSet:
    x: torch.Tensor
    w: torch.Tensor
    b: torch.Tensor | None
    grad_y: torch.Tensor | None

    @property
    def leaves(self) -> tuple[torch.Tensor, ...]:
        return (self.x, self.w) if self.b is None else (self.x, self.w, self.b)


def make_input_sets(case: Case, dtype: torch.dtype, channels_last: bool, pass_: str,
                    device: torch.device, count: int, seed: int) -> list[InputSet]:
    """Random sets (never zeros); values depend on the seed, not on the layout, so layouts compare."""
    needs_grad = pass_ == "fwdbwd"  # dgrad / wgrad call the backward ops directly
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    # Fan-in scaling keeps fp16 outputs and weight gradients far from overflow.
    w_scale = 1.0 / math.sqrt(case.in_channels // case.groups * math.prod(case.kernel))
    gen = torch.Generator(device=device)

    def randn(shape, scale=1.0, memory_format=torch.contiguous_format):
        t = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
        if scale != 1.0:
            t.mul_(scale)
        return t.to(dtype=dtype, memory_format=memory_format).requires_grad_(needs_grad)

    sets = []
    for i in range(count):
        gen.manual_seed(seed * 1000 + i)
        x = randn(case.input_shape, memory_format=fmt)
        w = randn(case.weight_shape, w_scale, memory_format=fmt)
        b = randn((case.out_channels,)) if case.bias else None
        grad_y = randn(case.output_shape, memory_format=fmt).detach() if pass_ != "fwd" else None
        sets.append(InputSet(x, w, b, grad_y))
    return sets


def set_bytes(case: Case, elem_size: int, pass_: str) -> int:
    numel = math.prod(case.input_shape) + math.prod(case.weight_shape) + case.out_channels
    if pass_ != "fwd":
        numel += math.prod(case.output_shape)
    return numel * elem_size


def call_bytes(case: Case, elem_size: int, pass_: str) -> int:
    """Rough working memory of one call: output, gradients and saved tensors."""
    out = math.prod(case.output_shape) * elem_size
    return out if pass_ == "fwd" else 2 * out + set_bytes(case, elem_size, "fwd")


def choose_set_count(case: Case, elem_size: int, pass_: str, device: torch.device) -> int:
    """Enough sets to exceed L2 several times over, as long as they fit beside the calls' own memory."""
    one = set_bytes(case, elem_size, pass_)
    if device.type != "cuda":
        return 2
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 50 << 20
    wanted = min(MAX_INPUT_SETS, max(1, math.ceil(3 * l2 / one)))
    budget = 0.5 * available_bytes(device) - 4 * call_bytes(case, elem_size, pass_)
    return max(1, min(wanted, int(budget // one)))


def make_call(fn: Callable, case: Case, pass_: str) -> Callable[[InputSet], tuple[torch.Tensor, ...]]:
    """One timed unit: forward, forward + backward through autograd (returns (y, *grads)), or
    one backward pass alone (returns (grad,)): torch's for F.conv_transpose3d, else tconv3d's."""
    kwargs = case.conv_args
    if pass_ == "fwd":
        def forward(s: InputSet):
            return (fn(s.x, s.w, s.b, **kwargs),)
        return forward
    if pass_ in ("dgrad", "wgrad"):
        return make_backward_call(fn is F.conv_transpose3d, case, pass_)

    def forward_backward(s: InputSet):
        y = fn(s.x, s.w, s.b, **kwargs)
        # autograd.grad, not backward(): .grad accumulation would add a kernel to every call.
        return (y, *torch.autograd.grad(y, s.leaves, s.grad_y))
    return forward_backward


def make_backward_call(torch_side: bool, case: Case, pass_: str) -> Callable:
    stride, padding, output_padding, dilation = (list(v) for v in (
        case.stride, case.padding, case.output_padding, case.dilation))
    dgrad = pass_ == "dgrad"
    if torch_side:
        mask = [dgrad, not dgrad, False]

        def torch_pass(s: InputSet):
            grads = torch.ops.aten.convolution_backward(
                s.grad_y, s.x, s.w, None, stride, padding, dilation, True, output_padding,
                case.groups, mask)
            return (grads[0] if dgrad else grads[1],)
        return torch_pass
    geometry = (stride, padding, output_padding, case.groups, dilation)

    def tconv3d_pass(s: InputSet):
        if dgrad:
            return (torch.ops.tconv3d.grad_input(s.grad_y, s.w, list(s.x.shape), *geometry),)
        return (torch.ops.tconv3d.grad_weight(s.grad_y, s.x, list(s.w.shape), *geometry),)
    return tconv3d_pass


def selected_backend(case: Case, s: InputSet) -> str:
    """Which convolution backend torch picks for these tensors (it may fall back silently)."""
    x, w = s.x.detach(), s.w.detach()
    b = None if s.b is None else s.b.detach()
    args = (x, w, b, list(case.stride), list(case.padding), list(case.dilation), True,
            list(case.output_padding), case.groups)
    for extra in ((None if b is None else list(b.shape),), ()):
        try:
            backend = torch._C._select_conv_backend(*args, *extra)
        except Exception:
            continue
        name = str(backend).rsplit(".", 1)[-1]
        if name == "???":  # torch's Python binding leaves some values unnamed; 9 is MkldnnTranspose
            name = UNNAMED_CONV_BACKENDS.get(int(backend), f"ConvBackend({int(backend)})")
        return name
    return "unknown"


# ----------------------------------------------------------------------------- timing

def call_orders(n: int) -> list[list[int]]:
    """Orders for n implementations, one an iteration (a Williams design): each implementation
    takes each position equally often and follows each other implementation equally often.
    Where a call leaves the GPU idle (host-bound small layers), the next call's CUDA events
    also time its own host work, so what runs just before matters; rotating one fixed order
    kept each implementation behind the same neighbour every time (kernel_ab.py's auto column
    always followed cuDNN and read up to 1.5x its forced twin, RESULTS.md)."""
    first, low, high = [0], 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    rows = [[(x + r) % n for x in first] for r in range(n)]
    return rows if n % 2 == 0 else rows + [row[::-1] for row in rows]


def time_interleaved(calls: dict[str, Callable], sets: list[InputSet], iters: int, warmup: int,
                     device: torch.device) -> dict[str, list[float]]:
    """Milliseconds per call for each implementation, interleaved: every iteration runs each
    once, in the orders of call_orders (each implementation in each position, and behind each
    other one, equally often over a whole number of rounds of orders); every call takes the
    next input set in turn, so none reads inputs that the call before it pulled into L2 (with
    as many sets as choose_set_count makes).  Sharing a set within an iteration favoured
    whoever came second: kernel_ab.py read one kernel up to 2x apart depending on what ran
    before it."""
    names = list(calls)
    orders = call_orders(len(names))
    for i in range(warmup):
        for name in names:
            calls[name](sets[i % len(sets)])
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    events = []
    call_index = 0
    for i in range(iters):
        for name in (names[j] for j in orders[i % len(orders)]):
            s = sets[call_index % len(sets)]
            call_index += 1
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                calls[name](s)
                end.record()
                events.append((name, start, end))
            else:
                t0 = time.perf_counter()
                calls[name](s)
                times[name].append((time.perf_counter() - t0) * 1e3)
    synchronize(device)
    for name, start, end in events:
        times[name].append(start.elapsed_time(end))
    return times


def graphed_calls(calls: dict[str, Callable], sets: list[InputSet],
                  device: torch.device) -> dict[str, Callable]:
    """Each call captured into a CUDA graph once per input set, after a warm-up on a side stream
    (as torch.cuda.graph asks), and replayed in its place by time_interleaved: the timed span is
    then the GPU work alone, without either side's host work (layers of ~50 µs read host-bound
    on some machines, pulling both sides up alike and every ratio towards 1; RESULTS.md, "Few-wave
    deal and TF32 halo round"). torch.compile's reduce-overhead mode runs layers this way. An
    implementation's graphs share one memory pool: their outputs are never read."""
    graphed = {}
    side = torch.cuda.Stream(device)
    for name, call in calls.items():
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            call(sets[0])
        torch.cuda.current_stream(device).wait_stream(side)
        pool = torch.cuda.graph_pool_handle()
        graphs = {}
        for s in sets:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                call(s)
            graphs[id(s)] = graph
        graphed[name] = lambda s, graphs=graphs: graphs[id(s)].replay()
    synchronize(device)
    return graphed


def peak_extra_mb(call: Callable, s: InputSet, device: torch.device) -> float | None:
    """Peak memory one call allocates beyond its inputs and its results."""
    if device.type != "cuda":
        return None
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    results = call(s)
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    kept = sum(-(-t.untyped_storage().nbytes() // 512) * 512 for t in results)
    del results
    return (peak - before - kept) / 2**20


# ----------------------------------------------------------------------------- correctness

def _chunks(t: torch.Tensor, limit: int = CHECK_CHUNK_NUMEL):
    if t.numel() <= limit or t.dim() <= 1:
        yield t
        return
    rows = limit // (t.numel() // t.shape[0])
    if rows <= 1:
        for sub in t.unbind(0):
            yield from _chunks(sub, limit)
    else:
        yield from t.split(rows, 0)


def relative_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    """||a - ref|| / ||ref||, accumulated in float64 chunk by chunk to bound temporary memory."""
    num = den = 0.0
    for ca, cr in zip(_chunks(a.detach()), _chunks(ref.detach())):
        cr = cr.double()
        num += (ca.double() - cr).square().sum().item()
        den += cr.square().sum().item()
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return math.sqrt(num / den)


def max_relative_error(results: tuple, refs: tuple) -> float:
    return max(relative_error(a, r) for a, r in zip(results, refs))


def float64_reference(case: Case, s: InputSet, pass_: str, device: torch.device) -> tuple | None:
    """The same layer in float64 on the (rounded) inputs, or None when it would not fit."""
    numel = math.prod(case.input_shape) + math.prod(case.weight_shape) + math.prod(case.output_shape)
    if 8 * numel * (2 if pass_ == "fwdbwd" else 1) * 2 > 0.6 * available_bytes(device):
        return None
    needs_grad = pass_ == "fwdbwd"
    s64 = InputSet(*(None if t is None else t.detach().double().requires_grad_(needs_grad)
                     for t in (s.x, s.w, s.b)), None if s.grad_y is None else s.grad_y.double())
    try:
        return make_call(F.conv_transpose3d, case, pass_)(s64)
    except Exception:  # out of memory, or no float64 kernel for this case: the row keeps ours vs torch
        return None


def check_correctness(case: Case, dtype_name: str, pass_: str, calls: dict[str, Callable],
                      s: InputSet, device: torch.device) -> dict:
    ours = calls["ours"](s)
    repeat = calls["ours"](s)
    deterministic = all(torch.equal(a, b) for a, b in zip(ours, repeat))
    del repeat
    theirs = calls["cudnn"](s)
    out = {
        "err": max_relative_error(ours, theirs),
        "deterministic": deterministic,
        "same_memory_format": (ours[0].is_contiguous(memory_format=torch.channels_last_3d)
                               == theirs[0].is_contiguous(memory_format=torch.channels_last_3d)),
        "err_ref_ours": None, "err_ref_cudnn": None,
    }
    # For fp64 the float64 reference would be torch's own result again: ours vs torch says it all.
    ref = None if dtype_name == "fp64" else float64_reference(case, s, pass_, device)
    if ref is not None:
        out["err_ref_ours"] = max_relative_error(ours, ref)
        out["err_ref_cudnn"] = max_relative_error(theirs, ref)
    return out


def correctness_flags(dtype_name: str, check: dict, device: torch.device) -> list[str]:
    """DESIGN.md §2: within tolerance of float64, and (on CUDA) never worse than 2x cuDNN's own error."""
    tol = TOLERANCE[dtype_name]
    flags = []
    if check["err_ref_ours"] is None:
        if check["err"] > tol:
            flags.append("TOL~")  # no float64 reference fitted: judged against cuDNN instead
    else:
        if check["err_ref_ours"] > tol:
            flags.append("TOL")
        if device.type == "cuda" and check["err_ref_ours"] > 2 * check["err_ref_cudnn"] > 0:
            flags.append("2x")
    if not check["deterministic"]:
        flags.append("nondet")
    if not check["same_memory_format"]:
        flags.append("fmt")
    return flags


# ----------------------------------------------------------------------------- one row

def bench_cudnn_best(fn_torch: Callable, case: Case, dtype_name: str, pass_: str, device: torch.device,
                     args: argparse.Namespace) -> dict:
    """cuDNN's best setting: channels_last_3d with cudnn.benchmark=True, timed on its own."""
    result = {"ms": None, "backend": None, "note": None}
    sets = []
    try:
        with torch_settings(dtype_name, cudnn_benchmark=True):
            dtype = DTYPES[dtype_name]
            count = choose_set_count(case, dtype.itemsize, pass_, device)
            sets = make_input_sets(case, dtype, True, pass_, device, count, args.seed)
            result["backend"] = selected_backend(case, sets[0])
            calls = {"best": make_call(fn_torch, case, pass_)}
            if args.graphs:
                calls = graphed_calls(calls, sets, device)
            times = time_interleaved(calls, sets, args.iters, args.warmup, device)
            result["ms"] = statistics.median(times["best"])
    except Exception as exc:
        result["note"] = "cudnn_best: " + ("OOM" if is_out_of_memory(exc) else short_error(exc))
    del sets
    free_memory(device)
    return result


# The kernels tconv3d names (tconv3d._C._last_cuda_kernels) for each pass's calls.
PASS_KERNELS = {**{p: (k,) for p, k in PASS_KERNEL.items()},
                "fwdbwd": tuple(PASS_KERNEL.values())}


def kernels_ran(pass_: str, device: torch.device) -> str | None:
    """The CUDA kernels tconv3d's last call of the pass ran, "/"-joined (None on the CPU and
    for the fake, which never imports tconv3d)."""
    module = sys.modules.get("tconv3d")
    if device.type != "cuda" or module is None:
        return None
    last = module._C._last_cuda_kernels()
    return "/".join(last[p] for p in PASS_KERNELS[pass_])


def bench_row(ours_fn: Callable, case: Case, dtype_name: str, layout: str, pass_: str,
              device: torch.device, args: argparse.Namespace, best: dict | None,
              ceilings: dict) -> dict:
    dtype = DTYPES[dtype_name]
    row = {"case": case.name, "dtype": dtype_name, "layout": layout, "pass": pass_,
           "ms_ours": None, "ms_cudnn": None, "ms_cudnn_best": best["ms"] if best else None,
           "backend_best": best["backend"] if best else None,
           "gflop": case.flops(pass_) / 1e9, "gbytes": case.bytes_moved(pass_, dtype.itemsize) / 1e9,
           "flags": [], "notes": [best["note"]] if best and best["note"] else []}
    ref_key = f"{pass_}_{dtype_name}{'_cl' if layout == 'cl' else ''}_ms"
    if case.cudnn_h100_ms and ref_key in case.cudnn_h100_ms:
        row["ms_cudnn_h100_reference"] = case.cudnn_h100_ms[ref_key]

    sets = []
    try:
        with torch_settings(dtype_name, cudnn_benchmark=False):
            count = choose_set_count(case, dtype.itemsize, pass_, device)
            sets = make_input_sets(case, dtype, layout == "cl", pass_, device, count, args.seed)
            row["input_sets"] = count
            row["backend"] = selected_backend(case, sets[0])
            calls = {"ours": make_call(ours_fn, case, pass_), "cudnn": make_call(F.conv_transpose3d, case, pass_)}
            for name in list(calls):  # an implementation that raises is reported, the other still timed
                try:
                    calls[name](sets[0])
                except Exception as exc:
                    if is_out_of_memory(exc):
                        row["notes"].append(f"{name}: OOM")
                        raise
                    row["notes"].append(f"{name}: {short_error(exc)}")
                    del calls[name]
                if name == "ours" and name in calls:
                    row["kernels"] = kernels_ran(pass_, device)
            synchronize(device)
            if calls:
                timed = graphed_calls(calls, sets, device) if args.graphs else calls
                times = time_interleaved(timed, sets, args.iters, args.warmup, device)
                del timed
                for name, ms in times.items():
                    row[f"ms_{name}"] = statistics.median(ms)
                    row[f"times_{name}"] = ms
                for name, call in calls.items():
                    row[f"mem_{name}_mb"] = peak_extra_mb(call, sets[0], device)
            if len(calls) == 2:
                check = check_correctness(case, dtype_name, pass_, calls, sets[0], device)
                row.update(check)
                row["tolerance"] = TOLERANCE[dtype_name]
                row["flags"] += correctness_flags(dtype_name, check, device)
    except Exception as exc:  # one failing row must not end a long run
        timed = row["ms_ours"] is not None or row["ms_cudnn"] is not None
        what = "OOM" if is_out_of_memory(exc) else short_error(exc)
        row["notes"].append(f"{what} during checks" if timed else f"{what}: row skipped")
    finally:
        del sets
        free_memory(device)
    add_derived_metrics(row, ceilings)
    return row


def add_derived_metrics(row: dict, ceilings: dict) -> None:
    def ratio(a, b):
        return a / b if a is not None and b else None

    for name in ("ours", "cudnn"):
        ms = row.get(f"ms_{name}")
        row[f"tflops_{name}"] = ratio(row["gflop"], ms)  # GFLOP / ms == TFLOP/s
        row[f"gbs_{name}"] = ratio(row["gbytes"] * 1e3, ms)
    row["speedup"] = ratio(row["ms_cudnn"], row["ms_ours"])
    row["speedup_best"] = ratio(row["ms_cudnn_best"], row["ms_ours"])
    flop_ceiling = ceilings.get(row["dtype"])
    row["pct_flop_ceiling"] = 100 * row["tflops_ours"] / flop_ceiling if row["tflops_ours"] and flop_ceiling else None
    copy_ceiling = ceilings.get("copy")
    row["pct_copy_ceiling"] = 100 * row["gbs_ours"] / copy_ceiling if row["gbs_ours"] and copy_ceiling else None


# ----------------------------------------------------------------------------- ceilings

def median_call_ms(fn: Callable, args: tuple, device: torch.device, iters: int = 10) -> float:
    fn(*args)
    synchronize(device)
    samples = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(*args)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn(*args)
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def measure_ceilings(dtype_names: list[str], device: torch.device) -> dict:
    """A large device copy (GB/s, read + write) and a square matmul per dtype (TFLOP/s)."""
    on_cuda = device.type == "cuda"
    src = torch.randn((1 << 28) if on_cuda else (1 << 25), device=device)  # 1 GiB / 128 MiB
    dst = torch.empty_like(src)
    ceilings = {"copy": 2 * src.nbytes / median_call_ms(dst.copy_, (src,), device) / 1e6}
    del src, dst
    n = 8192 if on_cuda else 1024
    for name in dict.fromkeys(dtype_names):
        if name == "tf32" and not on_cuda:
            continue
        with torch_settings(name, cudnn_benchmark=False):
            a = torch.randn(n, n, device=device).to(DTYPES[name])
            b = torch.randn(n, n, device=device).to(DTYPES[name])
            ceilings[name] = 2 * n**3 / median_call_ms(torch.mm, (a, b), device) / 1e9
        del a, b
    free_memory(device)
    return ceilings


def resolve_ceilings(option: str | None, dtype_names: list[str], device: torch.device) -> tuple[dict, str]:
    if option is None:
        if device.type == "cuda":
            return dict(H100_CEILINGS), "DESIGN.md §5 (H100; pass --ceilings to measure this device)"
        return {}, "pass --ceilings to measure them on this CPU"
    if option == "measure":
        return measure_ceilings(dtype_names, device), "measured on this device"
    ceilings = dict(H100_CEILINGS) if device.type == "cuda" else {}
    for item in option.split(","):
        key, _, value = item.partition("=")
        try:
            ceilings[key.strip()] = float(value)
        except ValueError:
            sys.exit(f"bench.py: --ceilings expects KEY=NUMBER pairs (keys: copy,{','.join(DTYPES)}), got {item!r}")
    return ceilings, f"given: {option}"


# ----------------------------------------------------------------------------- reporting

def environment(device: torch.device, impl: dict, command: str) -> dict:
    env = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "implementation": impl,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": device.type,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "tconv3d_commit": git_commit(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=round(props.total_memory / 2**30, 1), gpu_sms=props.multi_processor_count,
                   gpu_l2_mib=round(getattr(props, "L2_cache_size", 0) / 2**20, 1))
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def git_commit() -> str | None:
    # The GPU machine receives a copy of the tree without .git: the caller passes it.
    if os.environ.get("TCONV3D_COMMIT"):
        return os.environ["TCONV3D_COMMIT"]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except Exception:
        return None


def fmt(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def fmt3(value) -> str:
    """Three significant digits without an exponent: 2990, 45.1, 0.0123."""
    if value is None:
        return "-"
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"


def markdown_table(rows: list[dict], reference: str) -> str:
    header = ["case", "dtype", "layout", "pass", "ours ms", f"{reference} ms", f"{reference} best ms",
              "speed-up", "vs best", "ours TFLOP/s", f"{reference} TFLOP/s", "ours GB/s", "% FLOP ceil",
              "% copy ceil", "ours extra MB", f"{reference} extra MB", f"err vs {reference}",
              f"err vs fp64 ours/{reference}",
              "backend", "ours kernels", "flags", "notes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        err64 = (f"{r['err_ref_ours']:.1e}/{r['err_ref_cudnn']:.1e}"
                 if r.get("err_ref_ours") is not None else "-")
        cells = [r["case"], r["dtype"], r["layout"], r["pass"], fmt(r["ms_ours"], ".4f"), fmt(r["ms_cudnn"], ".4f"),
                 fmt(r["ms_cudnn_best"], ".4f"), fmt(r["speedup"], ".2f", "x"), fmt(r["speedup_best"], ".2f", "x"),
                 fmt3(r["tflops_ours"]), fmt3(r["tflops_cudnn"]), fmt3(r["gbs_ours"]),
                 fmt(r["pct_flop_ceiling"], ".1f", "%"), fmt(r["pct_copy_ceiling"], ".1f", "%"),
                 fmt3(r.get("mem_ours_mb")), fmt3(r.get("mem_cudnn_mb")), fmt(r.get("err"), ".1e"),
                 err64, r.get("backend") or "-", r.get("kernels") or "-", " ".join(r["flags"]),
                 "; ".join(r["notes"]).replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dtype"], r["layout"], r["pass"]), []).append(r)
    summary = []
    for (dtype_name, layout, pass_), group in groups.items():
        timed = [r for r in group if r["speedup"]]
        best = [r["speedup_best"] for r in timed if r["speedup_best"]]
        worst = min(timed, key=lambda r: r["speedup"]) if timed else None
        summary.append({
            "dtype": dtype_name, "layout": layout, "pass": pass_, "rows": len(group), "timed": len(timed),
            "geomean_speedup": geometric_mean([r["speedup"] for r in timed]) if timed else None,
            "min_speedup": worst["speedup"] if worst else None, "min_case": worst["case"] if worst else None,
            "geomean_speedup_vs_best": geometric_mean(best) if best else None,
            "flagged": sum(1 for r in group if r["flags"]),
        })
    return summary


def markdown_summary(summary: list[dict]) -> str:
    lines = ["| dtype | layout | pass | rows timed | geomean speed-up | min speed-up | (case) | geomean vs best "
             "| flagged |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['dtype']} | {s['layout']} | {s['pass']} | {s['timed']}/{s['rows']} | "
                     f"{fmt(s['geomean_speedup'], '.2f', 'x')} | {fmt(s['min_speedup'], '.2f', 'x')} | "
                     f"{s['min_case'] or '-'} | {fmt(s['geomean_speedup_vs_best'], '.2f', 'x')} | {s['flagged']} |")
    return "\n".join(lines)


def markdown_report(env: dict, settings: dict, ceilings: dict, ceilings_source: str, rows: list[dict],
                    summary: list[dict]) -> str:
    on_cuda = env["device"] == "cuda"
    reference = "cuDNN" if on_cuda else "torch"
    if on_cuda:
        machine = (f"{env['gpu']} (sm {env['gpu_capability']}), torch {env['torch']}, CUDA {env['cuda']}, "
                   f"cuDNN {env['cudnn']}")
        baseline = ("speed-up = cuDNN ms / ours ms, cuDNN being F.conv_transpose3d with cudnn.benchmark=False in "
                    "the same dtype, TF32 setting and layout; 'best' = channels_last_3d with cudnn.benchmark=True.")
    else:
        machine = f"CPU {env['cpu']} ({env['cpu_threads']} threads, load {env['load_average']}), torch {env['torch']}"
        baseline = "speed-up = torch ms / ours ms, torch being F.conv_transpose3d on CPU in the same dtype and layout."
    ceiling_text = ", ".join(f"{k} {fmt3(v)} {'GB/s' if k == 'copy' else 'TFLOP/s'}" for k, v in ceilings.items())
    legend = (
        f"{baseline} 'backend' is the one torch picked; 'ours kernels' are tconv3d's CUDA kernels for "
        "the pass (forward/grad-input/grad-weight for fwdbwd). "
        "FLOPs = 2·N·Cin·(Cout/G)·kvol·Din·Hin·Win (×3 for "
        "fwdbwd); bytes = input + weight + output once each (×3 for fwdbwd). "
        f"err vs {reference} = ‖ours − {reference}‖/‖{reference}‖, the worst of output and gradients; err vs fp64 = "
        "each against a float64 reference. Flags: TOL over the DESIGN.md §2 tolerance (TOL~: no float64 "
        f"reference fitted, judged against {reference}), 2x: over twice cuDNN's own error (CUDA only), nondet: two "
        "runs differ, fmt: output memory format differs from torch's.")
    out = ["# tconv3d benchmark", ""]
    if env["implementation"].get("fake"):
        out += [f"**FAKE RUN ({FAKE_ENV}=1): 'ours' is torch's own F.conv_transpose3d; these numbers say "
                "nothing about tconv3d.**", ""]
    if env.get("interrupted_after_rows") is not None:
        out += [f"**Interrupted: only the first {env['interrupted_after_rows']} rows were measured.**", ""]
    out += [f"- {machine}",
            f"- tconv3d commit {env['tconv3d_commit'] or 'unknown'}; implementation {env['implementation']['name']}",
            f"- {env['date_utc']}; median of {settings['iters']} after {settings['warmup']} warm-up; dtypes "
            f"{','.join(settings['dtypes'])}; layouts {','.join(settings['layouts'])}; passes "
            f"{','.join(settings['passes'])}"
            + ("; both sides under torch.use_deterministic_algorithms(True)" if settings.get("deterministic") else "")
            + ("; CUDA-graph replays (no host time)" if settings.get("graphs") else ""),
            f"- ceilings: {ceiling_text or 'none'} ({ceilings_source})",
            f"- command: `{env['command']}`",
            "", legend, "", markdown_table(rows, reference), "", "## Summary", "", markdown_summary(summary), ""]
    return "\n".join(out)


def plot_speedups(rows: list[dict], path: Path, reference: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("matplotlib is not installed: skipping speedup.png", file=sys.stderr)
        return False
    if not rows:
        return False
    panels = list(dict.fromkeys((r["dtype"], r["layout"]) for r in rows))
    cases = list(dict.fromkeys(r["case"] for r in rows))
    passes = list(dict.fromkeys(r["pass"] for r in rows))
    index = {(r["case"], r["dtype"], r["layout"], r["pass"]): r for r in rows}
    fig, axes = plt.subplots(len(panels), 1, squeeze=False, sharex=True,
                             figsize=(max(8.0, 0.38 * len(cases) + 2), 2.8 * len(panels) + 1.5))
    width = 0.8 / len(passes)
    for ax, (dtype_name, layout) in zip(axes[:, 0], panels):
        for j, pass_ in enumerate(passes):
            xs = [i + (j - (len(passes) - 1) / 2) * width for i in range(len(cases))]
            picked = [index.get((c, dtype_name, layout, pass_), {}) for c in cases]
            ax.bar(xs, [r.get("speedup") or float("nan") for r in picked], width, label=f"{pass_} vs {reference}")
            best = [r.get("speedup_best") or float("nan") for r in picked]
            if any(not math.isnan(v) for v in best):
                ax.scatter(xs, best, marker="_", s=60, color="black", zorder=3,
                           label=f"vs {reference} best" if j == 0 else None)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}x" if f"{v:g}"[0] in "25" else ""))
        ax.set_title(f"{dtype_name} / {layout}", fontsize=10)
        ax.set_ylabel("speed-up")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xticks(range(len(cases)))
    axes[-1, 0].set_xticklabels(cases, rotation=60, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


class Progress:
    """tqdm on a terminal when available; otherwise a counter on stderr."""

    def __init__(self, total: int):
        self.total, self.done = total, 0
        self.tty = sys.stderr.isatty()
        self.bar = None
        if self.tty:  # in a log file, one line per row reads better than tqdm's redraws
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="row", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def start(self, label: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(label)
        elif self.tty:
            print(f"\r[{self.done + 1}/{self.total}] {label:<70}", end="", file=sys.stderr, flush=True)

    def finish(self, label: str, row: dict) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif not self.tty:
            speed = fmt(row["speedup"], ".2f", "x")
            print(f"[{self.done}/{self.total}] {label}: {speed} {' '.join(row['flags'])}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.tty:
            print(file=sys.stderr)


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--cases", type=Path, default=HERE / "cases.json", help="case file (default: %(default)s)")
    p.add_argument("--only", help="comma-separated substrings; keep cases whose name contains any")
    p.add_argument("--dtypes", help=f"of {','.join(DTYPES)} (default CUDA: {CUDA_DEFAULTS['dtypes']}; "
                                    f"CPU: {CPU_DEFAULTS['dtypes']})")
    p.add_argument("--layouts", default=",".join(LAYOUTS),
                   help="ncdhw and/or cl = channels_last_3d (default: %(default)s)")
    p.add_argument("--passes", default=DEFAULT_PASSES,
                   help=f"of {','.join(PASSES)} (default: %(default)s)")
    p.add_argument("--iters", type=int, help="timed runs per implementation, median reported (default CUDA 20, CPU 5)")
    p.add_argument("--warmup", type=int, help="untimed runs first (default CUDA 5, CPU 1)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="CUDA: the representative cases in tf32,bf16; CPU: fp32 with 3 iterations")
    p.add_argument("--ceilings", nargs="?", const="measure", metavar="K=V,...",
                   help="measure ceilings on this device (no value), or set some, e.g. copy=3350,bf16=990")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="cpu forces the CPU path and its cases (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true",
                   help="run both sides under torch.use_deterministic_algorithms(True), where cuDNN "
                        "must restrict itself to deterministic algorithms (tconv3d always is)")
    p.add_argument("--graphs", action="store_true",
                   help="time CUDA-graph replays of each call (both sides): the GPU work without the "
                        "host's launch overhead, as torch.compile's reduce-overhead mode runs it")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False")
    args.device = torch.device(args.device)
    on_cuda = args.device.type == "cuda"
    if args.graphs and not on_cuda:
        p.error("--graphs: CUDA graphs need a CUDA device")
    defaults = (CUDA_QUICK if args.quick else CUDA_DEFAULTS) if on_cuda else (CPU_QUICK if args.quick else CPU_DEFAULTS)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.dtypes = split_choices(p, "--dtypes", args.dtypes, DTYPES)
    args.layouts = split_choices(p, "--layouts", args.layouts, LAYOUTS)
    args.passes = split_choices(p, "--passes", args.passes, PASSES)
    if not on_cuda and "tf32" in args.dtypes:
        print("tf32 is a CUDA setting: skipped on CPU", file=sys.stderr)
        args.dtypes = [d for d in args.dtypes if d != "tf32"]
    if args.iters < 1 or args.warmup < 0:
        p.error("--iters must be >= 1 and --warmup >= 0")
    if on_cuda and args.iters < 20:
        print(f"note: --iters {args.iters} is below the 20 runs DESIGN.md §5 asks for", file=sys.stderr)
    return args


def split_choices(parser, option: str, text: str, allowed) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        parser.error(f"{option}: unknown {unknown or 'empty'}; choose from {','.join(allowed)}")
    return list(dict.fromkeys(values))


def select_cases(args: argparse.Namespace) -> list[Case]:
    cases = load_cases(args.cases, on_cpu=args.device.type == "cpu")
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        cases = [c for c in cases if any(w in c.name for w in wanted)]
    elif args.quick and args.device.type == "cuda":
        cases = [c for c in cases if "representative" in c.tags] or cases
    if not cases:
        sys.exit(f"bench.py: no case in {args.cases} matches --only {args.only!r}")
    return cases


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = args.device
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before any cuBLAS handle
        torch.use_deterministic_algorithms(True)
    ours_fn, impl = implementation_under_test()
    cases = select_cases(args)
    fake_prefix = f"{FAKE_ENV}={os.environ[FAKE_ENV]} " if impl["fake"] else ""
    command = fake_prefix + shlex.join([sys.executable, *sys.argv])
    env = environment(device, impl, command)
    if impl["fake"]:
        print(f"*** {FAKE_ENV}: timing torch's F.conv_transpose3d against itself ***", file=sys.stderr)
    ceilings, ceilings_source = resolve_ceilings(args.ceilings, args.dtypes, device)

    total = len(cases) * len(args.dtypes) * len(args.passes) * len(args.layouts)
    progress = Progress(total)
    rows = []
    started = time.perf_counter()
    try:
        for case in cases:
            for dtype_name in args.dtypes:
                for pass_ in args.passes:
                    best = None
                    if device.type == "cuda":
                        progress.start(f"{case.name} {dtype_name} {pass_} cudnn_best")
                        best = bench_cudnn_best(F.conv_transpose3d, case, dtype_name, pass_, device, args)
                    for layout in args.layouts:
                        label = f"{case.name} {dtype_name} {layout} {pass_}"
                        progress.start(label)
                        row_started = time.perf_counter()
                        row = bench_row(ours_fn, case, dtype_name, layout, pass_, device, args, best, ceilings)
                        row["elapsed_s"] = round(time.perf_counter() - row_started, 2)
                        rows.append(row)
                        progress.finish(label, row)
    except KeyboardInterrupt:  # keep what was measured so far
        env["interrupted_after_rows"] = len(rows)
        print(f"\ninterrupted: reporting the {len(rows)} rows measured", file=sys.stderr)
    progress.close()
    env["elapsed_s"] = round(time.perf_counter() - started, 1)

    summary = summarize(rows)
    settings = {k: getattr(args, k) for k in ("dtypes", "layouts", "passes", "iters", "warmup", "quick", "seed",
                                              "deterministic", "graphs")}
    report = markdown_report(env, settings, ceilings, ceilings_source, rows, summary)
    print(report)

    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"environment": env, "settings": settings, "ceilings": ceilings, "ceilings_source": ceilings_source,
               "tolerance": TOLERANCE, "cases": [dataclasses.asdict(c) for c in cases], "rows": rows,
               "summary": summary}
    (args.out / "results.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    (args.out / "results.md").write_text(report)
    plotted = plot_speedups(rows, args.out / "speedup.png", "cuDNN" if device.type == "cuda" else "torch")
    written = ["results.json", "results.md"] + (["speedup.png"] if plotted else [])
    print(f"wrote {', '.join(str(args.out / w) for w in written)} in {env['elapsed_s']} s", file=sys.stderr)
    return 130 if "interrupted_after_rows" in env else 0


if __name__ == "__main__":
    sys.exit(main())
