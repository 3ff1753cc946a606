"""Where a training step's time goes: torch.profiler over a few steps of one
benchmark case (or several, comma-separated: one process, one GPU call), ours and
cuDNN's, GPU kernel time against wall time.

    python3 scripts/profile_step.py unet3d_up_k2s2_128to64,bottleneck_k3s2p1op1_512to256_b1 bf16 cl [pass]

The pass is bench.py's (fwd, fwdbwd, dgrad, wgrad; fwdbwd, the training step, by default).
With --timeline, each side's step is also captured in a CUDA graph (as bench.py --graphs times
it) and one replay's kernels are listed in order with their gaps: a graph's span against the sum
of its kernels is the cost of the kernel boundaries.
"""
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench  # noqa: E402
import tconv3d  # noqa: E402


def main() -> None:
    timeline = "--timeline" in sys.argv[1:]
    args = [a for a in sys.argv[1:] if a != "--timeline"]
    names, dtype_name, layout = args[:3]
    pass_ = args[3] if len(args) > 3 else "fwdbwd"
    for name in names.split(","):
        profile(name, dtype_name, layout, pass_, timeline)


def profile(name: str, dtype_name: str, layout: str, pass_: str, timeline: bool) -> None:
    case = bench.cuda_case(name)
    device = torch.device("cuda")
    with bench.torch_settings(dtype_name, cudnn_benchmark=False):
        sets = bench.make_input_sets(case, bench.DTYPES[dtype_name], layout == "cl", pass_,
                                     device, 1, seed=0)
        for label, fn in (("tconv3d", tconv3d.conv_transpose3d), ("cuDNN", F.conv_transpose3d)):
            call = bench.make_call(fn, case, pass_)
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
            print(f"== {name} {dtype_name} {layout} {pass_} {label}: wall {wall:.3f} ms/step (profiled), GPU kernels {gpu:.3f} ms/step")
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
