"""benchmarks/merge_tables.py: the summary over several bench.py tables, later rows replacing
earlier ones, read back from the markdown bench.py writes."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench  # noqa: E402
import merge_tables  # noqa: E402


def row(case, dtype, layout, pass_, speedup, flags=()):
    return {"case": case, "dtype": dtype, "layout": layout, "pass": pass_, "ms_ours": 0.1,
            "ms_cudnn": 0.1 * speedup, "ms_cudnn_best": 0.1 * speedup, "speedup": speedup,
            "speedup_best": speedup, "tflops_ours": 1.0, "tflops_cudnn": 1.0, "gbs_ours": 1.0,
            "pct_flop_ceiling": 1.0, "pct_copy_ceiling": 1.0, "err": 1e-3, "flags": list(flags),
            "notes": []}


def write_table(path, rows):
    path.write_text("# a report\n\n" + bench.markdown_table(rows, "cuDNN") + "\n\n## Summary\n\n" +
                    bench.markdown_summary(bench.summarize(rows)) + "\n")


def test_later_rows_replace_earlier_ones(tmp_path):
    old = [row("a", "bf16", "cl", "fwd", 0.5), row("b", "bf16", "cl", "fwd", 2.0, ["2x"]),
           row("a", "tf32", "cl", "fwd", 1.5)]
    new = [row("a", "bf16", "cl", "fwd", 1.25)]
    write_table(tmp_path / "old.md", old)
    write_table(tmp_path / "new.md", new)
    merged = merge_tables.merge([str(tmp_path / "old.md"), str(tmp_path / "new.md")])
    expected = bench.summarize([new[0], old[1], old[2]])
    assert bench.summarize(merged) == expected
    bf16 = next(s for s in expected if s["dtype"] == "bf16")
    assert bf16["min_case"] == "a" and bf16["flagged"] == 1
    assert abs(bf16["geomean_speedup"] - (1.25 * 2.0) ** 0.5) < 1e-12


def test_a_line_range_reads_only_its_tables(tmp_path):
    write_table(tmp_path / "t.md", [row("a", "bf16", "cl", "dgrad", 0.8)])
    text = (tmp_path / "t.md").read_text().splitlines()
    padded = tmp_path / "padded.md"
    padded.write_text("\n".join(text + ["", "prose"] + text).replace("0.80x", "0.90x", 1) + "\n")
    first = f"{padded}:1-{len(text)}"
    assert [r["speedup"] for r in merge_tables.merge([first])] == [0.9]
    assert [r["speedup"] for r in merge_tables.merge([str(padded)])] == [0.8]
