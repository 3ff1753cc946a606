set -u
python3 benchmarks/bench.py --quick --dtypes bf16,tf32 --layouts cl,ncdhw --passes fwd,fwdbwd,dgrad,wgrad --iters 20 --warmup 3 --out $OUT/all >/dev/null
grep -A20 "^## Summary" $OUT/all/results.md
grep "small_ch" $OUT/all/results.md | cut -d'|' -f2-9 | grep -E "wgrad|fwdbwd"
