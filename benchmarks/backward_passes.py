"""Each backward pass on its own against cuDNN's matching pass (aten.convolution_backward
asked for one gradient), on the first ten cases of cases.json, TF32 and bf16, NCDHW.

    python benchmarks/backward_passes.py
"""
import json, math, statistics, torch, tconv3d
cases = json.load(open("benchmarks/cases.json"))["cases"][:10]
def t(fn, iters=10):
    for _ in range(2): fn()
    ts = []
    for _ in range(iters):
        s, e = torch.cuda.Event(True), torch.cuda.Event(True); s.record(); fn(); e.record(); e.synchronize(); ts.append(s.elapsed_time(e))
    return statistics.median(ts)
torch.backends.cudnn.allow_tf32 = True
ratios = {}
print(f"{'case':28s} dtype | gi ours cudnn x | gw ours cudnn x")
for c in cases:
    for dt in (torch.float32, torch.bfloat16):
        x = torch.randn(c["batch"], c["in_channels"], *c["input_size"], device="cuda", dtype=dt)
        w = torch.randn(c["in_channels"], c["out_channels"] // c["groups"], *c["kernel"], device="cuda", dtype=dt)
        g = [c["stride"], c["padding"], c["output_padding"], c["groups"], c["dilation"]]
        y = tconv3d.conv_transpose3d(x, w, None, *g); gy = torch.randn_like(y)
        def cud(mask): return torch.ops.aten.convolution_backward(gy, x, w, None, c["stride"], c["padding"], c["dilation"], True, c["output_padding"], c["groups"], mask)
        gi = (t(lambda: torch.ops.tconv3d.grad_input(gy, w, list(x.shape), *g)), t(lambda: cud([True, False, False])))
        gw = (t(lambda: torch.ops.tconv3d.grad_weight(gy, x, list(w.shape), *g)), t(lambda: cud([False, True, False])))
        for k, v in (("gi", gi), ("gw", gw)): ratios.setdefault((k, str(dt)), []).append(v[1] / v[0])
        print(f"{c['name']:28s} {str(dt)[6:]:8s} | {gi[0]:7.3f} {gi[1]:7.3f} {gi[1]/gi[0]:5.2f} | {gw[0]:7.3f} {gw[1]:7.3f} {gw[1]/gw[0]:5.2f}", flush=True)
for k, v in ratios.items(): print(k, "geomean speed-up", round(math.exp(sum(map(math.log, v)) / len(v)), 3), "min", round(min(v), 3))
