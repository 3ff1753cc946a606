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


def test_compare_tables_pairs_rows_and_reads_both_runs_times(tmp_path):
    """compare_tables.py: new/base time for the rows both tables hold, cuDNN's own ratio
    beside it (the run's noise), and per pass the geometric means of both ratios, of the
    time ratio with cuDNN's divided out, and of the speed-ups."""
    import compare_tables  # noqa: E402

    def timed(case, ms_ours, ms_cudnn):
        r = row(case, "bf16", "cl", "wgrad", ms_cudnn / ms_ours)
        r["ms_ours"], r["ms_cudnn"], r["ms_cudnn_best"] = ms_ours, ms_cudnn, ms_cudnn
        return r

    write_table(tmp_path / "base.md", [timed("a", 0.040, 0.030), timed("b", 0.020, 0.020),
                                       timed("only_base", 0.1, 0.1)])
    write_table(tmp_path / "new.md", [timed("b", 0.010, 0.022), timed("a", 0.030, 0.030),
                                      timed("only_new", 0.1, 0.1)])
    base, new = (merge_tables.parse_tables((tmp_path / f).read_text())
                 for f in ("base.md", "new.md"))
    rows = compare_tables.compare(base, new)
    assert [r["case"] for r in rows] == ["b", "a"]  # new's order, rows in both only
    b, a = rows
    assert abs(a["time_ratio"] - 0.75) < 1e-12 and abs(a["cudnn_ratio"] - 1.0) < 1e-12
    assert abs(b["time_ratio"] - 0.5) < 1e-12 and abs(b["cudnn_ratio"] - 1.1) < 1e-12
    summary, = compare_tables.geomean_ratios(rows).values()
    assert abs(summary["time"] - (0.75 * 0.5) ** 0.5) < 1e-12
    assert abs(summary["cudnn"] - 1.1 ** 0.5) < 1e-12
    assert abs(summary["normalized"] - (0.75 * 0.5 / 1.1) ** 0.5) < 1e-12
    # Speed-ups as the tables print them (two decimals): a 0.75 → 1.00, b 1.00 → 2.20.
    assert abs(summary["base_speedup"] - 0.75 ** 0.5) < 1e-9
    assert abs(summary["new_speedup"] - 2.2 ** 0.5) < 1e-9
    text = compare_tables.markdown(rows)
    assert "| a | bf16 | cl | wgrad | 0.0400 | 0.0300 | 0.750 | 1.000 |" in text
