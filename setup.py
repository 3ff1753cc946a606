"""Build of tconv3d: the CUDA extension when CUDA can be compiled, else CPU only.

Environment:
  TCONV3D_FORCE_CUDA=1   build the CUDA kernels even where no GPU is visible (CI)
  TORCH_CUDA_ARCH_LIST   GPU targets; default 9.0 plus the visible GPUs' own (9.0 is built
                         as 9.0a: the Hopper kernels need sm_90a code, which every
                         compute-capability-9.0 GPU runs)
  TCONV3D_PTXAS_VERBOSE=1  print the compiler's register/shared-memory report
  PYTORCH_NVCC="ccache nvcc", CXX="ccache g++"  cache compilations
"""
import glob
import os
import shutil


def _cuda_home_from_nvcc():
    # nvcc on the PATH may be a link or a wrapper script outside the toolkit
    # (/usr/local/bin/nvcc); torch would then take /usr/local for CUDA_HOME and
    # miss the headers.  Pick the first candidate that has them.
    if "CUDA_HOME" in os.environ or "CUDA_PATH" in os.environ:
        return
    nvcc = shutil.which("nvcc")
    candidates = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))] if nvcc else []
    candidates.append("/usr/local/cuda")
    for home in candidates:
        if os.path.exists(os.path.join(home, "include", "cuda_runtime_api.h")):
            os.environ["CUDA_HOME"] = home
            return


_cuda_home_from_nvcc()

import torch  # noqa: E402
from setuptools import setup  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension, CUDA_HOME  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))


def cuda_wanted() -> bool:
    if os.environ.get("TCONV3D_FORCE_CUDA", "0") == "1":
        return True
    has_nvcc = CUDA_HOME is not None or shutil.which("nvcc") is not None
    return torch.version.cuda is not None and has_nvcc and torch.cuda.is_available()


def default_arch_list() -> str:
    archs = {"9.0"}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            archs.add(f"{major}.{minor}")
    return ";".join(sorted(archs))


def with_sm90a(arch_list: str) -> str:
    """9.0 → 9.0a (keeping +PTX): the wgmma kernels exist only in sm_90a code.
    Plain sm_90 code beside it would leave the loader a choice of two."""
    entries = [e for e in arch_list.replace(" ", ";").split(";") if e]
    return ";".join(dict.fromkeys("9.0a" + e[3:] if e.split("+")[0] == "9.0" else e for e in entries))


def sources(pattern: str) -> list:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def extension():
    cxx_flags = ["-O3"]
    common = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp")
    if not cuda_wanted():
        return CppExtension("tconv3d._C", common, extra_compile_args={"cxx": cxx_flags})
    archs = with_sm90a(os.environ.get("TORCH_CUDA_ARCH_LIST") or default_arch_list())
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    macros = [("TCONV3D_WITH_CUDA", None)]
    if "9.0a" in [e.split("+")[0] for e in archs.split(";")]:
        macros.append(("TCONV3D_WITH_SM90A", None))
    nvcc_flags = ["-O3", "-lineinfo", "--expt-relaxed-constexpr"]
    if os.environ.get("TCONV3D_PTXAS_VERBOSE") == "1":
        nvcc_flags.append("-Xptxas=-v")
    return CUDAExtension(
        "tconv3d._C",
        common + sources("csrc/cuda/*.cpp") + sources("csrc/cuda/*.cu"),
        define_macros=macros,
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
    )


setup(
    name="tconv3d",
    version="0.1.0",
    description="Fast, deterministic 3-D transposed convolution for PyTorch",
    package_dir={"": "python"},
    packages=["tconv3d"],
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.9",
    install_requires=["torch>=2.4"],
)
