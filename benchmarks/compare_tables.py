#!/usr/bin/env python3
"""Two builds' bench.py tables, row by row: the time of each case, dtype, layout and pass in
BASE and NEW, their ratio, and cuDNN's own ratio between the two runs.

    python benchmarks/compare_tables.py ab/base/results.md ab/new/results.md

Meant for two builds timed on one machine in one call (scripts/ab_build.sh): between machines
small layers drift by ±15 %, which hides the changes a round makes.  cuDNN's ratio is the run's
noise: a row whose time moved by no more than cuDNN's did not move.  Prints a markdown table,
then per dtype, layout and pass the geometric means of both ratios, of the time ratio with
cuDNN's divided out, and of the speed-ups.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import geometric_mean  # noqa: E402
from merge_tables import KEY, parse_tables, read_source  # noqa: E402


def compare(base: list[dict], new: list[dict]) -> list[dict]:
    """Rows present in both with both times, in NEW's order: new/base time and cuDNN's."""
    by_key = {tuple(r[k] for k in KEY): r for r in base}
    out = []
    for r in new:
        b = by_key.get(tuple(r[k] for k in KEY))
        if b is None or not (b["ms_ours"] and r["ms_ours"] and b["ms_cudnn"] and r["ms_cudnn"]):
            continue
        out.append({**{k: r[k] for k in KEY}, "base_ms": b["ms_ours"], "new_ms": r["ms_ours"],
                    "time_ratio": r["ms_ours"] / b["ms_ours"],
                    "cudnn_ratio": r["ms_cudnn"] / b["ms_cudnn"],
                    "base_speedup": b["speedup"], "new_speedup": r["speedup"]})
    return out


def geomean_ratios(rows: list[dict]) -> dict[tuple, dict[str, float]]:
    """Per dtype, layout and pass, geometric means: new/base time, cuDNN's new/base time
    (the run's drift), the time ratio with that drift divided out, and the speed-ups over
    cuDNN of base and of new."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dtype"], r["layout"], r["pass"]), []).append(r)

    def mean(rs, f):
        return geometric_mean([f(r) for r in rs])

    return {k: {"time": mean(rs, lambda r: r["time_ratio"]),
                "cudnn": mean(rs, lambda r: r["cudnn_ratio"]),
                "normalized": mean(rs, lambda r: r["time_ratio"] / r["cudnn_ratio"]),
                "base_speedup": mean(rs, lambda r: r["base_speedup"]),
                "new_speedup": mean(rs, lambda r: r["new_speedup"])}
            for k, rs in groups.items()}


def markdown(rows: list[dict]) -> str:
    lines = ["| case | dtype | layout | pass | base ms | new ms | new / base | cuDNN new / base "
             "| base speed-up | new speed-up |", "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['case']} | {r['dtype']} | {r['layout']} | {r['pass']} | "
                     f"{r['base_ms']:.4f} | {r['new_ms']:.4f} | {r['time_ratio']:.3f} | "
                     f"{r['cudnn_ratio']:.3f} | {r['base_speedup']:.2f}x | {r['new_speedup']:.2f}x |")
    lines += ["", "Geometric means; normalized = new/base time over cuDNN's new/base time.", "",
              "| dtype | layout | pass | new / base time | cuDNN new / base | normalized "
              "| speed-up base → new |", "|" + "---|" * 7]
    for (dtype, layout, pass_), g in geomean_ratios(rows).items():
        lines.append(f"| {dtype} | {layout} | {pass_} | {g['time']:.3f} | {g['cudnn']:.3f} | "
                     f"{g['normalized']:.3f} | {g['base_speedup']:.2f}x → {g['new_speedup']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    base, new = (parse_tables(read_source(a)) for a in argv)
    print(markdown(compare(base, new)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
