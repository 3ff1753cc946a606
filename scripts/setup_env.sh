# Sourced by scripts/test.sh and scripts/bench.sh: picks a Python that has
# torch (creating .venv with torch 2.14.1 when none has it), and builds
# tconv3d into it.  Works offline wherever torch is already installed.
#
#   PYTHON=...               interpreter to try first (default python3)
#   TCONV3D_FORCE_CUDA=1     build the CUDA kernels even without a visible GPU
#   TORCH_CUDA_ARCH_LIST     GPU targets (setup.py defaults to 9.0 + visible GPUs)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
mkdir -p build

PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv with torch 2.14.1"
    python3 -m venv .venv
  fi
  PY="$ROOT/.venv/bin/python"
  if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q "torch==2.14.1"
  fi
fi

# Test/build tools, only where missing (offline machines already have them).
missing=()
for module in pytest ninja numpy setuptools; do
  "$PY" -c "import $module" >/dev/null 2>&1 || missing+=("$module")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  "$PY" -m pip install -q "${missing[@]}"
fi

# Compile caches: ccache through its compiler links, nvcc through PYTORCH_NVCC.
if command -v ccache >/dev/null 2>&1; then
  [ -d /usr/lib/ccache ] && export PATH="/usr/lib/ccache:$PATH"
  export PYTORCH_NVCC="${PYTORCH_NVCC:-ccache nvcc}"
fi
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

echo "== building tconv3d with $("$PY" -c 'import torch; print("torch", torch.__version__)')" \
     "(CUDA kernels: ${TCONV3D_FORCE_CUDA:-auto}, archs: ${TORCH_CUDA_ARCH_LIST:-default})"
start=$SECONDS
if ! "$PY" -m pip install --no-build-isolation --no-deps -v -e . >build/pip-build.log 2>&1; then
  tail -n 60 build/pip-build.log
  echo "build failed; full log in build/pip-build.log" >&2
  exit 1
fi
bash "$ROOT/scripts/refuse_serialized_wgmma.sh" build/pip-build.log || exit 1
echo "== built in $((SECONDS - start)) s ($("$PY" -c 'import tconv3d; print("CUDA kernels" if tconv3d._C.with_cuda else "CPU only")'))"
