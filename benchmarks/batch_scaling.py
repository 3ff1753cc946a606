#!/usr/bin/env python3
"""How one pass's time grows with the batch, tconv3d (auto) against cuDNN, same process.

    python benchmarks/batch_scaling.py --case vae_k3s2p1op1_128to64 --dtype tf32 --layout cl \
        --pass dgrad --batches 1,2,4,8,16

A least-squares line time = fixed + per_sample * batch separates what a launch costs whatever
its size (launch, prologue, the last wave's idle SMs, the epilogue nobody overlaps) from the
steady-state rate (per_sample gives the TFLOP/s that larger batches approach).  A layer that
is slow at the benchmark's batch but fast per sample needs shorter fixed costs, not faster
main loops; the reverse needs a faster main loop.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch
import torch.nn.functional as F

import bench


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - slope * mx, slope


def main() -> None:
    import tconv3d

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", required=True)
    ap.add_argument("--dtype", default="bf16", choices=sorted(bench.DTYPES))
    ap.add_argument("--layout", default="cl", choices=bench.LAYOUTS)
    ap.add_argument("--pass", dest="pass_", default="fwd", choices=("fwd", "dgrad", "wgrad"))
    ap.add_argument("--batches", default="1,2,4,8")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    device = torch.device("cuda")
    base = bench.cuda_case(args.case)
    dtype = bench.DTYPES[args.dtype]
    elem = torch.finfo(dtype).bits // 8
    print(f"\n### {args.case} {args.dtype} {args.layout} {args.pass_}\n")
    print("| batch | GFLOP | cuDNN ms | ours ms | speed-up | ours TFLOP/s | kernel |")
    print("|---|---|---|---|---|---|---|")
    batches, ours_ms, cudnn_ms = [], [], []
    for batch in (int(b) for b in args.batches.split(",")):
        case = dataclasses.replace(base, batch=batch)
        count = bench.choose_set_count(case, elem, args.pass_, device)
        sets = bench.make_input_sets(case, dtype, args.layout == "cl", args.pass_, device, count, 0)
        calls = {"cudnn": bench.make_call(F.conv_transpose3d, case, args.pass_),
                 "ours": bench.make_call(tconv3d.conv_transpose3d, case, args.pass_)}
        with bench.torch_settings(args.dtype, cudnn_benchmark=False):
            calls["ours"](sets[0])
            kernel = tconv3d._C._last_cuda_kernels().get(bench.PASS_KERNEL[args.pass_], "?")
            times = bench.time_interleaved(calls, sets, args.iters, args.warmup, device)
        c, o = statistics.median(times["cudnn"]), statistics.median(times["ours"])
        gflop = case.flops("fwd") / 1e9
        print(f"| {batch} | {gflop:.1f} | {c:.4f} | {o:.4f} | {c / o:.2f}x | {gflop / o:.0f} | {kernel} |")
        batches.append(batch)
        ours_ms.append(o)
        cudnn_ms.append(c)
        del sets
        bench.free_memory(device)
    per_sample_gflop = base.flops("fwd") / base.batch / 1e9
    for name, ys in (("cuDNN", cudnn_ms), ("ours", ours_ms)):
        fixed, slope = fit_line(batches, ys)
        rate = per_sample_gflop / slope if slope > 0 else float("inf")
        print(f"\n{name}: fixed {fixed * 1e3:.1f} us + {slope * 1e3:.1f} us a sample "
              f"(steady state {rate:.0f} TFLOP/s)")


if __name__ == "__main__":
    main()
