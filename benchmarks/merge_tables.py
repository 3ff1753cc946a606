#!/usr/bin/env python3
"""bench.py's summary over several of its tables, newer rows replacing older ones.

    python benchmarks/merge_tables.py benchmarks/RESULTS.md:280-860 /tmp/s/results.md

A round that re-times only the layers it changed still reports against the targets over every
case: each argument is a markdown file holding bench.py tables (or a line range of one,
FILE:FIRST-LAST, 1-based and inclusive), read in order; a row replaces any earlier row of the
same case, dtype, layout and pass. Prints the merged rows' summary as bench.py writes it.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

KEY = ("case", "dtype", "layout", "pass")


def _number(cell: str) -> float | None:
    cell = cell.strip().rstrip("x")
    return None if cell in ("", "-") else float(cell)


def parse_tables(text: str) -> list[dict]:
    """The rows of every bench.py table in `text`: the columns summarize reads and both
    times (compare_tables.py reads those)."""
    rows, columns = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            columns = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:4] == list(KEY):
            columns = {name: i for i, name in enumerate(cells)}
        elif columns is not None and not set(line) <= set("|-: "):
            rows.append({"case": cells[0], "dtype": cells[1], "layout": cells[2], "pass": cells[3],
                         "ms_ours": _number(cells[columns["ours ms"]]),
                         # The reference's time (cuDNN's, or torch's on the CPU) follows ours.
                         "ms_cudnn": _number(cells[columns["ours ms"] + 1]),
                         "speedup": _number(cells[columns["speed-up"]]),
                         "speedup_best": _number(cells[columns["vs best"]]),
                         "flags": cells[columns["flags"]].split()})
    return rows


def read_source(source: str) -> str:
    path, _, span = source.partition(":")
    lines = Path(path).read_text().splitlines()
    if span:
        first, last = (int(x) for x in span.split("-"))
        lines = lines[first - 1:last]
    return "\n".join(lines)


def merge(sources: list[str]) -> list[dict]:
    merged: dict[tuple, dict] = {}
    for source in sources:
        for row in parse_tables(read_source(source)):
            merged[tuple(row[k] for k in KEY)] = row
    return list(merged.values())


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(bench.markdown_summary(bench.summarize(merge(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
