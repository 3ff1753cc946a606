set -u
which gdb && gdb -batch -ex run -ex bt --args python3 -c "import tconv3d; tconv3d._C._set_kernel_policy('bogus')" 2>&1 | grep -E "^#|signal|Error" | head -25
python3 -c "
import tconv3d
try:
    tconv3d._C.output_shape([1,1,1,1,1],[1,1,5,5,5],[1],[3],[0],1,[1])
except Exception as e: print('output_shape raised', type(e).__name__)
" 2>&1 | tail -2
for L in cl ncdhw; do python3 scripts/profile_step.py unet3d_up_k2s2_128to64 bf16 $L 2>&1 | grep -v Warning | head -20; done
python3 benchmarks/bench.py --quick --dtypes bf16,tf32 --layouts cl,ncdhw --passes fwd,fwdbwd,dgrad,wgrad --iters 20 --warmup 3 --out $OUT/all >/dev/null
grep -A20 "^## Summary" $OUT/all/results.md
