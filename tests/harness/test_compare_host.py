"""Host contention in `certify compare` and the baseline check: a busy host leaves latency undecided (compare_host)."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.baseline import IDENTITY, with_regression
from harness.compare import NO_CHANGE, NOT_COMPARED, REGRESSION, compare_markdown, compare_packs, summary_lines
from harness.compare_host import HOST_BUSY
from harness.compare_rules import RegressionRules
from harness.errors import ConfigError
from harness.gate import Evidence
from harness.model import Status, Verdict
from harness.policy import standard_policy
from load.stats import RAW_FIELDS
from tests.harness.packs import FIXTURES

RULES = RegressionRules()
RECORDED = FIXTURES / "packs" / "load-ok-ci"
QUIET = {"other": 2.0, "steal": 0.0}


def host_record(other: float, steal: float) -> dict[str, Any]:
    """A profile.json `host` summary as load/resources.py's host_summary writes it."""
    return {
        "samples": 20,
        "window_unix": [1.0, 21.0],
        "cpus": 2,
        "unit": "percent of one core",
        "busy_cpu_pct_median": 120.0 + other,
        "roles_cpu_pct_median": 110.0,
        "harness_cpu_pct_median": 10.0,
        "other_cpu_pct_median": other,
        "other_cpu_pct_max": other + 5,
        "steal_pct_median": steal,
    }


def raw_csv(latencies_ms: list[float], errors: int = 0) -> bytes:
    """A gzipped raw.csv of one request `page`: arrivals 10 ms apart with these latencies; the first `errors` fail."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RAW_FIELDS)
    for seq, latency in enumerate(latencies_ms):
        planned = seq * 0.01
        ok = seq >= errors
        status = "200" if ok else "500"
        error = "" if ok else "HTTP 500"
        end = f"{planned + latency / 1000:.6f}"
        sent = f"{planned:.6f}"
        writer.writerow(["arrival", seq, "page", sent, sent, end, status, int(ok), error, "socket"])
    return gzip.compress(out.getvalue().encode("utf-8"), mtime=0)


def write_pack(root: Path, scale_ms: float, host: dict[str, float] | None, *, seed: int, errors: int = 0) -> Path:
    """A pack root compare reads: run.json, results.json and a G2 profile P1 (host None: a pack from before #23)."""
    load = root / "gates" / "G2" / "load"
    (load / "P1").mkdir(parents=True)
    run = {"target": {"name": "svc", "commit": "0" * 40}, "mode": "ci", "started_at": "x", "policy": {}}
    (root / "run.json").write_text(json.dumps(run), encoding="utf-8")
    (root / "results.json").write_text(json.dumps({"results": []}), encoding="utf-8")
    (load / "index.json").write_text(json.dumps({"profiles": ["P1"]}), encoding="utf-8")
    record: dict[str, Any] = {"warmup_s": 0.0}
    if host is not None:
        record["host"] = host_record(host["other"], host["steal"])
    (load / "P1" / "profile.json").write_text(json.dumps(record), encoding="utf-8")
    latencies = list(1.0 + np.random.default_rng(seed).exponential(scale_ms, 1500))
    (load / "P1" / "raw.csv.gz").write_bytes(raw_csv(latencies, errors))
    return root


def figures_of(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The report's figures of one kind."""
    return [f for f in report["figures"] if f["kind"] == kind]


def test_a_busy_new_host_leaves_latency_not_compared_and_still_compares_errors(tmp_path: Path) -> None:
    """New run's host at 60 % other-CPU: every quantile is 'not compared: host busy'; the error rate is judged."""
    base = write_pack(tmp_path / "base", 5.0, QUIET, seed=1)
    new = write_pack(tmp_path / "new", 5.0, {"other": 60.0, "steal": 0.0}, seed=2)
    report = compare_packs(base, new, RULES)
    latency = figures_of(report, "latency")
    assert [f["verdict"] for f in latency] == [HOST_BUSY] * 3
    assert latency[1]["why"].startswith("host busy (base 2 %, new 60 % of one core taken outside the run (bound 25 %))")
    assert "; the interval alone: no significant change" in latency[1]["why"]
    assert figures_of(report, "error_rate")[0]["verdict"] == NO_CHANGE
    assert report["undecided"] == ["G2 P1 page p50", "G2 P1 page p90", "G2 P1 page p99"]
    assert report["counts"][HOST_BUSY] == 3
    assert report["host"][0]["state"] == "busy"
    assert report["host"][0]["new"] == {"other_cpu_pct": 60.0, "steal_pct": 0.0, "samples": 20}
    assert "NOT DECIDED: 3 figure(s) not compared, host busy" in compare_markdown(report)


def test_a_doubled_latency_on_a_busy_host_is_undecided_never_hidden(tmp_path: Path) -> None:
    """2x latency while the base's hypervisor stole 12 %: not compared (no block), the interval's regression kept."""
    base = write_pack(tmp_path / "base", 10.0, {"other": 1.0, "steal": 12.0}, seed=3)
    new = write_pack(tmp_path / "new", 20.0, QUIET, seed=4)
    report = compare_packs(base, new, RULES)
    p90 = next(f for f in report["figures"] if f["name"] == "G2 P1 page p90")
    assert p90["verdict"] == HOST_BUSY
    assert not p90["blocks"]
    assert "steal base 12 %, new 0 % of one core (bound 5 %)" in p90["why"]
    assert "the interval alone: regression" in p90["why"]
    assert p90["interval"][0] > 1.2
    assert report["blocking"] == []
    lines = list(summary_lines(report))
    assert any(line.startswith(f"{HOST_BUSY} G2 P1 page p90: ") for line in lines)
    assert any(line.startswith("host: G2 P1: host busy (steal base 12 %") for line in lines)
    assert lines[-1].startswith("NOT DECIDED (host busy: G2 P1 page p50, G2 P1 page p90, G2 P1 page p99); 0 regression")


def test_an_error_rate_regression_on_a_busy_host_still_blocks(tmp_path: Path) -> None:
    """Contention does not make requests fail: 0 -> 60 errors of 1500 blocks even where latency is not compared."""
    base = write_pack(tmp_path / "base", 5.0, QUIET, seed=5)
    new = write_pack(tmp_path / "new", 5.0, {"other": 90.0, "steal": 0.0}, seed=6, errors=60)
    report = compare_packs(base, new, RULES)
    assert report["blocking"] == ["G2 P1 error rate"]
    assert list(summary_lines(report))[-1].startswith("REGRESSION (G2 P1 error rate); ")


def test_quiet_hosts_compare_as_before_and_the_bounds_are_the_policys(tmp_path: Path) -> None:
    """Both hosts at 2 % other-CPU: a doubled latency is a blocking regression; a 1 % bound makes the same pair busy."""
    base = write_pack(tmp_path / "base", 10.0, QUIET, seed=7)
    new = write_pack(tmp_path / "new", 20.0, QUIET, seed=8)
    report = compare_packs(base, new, RULES)
    assert [f["verdict"] for f in figures_of(report, "latency")] == [REGRESSION] * 3
    assert report["host"][0]["state"] == "quiet"
    assert report["undecided"] == []
    tight = compare_packs(base, new, RegressionRules(max_host_other_cpu_pct=1.0))
    assert {f["verdict"] for f in figures_of(tight, "latency")} == {HOST_BUSY}


def test_packs_without_host_data_compare_as_before_with_a_note(tmp_path: Path) -> None:
    """A pack from before host recording: classes as before; each why and the summary say it is not recorded."""
    base = write_pack(tmp_path / "base", 10.0, None, seed=9)
    new = write_pack(tmp_path / "new", 20.0, QUIET, seed=10)
    report = compare_packs(base, new, RULES)
    latency = figures_of(report, "latency")
    assert [f["verdict"] for f in latency] == [REGRESSION] * 3
    assert all(f["why"].endswith("; host load not recorded") for f in latency)
    assert report["host"][0]["state"] == "not recorded"
    assert "host: G2 P1: host load not recorded in the base pack: latency compared without it" in list(
        summary_lines(report)
    )


def test_too_few_samples_stay_not_compared_on_a_busy_host(tmp_path: Path) -> None:
    """A quantile without enough samples keeps its own 'not compared' reason; a busy host does not relabel it."""
    base = write_pack(tmp_path / "base", 5.0, QUIET, seed=11)
    new = write_pack(tmp_path / "new", 5.0, {"other": 80.0, "steal": 0.0}, seed=12)
    raw = new / "gates" / "G2" / "load" / "P1" / "raw.csv.gz"
    raw.write_bytes(raw_csv([5.0] * 200))
    p99 = next(f for f in compare_packs(base, new, RULES)["figures"] if f["name"] == "G2 P1 page p99")
    assert p99["verdict"] == NOT_COMPARED
    assert "needs 1000 a side" in p99["why"]


def g2_evidence(root: Path, base_host: dict[str, float] | None, new_host: dict[str, float] | None) -> Evidence:
    """A pack whose G2 evidence holds a baseline (as harness/baseline.py copies it) and its own load files."""
    write_pack(root / "gates" / "G2" / "baseline", 10.0, base_host, seed=21)
    write_pack(root / "new", 20.0, new_host, seed=22)
    (root / "new" / "gates" / "G2" / "load").rename(root / "gates" / "G2" / "load")
    identity = {"spec": "base-pack", "run_id": "20261207T100000Z-abc", "problem": None}
    (root / "gates" / "G2" / IDENTITY).write_text(json.dumps(identity), encoding="utf-8")
    files = tuple(p.relative_to(root).as_posix() for p in (root / "gates").rglob("*") if p.is_file())
    return Evidence(root, "G2", files)


def test_the_g2_baseline_check_is_inconclusive_where_the_host_was_busy(tmp_path: Path) -> None:
    """A doubled latency on a busy host: the baseline check is INCONCLUSIVE (not PASS, not FAIL), saying why."""
    evidence = g2_evidence(tmp_path, QUIET, {"other": 70.0, "steal": 0.0})
    verdict = with_regression("G2", Verdict.of(Status.PASS), evidence, RULES)
    assert verdict.status is Status.INCONCLUSIVE
    check = verdict.details["regression"]
    assert check["status"] == "INCONCLUSIVE"
    assert verdict.reasons[-1] == (
        "regression against the baseline 20261207T100000Z-abc not judged for every profile: latency not compared, "
        "G2 P1 host busy (base 2 %, new 70 % of one core taken outside the run (bound 25 %))"
    )
    assert check["undecided"] == ["G2 P1 page p50", "G2 P1 page p90", "G2 P1 page p99"]
    assert check["blocking"] == []


def test_the_g2_baseline_check_fails_on_quiet_hosts_and_without_host_data(tmp_path: Path) -> None:
    """The doubling on quiet hosts FAILs; between packs from before host recording it FAILs as it did, same keys."""
    quiet = with_regression("G2", Verdict.of(Status.PASS), g2_evidence(tmp_path / "q", QUIET, QUIET), RULES)
    assert quiet.status is Status.FAIL
    assert quiet.details["regression"]["host"][0]["state"] == "quiet"
    old = with_regression("G2", Verdict.of(Status.PASS), g2_evidence(tmp_path / "o", None, None), RULES)
    assert old.status is Status.FAIL
    # what `certify verify` recomputes for a pack judged before host recording: the keys it recorded then
    assert set(old.details["regression"]) == {"status", "reason", "baseline", "compared", "blocking", "figures"}


def test_certify_toml_cannot_set_the_host_bounds_and_the_policy_shows_them(tmp_path: Path) -> None:
    """[regression] is the policy's alone: a certify.toml raising max_host_other_cpu_pct is a config error."""
    from harness.config import load_config  # noqa: PLC0415
    from tests.harness.test_config import VALID_TOML, write_config  # noqa: PLC0415

    directory = write_config(tmp_path, VALID_TOML + "\n[regression]\nmax_host_other_cpu_pct = 200.0\n")
    with pytest.raises(ConfigError, match="regression"):
        load_config(directory)
    rules = standard_policy().policy.regression
    assert (rules.max_host_other_cpu_pct, rules.max_host_steal_pct) == (25.0, 5.0)
    assert any(line.startswith("host contention: ") for line in rules.describe())


def test_a_recorded_pack_from_before_host_recording_compares_with_the_note() -> None:
    """The recorded fixture pack (no host data) against itself: nothing undecided, every profile noted as not recorded.

    Pure compare on the pack's files: that recorded pack no longer verifies under today's harness
    (its traceability and index predate later changes), so `certify compare` would stop before comparing.
    """
    report = compare_packs(RECORDED, RECORDED, standard_policy().policy.regression)
    assert report["undecided"] == []
    assert report["blocking"] == []
    assert {row["state"] for row in report["host"]} == {"not recorded"}
    assert {f["verdict"] for f in report["figures"]} <= {NO_CHANGE, NOT_COMPARED}
    lines = list(summary_lines(report))
    assert (
        lines[-2]
        == "host: G2 P1, G2 P2, G2 P3, G2 P4, G2 P5: host load not recorded in either pack: latency compared without it"
    )
    assert lines[-1].startswith("no forbidden regression; ")
