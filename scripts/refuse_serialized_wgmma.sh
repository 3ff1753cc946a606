#!/usr/bin/env bash
# Fails when a build log shows ptxas serializing a kernel's wgmmas (its
# C7514 note: other instructions touch the accumulators between the MMAs'
# issue and their wait).  The kernel stays correct and quietly loses 10-30 %
# (the grad-weight's epilogue loop at 8d22af2: RESULTS.md), so a build that
# does it is refused rather than shipped.
#   bash scripts/refuse_serialized_wgmma.sh build/pip-build.log
set -uo pipefail
log=$1
if grep -q "C7514" "$log"; then
  grep -o "C7514.*function '[^']*'" "$log" | sort -u | head -20 >&2
  echo "ptxas serialized the wgmmas of the kernels above (C7514); see $log" >&2
  exit 1
fi
