#!/usr/bin/env python3
"""A/B of tconv3d's CUDA kernel families on the benchmark cases, in one process.

    python benchmarks/kernel_ab.py --policies tensor_core,wgmma --dtypes tf32,bf16 --passes fwd,dgrad
    python benchmarks/kernel_ab.py --quick        # the representative cases

Each row times one pass (fwd: the forward; dgrad / wgrad: that backward pass alone) with every
forced kernel policy (bench.force_kernel) and cuDNN's matching pass, interleaved,
with bench.py's inputs and timing (CUDA events, median, input sets rotated beyond L2). The
relative difference of each policy's result from cuDNN's is printed beside its time, so a broken
kernel shows at once. This is the evidence behind the policy choices in
csrc/cuda/cuda_passes.cpp; bench.py measures the shipped (auto) choice. Each forced call sets the
policy hooks on the host first, which shows in the times of layers of ~50 µs: compare policies
with one another there, and take absolute times from bench.py.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import bench


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    if not torch.isfinite(a).all():
        return float("inf")
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def ab_row(case: bench.Case, dtype_name: str, layout: str, pass_: str, policies: list[str],
           args: argparse.Namespace) -> dict:
    import tconv3d

    device = torch.device("cuda")
    dtype = bench.DTYPES[dtype_name]
    elem = torch.finfo(dtype).bits // 8
    count = bench.choose_set_count(case, elem, pass_, device)
    sets = bench.make_input_sets(case, dtype, layout == "cl", pass_, device, count, args.seed)
    ours = bench.make_call(tconv3d.conv_transpose3d, case, pass_)

    calls = {"cudnn": bench.make_call(F.conv_transpose3d, case, pass_)}
    calls.update({p: bench.forced_call(ours, p) for p in policies})
    row = {"case": case.name, "dtype": dtype_name, "layout": layout, "pass": pass_}
    with bench.torch_settings(dtype_name, cudnn_benchmark=False):
        reference = calls["cudnn"](sets[0])[0]
        for p in policies:
            result = calls[p](sets[0])[0]
            row[f"{p}_diff"] = relative_difference(result, reference)
            row[f"{p}_kernel"] = dict(tconv3d._C._last_cuda_kernels())
        del reference, result
        if args.graphs:  # each forced policy's hooks are set during its capture
            calls = bench.graphed_calls(calls, sets, device)
        times = bench.time_interleaved(calls, sets, args.iters, args.warmup, device)
    for name, ts in times.items():
        row[f"{name}_ms"] = statistics.median(ts)
    return row


def markdown(rows: list[dict], policies: list[str]) -> str:
    """One row a (case, dtype, layout, pass): cuDNN's time, then each policy's
    time, speed-up, difference from cuDNN and the kernel it ran for the pass
    (auto's choice shows which forced column it should match)."""
    head = ["case", "dtype", "layout", "pass", "cuDNN ms"]
    for p in policies:
        head += [f"{p} ms", f"{p} ×cuDNN", f"{p} diff", f"{p} kernel"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["case"], r["dtype"], r["layout"], r["pass"], f"{r['cudnn_ms']:.4f}"]
        for p in policies:
            kernel = r.get(p + "_kernel", {}).get(bench.PASS_KERNEL[r["pass"]], "?")
            cells += [f"{r[p + '_ms']:.4f}", f"{r['cudnn_ms'] / r[p + '_ms']:.2f}x",
                      f"{r[p + '_diff']:.1e}", kernel]
        lines.append("| " + " | ".join(cells) + " |")
    summary = []
    for p in policies:
        ratios = [r["cudnn_ms"] / r[p + "_ms"] for r in rows]
        if ratios:
            summary.append(f"{p}: geomean {bench.geometric_mean(ratios):.2f}x cuDNN over {len(ratios)} rows")
    return "\n".join(lines + [""] + summary) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=Path, default=bench.HERE / "cases.json")
    p.add_argument("--only", help="comma-separated substrings of case names")
    p.add_argument("--quick", action="store_true", help="the representative cases only")
    p.add_argument("--policies", default="tensor_core,wgmma")
    p.add_argument("--dtypes", default="tf32,bf16")
    p.add_argument("--layouts", default="cl,ncdhw")
    p.add_argument("--passes", default="fwd,dgrad")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the rows as JSON here")
    p.add_argument("--graphs", action="store_true", help="time CUDA-graph replays (bench.graphed_calls)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("kernel_ab.py: needs a CUDA device")
    policies = bench.split_choices(p, "--policies", args.policies, bench.KERNEL_POLICIES)
    dtypes = bench.split_choices(p, "--dtypes", args.dtypes, bench.DTYPES)
    layouts = bench.split_choices(p, "--layouts", args.layouts, bench.LAYOUTS)
    passes = bench.split_choices(p, "--passes", args.passes, ("fwd", "dgrad", "wgrad"))
    cases = bench.load_cases(args.cases, on_cpu=False)
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        cases = [c for c in cases if any(w in c.name for w in wanted)]
    elif args.quick:
        cases = [c for c in cases if "representative" in c.tags] or cases

    rows = []
    for case in cases:
        for dtype_name in dtypes:
            for layout in layouts:
                for pass_ in passes:
                    try:
                        r = ab_row(case, dtype_name, layout, pass_, policies, args)
                        rows.append(r)
                        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in r.items() if not k.endswith("_kernel")),
                              file=sys.stderr, flush=True)
                    except Exception as exc:  # keep going: one failing row must not hide the rest
                        print(f"{case.name} {dtype_name} {layout} {pass_}: {bench.short_error(exc)}",
                              file=sys.stderr)
                    bench.free_memory(torch.device("cuda"))
    print(markdown(rows, policies))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"environment": bench.environment(
            torch.device("cuda"), {"name": "tconv3d", "fake": False}, " ".join(sys.argv)), "rows": rows},
            indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
