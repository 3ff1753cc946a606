#!/usr/bin/env bash
# Benchmark of tconv3d against torch (cuDNN on a GPU, torch's CPU kernels
# otherwise), from a fresh clone.  Extra arguments go to benchmarks/bench.py.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
"$PY" benchmarks/bench.py "$@"
