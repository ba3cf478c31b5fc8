"""Tests for G6's O6 SLO check: synthetic promtool series, ci window scaling, the budget report and the verdict."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gates.observability import evidence as ev
from gates.observability.policy import ObservabilityPolicy
from gates.observability.run import zero_for_copy
from gates.observability.slo import SYNTHETIC, run_synthetic, scale_expr, threshold_ratio
from gates.observability.slo_judge import check_slo, slo_report
from harness.model import Status

ROOT = Path(__file__).resolve().parents[2]
NEVERFIRES = ROOT / "tests/fixtures/targets/obs-slo-neverfires"
GUARDIAN = ROOT / "examples/guardian"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


class FakeRun:
    """What ctx.run returns: exit code and output of a real subprocess."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        """Keep the finished process."""
        self.returncode, self.timed_out, self._out, self._err = proc.returncode, False, proc.stdout, proc.stderr

    def stdout(self) -> str:
        """Captured stdout."""
        return self._out

    def stderr(self) -> str:
        """Captured stderr."""
        return self._err


class FakeCtx:
    """The slice of GateContext run_synthetic uses: scratch, target_dir and a real ctx.run."""

    def __init__(self, target: Path, scratch: Path) -> None:
        """Bind to a target directory and a scratch directory."""
        self.target_dir, self.scratch = target, scratch

    def run(self, _name: str, argv: list[str], cwd: Path, timeout_s: float) -> FakeRun:
        """Run argv for real."""
        return FakeRun(subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False))


class MemoryView:
    """An in-memory evidence recorder and view."""

    def __init__(self) -> None:
        """Start empty."""
        self.files: dict[str, str] = {}

    def write_text(self, name: str, text: str) -> None:
        """Keep one text file."""
        self.files[name] = text

    def write_json(self, name: str, data: Any) -> None:
        """Keep one JSON file."""
        self.files[name] = json.dumps(data)

    def exists(self, name: str) -> bool:
        """Whether the file was kept."""
        return name in self.files

    def read_text(self, name: str) -> str:
        """A kept file's text."""
        return self.files[name]

    def read_bytes(self, name: str) -> bytes:
        """A kept file's bytes."""
        return self.files[name].encode()

    def read_json(self, name: str) -> Any:
        """A kept JSON file."""
        return json.loads(self.files[name])


def _policy(alerts: list[dict[str, Any]], **slo: Any) -> ObservabilityPolicy:
    """A policy with one ratio SLO over app_requests_total."""
    spec = {
        "name": "availability",
        "kind": "ratio",
        "objective": 0.999,
        "metric": "app_requests_total",
        "good_labels": {"code": "200"},
        "bad_labels": {"code": "500"},
        "alerts": alerts,
    } | slo
    return ObservabilityPolicy.model_validate({"slos": [spec]})


def _facts(target: Path, view: MemoryView, rule_file: str, *, prometheus: bool = True) -> dict[str, Any]:
    """run.json facts with the target's rule file copied into the view."""
    view.write_text(f"rules/{rule_file}", (target / rule_file).read_text(encoding="utf-8"))
    return {
        "promtool": {"available": True, "path": shutil.which("promtool"), "why": ""},
        "prometheus": {"available": prometheus, "why": "" if prometheus else "not installed"},
        "rules": [{"source": rule_file, "evidence": f"rules/{rule_file}"}],
        "times": {"fault_start": 100.0, "fault_end": 130.0, "end": 200.0},
    }


def _alerts_range(view: MemoryView, name: str, stamps: list[float]) -> None:
    """An ALERTS range answer with `name` firing at `stamps`."""
    series = [{"metric": {"alertname": name, "alertstate": "firing"}, "values": [[t, "1"] for t in stamps]}]
    view.write_json(ev.PROM_ALERTS, {"status": "success", "data": {"result": series}})
    view.write_json(ev.PROMTOOL, {"runs": [{"kind": "test", "returncode": 0}]})


@needs_promtool
def test_never_firing_burn_alerts_fail_naming_the_rule(tmp_path: Path) -> None:
    """A burn alert with a wrong threshold or metric FAILs the synthetic series, by name; the right one passes."""
    names = ("AppFastBurn", "AppFastBurnWrongThreshold", "AppFastBurnWrongMetric")
    policy = _policy([{"alert": name, "burn_rate": 14.4, "must_fire": name == "AppFastBurn"} for name in names])
    view = MemoryView()
    facts = _facts(NEVERFIRES, view, "observability/slo-rules.yml")
    run_synthetic(FakeCtx(NEVERFIRES, tmp_path), view, policy, facts)
    _alerts_range(view, "AppFastBurn", [110.0, 111.0])
    check = check_slo(view, facts, policy)
    assert check.status is Status.FAIL
    text = "\n".join(check.findings)
    assert "rule AppFastBurnWrongThreshold (observability/slo-rules.yml, SLO availability): did not fire" in text
    assert "rule AppFastBurnWrongMetric" in text
    assert "rule AppFastBurn " not in text
    ok = {(r["alert"], r["case"]): r["ok"] for r in check.rows[0]["synthetic"]}
    assert ok[("AppFastBurn", "fire")]
    assert ok[("AppFastBurn", "quiet")]
    assert not ok[("AppFastBurnWrongThreshold", "fire")]


@needs_promtool
def test_guardian_slo_rules_pass_the_synthetic_series(tmp_path: Path) -> None:
    """guardian's four shipped burn alerts fire at 1.25x their threshold and stay silent at 0.75x."""
    config = (GUARDIAN / "certify.toml").read_text(encoding="utf-8")
    policy = ObservabilityPolicy.model_validate({"slos": tomllib.loads(config)["gates"]["G6"]["slos"]})
    view = MemoryView()
    facts = _facts(GUARDIAN, view, "observability/slo-rules.yml")
    run_synthetic(FakeCtx(GUARDIAN, tmp_path), view, policy, facts)
    runs = view.read_json(SYNTHETIC)["runs"]
    assert len(runs) == 8
    assert all(r["returncode"] == 0 for r in runs), [r["output"] for r in runs if r["returncode"]]


def test_live_check_fails_when_the_must_fire_alert_never_fired_or_never_resolved() -> None:
    """The must-fire burn alert has to fire between fault start and end (+5 s) and stop before G6 ends."""
    policy = _policy([{"alert": "AppFastBurn", "burn_rate": 14.4, "must_fire": True}])
    view = MemoryView()
    view.write_text("rules/r.yml", "groups: [{name: g, rules: [{alert: AppFastBurn, expr: vector(1)}]}]")
    view.write_json(SYNTHETIC, {"available": True, "why": "", "runs": []})
    facts = _facts(NEVERFIRES, view, "observability/slo-rules.yml") | {
        "rules": [{"source": "r.yml", "evidence": "rules/r.yml"}]
    }
    _alerts_range(view, "AppFastBurn", [])
    assert "did not fire in Prometheus during the fault" in "\n".join(check_slo(view, facts, policy).findings)
    _alerts_range(view, "AppFastBurn", [120.0, 199.0])
    assert "still firing when G6 ended" in "\n".join(check_slo(view, facts, policy).findings)
    _alerts_range(view, "AppFastBurn", [112.0, 140.0])
    check = check_slo(view, facts, policy)
    assert check.status is Status.PASS, check.findings
    assert check.rows[0]["live"][0]["fired_after_s"] == 12.0


def test_no_prometheus_is_not_run_never_pass() -> None:
    """Without Prometheus the live half cannot be shown: NOT_RUN, not PASS."""
    policy = _policy([{"alert": "AppFastBurn", "burn_rate": 14.4, "must_fire": True}])
    view = MemoryView()
    view.write_text("rules/r.yml", "groups: [{name: g, rules: [{alert: AppFastBurn, expr: vector(1)}]}]")
    view.write_json(SYNTHETIC, {"available": True, "why": "", "runs": []})
    facts = _facts(NEVERFIRES, view, "observability/slo-rules.yml", prometheus=False)
    facts["rules"] = [{"source": "r.yml", "evidence": "rules/r.yml"}]
    view.write_json(ev.PROMTOOL, {"runs": [{"kind": "test", "returncode": 0}]})
    assert check_slo(view, facts, policy).status is Status.NOT_RUN


def test_budget_consumed_is_bad_events_over_the_allowed_share() -> None:
    """Budget consumed = (bad / total) / (1 - objective), from the direct scrapes around the load and the fault."""
    policy = _policy([], objective=0.99)
    view = MemoryView()
    view.write_text(
        ev.scrape_name("before-load"), 'app_requests_total{code="200"} 100\napp_requests_total{code="500"} 0\n'
    )
    view.write_text(
        ev.scrape_name("after-load"), 'app_requests_total{code="200"} 1100\napp_requests_total{code="500"} 0\n'
    )
    view.write_text(
        ev.scrape_name("after-fault"), 'app_requests_total{code="200"} 1880\napp_requests_total{code="500"} 20\n'
    )
    report = slo_report(view, {}, policy)["slos"][0]
    assert report["run"] == {"events": 1800, "bad_events": 20, "error_ratio": 0.011111, "budget_consumed_x": 1.1111}
    assert report["fault"]["bad_events"] == 20
    assert report["fault"]["budget_consumed_x"] == 2.5


def test_ci_copy_scales_only_the_declared_windows_and_says_so() -> None:
    """The ci copy swaps [1h]->[60s] and [5m]->[10s] in the declared alert only, in one pass, and is labelled."""
    assert scale_expr("rate(x[1h]) and rate(x[5m])", {"1h": "5m", "5m": "10s"}) == "rate(x[5m]) and rate(x[10s])"
    rules = yaml.safe_dump(
        {
            "groups": [
                {
                    "name": "g",
                    "rules": [
                        {"alert": "Burn", "expr": "rate(x[1h]) > 1", "for": "2m"},
                        {"alert": "Other", "expr": "rate(x[1h]) > 1", "for": "2m"},
                    ],
                }
            ]
        }
    )
    copy = zero_for_copy(rules, "r.yml", {"Burn": {"1h": "60s"}}, zero=False)
    assert "Burn-rate windows scaled" in copy
    assert "Burn 1h->60s" in copy
    parsed = yaml.safe_load(copy)["groups"][0]["rules"]
    assert parsed[0]["expr"] == "rate(x[60s]) > 1"
    assert parsed[0]["for"] == "2m"
    assert parsed[1]["expr"] == "rate(x[1h]) > 1"


def test_threshold_is_burn_rate_times_budget() -> None:
    """14.4x burn on a 99.5% objective is an error ratio of 0.072."""
    policy = _policy([{"alert": "A", "burn_rate": 14.4}], objective=0.995)
    assert threshold_ratio(policy.slos[0], policy.slos[0].alerts[0]) == pytest.approx(0.072)
