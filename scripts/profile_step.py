"""Where a pass's time goes: torch.profiler over a few calls of one benchmark case
(or several, comma-separated: one process, one GPU call), ours and cuDNN's, each kernel's
GPU time and count a call, against wall time.

    python3 scripts/profile_step.py unet3d_up_k2s2_128to64,bottleneck_k3s2p1op1_512to256_b1 bf16 cl [pass]
    python3 scripts/profile_step.py rgb_out_k3s1p1_64to3_b4 tf32 cl dgrad --policies auto,tensor_core

The pass is bench.py's (fwd, fwdbwd, dgrad, wgrad; fwdbwd, the training step, by default).
--policies lists kernel policies (bench.force_kernel's) for our side, one profile each
(default: auto): where two policies report the same kernel, the other kernels of the call
(copies, packs, split-K sums) and their times show what differs.
With --timeline, each side's step is also captured in a CUDA graph (as bench.py --graphs times
it) and one replay's kernels are listed in order with their gaps: a graph's span against the sum
of its kernels is the cost of the kernel boundaries.
"""
import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench  # noqa: E402
import tconv3d  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cases", help="comma-separated benchmark case names")
    p.add_argument("dtype", choices=sorted(bench.DTYPES))
    p.add_argument("layout", choices=("ncdhw", "cl"))
    p.add_argument("pass_", nargs="?", default="fwdbwd", choices=("fwd", "fwdbwd", "dgrad", "wgrad"))
    p.add_argument("--policies", default="auto", help="comma-separated kernel policies for our side")
    p.add_argument("--timeline", action="store_true",
                   help="also list one CUDA-graph replay's kernels in order, with their gaps")
    args = p.parse_args()
    policies = bench.split_choices(p, "--policies", args.policies, bench.KERNEL_POLICIES)
    for name in args.cases.split(","):
        profile(name, args.dtype, args.layout, args.pass_, policies, args.timeline)


def profile(name: str, dtype_name: str, layout: str, pass_: str, policies: list[str],
            timeline: bool) -> None:
    case = bench.cuda_case(name)
    device = torch.device("cuda")
    with bench.torch_settings(dtype_name, cudnn_benchmark=False):
        sets = bench.make_input_sets(case, bench.DTYPES[dtype_name], layout == "cl", pass_,
                                     device, 1, seed=0)
        ours = bench.make_call(tconv3d.conv_transpose3d, case, pass_)
        sides = [(f"tconv3d[{policy}]" if policies != ["auto"] else "tconv3d",
                  bench.forced_call(ours, policy)) for policy in policies]
        sides.append(("cuDNN", bench.make_call(F.conv_transpose3d, case, pass_)))
        for label, call in sides:
            for _ in range(5):
                call(sets[0])
            # The profiler's first session pays CUPTI's start-up (~1-2 s):
            # not the step's time, so it goes to a session of its own.
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]):
                call(sets[0])
            torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                    torch.profiler.ProfilerActivity.CUDA]) as prof:
                for _ in range(10):
                    call(sets[0])
                torch.cuda.synchronize()
            wall = (time.perf_counter() - start) / 10 * 1e3
            events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
            gpu = sum(e.self_device_time_total for e in events) / 10 / 1e3
            print(f"== {name} {dtype_name} {layout} {pass_} {label}: wall {wall:.3f} ms/call (profiled), GPU kernels {gpu:.3f} ms/call")
            if label != "cuDNN":
                print(f"   kernels named: {dict(tconv3d._C._last_cuda_kernels())}")
            for e in sorted(events, key=lambda e: -e.self_device_time_total)[:8]:
                print(f"   {e.self_device_time_total / 10 / 1e3:7.3f} ms  x{e.count // 10}  {e.key[:90]}")
            if timeline:
                graph_timeline(label, call, sets, device)


def graph_timeline(label: str, call, sets, device: torch.device, replays: int = 5) -> None:
    replay = bench.graphed_calls({label: call}, sets, device)[label]
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    spans = []
    for _ in range(20):
        start.record()
        replay(sets[0])
        end.record()
        end.synchronize()
        spans.append(start.elapsed_time(end) * 1e3)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            replay(sets[0])
        torch.cuda.synchronize()
    kernels = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA),
                     key=lambda e: e.time_range.start)
    per = len(kernels) // replays
    last = kernels[-per:] if per else []
    if not last:
        print("   graph: no kernels recorded")
        return
    busy = sum(e.time_range.elapsed_us() for e in last)
    span = last[-1].time_range.end - last[0].time_range.start
    print(f"   graph replay {sorted(spans)[len(spans) // 2]:.1f} us (events); one replay's kernels:"
          f" span {span:.1f} us, busy {busy:.1f} us, gaps {span - busy:.1f} us over {per - 1}")
    previous = last[0].time_range.start
    for e in last:
        gap = e.time_range.start - previous
        print(f"     +{e.time_range.start - last[0].time_range.start:7.1f}  gap {gap:5.1f}"
              f"  {e.time_range.elapsed_us():6.1f} us  {e.name[:80]}")
        previous = e.time_range.end


if __name__ == "__main__":
    main()
