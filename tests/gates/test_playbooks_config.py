"""Tests for PB's config model: no target's contract by default, required requests, undeclared capabilities."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from gates.playbooks import config as pb_config
from gates.playbooks.config import (
    CanaryCheck,
    DuplicateGuardCheck,
    PlaybookPolicy,
    TargetApi,
    WorkStream,
    undeclared_notes,
)
from gates.playbooks.governance import _watchdog_skip, judge_governance
from gates.playbooks.judge import judge_playbook, judge_run
from gates.playbooks.scenario import PlaybookRun
from gates.playbooks.stats import judge_claims
from harness.config import load_config, parse_config
from harness.errors import ConfigError
from tests.conftest import GitTarget, RunCertify
from tests.gates.test_playbooks import MINIMAL_API, _run_record, pb_policy, run_pb

REPO = Path(__file__).resolve().parents[2]
GUARDIAN = REPO / "examples" / "guardian"
TARGET = {"target": {"name": "svc"}}


def _models() -> list[type[BaseModel]]:
    """Every config model of the PB gate (the tables of [gates.PB])."""
    return [
        value
        for value in vars(pb_config).values()
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == pb_config.__name__
    ]


def _defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Field name -> default value (factories called) of one model; required fields are left out."""
    found: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if info.default_factory is not None:
            found[name] = info.default_factory()  # type: ignore[call-arg]
        elif info.default is not PydanticUndefined:
            found[name] = info.default
    return found


def test_no_default_of_the_pb_config_names_guardian() -> None:
    """No default of any [gates.PB] table (requests, metric names, approvals) carries guardian's contract."""
    assert {TargetApi, CanaryCheck, DuplicateGuardCheck, PlaybookPolicy, WorkStream} <= set(_models())
    for model in _models():
        for name, default in _defaults(model).items():
            text = json.dumps(default.model_dump(mode="json") if isinstance(default, BaseModel) else default)
            assert "guardian" not in text.lower(), f"{model.__name__}.{name} defaults to {text}"


def test_the_requests_a_run_cannot_do_without_are_required() -> None:
    """list, inject and incidents have no default; every optional request defaults to not declared."""
    fields = TargetApi.model_fields
    assert {name for name, info in fields.items() if info.is_required()} == {"list_playbooks", "inject", "incidents"}
    optional = ("dry_run", "approvals", "approve", "rollback", "rollback_status", "clock", "stats", "audit_verify")
    assert all(fields[name].default is None for name in optional)
    assert CanaryCheck.model_fields["up_metric"].is_required()
    assert CanaryCheck.model_fields["last_check_metric"].is_required()
    assert DuplicateGuardCheck.model_fields["approvals"].is_required()


def test_the_work_stream_has_no_default_requests_and_is_optional() -> None:
    """[gates.PB.work] must state submit and status (no target's task API assumed); left out, work is None."""
    fields = WorkStream.model_fields
    assert {name for name, info in fields.items() if info.is_required()} == {"submit", "status"}
    assert PlaybookPolicy.model_fields["work"].default is None
    assert pb_policy({}).work is None
    with pytest.raises(ConfigError) as caught:
        parse_config({**TARGET, "gates": {"PB": {"api": MINIMAL_API, "work": {"submit": {"path": "/t"}}}}}, "x.toml")
    assert caught.value.message.startswith("x.toml: gates.PB.work.status: missing required key"), caught.value.message


def test_unconfigured_pb_has_no_api() -> None:
    """No [gates.PB] table: the config loads with no API, and code reaching for one gets a ConfigError naming it."""
    policy = parse_config(TARGET, "certify.toml").policy("PB")
    assert policy.api is None
    with pytest.raises(ConfigError, match=r"\[gates\.PB\.api\] is not declared"):
        policy.target_api  # noqa: B018 - the property access is the subject


@pytest.mark.integration
def test_service_without_pb_api_is_not_run_naming_it(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """load-ok has a [service] but no [gates.PB]: PB is NOT_RUN naming [gates.PB.api]; no guardian path is tried."""
    out = tmp_path / "pack"
    verdict = run_pb(run_certify, git_target("load-ok"), out)
    assert verdict["status"] == "NOT_RUN"
    assert any("no [gates.PB.api]" in line for line in verdict["reasons"]), verdict["reasons"]
    assert not (out / "gates" / "PB" / "governance.json").exists()


@pytest.mark.parametrize(
    ("pb", "key"),
    [
        ({"expected_count": 2}, "gates.PB.api.list_playbooks"),
        ({"api": {"list_playbooks": {"path": "/p"}, "incidents": {"path": "/i"}}}, "gates.PB.api.inject"),
        ({"api": MINIMAL_API, "canaries": {"last_check_metric": "svc_last"}}, "gates.PB.canaries.up_metric"),
        ({"api": MINIMAL_API, "duplicates": {"playbook": "backlog"}}, "gates.PB.duplicates.approvals"),
    ],
    ids=["no-api-table", "no-inject", "no-canary-metric", "no-duplicates-approvals"],
)
def test_pb_config_missing_a_required_key_is_one_line_naming_it(pb: dict[str, Any], key: str) -> None:
    """A PB config missing a required request or name is one ConfigError line naming the file and the key."""
    with pytest.raises(ConfigError) as caught:
        parse_config({**TARGET, "gates": {"PB": pb}}, "certify.toml")
    message = caught.value.message
    assert "\n" not in message
    assert message.startswith(f"certify.toml: {key}: missing required key"), message


def _request(path: str, method: str = "GET", **extra: Any) -> dict[str, Any]:
    """One request as the resolved config dumps it."""
    return {"method": method, "path": path, "body": None, "timeout_s": 5.0} | extra


def test_guardian_declares_exactly_the_requests_it_used_to_inherit() -> None:
    """examples/guardian sends the same requests, metric names and approvals read as the old built-in defaults."""
    policy = load_config(GUARDIAN).policy("PB")
    api = policy.target_api.model_dump(mode="json")
    assert {key: api[key] for key in api if isinstance(api[key], dict) and "path" in api[key]} == {
        "list_playbooks": _request("/api/guardian/playbooks"),
        "inject": _request("/api/guardian/faults/{id}", "POST", timeout_s=20.0),
        "dry_run": _request("/api/guardian/playbooks/{id}/dry-run", "POST"),
        "incidents": _request("/api/guardian/incidents?limit=1000"),
        "approvals": _request("/api/guardian/approvals?status=pending"),
        "approve": _request(
            "/api/guardian/approvals/{approval_id}/approve",
            "POST",
            body={"by": "release-harness", "reason": "playbook gate"},
        ),
        "rollback": _request("/api/guardian/incidents/{incident_id}/rollback", "POST"),
        "rollback_status": _request("/api/guardian/heal_requests/{request_id}"),
        "clock": _request("/api/guardian/clock", "POST"),
        "stats": _request("/api/guardian/healer/stats"),
        "audit_verify": _request("/api/guardian/audit/verify"),
        "learning": _request("/api/self_heal/learning"),
        "scheduler_counters": _request("/api/self_heal/scheduler_counters"),
    }
    assert policy.canaries.up_metric == "guardian_canary_up"
    assert policy.canaries.last_check_metric == "guardian_canary_last_check_timestamp_seconds"
    assert policy.duplicates.approvals.model_dump(mode="json") == _request("/api/guardian/approvals")
    assert policy.work is not None
    assert policy.work.submit.model_dump(mode="json") == _request(
        "/api/tasks", "POST", body={"kind": "orchestrate", "payload": {"steps": 1, "cost_ms": 5, "note": "pb-ledger"}}
    )
    assert policy.work.status.model_dump(mode="json") == _request("/api/tasks/{id}")
    assert undeclared_notes(policy.target_api) == []


def _flag_policy(**api: Any) -> PlaybookPolicy:
    """Playbook `flag` (rollback compared exactly) on the minimal API plus the given requests."""
    return pb_policy(
        {
            "api": MINIMAL_API | api,
            "probes": {"no-flag": {"kind": "file", "path": "fault.flag", "absent": True}},
            "playbooks": {"flag": {"probes": ["no-flag"]}},
            "audit": {"database": "s.db", "query": "SELECT 1"},
        }
    )


def _judged(policy: PlaybookPolicy, record: dict[str, Any]) -> dict[str, Any]:
    """One stored run judged and folded into its report row."""
    base = {"playbook": "flag", "tier": 1, "rep": 1, "held": True, "baseline": {"obs": {}}, "observed": []}
    return judge_playbook([judge_claims(policy, {**base, **record}, judge_run(policy, {**base, **record}))])


def test_undeclared_rollback_request_is_not_run_naming_the_key() -> None:
    """No rollback (or no rollback_status) declared: the rollback check is NOT_RUN with the missing key, never PASS."""
    for declared, missing in (
        ({}, "rollback"),
        ({"rollback": {"method": "POST", "path": "/rb/{incident_id}"}}, "rollback_status"),
    ):
        policy = _flag_policy(**declared)
        skip = PlaybookRun(policy, "flag", 1, 1, threading.Event())._rollback_skip(healed=True)
        assert skip == f"[gates.PB.api] {missing} not declared"
        row = _judged(policy, {"rollback_skip": skip})
        assert row["checks"]["rollback"] == "NOT_RUN"
        assert row["verdict"] != "PASS"
        assert f"flag: rollback not checked: [gates.PB.api] {missing} not declared" in row["reasons"]


def test_tier_two_playbook_without_approve_requests_is_not_run() -> None:
    """A tier 2 playbook when approvals/approve are not declared: the run is not made, NOT_RUN naming both keys."""
    policy = _flag_policy()
    reason = PlaybookRun(policy, "flag", 2, 1, threading.Event()).unrunnable()
    assert reason == "tier 2 needs an approval and [gates.PB.api] approvals and approve are not declared"
    assert PlaybookRun(policy, "flag", 1, 1, threading.Event()).unrunnable() == ""
    row = _judged(policy, {"tier": 2, "not_run": reason})
    assert row["verdict"] == "NOT_RUN"
    assert row["checks"] == {"run": "NOT_RUN"}
    assert f"flag: not run: {reason}" in row["reasons"]


class _RefusingRun(PlaybookRun):
    """A run whose refusal windows and approval are canned (no instance): what `_refusals` records is the subject."""

    def _observe_refusal(self) -> dict[str, Any]:
        """A refusal window that saw nothing."""
        return {"since": 0.0, "samples": []}

    def _approve(self) -> dict[str, Any] | None:
        """No approval answer."""
        return None


def test_change_window_refusal_without_a_clock_is_not_run_naming_the_key() -> None:
    """A tier 3 playbook and no clock declared: the outside-window refusal is NOT_RUN naming clock, not skipped."""
    approvals = {"approvals": {"path": "/a"}, "approve": {"method": "POST", "path": "/a/{approval_id}"}}
    policy = _flag_policy(**approvals)
    run = _RefusingRun(policy, "flag", 3, 1, threading.Event())
    run._refusals(windowed=False, inside=0.0)
    assert run.record["refusal_skip"] == {
        "outside_window": "[gates.PB.api] clock not declared: the governance clock cannot leave the window"
    }
    row = _judged(policy, {"tier": 3, "refusal_skip": run.record["refusal_skip"]})
    assert row["checks"]["outside_window"] == "NOT_RUN"
    assert any("outside window" in r and "[gates.PB.api] clock not declared" in r for r in row["reasons"])


def test_parameter_cases_and_watchdog_without_their_requests_are_not_run() -> None:
    """Params declared but no dry_run, a tier 2 watchdog playbook but no approvals: both NOT_RUN naming the keys."""
    policy = pb_policy(
        {
            "params": [{"playbook": "flag", "params": {"x": 1}}],
            "watchdog": {"playbook": "flag"},
        }
    )
    listed = {"status": 200, "body": {"playbooks": [{"id": "flag", "tier": 2}]}}
    skip = _watchdog_skip(policy, listed)
    assert skip == "flag is tier 2 and [gates.PB.api] approvals and approve not declared"
    judged = judge_governance(policy, {"params": [], "watchdog": {"skip": skip}, "list": listed})
    assert judged["checks"]["params"] == "NOT_RUN"
    assert judged["checks"]["watchdog"] == "NOT_RUN"
    assert "out-of-bounds parameters not sent: [gates.PB.api] dry_run not declared" in judged["reasons"]
    assert f"watchdog not checked: {skip}" in judged["reasons"]


def test_undeclared_cross_checks_are_named_once_and_never_pass() -> None:
    """No stats, learning or audit_verify declared: their checks are n/a or absent, each key named in one note."""
    policy = _flag_policy()
    row = _judged(policy, {"stats_read": {"before": [], "after": [], "stats": {"body": {}}}})
    assert row["checks"]["stats"] == "n/a"
    assert row["checks"]["learning"] == "n/a"
    assert "audit_chain" not in row["checks"]
    notes = undeclared_notes(policy.target_api)
    assert [note.split(" not declared")[0] for note in notes] == [
        "[gates.PB.api] stats",
        "[gates.PB.api] learning and scheduler_counters",
        "[gates.PB.api] audit_verify",
    ]


def test_without_a_dry_run_the_rollback_is_still_compared_with_the_state_before_execute() -> None:
    """No dry_run declared: the dry-run check is NOT_RUN naming the key; the rollback is judged against pre_execute."""
    rollback = {"method": "POST", "path": "/rb/{incident_id}"}
    policy = _flag_policy(rollback=rollback, rollback_status={"path": "/rb/{request_id}"})
    before = {"files": {"state.txt": "a"}, "sqlite": {}, "probes": {}}
    record = {"dry_run_skip": "[gates.PB.api] dry_run not declared", "pre_execute": before}
    restored = {"state": "done", "probe": {"obs": {}}, "after": {"files": {"state.txt": "a"}, "sqlite": {}}}
    row = _judged(policy, {**record, "rollback": restored})
    assert row["checks"]["dry_run"] == "NOT_RUN"
    assert "flag: dry-run not checked: [gates.PB.api] dry_run not declared" in row["reasons"]
    assert row["checks"]["rollback"] == "PASS"
    left = {**restored, "after": {"files": {"state.txt": "a", "leftover": "b"}, "sqlite": {}}}
    assert _judged(policy, {**record, "rollback": left})["checks"]["rollback"] == "FAIL"


#: The pb-* fixture service's task endpoints, as a [gates.PB.work] table.
WORK = {"submit": {"method": "POST", "path": "/api/tasks"}, "status": {"path": "/api/tasks/{id}"}}


def test_without_a_work_stream_the_ledger_is_not_run_and_the_playbook_cannot_pass() -> None:
    """A run that PASSes with [gates.PB.work] is NOT_RUN without it: the ledger NOT_RUN naming the table."""
    probes = {"no-flag": {"kind": "file", "path": "fault.flag", "absent": True}, "ready": {"kind": "http", "path": "/"}}
    declared = {
        "probes": probes,
        "health": ["ready"],
        "playbooks": {"flag": {"probes": ["no-flag"], "rollback": "none"}},
    }
    snapshot = {"files": {}, "sqlite": {}}
    dry_run = {"before": snapshot, "after": snapshot, "answer": {"status": 200, "error": None}}
    record = {**_run_record(baseline_flag=False, observed_flag=True), "held": True, "dry_run": dry_run}
    with_work = pb_policy({**declared, "work": WORK})
    row = judge_playbook([judge_claims(with_work, record, judge_run(with_work, record))])
    assert (row["verdict"], row["checks"]["ledger"]) == ("PASS", "PASS")
    without = pb_policy(declared)
    row = judge_playbook([judge_claims(without, record, judge_run(without, record))])
    assert row["checks"]["ledger"] == "NOT_RUN"
    assert row["verdict"] == "NOT_RUN"
    assert row["ledger"] == [None]
    assert [r for r in row["reasons"] if "[gates.PB.work] not declared" in r] == [
        "flag: work ledger not run: [gates.PB.work] not declared (no work was submitted during the run and "
        "reconciled by id, so work lost or duplicated while healing is not checked)"
    ]
