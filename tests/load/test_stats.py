"""Tests for load/stats.py, load/schedule.py, load/profiles.py and load/charts.py: pure pieces of G2/G3."""

from __future__ import annotations

import gzip
import math
import random

import pytest

from load.charts import line_chart
from load.profiles import PROFILE_DEFAULTS, ArrivalShape, ProfilesTable, effective, planned_count
from load.schedule import plan_arrivals
from load.stats import (
    RawRow,
    latency_summary,
    nearest_rank,
    parse_raw,
    profile_stats,
    quantile_ci_ranks,
    wilson,
)


def row(kind: str, seq: int, times: tuple[float, float, float | None], *, ok: bool = True) -> RawRow:
    """A raw row with defaults for the fields a test does not care about."""
    planned, sent, end = times
    return RawRow(kind, seq, "r", planned, sent, end, "200" if ok else "500", ok, "" if ok else "HTTP 500")


def test_nearest_rank_is_exact_on_raw_samples() -> None:
    """Percentiles are order statistics of the raw samples, not bucketed values (Locust rounds 148.72 to 150)."""
    values = sorted([148.72, *range(1, 100)])
    assert nearest_rank(values, 0.99) == 99
    assert nearest_rank(values, 1.0) == 148.72
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert nearest_rank([5.0], 0.999) == 5.0


def test_p99_upper_bound_needs_enough_samples() -> None:
    """A 95% upper bound for p99 exists only from 368 samples on; below that the claim is INCONCLUSIVE."""
    assert quantile_ci_ranks(367, 0.99, 0.95)[1] is None
    lower, upper = quantile_ci_ranks(368, 0.99, 0.95)
    assert upper == 368
    assert lower is not None
    assert lower < 368


def test_p99_interval_covers_the_true_quantile() -> None:
    """Over many seeded samples of a known distribution the 95% interval covers the true p99 about 95% of the time."""
    rng = random.Random(7)
    true_p99 = -math.log(0.01)
    covered = 0
    trials = 300
    for _ in range(trials):
        values = sorted(rng.expovariate(1.0) for _ in range(1000))
        lower, upper = quantile_ci_ranks(1000, 0.99, 0.95)
        assert lower is not None
        assert upper is not None
        covered += values[lower - 1] <= true_p99 <= values[upper - 1]
    assert covered / trials >= 0.92


def test_wilson_bounds() -> None:
    """Wilson bounds match the textbook values and shrink with more trials."""
    low, high = wilson(0, 380, 0.95)
    assert low == 0.0
    assert high == pytest.approx(0.01, abs=0.0002)
    low, high = wilson(5, 100, 0.95)
    assert (round(low, 4), round(high, 4)) == (0.0215, 0.1118)
    assert wilson(0, 0, 0.95) == (0.0, 1.0)


def test_profile_stats_corrects_for_coordinated_omission() -> None:
    """Latency from the planned start includes the wait before sending; from the send it does not."""
    rows = [row("arrival", i, (i * 0.1, i * 0.1, i * 0.1 + 0.01)) for i in range(400)]
    rows.append(row("arrival", 400, (40.0, 41.0, 41.01)))
    stats = profile_stats(rows, 401, 0.0, 0.25, 0.95)
    assert stats["http"]["corrected_ms"]["max"] == pytest.approx(1010.0)
    assert stats["http"]["uncorrected_ms"]["max"] == pytest.approx(10.0)
    assert stats["delivery"]["late"] == 1
    assert stats["delivery"]["max_send_lag_ms"] == pytest.approx(1000.0)


def test_profile_stats_counts_drops_unfinished_and_warmup() -> None:
    """Drops lower the delivered ratio; unanswered requests are errors with a censored latency; warm-up is excluded."""
    rows = [row("arrival", i, (float(i), float(i), i + 0.005)) for i in range(10)]
    rows += [row("drop", 10, (10.0, 10.0, None), ok=False), row("unfinished", 11, (11.0, 11.0, 19.0), ok=False)]
    stats = profile_stats(rows, 12, 2.0, 0.25, 0.95)
    assert stats["delivery"]["sent"] == 11
    assert stats["delivery"]["dropped"] == 1
    assert stats["delivery"]["delivered_ratio"] == pytest.approx(11 / 12)
    assert stats["http"]["requests"] == 11
    assert stats["http"]["errors"] == 1
    assert stats["http"]["corrected_ms"]["n"] == 9
    assert stats["http"]["corrected_ms"]["max"] == pytest.approx(8000.0)


def test_parse_raw_reads_gzip_csv() -> None:
    """The raw CSV kept in the pack is read back compressed or not."""
    text = "kind,seq,request,planned_s,sent_s,end_s,status,ok,error\narrival,0,r,0.000000,0.001,0.011,200,1,\n"
    assert parse_raw(gzip.compress(text.encode())) == parse_raw(text.encode())
    assert parse_raw(text.encode())[0].end_s == 0.011


def test_latency_summary_without_samples() -> None:
    """No samples: no percentile, no interval (the gate says INCONCLUSIVE)."""
    summary = latency_summary([], 0.95)
    assert summary["n"] == 0
    assert summary["p99"] is None
    assert summary["p99_ci"] is None


def test_plans_follow_their_shapes() -> None:
    """Constant, ramp and spike plans have the planned counts; Poisson plans are seeded and reproducible."""
    mix = {"a": 1.0}
    assert len(plan_arrivals(ArrivalShape(kind="constant", rate_per_min=10), 900, mix)) == 150
    ramp = plan_arrivals(ArrivalShape(kind="ramp", start_per_min=50, end_per_min=200), 1800, mix)
    assert len(ramp) == pytest.approx(3750, abs=1)
    spike = plan_arrivals(ArrivalShape(kind="spike", burst_arrivals=100, burst_s=10, period_s=60), 300, mix)
    assert len(spike) == 500
    assert all(float(str(t)) % 60 < 10 for t, _ in spike)
    poisson = ArrivalShape(kind="constant", rate_per_min=600, poisson=True)
    first = plan_arrivals(poisson, 600, mix)
    assert first == plan_arrivals(poisson, 600, mix)
    assert len(first) == pytest.approx(6000, rel=0.05)


def test_profile_tables_merge_over_defaults_and_ci_scales() -> None:
    """Overriding one key keeps the profile's other defaults; ci mode scales the duration and says so."""
    table = ProfilesTable.model_validate({"P4": {"p99_ms": 250}})
    assert table.P4.p99_ms == 250
    assert table.P4.duration_s == PROFILE_DEFAULTS["P4"]["duration_s"] == 28800.0
    run = effective("P4", table.P4, "ci", 0.5, {"a": {}, "b": {}})
    assert run.scaled
    assert run.duration_s == 75.0
    assert run.release_duration_s == 28800.0
    assert run.mix == {"a": 1.0, "b": 1.0}
    assert effective("P4", table.P4, "release", 0.5, {"a": {}}).duration_s == 28800.0


def test_ci_mode_raises_the_rate_of_a_profile_too_short_for_a_p99_bound() -> None:
    """ci mode scales a thin profile's rate to the planned-arrival floor and records it; release never does."""
    table = ProfilesTable()
    run = effective("P1", table.P1, "ci", 1.0, {"a": {}}, ci_min_arrivals=400)
    assert run.rate_scale == pytest.approx(64.9)
    assert run.release_shape == table.P1.shape
    after_warmup = plan_arrivals(run.shape, run.duration_s, run.mix)
    assert sum(1 for t, _ in after_warmup if float(str(t)) >= run.warmup_s) >= 400
    spike = effective("P3", table.P3, "ci", 1.0, {"a": {}}, ci_min_arrivals=400)
    assert spike.shape.burst_arrivals == 400
    assert effective("P1", table.P1, "release", 1.0, {"a": {}}, ci_min_arrivals=400).rate_scale == 1.0
    assert effective("P1", table.P1, "ci", 1.0, {"a": {}}).rate_scale == 1.0
    soak = effective("P4", table.P4, "ci", 1.0, {"a": {}}, ci_min_arrivals=400)
    assert planned_count(soak.shape, soak.duration_s) * (soak.duration_s - soak.warmup_s) / soak.duration_s >= 2100


def test_charts_are_deterministic() -> None:
    """The same series render to the same SVG bytes, with the ci note in them."""

    def draw() -> str:
        return line_chart("t", ("x", "y"), [0.0, 1.0, 2.0], {"p99": [1.0, None, 3.0]}, note="ci mode: 40 s of 900 s")

    assert draw() == draw()
    assert "ci mode: 40 s of 900 s" in draw()
    assert draw().startswith("<svg")
