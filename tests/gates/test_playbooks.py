"""Tests for gate PB (gates/playbooks/): real CLI runs on the pb-* fixture targets, each breaking one promise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import GitTarget, RunCertify

if TYPE_CHECKING:
    from gates.playbooks.config import PlaybookPolicy

#: The three requests every [gates.PB.api] must declare (the pb-* fixture service's paths), nothing optional.
MINIMAL_API: dict[str, Any] = {
    "list_playbooks": {"path": "/api/playbooks"},
    "inject": {"method": "POST", "path": "/api/faults/{id}"},
    "incidents": {"path": "/api/incidents"},
}
#: The canary metric names [gates.PB.canaries] must declare (no target's names are assumed).
CANARY_METRICS = {"up_metric": "svc_canary_up", "last_check_metric": "svc_canary_last_check_timestamp_seconds"}


def pb_policy(data: dict[str, Any]) -> PlaybookPolicy:
    """A PlaybookPolicy from `data`, its api the minimal one unless `data` declares its own."""
    from gates.playbooks.config import PlaybookPolicy  # noqa: PLC0415 - keep the module import cheap

    policy: PlaybookPolicy = PlaybookPolicy.model_validate({"api": MINIMAL_API, **data})
    return policy


def run_pb(run_certify: RunCertify, target: Path, out: Path) -> dict[str, Any]:
    """Run gate PB alone in ci mode; assert no traceback and that `certify verify` accepts the pack."""
    proc = run_certify("run", "--target", target, "--gates", "PB", "--mode", "ci", "--out", out)
    assert "Traceback" not in proc.stdout + proc.stderr
    check = run_certify("verify", out)
    assert check.returncode == 0, check.stdout + check.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    (result,) = [item for item in results["results"] if item["gate"] == "PB"]
    verdict: dict[str, Any] = result["verdict"]
    verdict["exit_code"] = proc.returncode
    return verdict


@pytest.mark.integration
def test_honest_fixture_passes_and_writes_the_documents(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """pb-ok PASSes: both playbooks detected, healed, dry-run clean, rolled back, governed, watchdog and params seen."""
    out = tmp_path / "pack"
    verdict = run_pb(run_certify, git_target("pb-ok"), out)
    assert verdict["status"] == "PASS", verdict["reasons"]
    assert verdict["exit_code"] == 0
    assert verdict["details"]["playbooks"] == {"flag": "PASS", "config": "PASS"}
    assert verdict["details"]["at_rest"] == {"S7 notes canary not in plaintext": "PASS"}  # notes sealed at rest
    assert verdict["details"]["healer_stats"] == {"flag": "PASS", "config": "PASS"}  # H6: stats match the incidents
    matrix = json.loads((out / "traceability.json").read_text(encoding="utf-8"))
    (h6,) = [row for row in matrix["requirements"] if row["id"] == "H6"]
    assert [(check["id"], check["status"]) for check in h6["checks"]] == [("PB.healer-stats", "PASS")]
    report = json.loads((out / "playbooks_report.json").read_text(encoding="utf-8"))
    (config,) = [row for row in report["playbooks"] if row["id"] == "config"]
    assert config["checks"]["needs_approval"] == "PASS"
    assert config["checks"]["outside_window"] == "PASS"
    assert report["governance"]["checks"]["watchdog"] == "PASS"
    assert "MTTR < 2 min" in report["mttr_claim"]
    assert (out / "playbooks_mttr.svg").read_text(encoding="utf-8").startswith("<svg")
    assert "| flag | 1 |" in (out / "playbooks_report.md").read_text(encoding="utf-8")
    _assert_instance_slots_held(out / "gates" / "PB")


def _assert_instance_slots_held(gate_dir: Path) -> None:
    """At most `parallel` instances observed at once, the governance one included; runs began before it ended."""
    plan = json.loads((gate_dir / "plan.json").read_text(encoding="utf-8"))
    governance = json.loads((gate_dir / "governance.json").read_text(encoding="utf-8"))
    runs = [json.loads((gate_dir / name).read_text(encoding="utf-8")) for name in plan["runs"]]
    spans = [(governance["started_at"], governance["ended_at"])]
    spans += [(run["started_at"], run["observed_at"]) for run in runs]
    busiest = max(sum(1 for start, end in spans if start <= at < end) for at, _ in spans)
    assert busiest <= plan["parallel"], spans
    assert min(run["started_at"] for run in runs) < governance["ended_at"], spans
    for run in runs:
        phases = run["phases_s"]
        assert phases["started"] <= phases["settled"] <= phases["closing"] <= phases["stopped"], phases


def test_instance_slot_is_released_once() -> None:
    """A run's slot goes back when its observations end; the release after the instance stopped is a no-op."""
    import threading  # noqa: PLC0415 - only this test needs it

    from gates.playbooks import _Slot  # noqa: PLC0415 - keep the module import cheap

    slots = threading.Semaphore(2)
    first = _Slot(slots)
    first.release()
    first.release()
    held = [_Slot(slots), _Slot(slots)]
    assert not slots.acquire(blocking=False)
    for slot in held:
        slot.release()
    assert slots.acquire(blocking=False)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("fixture", "playbook", "reason"),
    [
        ("pb-liar", "flag", "flag: the harness's probes did not see health back"),
        ("pb-dirty-dry-run", "flag", "flag: dry-run changed state: dry-run-was-here.txt added"),
        ("pb-sticky-rollback", "flag", "rollback-leftover.txt added"),
        ("pb-no-approval", "config", "config: tier 3 fault was healed needs approval"),
        ("pb-stub-stats", "flag", "flag: healer stats say incidents = 12.0, its incident list says"),
    ],
)
def test_broken_playbooks_fail(  # noqa: PLR0917 - pytest fixtures plus the parametrized case
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, fixture: str, playbook: str, reason: str
) -> None:
    """A lying verify, a writing dry-run, a sticky rollback, an unapproved tier 3 run, constant healer stats: FAIL."""
    verdict = run_pb(run_certify, git_target(fixture), tmp_path / "pack")
    assert verdict["status"] == "FAIL"
    assert verdict["exit_code"] == 1
    assert verdict["details"]["playbooks"][playbook] == "FAIL"
    assert any(reason in line for line in verdict["reasons"]), verdict["reasons"]
    if fixture == "pb-stub-stats":
        assert verdict["details"]["healer_stats"][playbook] == "FAIL"  # H6 is not evidenced by constant stats


@pytest.mark.integration
def test_registry_listing_one_fewer_than_declared_fails(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """pb-short declares 2 playbooks and lists 1: FAIL naming the count and the missing playbook."""
    verdict = run_pb(run_certify, git_target("pb-short"), tmp_path / "pack")
    assert verdict["status"] == "FAIL"
    assert "the target lists 1 of 2 playbooks (requirement H1)" in verdict["reasons"]
    assert "declared in certify.toml but not listed by the target: config" in verdict["reasons"]
    (listed,) = [m for m in verdict["measurements"] if m["name"] == "playbooks listed"]
    assert listed["value"] == 1
    assert listed["passed"] is False


@pytest.mark.integration
def test_target_without_service_is_not_run(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A target with no [service] table cannot have its playbooks exercised: NOT_RUN with the reason."""
    verdict = run_pb(run_certify, git_target("tiny"), tmp_path / "pack")
    assert verdict["status"] == "NOT_RUN"
    assert any("[service]" in line for line in verdict["reasons"]), verdict["reasons"]


def _run_record(baseline_flag: bool, observed_flag: bool) -> dict[str, Any]:
    """A stored run of playbook `flag` whose probe saw the flag file as given, healed at once."""

    def sample(t: float, flag: bool) -> dict[str, Any]:
        return {"t": t, "obs": {"no-flag": {"matches": int(flag)}, "ready": {"status": 200, "value": None}}}

    return {
        "playbook": "flag",
        "tier": 1,
        "rep": 1,
        "held": False,
        "baseline": sample(0.0, baseline_flag),
        "observed": [sample(0.1, observed_flag)],
        "samples": [sample(t / 4, False) for t in range(1, 10)],
        "incidents": [{"id": 2, "playbook_id": "flag", "status": "healed"}],
        "ledger": {"attempts": [{"id": "a", "status": 201}], "finals": {"a": {"state": "completed"}}},
    }


def _policy() -> Any:
    """A policy declaring the flag playbook with a file probe and a readiness probe."""
    return pb_policy(
        {
            "probes": {
                "no-flag": {"kind": "file", "path": "fault.flag", "absent": True},
                "ready": {"kind": "http", "path": "/readyz"},
            },
            "health": ["ready"],
            "playbooks": {"flag": {"probes": ["no-flag"], "rollback": "none"}},
        }
    )


def test_fault_the_probes_cannot_see_is_inconclusive() -> None:
    """A fault the harness's probes never saw earns no credit for healing: the playbook is INCONCLUSIVE."""
    from gates.playbooks.judge import judge_playbook, judge_run  # noqa: PLC0415

    row = judge_playbook([judge_run(_policy(), _run_record(baseline_flag=False, observed_flag=False))])
    assert row["verdict"] == "INCONCLUSIVE"
    assert row["checks"]["detected"] == "INCONCLUSIVE"
    assert any("did not see the injected fault" in reason for reason in row["reasons"])


def test_probe_unhealthy_before_injection_is_inconclusive() -> None:
    """Probes already unhealthy before the injection cannot tell the fault apart: INCONCLUSIVE, not PASS."""
    from gates.playbooks.judge import judge_playbook, judge_run  # noqa: PLC0415

    row = judge_playbook([judge_run(_policy(), _run_record(baseline_flag=True, observed_flag=True))])
    assert row["verdict"] == "INCONCLUSIVE"
    assert any("unhealthy before injection" in reason for reason in row["reasons"])


def test_fault_cleared_by_something_else_is_inconclusive_not_pass() -> None:
    """Health already back after the hold with no incident of any playbook: INCONCLUSIVE, never credited."""
    from gates.playbooks.judge import judge_playbook, judge_run  # noqa: PLC0415

    record = {**_run_record(baseline_flag=False, observed_flag=True), "incidents": []}
    row = judge_playbook([judge_run(_policy(), record)])
    assert row["verdict"] != "PASS"
    assert row["checks"]["right_playbook"] == "INCONCLUSIVE"
    assert any("something else cleared it" in reason for reason in row["reasons"])


def test_fault_still_present_and_no_incident_fails() -> None:
    """No incident and the fault still there after the hold: the playbook did not heal, FAIL."""
    from gates.playbooks.judge import judge_playbook, judge_run  # noqa: PLC0415

    record = {**_run_record(baseline_flag=False, observed_flag=True), "incidents": []}
    flagged = {"t": 0.25, "obs": {"no-flag": {"matches": 1}, "ready": {"status": 200, "value": None}}}
    record["samples"] = [flagged, *record["samples"]]
    row = judge_playbook([judge_run(_policy(), record)])
    assert row["verdict"] == "FAIL"
    assert any("no incident of flag reached" in reason for reason in row["reasons"])


def _claims_policy(**api: Any) -> Any:
    """The flag policy with the stats request declared (its fields at their defaults)."""
    from gates.playbooks.config import PlaybookPolicy  # noqa: PLC0415

    data = _policy().model_dump()
    data["api"] |= {"stats": {"path": "/api/stats"}, **api}
    return PlaybookPolicy.model_validate(data)


def _incident(ident: int, status: str, recovery: float | None) -> dict[str, Any]:
    """One incident as guardian lists it."""
    return {"id": ident, "playbook_id": "flag", "status": status, "recovery_s": recovery}


def test_stats_that_disagree_with_the_incident_list_fail() -> None:
    """A stats answer that is constant or stubbed (3 healed claimed, 1 listed) FAILs the stats check."""
    from gates.playbooks.stats import stats_findings  # noqa: PLC0415

    incidents = [_incident(1, "healed", 0.5), _incident(2, "failed", None)]
    honest = {"incidents": 2, "outcomes": {"healed": 1, "failed": 1, "open": 0}, "mttr_s": {"count": 1, "max": 0.5}}
    run = {"playbook": "flag", "stats_read": {"before": incidents, "after": incidents, "stats": {"body": honest}}}
    assert stats_findings(_claims_policy(), run)[0] == "PASS"
    stub = {"incidents": 3, "outcomes": {"healed": 3}, "mttr_s": {"count": 3, "max": 0.2}}
    run["stats_read"]["stats"] = {"body": stub}
    status, reasons, _ = stats_findings(_claims_policy(), run)
    assert status == "FAIL"
    assert "flag: healer stats say outcome healed = 3.0, its incident list says 1" in reasons


def test_stats_read_while_an_incident_opened_may_lie_between_the_two_lists() -> None:
    """An incident opened between the two reads: a stats figure between them is accepted."""
    from gates.playbooks.stats import stats_findings  # noqa: PLC0415

    before = [_incident(1, "healed", 0.5)]
    after = [*before, _incident(2, "open", None)]
    stats = {"incidents": 2, "outcomes": {"healed": 1, "open": 1}, "mttr_s": {"count": 1, "max": 0.5}}
    run = {"playbook": "flag", "stats_read": {"before": before, "after": after, "stats": {"body": stats}}}
    assert stats_findings(_claims_policy(), run)[0] == "PASS"


def test_resolution_claimed_before_the_probes_saw_health_fails_the_timeline() -> None:
    """A target dating its resolution before the harness last saw the fault claims too short an MTTR: FAIL."""
    from gates.playbooks.stats import timeline_findings  # noqa: PLC0415

    run = _run_record(baseline_flag=False, observed_flag=True)
    t0 = 1000.0
    run["inject_at"] = t0
    run["observed"] = [{"t": 0.1, "at": t0 + 0.1, "obs": {"no-flag": {"matches": 1}}}]
    faulty = [{"t": t, "at": t0 + t, "obs": {"no-flag": {"matches": 1}}} for t in (1.0, 2.0, 3.0, 4.0)]
    healthy = [{"t": t, "at": t0 + t, "obs": {"no-flag": {"matches": 0}}} for t in (5.0, 6.0, 7.0)]
    run["samples"] = faulty + healthy
    run["final_seen_at"] = {"2": t0 + 5.5}
    honest = {"id": 2, "playbook_id": "flag", "status": "healed", "detected_at": t0 + 0.5, "resolved_at": t0 + 4.6}
    run["incidents"] = [honest]
    assert timeline_findings(_policy(), run)[0] == "PASS"
    run["incidents"] = [{**honest, "resolved_at": t0 + 1.0}]
    status, reasons, facts = timeline_findings(_policy(), run)
    assert status == "FAIL"
    assert "MTTR is shorter than what happened" in reasons[0]
    assert facts["last_fault_sample_at"] == t0 + 4.0
    run["incidents"] = [{**honest, "detected_at": t0 - 30}]
    assert "before the injection" in timeline_findings(_policy(), run)[1][0]


def _snap(worker_pid: int, flag: str = "a") -> dict[str, Any]:
    """A snapshot: one pid file, one other file, and the process list."""
    return {
        "files": {"pids/worker-0.pid": str(worker_pid), "fault.flag": flag},
        "processes": [{"pid": worker_pid, "name": "worker"}],
    }


def _dry(before: dict[str, Any], after: dict[str, Any], control: dict[str, Any] | None) -> dict[str, Any]:
    """A held run record whose dry-run answered 200 between the two snapshots."""
    dry: dict[str, Any] = {"before": before, "after": after, "answer": {"status": 200, "error": None}}
    if control is not None:
        dry["control"] = control
    return {"playbook": "flag", "held": True, "dry_run": dry}


def _dry_check(run: dict[str, Any]) -> tuple[str, list[str]]:
    """The dry-run check and the reasons the judge gives for one run record."""
    from gates.playbooks.judge import _judge_dry_run  # noqa: PLC0415

    checks: dict[str, str] = {}
    reasons: list[str] = []
    _judge_dry_run(run, checks, reasons)
    return checks["dry_run"], reasons


def test_worker_churn_seen_without_a_dry_run_is_not_held_against_it() -> None:
    """A worker restarted by the fault in the control windows too (poison task) does not fail the dry-run."""
    run = _dry(_snap(11), _snap(12), {"before": _snap(10), "after": _snap(13)})
    status, reasons = _dry_check(run)
    assert status == "PASS"
    assert any("the fault's own churn" in reason for reason in reasons)


def test_dry_run_change_absent_from_the_control_windows_fails() -> None:
    """A file the dry-run changed that did not change without it FAILs, whatever churned beside it."""
    run = _dry(_snap(11), _snap(12, flag="b"), {"before": _snap(10), "after": _snap(13, flag="b")})
    status, reasons = _dry_check(run)
    assert status == "FAIL"
    assert any("fault.flag changed" in reason for reason in reasons)
    assert not any("pids/worker-0.pid" in reason for reason in reasons)


def test_dry_run_without_control_windows_fails_on_any_change() -> None:
    """A record without control windows (older packs) excuses nothing: a restarted worker FAILs."""
    status, reasons = _dry_check(_dry(_snap(11), _snap(12), None))
    assert status == "FAIL"
    assert any("processes: processes changed" in reason for reason in reasons)


def test_quiet_control_windows_excuse_nothing() -> None:
    """With no churn in the control windows a dry-run that restarts a worker FAILs."""
    status, _ = _dry_check(_dry(_snap(11), _snap(12), {"before": _snap(11), "after": _snap(12)}))
    assert status == "FAIL"


def _files(*paths: str) -> dict[str, Any]:
    """A snapshot holding these files (each with the same content) and no process."""
    return {"files": dict.fromkeys(paths, "x"), "processes": []}


def test_workers_crashing_one_after_another_are_churn_by_pid_file_shape() -> None:
    """worker-1's pid file went in a control window, worker-0's in the dry-run's: the fault's churn (poison-task)."""
    control = {"before": _files("pids/worker-0.pid", "pids/worker-1.pid"), "after": _files()}
    status, reasons = _dry_check(_dry(_files("pids/worker-0.pid"), _files(), control))
    assert status == "PASS", reasons
    assert any("pids/worker-0.pid removed" in reason and "own churn" in reason for reason in reasons)


def test_only_pid_files_count_by_shape() -> None:
    """A backup file the dry-run removed is held against it even where another backup churned beside it."""
    control = {"before": _files("backups/db-0.db", "backups/db-1.db"), "after": _files()}
    status, reasons = _dry_check(_dry(_files("backups/db-0.db"), _files(), control))
    assert status == "FAIL"
    assert any("backups/db-0.db removed" in reason for reason in reasons), reasons
