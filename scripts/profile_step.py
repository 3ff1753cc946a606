"""Where a training step's time goes: torch.profiler over a few steps of one
benchmark case (or several, comma-separated: one process, one GPU call), ours and
cuDNN's, GPU kernel time against wall time.

    python3 scripts/profile_step.py unet3d_up_k2s2_128to64,bottleneck_k3s2p1op1_512to256_b1 bf16 cl [pass]

The pass is bench.py's (fwd, fwdbwd, dgrad, wgrad; fwdbwd, the training step, by default).
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
    names, dtype_name, layout = sys.argv[1:4]
    pass_ = sys.argv[4] if len(sys.argv) > 4 else "fwdbwd"
    for name in names.split(","):
        profile(name, dtype_name, layout, pass_)


def profile(name: str, dtype_name: str, layout: str, pass_: str) -> None:
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


if __name__ == "__main__":
    main()
