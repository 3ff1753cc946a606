"""Each backward pass on its own against cuDNN's matching pass (aten.convolution_backward
asked for one gradient), on the first ten cases of cases.json, TF32 and bf16, in NCDHW
or channels_last_3d.

    python benchmarks/backward_passes.py [--layout ncdhw|cl]

bench.py times the forward and the whole training step; this isolates grad-input and
grad-weight so each can be compared with the pass cuDNN runs for it.  Needs a GPU.
"""
import argparse
import json
import math
import statistics
from pathlib import Path

import torch

import tconv3d

CASES = Path(__file__).resolve().parent / "cases.json"


def median_ms(fn, iters=10, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=["ncdhw", "cl"], default="ncdhw")
    layout = parser.parse_args().layout
    fmt = torch.channels_last_3d if layout == "cl" else torch.contiguous_format
    torch.backends.cudnn.allow_tf32 = True
    cases = json.loads(CASES.read_text())["cases"][:10]
    speedups = {}
    print(f"layout {layout}")
    print(f"{'case':28s} {'dtype':8s} | grad-input ours cuDNN speed-up | grad-weight ours cuDNN speed-up")
    for case in cases:
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(case["batch"], case["in_channels"], *case["input_size"], device="cuda",
                            dtype=dtype).contiguous(memory_format=fmt)
            w = torch.randn(case["in_channels"], case["out_channels"] // case["groups"],
                            *case["kernel"], device="cuda", dtype=dtype)
            geometry = [case["stride"], case["padding"], case["output_padding"], case["groups"],
                        case["dilation"]]
            gy = torch.randn_like(tconv3d.conv_transpose3d(x, w, None, *geometry))
            assert gy.is_contiguous(memory_format=fmt)

            def cudnn(mask):
                return torch.ops.aten.convolution_backward(
                    gy, x, w, None, case["stride"], case["padding"], case["dilation"], True,
                    case["output_padding"], case["groups"], mask)

            grad_input = (median_ms(lambda: torch.ops.tconv3d.grad_input(gy, w, list(x.shape),
                                                                         *geometry)),
                          median_ms(lambda: cudnn([True, False, False])))
            grad_weight = (median_ms(lambda: torch.ops.tconv3d.grad_weight(gy, x, list(w.shape),
                                                                           *geometry)),
                           median_ms(lambda: cudnn([False, True, False])))
            for name, (ours, theirs) in (("grad-input", grad_input), ("grad-weight", grad_weight)):
                speedups.setdefault((name, dtype), []).append(theirs / ours)
            print(f"{case['name']:28s} {str(dtype)[6:]:8s} | "
                  f"{grad_input[0]:7.3f} {grad_input[1]:7.3f} {grad_input[1] / grad_input[0]:5.2f}x | "
                  f"{grad_weight[0]:7.3f} {grad_weight[1]:7.3f} {grad_weight[1] / grad_weight[0]:5.2f}x",
                  flush=True)
    for (name, dtype), values in speedups.items():
        geomean = math.exp(sum(map(math.log, values)) / len(values))
        print(f"{name} {str(dtype)[6:]}: geometric-mean speed-up {geomean:.2f}x, min {min(values):.2f}x")


if __name__ == "__main__":
    main()
