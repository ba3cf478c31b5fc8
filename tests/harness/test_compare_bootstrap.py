"""The circular block bootstrap of `certify compare`: a host stall is one event, a shift is a regression."""

from __future__ import annotations

import itertools

import numpy as np

from harness.compare import NO_CHANGE, REGRESSION, _latency_figures
from harness.compare_bootstrap import block_length, circular_block_indices, quantile_ratio_interval
from harness.compare_rules import RegressionRules

RULES = RegressionRules()
RATE = 50  # requests per second, as a ci load profile


def run(seed: int, seconds: int = 60, stall_at: float | None = None, scale: float = 1.0) -> list[float]:
    """Latencies (ms) of one run in time order: ~4 ms each, times `scale`, plus a 1-s stall if asked."""
    rng = np.random.default_rng(seed)
    times = np.arange(seconds * RATE) / RATE
    values = rng.gamma(4.0, 1.0, size=len(times)) * scale
    if stall_at is not None:
        inside = (times >= stall_at) & (times < stall_at + 1.0)
        values[inside] += np.linspace(300.0, 10.0, int(inside.sum()))  # the queue drains after the stall
    return [float(v) for v in values]


def test_block_length_is_block_s_at_the_mean_rate() -> None:
    """One second of samples at 50/s is a block of 50; block_s 0 or a single sample is the iid case."""
    times = [i / RATE for i in range(3000)]
    assert block_length(times, 1.0) == 50
    assert block_length(times, 0.0) == 1
    assert block_length([0.0], 1.0) == 1


def test_circular_blocks_are_consecutive_and_wrap() -> None:
    """Every resample has n indices made of runs of consecutive indices modulo n."""
    idx = circular_block_indices(np.random.default_rng(1), n=10, reps=5, length=4)
    assert idx.shape == (5, 10)
    for row in idx:
        for start in range(0, 8, 4):
            block = row[start : start + 4]
            assert all((b - a) % 10 == 1 for a, b in itertools.pairwise(block))


def test_one_stall_is_not_a_p99_regression_in_blocks_but_is_one_by_one() -> None:
    """A 1-s stall in the new run fills its p99: resampled one by one it looks like a regression, in blocks not."""
    base, new = run(1), run(2, stall_at=30.0)
    iid = {f.name: f.verdict for f in _latency_figures("x", base, new, RULES, (1, 1))}
    blocked = {f.name: f.verdict for f in _latency_figures("x", base, new, RULES, (RATE, RATE))}
    assert iid["x p99"] == REGRESSION
    assert blocked["x p99"] == NO_CHANGE


def test_a_shift_through_the_whole_run_stays_a_regression_in_blocks() -> None:
    """An endpoint made 2x slower throughout (4 -> 8 ms p50, ~9 -> 18 ms p99) is still caught with blocks."""
    figures = {f.name: f for f in _latency_figures("x", run(3), run(4, scale=2.0), RULES, (RATE, RATE))}
    assert figures["x p90"].verdict == REGRESSION
    assert figures["x p99"].verdict == REGRESSION


def test_intervals_are_seeded() -> None:
    """The same samples and seed give the same interval."""
    b, n = np.asarray(run(5)), np.asarray(run(6))
    kwargs = {"confidence": 0.95, "resamples": 400, "seed": 9, "base_block": 50, "new_block": 50}
    assert quantile_ratio_interval(b, n, (0.5, 0.99), **kwargs) == quantile_ratio_interval(b, n, (0.5, 0.99), **kwargs)
