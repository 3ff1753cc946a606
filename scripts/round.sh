set -u
python3 -X faulthandler -c "
import tconv3d
for f, a in ((tconv3d._C._set_kernel_policy, ('bogus',)), (tconv3d._C._set_grad_weight_tile, (32, 64))):
    try:
        f(*a); print('no raise', f)
    except Exception as e:
        print('raised', type(e).__name__, str(e)[:80])
" 2>&1 | tail -5
mkdir -p $OUT/ncu
OUT=$OUT/ncu timeout 200 ncu --clock-control none --kernel-name-base demangled --launch-skip 60 --launch-count 40 --section SpeedOfLight python3 scripts/profile_case.py unet3d_up_k2s2_128to64 bf16 cl fwdbwd > $OUT/ncu/fwdbwd_unet128.txt 2>&1
grep -E "^  [a-zA-Z_].*\(|Duration" $OUT/ncu/fwdbwd_unet128.txt | sed -E 's/\(ConvTr.*|\(const.*|\(Kernel.*|\(at::.*//' | paste - - | awk '{print $NF, $0}' | cut -c1-200 | head -40
cd $OUT && tar czf ncu.tgz ncu && rm -rf ncu
