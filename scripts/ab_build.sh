#!/usr/bin/env bash
# Same-machine A/B of the working tree against an older commit.  Between GPU machines small
# layers drift by ±15 %, which hides a round's changes (RESULTS.md, "Combine lanes round": a
# 2-3 us regression of the 256-channel grad-weights showed only this way).
#
#   here:  bash scripts/ab_build.sh prepare <commit>     # that commit's tree in ab_base/ (ignored)
#   GPU:   the device tool's run, carry ["ab_base"], command
#          export OUT; TCONV3D_COMMIT=<new> BENCH="bash scripts/ab_build.sh run --only unet3d \
#              --passes wgrad" bash scripts/gpu_session.sh > $OUT/session.log 2>&1
#
# run: this tree's bench.py --graphs with the given arguments, first on the build
# gpu_session.sh made of the working tree, then on ab_base/ installed over it; then
# compare_tables.py (new / base time, and cuDNN's own ratio: the run's noise).  Tables land in
# $OUT/ab/{new,base}; the machine is left with the base build.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
shift || true
case "$mode" in
  prepare)
    commit=${1:?usage: ab_build.sh prepare <commit>}
    rm -rf ab_base && mkdir ab_base && git archive "$commit" | tar -x -C ab_base || exit 1
    git rev-parse --short "$commit" > ab_base/AB_COMMIT
    echo "ab_base/ holds $(cat ab_base/AB_COMMIT): carry [\"ab_base\"] to the device run"
    ;;
  run)
    [ -d ab_base ] || { echo "no ab_base/: 'prepare <commit>' here, then carry it"; exit 1; }
    OUT="${OUT:-build/ab_build}"
    PY="${PYTHON:-python3}"
    mkdir -p "$OUT/ab"
    "$PY" benchmarks/bench.py --graphs "$@" --out "$OUT/ab/new" > /dev/null || exit 1
    (cd ab_base && TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" \
        "$PY" -m pip install --no-build-isolation --no-deps -e . > "$OUT/ab/base_build.log" 2>&1) ||
      { tail -n 20 "$OUT/ab/base_build.log"; echo "BASE BUILD FAILED"; exit 1; }
    # The same bench.py (this tree's cases and method) on the base build, which `import
    # tconv3d` now finds.
    TCONV3D_COMMIT="$(cat ab_base/AB_COMMIT)" "$PY" benchmarks/bench.py --graphs "$@" \
        --out "$OUT/ab/base" > /dev/null || exit 1
    echo "base $(cat ab_base/AB_COMMIT), new ${TCONV3D_COMMIT:-the working tree}"
    "$PY" benchmarks/compare_tables.py "$OUT/ab/base/results.md" "$OUT/ab/new/results.md"
    ;;
  *)
    sed -n 2,14p "$0"
    exit 2
    ;;
esac
