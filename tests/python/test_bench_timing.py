"""The benchmark's call orders (benchmarks/bench.py): what each timed call follows decides
whether its CUDA events also time its host work, so the orders must not favour anyone."""
import itertools
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench  # noqa: E402


@pytest.mark.parametrize("n", range(1, 8))
def test_call_orders_balance_positions_and_predecessors(n):
    orders = bench.call_orders(n)
    assert all(sorted(order) == list(range(n)) for order in orders)
    positions = Counter((x, p) for order in orders for p, x in enumerate(order))
    assert set(positions.values()) == {len(orders) // n}
    if n > 1:
        follows = Counter((a, b) for order in orders for a, b in zip(order, order[1:]))
        assert set(follows) == set(itertools.permutations(range(n), 2))
        assert len(set(follows.values())) == 1


def test_two_implementations_alternate():
    """bench.py's own case (ours, cuDNN): the orders alternate, as the rotation did."""
    assert bench.call_orders(2) == [[0, 1], [1, 0]]


def test_graph_timing_needs_a_cuda_device():
    """--graphs times CUDA-graph replays; on the CPU path it is refused, not ignored."""
    with pytest.raises(SystemExit):
        bench.parse_args(["--device", "cpu", "--graphs"])
    assert bench.parse_args(["--device", "cpu"]).graphs is False
