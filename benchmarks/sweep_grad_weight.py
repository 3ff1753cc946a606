#!/usr/bin/env python3
"""The channels-last grad-weight GEMM's tile and split policy, swept on the benchmark cases.

    python benchmarks/sweep_grad_weight.py --quick --dtypes bf16,tf32

Each row times the grad-weight pass alone (bench.py's inputs and timing: CUDA events, median,
input sets rotated beyond L2) under every forced setting, interleaved, and cuDNN's for scale:
the built-in choice ("auto"), forced tiles at the built-in splits, and split policies
(minimum rows per split × target warps) at the built-in tile. The evidence behind the
constants in csrc/cuda/grad_weight_gemm_channels_last.cu.
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

import bench

TILES = [(16, 16), (32, 32), (64, 64), (128, 64), (64, 128), (128, 128)]
SPLITS = [(256, 4096), (1024, 4096), (2048, 4096), (512, 2048), (512, 8192)]


def sweep_row(case: bench.Case, dtype_name: str, args) -> dict:
    import tconv3d

    device = torch.device("cuda")
    dtype = bench.DTYPES[dtype_name]
    count = bench.choose_set_count(case, torch.finfo(dtype).bits // 8, "wgrad", device)
    sets = bench.make_input_sets(case, dtype, True, "wgrad", device, count, args.seed)
    ours = bench.make_call(tconv3d.conv_transpose3d, case, "wgrad")

    def setting(tile=(0, 0), splits=(0, 0)):
        def call(s):
            tconv3d._C._set_grad_weight_tile(*tile)
            tconv3d._C._set_grad_weight_split_policy(*splits)
            try:
                return ours(s)
            finally:
                tconv3d._C._set_grad_weight_tile(0, 0)
                tconv3d._C._set_grad_weight_split_policy(0, 0)
        return call

    calls = {"cudnn": bench.make_call(F.conv_transpose3d, case, "wgrad"), "auto": setting()}
    calls.update({f"tile {m}x{n}": setting(tile=(m, n)) for m, n in TILES})
    calls.update({f"split {r}/{w}": setting(splits=(r, w)) for r, w in SPLITS})
    with bench.torch_settings(dtype_name, cudnn_benchmark=False):
        ours(sets[0])
        assert tconv3d._C._last_cuda_kernels()["grad_weight"] == "grad_weight_gemm_channels_last"
        times = bench.time_interleaved(calls, sets, args.iters, args.warmup, device)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="representative cases only")
    p.add_argument("--dtypes", default="bf16,tf32")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    cases = bench.load_cases(bench.HERE / "cases.json", on_cpu=False)
    if args.quick:
        cases = [c for c in cases if "representative" in c.tags]
    header = None
    for case in cases:
        for dtype_name in args.dtypes.split(","):
            try:
                row = sweep_row(case, dtype_name, args)
            except AssertionError:
                continue  # not read in place (channels not whole 8-byte pieces)
            if header is None:
                header = list(row)
                print("| case | dtype | " + " | ".join(header) + " |")
                print("|---|---|" + "---|" * len(header))
            best = min((v, k) for k, v in row.items() if k != "cudnn")[1]
            cells = [f"**{row[k]:.4f}**" if k == best else f"{row[k]:.4f}" for k in header]
            print(f"| {case.name} | {dtype_name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
