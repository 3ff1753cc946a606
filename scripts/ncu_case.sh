#!/usr/bin/env bash
# Profile our kernels in one benchmark case's pass with Nsight Compute (clocks as the card
# runs them).  Writes $OUT/ncu_<case>_<dtype>_<layout>_<pass>_<policy>.txt.
#   bash scripts/ncu_case.sh unet3d_up_k2s2_256to128 bf16 cl wgrad [policy] [kernel-regex]
set -uo pipefail
cd "$(dirname "$0")/.."
case_=$1 dtype=$2 layout=$3 pass_=$4 policy=${5:-auto} regex=${6:-tconv3d}
OUT="${OUT:-build/ncu}"
mkdir -p "$OUT"
log="$OUT/ncu_${case_}_${dtype}_${layout}_${pass_}_${policy}.txt"
timeout -s KILL 120 ncu --clock-control none --kernel-name-base demangled -k "regex:$regex" --launch-skip 6 --launch-count 4 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \
    --section LaunchStats --section WarpStateStats --section SchedulerStats \
    python3 scripts/profile_case.py "$case_" "$dtype" "$layout" "$pass_" "$policy" >"$log" 2>&1
grep -E "^  [a-z_].*\(|Duration|Memory Throughput|DRAM Throughput|L2 Cache Throughput|L1/TEX Cache Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Block Limit|Issued Warp|No Eligible|Warp Cycles Per Issued|Grid Size|Dynamic Shared" "$log" | head -60
