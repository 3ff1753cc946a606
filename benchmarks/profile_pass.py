#!/usr/bin/env python3
"""Run one pass of one benchmark case a few times, for a profiler to watch:

    ncu --clock-control none -k regex:taps python3 benchmarks/profile_pass.py \\
        --case rgb_out_k4s2p1_64to3_b16 --dtype bf16 --layout cl --pass wgrad

Inputs are random (never zeros) and the layer is tconv3d's, under the auto
kernel policy; the kernels it ran are printed at the end.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import tconv3d

HERE = Path(__file__).resolve().parent
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32,
          "fp32": torch.float32}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", required=True)
    p.add_argument("--dtype", choices=DTYPES, default="bf16")
    p.add_argument("--layout", choices=("ncdhw", "cl"), default="cl")
    p.add_argument("--pass", dest="pass_", choices=("fwd", "dgrad", "wgrad"), default="fwd")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    cases = json.loads((HERE / "cases.json").read_text())
    cases = cases["cases"] if isinstance(cases, dict) else cases
    case = next(c for c in cases if c["name"] == args.case)
    torch.backends.cudnn.allow_tf32 = args.dtype == "tf32"
    dtype = DTYPES[args.dtype]
    fmt = torch.channels_last_3d if args.layout == "cl" else torch.contiguous_format
    geometry = dict(stride=case["stride"], padding=case["padding"],
                    output_padding=case["output_padding"], dilation=case["dilation"],
                    groups=case["groups"])
    x = torch.randn(case["batch"], case["in_channels"], *case["input_size"], device="cuda",
                    dtype=dtype).contiguous(memory_format=fmt)
    w = torch.randn(case["in_channels"], case["out_channels"] // case["groups"], *case["kernel"],
                    device="cuda", dtype=dtype) / 16
    x.requires_grad_(args.pass_ == "dgrad")
    w.requires_grad_(args.pass_ == "wgrad")
    y = tconv3d.conv_transpose3d(x, w, **geometry)
    gy = torch.randn_like(y)
    for _ in range(args.repeat):
        if args.pass_ == "fwd":
            tconv3d.conv_transpose3d(x, w, **geometry)
        else:
            torch.autograd.grad(y, x if args.pass_ == "dgrad" else w, gy, retain_graph=True)
    torch.cuda.synchronize()
    print(tconv3d._C._last_cuda_kernels())


if __name__ == "__main__":
    main()
