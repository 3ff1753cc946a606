"""Is a pass bound by the host or by the GPU?  For one benchmark case, ours and cuDNN's:

  host   — seconds per call spent on the CPU (the calls are queued behind a long sleep kernel,
           so no launch waits for the GPU);
  eager  — CUDA-event time per call, back to back, as bench.py measures it;
  graph  — the same calls captured once in a CUDA graph and replayed: GPU time with no gaps.

eager ≈ host > graph means the GPU waits for the host.

    python3 scripts/host_time.py unet3d_up_k2s2_128to64 bf16 cl fwdbwd
"""
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench  # noqa: E402
import tconv3d  # noqa: E402

CALLS = 20


def host_seconds(call, s) -> float:
    torch.cuda._sleep(2_000_000_000)  # ~1 s of GPU work ahead of every launch below
    start = time.perf_counter()
    for _ in range(CALLS):
        call(s)
    seconds = (time.perf_counter() - start) / CALLS
    torch.cuda.synchronize()
    return seconds


def event_seconds(run) -> float:
    times = []
    for _ in range(5):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        run()
        end.record()
        torch.cuda.synchronize()
        times.append(begin.elapsed_time(end) / 1e3 / CALLS)
    return statistics.median(times)


def graph_seconds(call, s) -> float:
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        call(s)  # warm-up on the capture stream
        torch.cuda.synchronize()
        with torch.cuda.graph(graph, stream=stream):
            for _ in range(CALLS):
                call(s)
    torch.cuda.current_stream().wait_stream(stream)
    return event_seconds(graph.replay)


def main() -> None:
    name, dtype_name, layout, pass_ = sys.argv[1:5]
    case = bench.cuda_case(name)
    device = torch.device("cuda")
    with bench.torch_settings(dtype_name, cudnn_benchmark=False):
        s = bench.make_input_sets(case, bench.DTYPES[dtype_name], layout == "cl", pass_, device,
                                  1, seed=0)[0]
        for label, fn in (("tconv3d", tconv3d.conv_transpose3d), ("cuDNN", F.conv_transpose3d)):
            call = bench.make_call(fn, case, pass_)
            for _ in range(3):
                call(s)
            torch.cuda.synchronize()
            host = host_seconds(call, s)
            eager = event_seconds(lambda: [call(s) for _ in range(CALLS)])
            print(f"{label:8s} {name} {dtype_name} {layout} {pass_}: host {host * 1e3:.3f} ms, "
                  f"eager {eager * 1e3:.3f} ms per call", flush=True)
            try:
                replay = graph_seconds(call, s)
                print(f"{label:8s}   graph replay {replay * 1e3:.3f} ms per call", flush=True)
            except RuntimeError as error:  # capture can fail (e.g. a sync inside); say so
                print(f"{label:8s}   graph capture failed: {str(error).splitlines()[0]}", flush=True)


if __name__ == "__main__":
    main()
