"""`certify compare`: statistics on two packs' raw samples, classed under the policy's rules (harness/compare.py)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.compare import (
    IMPROVEMENT,
    NO_CHANGE,
    NOT_COMPARED,
    REGRESSION,
    _error_figure,
    _latency_figures,
    _single_figure,
)
from harness.compare_rules import RegressionRules
from tests.conftest import FIXTURE_TARGETS, commit_all, git

RULES = RegressionRules()


def samples(seed: int, scale_ms: float, n: int = 1500) -> list[float]:
    """Latency-like samples: 1 ms floor plus an exponential tail."""
    return list(1.0 + np.random.default_rng(seed).exponential(scale_ms, n))


def test_a_doubled_latency_is_a_regression_that_blocks_at_p90_and_p99() -> None:
    """Twice the latency: every quantile is a regression, and p90 and p99 (the forbidden ones) block."""
    figures = _latency_figures("G2 P1 page", samples(1, 10.0), samples(2, 20.0), RULES)
    assert [f.verdict for f in figures] == [REGRESSION] * 3
    assert [f.blocks for f in figures] == [False, True, True]
    assert figures[2].interval is not None
    assert figures[2].interval[0] > 1.2


def test_two_draws_of_one_distribution_are_no_change_nine_times_in_ten() -> None:
    """Noise control: ten pairs of draws of the same distribution give no regression in at least nine."""
    clean = 0
    for seed in range(10):
        figures = _latency_figures("G2 P1 page", samples(100 + seed, 5.0), samples(200 + seed, 5.0), RULES)
        clean += all(f.verdict == NO_CHANGE for f in figures)
    assert clean >= 9


def test_a_faster_service_is_an_improvement_and_too_few_samples_are_not_compared() -> None:
    """Half the latency is an improvement; 10 samples a side are not compared at all."""
    assert {f.verdict for f in _latency_figures("x", samples(3, 20.0), samples(4, 10.0), RULES)} == {IMPROVEMENT}
    few = _latency_figures("x", samples(5, 5.0, n=10), samples(6, 5.0, n=10), RULES)
    assert {f.verdict for f in few} == {NOT_COMPARED}
    assert "needs 30 a side" in few[0].why
    some = _latency_figures("x", samples(7, 5.0, n=500), samples(8, 5.0, n=500), RULES)
    assert [f.verdict for f in some] == [NO_CHANGE, NO_CHANGE, NOT_COMPARED]  # p99 needs 1,000 samples a side
    assert "needs 1000 a side" in some[2].why


def test_a_few_milliseconds_doubled_is_significant_but_below_the_minimum_effect() -> None:
    """A 1.2 ms service at twice its latency (a busy shared machine does that) is not a regression: under 5 ms."""
    figures = _latency_figures("G2 P3 dependency", samples(11, 0.6), samples(12, 1.2), RULES)
    assert {f.verdict for f in figures} == {NO_CHANGE}
    assert all("below the minimum effect" in f.why for f in figures)


def test_error_rate_regression_needs_significance_and_the_minimum_rise() -> None:
    """0 of 1000 -> 30 of 1000 is a regression; 5 -> 6 of 1000 is no significant change."""
    assert _error_figure("P1", (0, 1000), (30, 1000), RULES).verdict == REGRESSION
    assert _error_figure("P1", (0, 1000), (30, 1000), RULES).blocks
    assert _error_figure("P1", (5, 1000), (6, 1000), RULES).verdict == NO_CHANGE
    assert _error_figure("P1", (30, 1000), (0, 1000), RULES).verdict == IMPROVEMENT


def test_the_coverage_ratchet_fails_a_one_point_drop() -> None:
    """Overall coverage 91.0 -> 90.0 drops one point: a regression that blocks; 91.0 -> 90.7 does not."""
    spec = ("G1", "overall line coverage", "coverage", True)
    assert _single_figure(spec, (91.0, 90.0), "%", RULES).blocks
    assert _single_figure(spec, (91.0, 90.7), "%", RULES).verdict == NO_CHANGE
    slower = _single_figure(("G7", "bootstrap total", "duration", False), (20.0, 45.0), "s", RULES)
    assert slower.verdict == REGRESSION
    assert not slower.blocks  # durations are reported, not forbidden, by default
    assert "no interval" in slower.why


def short_load_target(tmp_path: Path, delay_ms: int) -> Path:
    """A committed copy of load-ok whose page request waits delay_ms and whose profiles last 3 s each."""
    target = tmp_path / f"load-{delay_ms}"
    shutil.copytree(FIXTURE_TARGETS / "load-ok", target)
    toml = target / "certify.toml"
    text = re.sub(r"ci_duration_s = \d+", "ci_duration_s = 3", toml.read_text(encoding="utf-8"))
    toml.write_text(text.replace('path = "/fast"', f'path = "/delay?ms={delay_ms}"'), encoding="utf-8")
    git(target, "init", "-q")
    git(target, "config", "user.name", "Certify Tests")
    git(target, "config", "user.email", "certify-tests@example.invalid")
    commit_all(target, "fixture target")
    return target


def test_rules_refuse_an_unknown_kind_and_a_blocking_quantile_not_compared() -> None:
    """A policy's [regression] table naming an unknown kind, or a blocking quantile it does not compare, is refused."""
    from pydantic import ValidationError  # noqa: PLC0415

    with pytest.raises(ValidationError, match="unknown kind"):
        RegressionRules(forbid=("vibes",))
    with pytest.raises(ValidationError, match="forbid_quantiles"):
        RegressionRules(quantiles=(0.5,), forbid_quantiles=(0.99,))
