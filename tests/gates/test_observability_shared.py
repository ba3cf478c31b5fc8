"""Unit tests for G6's run-wide Prometheus: the pure judgement of G2/G4 windows and when the observer starts."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from gates.observability.gate import ObservabilityGate
from gates.observability.policy import ObservabilityPolicy
from gates.observability.shared_judge import assess_shared, check_shared_alerts, fired_in
from harness.model import Status
from tests.conftest import DictView

INSTANCE = "127.0.0.1:40001"
OTHER = "127.0.0.1:40002"


def _policy(**shared: Any) -> ObservabilityPolicy:
    """A G6 policy with the given [gates.G6.shared] keys."""
    return ObservabilityPolicy.model_validate({"shared": shared})


def _facts(windows: list[dict[str, Any]], alert_for_s: dict[str, float] | None = None) -> dict[str, Any]:
    """shared/run.json of a running observer."""
    return {
        "running": True,
        "failure": "",
        "gates": ["G2", "G4"],
        "windows": windows,
        "instances": [],
        "alert_for_s": alert_for_s if alert_for_s is not None else {"DepDown": 0.0, "Crash": 0.0},
    }


def _chaos(name: str = "C2-down#1", start: float = 1000.0, end: float = 1030.0) -> dict[str, Any]:
    """A chaos window on INSTANCE."""
    return {"gate": "G4", "name": name, "kind": "chaos", "start": start, "end": end, "instance": INSTANCE}


def _alerts(*series: tuple[str, str, list[float]]) -> dict[str, Any]:
    """An ALERTS range-query answer with firing series (name, instance, times)."""
    result = [
        {"metric": {"alertname": name, "alertstate": "firing", "instance": where}, "values": [[t, "1"] for t in times]}
        for name, where, times in series
    ]
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


def test_expected_alert_firing_during_the_fault_passes() -> None:
    """An expected alert firing on the experiment's instance between injection and recovery passes."""
    policy = _policy(chaos_alerts={"C2-down": ["DepDown"]})
    check = check_shared_alerts(_facts([_chaos()]), _alerts(("DepDown", INSTANCE, [1004.0, 1005.0])), policy)
    assert check.status is Status.PASS
    assert check.rows[0]["fired"] == {"DepDown": 4.0}


def test_expected_alert_that_never_fires_fails() -> None:
    """An expected alert absent from the window, or firing only on another instance, is a FAIL."""
    policy = _policy(chaos_alerts={"C2-down": ["DepDown"]})
    check = check_shared_alerts(_facts([_chaos()]), _alerts(("DepDown", OTHER, [1004.0])), policy)
    assert check.status is Status.FAIL
    assert "C2-down#1: DepDown did not fire between the injection and recovery" in check.findings


def test_alert_whose_for_outlasts_the_window_is_not_required() -> None:
    """A shipped `for:` longer than fault + recovery + grace cannot fire there: listed as not checkable, no FAIL."""
    policy = _policy(chaos_alerts={"C2-down": ["DepDown"]})
    check = check_shared_alerts(_facts([_chaos()], {"DepDown": 120.0}), _alerts(), policy)
    assert check.status is Status.PASS
    assert check.rows[0]["not_checkable"] == ["DepDown"]
    assert "1 not checkable" in check.summary


def test_alert_firing_during_a_load_profile_fails() -> None:
    """An alert firing on a load profile's instance while no fault ran is a FAIL (a noisy rule)."""
    load = {"gate": "G2", "name": "P1", "kind": "load", "start": 1000.0, "end": 1060.0, "instance": INSTANCE}
    check = check_shared_alerts(_facts([load]), _alerts(("Crash", INSTANCE, [1030.0])), _policy())
    assert check.status is Status.FAIL
    assert "P1: Crash fired during a load profile with no fault" in check.findings


def test_chaos_windows_without_expectations_are_inconclusive() -> None:
    """With chaos windows but no [gates.G6.shared] chaos_alerts, nothing was proved: INCONCLUSIVE."""
    check = check_shared_alerts(_facts([_chaos()]), _alerts(), _policy())
    assert check.status is Status.INCONCLUSIVE


def test_expected_alert_in_no_rule_file_fails() -> None:
    """An expectation naming an alert no loaded rule defines is a configuration error reported as FAIL."""
    policy = _policy(chaos_alerts={"C2-down": ["Typo"]})
    check = check_shared_alerts(_facts([_chaos()]), _alerts(), policy)
    assert check.status is Status.FAIL
    assert any("Typo are in no loaded rule file" in item for item in check.findings)


def test_firing_after_the_grace_period_does_not_count() -> None:
    """Only firing samples inside [start, end + grace] are attributed to a window."""
    alerts = [("DepDown", INSTANCE, [1041.0])]
    assert fired_in(alerts, INSTANCE, 1000.0, 1040.0) == {}
    assert fired_in(alerts, INSTANCE, 1000.0, 1041.0) == {"DepDown": 1041.0}


def test_observer_that_could_not_start_is_not_run_with_install_hint() -> None:
    """No prometheus binary: the shared checks are one NOT_RUN naming the install command, never PASS."""
    facts = {"running": False, "failure": "prometheus is not installed (not on PATH)", "gates": ["G2"]}
    checks = assess_shared(DictView({"shared/run.json": facts}), _policy())
    assert [(c.name, c.status) for c in checks] == [("shared Prometheus", Status.NOT_RUN)]
    assert "apt-get install prometheus" in checks[0].summary


def test_no_window_recorded_is_inconclusive() -> None:
    """A running observer that saw no window (the watched gates did not get that far) proves nothing."""
    checks = assess_shared(DictView({"shared/run.json": _facts([])}), _policy())
    assert [(c.name, c.status) for c in checks] == [("shared Prometheus", Status.INCONCLUSIVE)]


def test_g6_run_alone_has_no_shared_checks() -> None:
    """Without shared/run.json (G6 ran without G2/G4 before it) there is no shared check at all."""
    assert assess_shared(DictView({}), _policy()) == []


class _Services:
    """The few RunServices fields the observer reads."""

    def __init__(self, root: Path) -> None:
        """A run without a [service] section."""
        self.work_dir = root
        self.target_dir = root
        self.mode = "ci"
        self.cancel = threading.Event()
        self.config = type("Config", (), {"service": None})()


def test_observer_only_when_a_watched_gate_runs_before_g6(tmp_path: Path) -> None:
    """G6 offers a run-wide observer only when G2, G3 or G4 is planned before it."""
    gate = ObservabilityGate()
    services: Any = _Services(tmp_path)
    policy = _policy(gates=["G2", "G4"])
    assert gate.run_observer(policy, services, ("G1", "G6")) is None
    assert gate.run_observer(policy, services, ("G6", "G2")) is None
    observer = gate.run_observer(policy, services, ("G2", "G6"))
    assert observer is not None
    assert not observer.watching("G2")
    observer.stop()


def test_unlabelled_alert_counts_only_for_a_window_alone_on_the_machine() -> None:
    """An alert series with no instance label is credited to a window only if no other instance was up in it."""
    alerts = [("DepDown", "", [1010.0])]
    assert fired_in(alerts, INSTANCE, 1000.0, 1040.0) == {"DepDown": 1010.0}
    assert fired_in(alerts, INSTANCE, 1000.0, 1040.0, alone=False) == {}
    assert fired_in([("DepDown", INSTANCE, [1010.0])], INSTANCE, 1000.0, 1040.0, alone=False) == {"DepDown": 1010.0}
