#!/usr/bin/env bash
# one-off (untracked)
set -uo pipefail
S=vae_k4s2p1_64to64,vae_k3s2p1op1_128to64,unet3d_up_k2s2_128to64,k5s2p2op1_64to32,grouped_k4s2p1_g4_128to128,big_unet_k2s2_64to32_256cube,big_vae_video,dilated_k3s2p2d2,aniso_stride_k311,vae_k4s2p1_128to128,bottleneck
echo "== ab strided halo"; timeout 150 python3 benchmarks/kernel_ab.py --only $S --policies auto,wgmma_halo,wgmma_boxes --dtypes bf16 --passes fwd --iters 10 --out $OUT/ab_halo.json > $OUT/ab_halo.md 2>$OUT/ab_halo.err; tail -3 $OUT/ab_halo.md
echo "== quick"; timeout 90 python3 benchmarks/bench.py --quick --passes fwd,fwdbwd,dgrad,wgrad --out $OUT/quick > /dev/null 2>$OUT/quick.err; tail -2 $OUT/quick.err
