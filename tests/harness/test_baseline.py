"""A baseline named by the policy or --baseline: judged gates also FAIL on a forbidden regression (harness/baseline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.baseline import IDENTITY, MEASUREMENTS, resolve_baseline, with_regression
from harness.compare import NOT_COMPARED, REGRESSION
from harness.compare_rules import RegressionRules
from harness.gate import Evidence
from harness.model import Measurement, Status, Verdict
from tests.conftest import FIXTURE_POLICY, certify
from tests.harness.test_compare import short_load_target

RULES = RegressionRules()


def g1_evidence(tmp_path: Path, base_pct: float, problem: str | None = None) -> Evidence:
    """A pack directory whose G1 evidence holds a baseline with overall line coverage at base_pct."""
    folder = tmp_path / "gates" / "G1" / "baseline"
    folder.mkdir(parents=True)
    identity = {"spec": "base-pack", "run_id": "20261207T100000Z-abc", "problem": problem}
    (folder / "identity.json").write_text(json.dumps(identity), encoding="utf-8")
    stored = {"gate": "G1", "measurements": [{"name": "overall line coverage", "value": base_pct, "unit": "%"}]}
    (folder / "measurements.json").write_text(json.dumps(stored), encoding="utf-8")
    return Evidence(tmp_path, "G1", (f"gates/G1/{IDENTITY}", f"gates/G1/{MEASUREMENTS}"))


def g1_verdict(pct: float) -> Verdict:
    """A G1 PASS measuring overall line coverage at pct."""
    return Verdict.of(Status.PASS, measurements=(Measurement.judged("overall line coverage", pct, ">=", 75, "%"),))


def test_a_one_point_coverage_drop_against_the_baseline_fails_g1(tmp_path: Path) -> None:
    """91 % in the baseline and 90 % now: G1 FAILs on the ratchet, naming the figure and the baseline run."""
    verdict = with_regression("G1", g1_verdict(90.0), g1_evidence(tmp_path, 91.0), RULES)
    assert verdict.status is Status.FAIL
    assert (
        "regression against the baseline 20261207T100000Z-abc: G1 overall line coverage 91 -> 90 %"
        in (verdict.reasons[-1])
    )
    assert verdict.details["regression"]["blocking"] == ["G1 overall line coverage"]


def test_a_small_drop_keeps_the_pass_and_records_the_comparison(tmp_path: Path) -> None:
    """91.0 -> 90.7 is within the 0.5-point ratchet: still PASS, with 0 blocking regressions measured."""
    verdict = with_regression("G1", g1_verdict(90.7), g1_evidence(tmp_path, 91.0), RULES)
    assert verdict.status is Status.PASS
    assert verdict.details["regression"]["compared"] == 1
    assert verdict.measurements[-1].name == "blocking regressions against the baseline"
    assert verdict.measurements[-1].passed


def test_an_unusable_baseline_leaves_the_gate_inconclusive_and_no_baseline_changes_nothing(tmp_path: Path) -> None:
    """A baseline that did not verify is INCONCLUSIVE with the reason; evidence without a baseline is untouched."""
    bad = with_regression("G1", g1_verdict(95.0), g1_evidence(tmp_path, 91.0, problem="it does not verify"), RULES)
    assert bad.status is Status.INCONCLUSIVE
    assert bad.reasons[-1] == "regression against the baseline not judged: it does not verify"
    plain = g1_verdict(95.0)
    assert with_regression("G1", plain, Evidence(tmp_path, "G1", ()), RULES) == plain
    assert (
        with_regression("G1", plain, g1_evidence(tmp_path / "x", 99.0), RegressionRules(judge_gates=("G2",))) == plain
    )


def test_a_baseline_that_cannot_be_found_says_why(tmp_path: Path) -> None:
    """A missing path, a folder that is no pack, and a history selector without a history each name the problem."""
    where = {"store": tmp_path / "history.sqlite", "target": "svc", "mode": "ci"}
    assert (
        resolve_baseline(str(tmp_path / "gone"), **where).problem
        == f"{tmp_path / 'gone'} is not an evidence pack (no manifest.json)"
    )
    assert resolve_baseline("newest-certified", **where).problem == f"no run history at {tmp_path / 'history.sqlite'}"
    line = resolve_baseline("newest-passing", **where).describe()
    assert line.startswith("baseline newest-passing: not usable: no run history at ")
    assert line.endswith("the judged gates are INCONCLUSIVE")


def host_blind_policy(tmp_path: Path) -> Path:
    """The fixture policy with host-contention bounds no host reaches: the regression path alone, on any machine.

    The runs share a machine with whatever else runs (another suite, a soak); where that pushed a
    profile's other-CPU above the default bound, its latency would be 'host busy', not compared.
    """
    policy = tmp_path / "host-blind.toml"
    extra = "\n[regression]\nmax_host_other_cpu_pct = 10000.0\nmax_host_steal_pct = 10000.0\n"
    policy.write_text(FIXTURE_POLICY.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return policy


@pytest.mark.timeout(900)
def test_g2_against_a_baseline_pack_fails_on_an_injected_2x_latency(tmp_path: Path) -> None:
    """--baseline of a 10 ms pack, new run at 20 ms: G2 FAILs naming the p90, the pack verifies, compare agrees."""
    base = tmp_path / "base"
    blind = host_blind_policy(tmp_path)
    fast = short_load_target(tmp_path, 10)
    first = certify(
        "run", "--target", fast, "--gates", "G2", "--mode", "ci",
        "--out", base, "--cache-dir", tmp_path / "cache", "--policy", blind,
    )  # fmt: skip
    assert (base / "manifest.json").is_file(), first.stdout + first.stderr
    slow = short_load_target(tmp_path, 20)
    new = tmp_path / "new"
    second = certify(
        "run", "--target", slow, "--gates", "G2", "--mode", "ci", "--out", new,
        "--cache-dir", tmp_path / "cache", "--baseline", base, "--policy", blind,
    )  # fmt: skip
    assert "baseline: " in second.stdout, second.stdout
    assert "from " + str(base.resolve()) in second.stdout
    results = json.loads((new / "results.json").read_text(encoding="utf-8"))
    g2 = next(r for r in results["results"] if r["gate"] == "G2")
    assert g2["verdict"]["status"] == "FAIL"
    assert any("regression against the baseline" in r and "G2 P1 page p90" in r for r in g2["verdict"]["reasons"])
    assert (new / "gates" / "G2" / "baseline" / "gates" / "G2" / "load" / "P1" / "raw.csv.gz").is_file()
    run = json.loads((new / "run.json").read_text(encoding="utf-8"))
    assert run["baseline"]["pack"] == str(base.resolve())
    assert len(run["baseline"]["manifest_sha256"]) == 64
    matrix = json.loads((new / "traceability.json").read_text(encoding="utf-8"))
    o8 = next(row for row in matrix["requirements"] if row["id"] == "O8")
    assert "G2.regression" in [check["id"] for check in o8["checks"]]
    verified = certify("verify", new)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Traceback" not in first.stderr + second.stderr + verified.stderr
    assert_host_load_recorded(new)
    assert_compare_names_the_doubled_endpoint(tmp_path, base, new, blind)


def assert_host_load_recorded(pack: Path) -> None:
    """Each profile of a new pack has host.csv and the medians of its measured window in profile.json."""
    load = pack / "gates" / "G2" / "load"
    for pid in ("P1", "P5"):
        assert (load / pid / "host.csv").read_text(encoding="utf-8").startswith("t_s,unix_s,cpus,busy_pct,")
        host = json.loads((load / pid / "profile.json").read_text(encoding="utf-8"))["host"]
        assert host["samples"] >= 1, host
        assert host["other_cpu_pct_median"] >= 0
        assert host["steal_pct_median"] >= 0
    assert (pack / "gates" / "G2" / "baseline" / "gates" / "G2" / "load" / "P1" / "host.csv").is_file()


def assert_compare_names_the_doubled_endpoint(tmp_path: Path, base: Path, new: Path, policy: Path) -> None:
    """certify compare of the same two packs (10 ms, 20 ms): exit 1 naming the p90; a pack against itself exits 0.

    Checked on this test's packs so the suite runs the two G2 runs once for --baseline and compare.
    """
    proc = certify("compare", base, new, "--out", tmp_path / "cmp", "--policy", policy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("REGRESSION (G2 P1 page p90"), proc.stdout
    report = json.loads((tmp_path / "cmp" / "compare.json").read_text(encoding="utf-8"))
    p90 = next(f for f in report["figures"] if f["name"] == "G2 P1 page p90")
    assert p90["verdict"] == REGRESSION
    assert p90["interval"][0] > 1.2
    p99 = next(f for f in report["figures"] if f["name"] == "G2 P1 page p99")
    assert p99["verdict"] == NOT_COMPARED  # 3 s profiles: too few samples beyond the p99
    assert "| G2 P1 page p90 |" in (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    same = certify("compare", base, base, "--policy", policy)
    assert same.returncode == 0, same.stdout
    assert same.stdout.strip().splitlines()[-1].startswith("no forbidden regression; 0 regression(s)")
    raw = new / "gates" / "G2" / "load" / "P1" / "raw.csv.gz"
    raw.write_bytes(raw.read_bytes() + b"\0")
    tampered = certify("compare", base, new, "--policy", policy)
    assert tampered.returncode == 1
    assert "new: changed: gates/G2/load/P1/raw.csv.gz" in tampered.stdout
    assert "does not verify" in tampered.stdout
    assert "Traceback" not in proc.stderr + same.stderr + tampered.stderr
