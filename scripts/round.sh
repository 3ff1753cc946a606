set -u
python3 benchmarks/bench.py --quick --passes wgrad --dtypes bf16,tf32 --layouts cl,ncdhw --iters 20 --warmup 3 --out $OUT/wgrad >/dev/null
grep "| wgrad |" $OUT/wgrad/results.md | cut -d'|' -f2-9,20-21
grep -A8 "^## Summary" $OUT/wgrad/results.md
mkdir -p $OUT/ncu
for c in "unet3d_up_k2s2_256to128 bf16 cl wgrad" "k3s1p1_32to32 bf16 cl wgrad" "vae_k3s2p1op1_128to64 tf32 cl wgrad"; do OUT=$OUT/ncu bash scripts/ncu_case.sh $c >/dev/null; done
cd $OUT && tar czf ncu.tgz ncu wgrad && rm -rf ncu wgrad
