#!/usr/bin/env bash
# Every test of tconv3d, from a fresh clone: environment, build, the C++
# (GoogleTest) suite, then the Python (pytest) suite.  CUDA tests skip where
# there is no GPU.  Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"

# GoogleTest: install it where the system lacks it and we may (CI machines).
if [ ! -f /usr/include/gtest/gtest.h ] && [ ! -d /usr/src/googletest ] && command -v apt-get >/dev/null \
   && [ "$(id -u)" = 0 ]; then
  echo "== installing libgtest-dev"
  (apt-get update -qq && apt-get install -y -qq libgtest-dev cmake) >build/apt.log 2>&1 || true
fi

echo "== C++ suite"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
cmake -S . -B build/cpp "${generator[@]}" -DPython3_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release >build/cmake.log
cmake --build build/cpp -j "$MAX_JOBS"
ctest --test-dir build/cpp --output-on-failure

echo "== Python suite"
"$PY" -m pytest tests/python -q "$@"
