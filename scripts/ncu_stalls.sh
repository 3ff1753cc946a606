#!/usr/bin/env bash
# Where one kernel's warps stall: Nsight Compute's full set for one launch of
# a benchmark case's pass, then the stall reasons (cycles per issued
# instruction, by reason) and the SASS lines with the most stall samples.
#   bash scripts/ncu_stalls.sh vae_k3s2p1op1_128to64 bf16 cl dgrad wgmma tensor_core_gemm_sm90
set -uo pipefail
cd "$(dirname "$0")/.."
case_=$1 dtype=$2 layout=$3 pass_=$4 policy=${5:-auto} regex=${6:-tconv3d}
OUT="${OUT:-build/ncu}"
mkdir -p "$OUT"
report="$OUT/stalls_${case_}_${dtype}_${layout}_${pass_}_${policy}"
timeout -s KILL 150 ncu --clock-control none --set full --import-source no -k "regex:$regex" \
    --launch-skip 6 --launch-count 1 -f -o "$report" \
    python3 scripts/profile_case.py "$case_" "$dtype" "$layout" "$pass_" "$policy" >"$report.log" 2>&1
ncu -i "$report.ncu-rep" --page raw --csv >"$report.raw.csv" 2>&1
ncu -i "$report.ncu-rep" --page source --csv --print-source sass >"$report.sass.csv" 2>&1
python3 - "$report.raw.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
names, values = rows[0], rows[2] if len(rows) > 2 else rows[-1]
stalls = [(n, v) for n, v in zip(names, values)
          if n.startswith("smsp__average_warps_issue_stalled_") and n.endswith("_per_issue_active.ratio")]
for n, v in sorted(stalls, key=lambda t: -float(t[1] or 0))[:12]:
    print(f"{float(v or 0):8.2f}  {n}")
# What bounds it beside the stalls: time, issue, tensor pipe, shared memory.
wanted = ("gpu__time_duration.sum", "sm__cycles_elapsed.avg", "smsp__issue_active.avg.pct_of_peak",
          "sm__pipe_tensor_op_gmma_cycles_active.avg.pct", "sm__inst_executed_pipe_tensor",
          "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum", "l1tex__data_bank_conflicts_pipe_lsu_mem_shared",
          "smsp__inst_executed.sum", "lts__t_sectors.sum", "sm__warps_active.avg.pct_of_peak",
          "l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct", "dram__bytes_read.sum",
          "dram__bytes_write.sum", "dram__throughput.avg.pct_of_peak_sustained_elapsed",
          "lts__throughput.avg.pct_of_peak_sustained_elapsed")
for n, v in zip(names, values):
    if n.startswith(wanted):
        print(f"{v:>14}  {n}")
PY
python3 scripts/sass_stalls.py "$report.sass.csv" 30
