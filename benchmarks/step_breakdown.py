#!/usr/bin/env python3
"""Where a training step's time goes: the GPU kernels of one forward + backward (through
autograd, as bench.py's fwdbwd pass), ours and cuDNN's, each kernel's µs per step.

    python3 benchmarks/step_breakdown.py --only bottleneck,vae_video_k3s2p1op1_256 --dtype tf32

The sum of kernel times is not the step's replay time (gaps and overlap are not counted);
it says which kernel to work on. Inputs are bench.py's (random, never zeros).
"""
from __future__ import annotations

import argparse
import collections

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import bench


def kernel_times(call, s, steps: int) -> list[tuple[str, int, float]]:
    """(kernel name, launches a step, µs a step), largest first."""
    for _ in range(3):
        call(s)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            call(s)
        torch.cuda.synchronize()
    total = collections.defaultdict(lambda: [0, 0.0])
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            entry = total[event.name]
            entry[0] += 1
            entry[1] += event.device_time
    rows = [(name, n // steps, us / steps) for name, (n, us) in total.items()]
    return sorted(rows, key=lambda r: -r[2])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", required=True, help="comma-separated substrings of case names")
    p.add_argument("--dtype", default="tf32", choices=("tf32", "fp32", "bf16", "fp16"))
    p.add_argument("--layout", default="ncdhw", choices=("ncdhw", "cl"))
    p.add_argument("--pass", dest="pass_", default="fwdbwd", choices=("fwd", "fwdbwd", "dgrad", "wgrad"))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--width", type=int, default=90, help="kernel names are cut to this many characters")
    args = p.parse_args()

    ours, _ = bench.implementation_under_test()
    dtype = {"tf32": torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16,
             "fp16": torch.float16}[args.dtype]
    device = torch.device("cuda")
    wanted = args.only.split(",")
    for case in bench.load_cases(bench.HERE / "cases.json", on_cpu=False):
        if not any(w in case.name for w in wanted):
            continue
        s = bench.make_input_sets(case, dtype, args.layout == "cl", args.pass_, device, 1, seed=0)[0]
        print(f"\n### {case.name} {args.dtype} {args.layout} {args.pass_}\n")
        for side, fn in (("tconv3d", ours), ("cuDNN", F.conv_transpose3d)):
            with bench.torch_settings(args.dtype, cudnn_benchmark=False):
                rows = kernel_times(bench.make_call(fn, case, args.pass_), s, args.steps)
            print(f"{side}: {sum(r[2] for r in rows):.1f} µs of kernels a step")
            print("| µs | launches | kernel |\n|---:|---:|---|")
            for name, n, us in rows:
                print(f"| {us:.1f} | {n} | `{name[:args.width]}` |")
            print()


if __name__ == "__main__":
    main()
