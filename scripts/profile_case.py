"""Run one benchmark case's pass a few times, for `ncu` to profile (ncu -k <kernel regex>).

    ncu --clock-control none -k regex:grad_weight --launch-skip 2 --launch-count 1 \
        python3 scripts/profile_case.py unet3d_up_k2s2_256to128 bf16 cl wgrad
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench  # noqa: E402
import tconv3d  # noqa: E402


def main() -> None:
    name, dtype_name, layout, pass_ = sys.argv[1:5]
    policy = sys.argv[5] if len(sys.argv) > 5 else "auto"
    case = bench.cuda_case(name)
    device = torch.device("cuda")
    with bench.torch_settings(dtype_name, cudnn_benchmark=False):
        dtype = bench.DTYPES[dtype_name]
        sets = bench.make_input_sets(case, dtype, layout == "cl", pass_, device, 1, seed=0)
        call = bench.make_call(tconv3d.conv_transpose3d, case, pass_)
        bench.force_kernel(policy)
        for _ in range(8):
            call(sets[0])
        torch.cuda.synchronize()
        print(name, dtype_name, layout, pass_, policy, tconv3d._C._last_cuda_kernels())


if __name__ == "__main__":
    main()
