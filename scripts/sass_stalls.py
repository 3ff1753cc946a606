"""The SASS lines with the most warp-stall samples in an `ncu --page source --csv
--print-source sass` export (scripts/ncu_stalls.sh writes one), with their share.

    python3 scripts/sass_stalls.py build/ncu/stalls_<case>.sass.csv [lines]
"""
import csv
import sys


def main() -> None:
    rows = list(csv.reader(open(sys.argv[1])))
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    at = next((i for i, r in enumerate(rows) if any("Address" in c for c in r)
               and any(c.startswith("Warp Stall Sampling (All") for c in r)), None)
    if at is None:
        print("no header with Address and Warp Stall Sampling; the first rows:")
        for r in rows[:6]:
            print(r[:8])
        return
    head = rows[at]
    address = next(i for i, c in enumerate(head) if "Address" in c)
    source = next((i for i, c in enumerate(head) if c.strip() == "Source"), address + 1)
    stalls = next(i for i, c in enumerate(head) if c.startswith("Warp Stall Sampling (All"))
    executed = next((i for i, c in enumerate(head) if c.startswith("Instructions Executed")), None)

    def number(text: str) -> float:
        try:
            return float(text.replace(",", ""))
        except ValueError:
            return 0.0

    body = [r for r in rows[at + 1:] if len(r) > stalls]
    total = sum(number(r[stalls]) for r in body) or 1.0
    print(f"{len(body)} SASS lines, {total:.0f} stall samples")
    for r in sorted(body, key=lambda r: -number(r[stalls]))[:top]:
        runs = r[executed] if executed is not None else ""
        print(f"{100 * number(r[stalls]) / total:5.1f}%  {r[address]:>6}  {runs:>10}  {r[source][:100]}")


if __name__ == "__main__":
    main()
