"""The resource sampler's host rows (load/resources.py): busy, roles, harness, other and steal CPU per sample."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from harness.compare_host import host_load, judge_host
from harness.compare_rules import RegressionRules
from load.resources import FIELDS, HOST_FIELDS, ResourceSampler, host_summary

SLEEPER = [shutil.which("sleep") or "sleep", "60"]


@pytest.fixture
def sleepers() -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """Two idle processes: one stands for a sampled role, one for the harness process."""
    procs = (subprocess.Popen(SLEEPER), subprocess.Popen(SLEEPER))
    time.sleep(0.5)  # past their start-up, which is CPU a sample would see
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


class FakeHostClock:
    """Host CPU seconds that advance by fixed amounts per read: busy 1.5 s and steal 0.1 s per wall second."""

    def __init__(self) -> None:
        """Start at boot."""
        self.reads = 0

    def __call__(self) -> tuple[float, float, float]:
        """(monotonic s, busy s, steal s)."""
        self.reads += 1
        return float(self.reads), 100.0 + 1.5 * self.reads, 5.0 + 0.1 * self.reads


def test_the_host_row_charges_what_the_run_did_not_use_to_other(
    sleepers: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]],
) -> None:
    """Host busy 150 % of a core, roles and harness idle: other ~150 %, steal 10 %; no row for the first sample."""
    role, harness = sleepers
    sampler = ResourceSampler(lambda: {"target-service": role}, host_clock=FakeHostClock(), harness_pid=harness.pid)
    sampler.sample()
    assert sampler.host_rows == []
    time.sleep(0.3)
    sampler.sample()
    (row,) = [dict(zip(HOST_FIELDS, values, strict=True)) for values in sampler.host_rows]
    assert row["busy_pct"] == 150.0
    assert row["steal_pct"] == 10.0
    assert row["roles_pct"] < 5
    assert row["harness_pct"] < 5
    assert row["other_pct"] == pytest.approx(150.0 - row["roles_pct"] - row["harness_pct"], abs=0.2)
    assert abs(row["unix_s"] - time.time()) < 5


def test_host_rows_go_to_their_own_csv_and_resources_csv_keeps_its_columns(
    sleepers: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]],
) -> None:
    """With the real host clock: host.csv has HOST_FIELDS and consistent figures; resources.csv has no host role."""
    role, _ = sleepers
    sampler = ResourceSampler(lambda: {"target-service": role})
    for _ in range(3):
        sampler.sample()
        time.sleep(0.2)
    host = list(csv.DictReader(io.StringIO(sampler.host_csv_text())))
    assert len(host) == 2
    assert tuple(host[0]) == HOST_FIELDS
    for row in host:
        busy, roles, harness = float(row["busy_pct"]), float(row["roles_pct"]), float(row["harness_pct"])
        assert float(row["other_pct"]) == pytest.approx(max(0.0, busy - roles - harness), abs=0.2)
        assert float(row["steal_pct"]) >= 0
        assert int(row["cpus"]) >= 1
    resources = list(csv.DictReader(io.StringIO(sampler.csv_text())))
    assert tuple(resources[0]) == FIELDS
    assert {row["role"] for row in resources} == {"target-service"}


def test_the_summary_takes_medians_over_the_measured_window_only() -> None:
    """Rows ending inside (start, end] count: a busy warm-up second outside the window does not move the median."""
    rows = [
        (1.0, 1001.0, 2, 190.0, 10.0, 5.0, 175.0, 0.0),
        (2.0, 1002.0, 2, 40.0, 30.0, 5.0, 5.0, 1.0),
        (3.0, 1003.0, 2, 42.0, 30.0, 5.0, 7.0, 3.0),
        (4.0, 1004.0, 2, 44.0, 30.0, 5.0, 9.0, 2.0),
    ]
    summary = host_summary(rows, (1001.0, 1004.0))
    assert summary["samples"] == 3
    assert summary["other_cpu_pct_median"] == 7.0
    assert summary["other_cpu_pct_max"] == 9.0
    assert summary["steal_pct_median"] == 2.0
    assert summary["busy_cpu_pct_median"] == 42.0
    assert host_summary(rows, None)["samples"] == 4
    empty = host_summary(rows, (2000.0, 2010.0))
    assert empty["samples"] == 0
    assert empty["other_cpu_pct_median"] is None


#: A bounded CPU burner outside the run (the contention a G2 run can share the host with).
BURNER = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"


def test_a_cpu_burner_outside_the_run_makes_the_real_sampler_judge_the_host_busy(
    sleepers: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]],
) -> None:
    """A real burner beside idle roles: the real host clock charges it to other CPU, above the policy's 25 % bound."""
    role, harness = sleepers
    burner = subprocess.Popen([sys.executable, "-c", BURNER])
    try:
        time.sleep(0.5)
        sampler = ResourceSampler(lambda: {"target-service": role}, harness_pid=harness.pid)
        for _ in range(5):
            sampler.sample()
            time.sleep(0.5)
    finally:
        burner.kill()
        burner.wait(timeout=10)
    summary = host_summary(sampler.host_rows, None)
    assert summary["samples"] == 4
    assert summary["other_cpu_pct_median"] > 60, sampler.host_csv_text()
    busy = host_load({"host": summary})
    quiet = host_load({"host": {**summary, "other_cpu_pct_median": 3.0}})
    verdict = judge_host("P1", quiet, busy, RegressionRules())
    assert verdict.busy is not None
    assert "of one core taken outside the run (bound 25 %)" in verdict.busy
