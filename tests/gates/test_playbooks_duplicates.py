"""Tests for PB.duplicates (H12): the duplicate approval-request guard, judged from the API and the audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gates.playbooks.config import PlaybookPolicy
from gates.playbooks.duplicates import judge_duplicates, step_offsets_s
from tests.conftest import GitTarget, RunCertify
from tests.gates.test_playbooks import MINIMAL_API, run_pb

AUDIT = {"database": "g.db", "query": "SELECT seq, actor, action, detail, ts FROM audit"}


def _policy(audit: bool = True) -> PlaybookPolicy:
    """A PB policy declaring the guard check on playbook `backlog` (600 s window, 60 s margin)."""
    declared: dict[str, Any] = {
        "api": MINIMAL_API,
        "duplicates": {"playbook": "backlog", "approvals": {"path": "/api/approvals"}},
    }
    if audit:
        declared["audit"] = AUDIT
    return PlaybookPolicy.model_validate(declared)


def _answer(*ids: int) -> dict[str, Any]:
    """An approvals answer listing these approval ids, all for service `queue`, diagnosis `backlog`."""
    items = [{"id": i, "service": "queue", "diagnosis": "backlog", "status": "pending"} for i in ids]
    return {"status": 200, "body": {"approvals": items}}


def _record(inside: tuple[int, ...], after: tuple[int, ...], audit_actions: list[str]) -> dict[str, Any]:
    """A stored record: approval 1 after the 1st request, the given ids after the 2nd and 3rd; audit at 11, 21, 31."""
    offsets = step_offsets_s(_policy().duplicates)  # type: ignore[arg-type]
    answers = {"first": _answer(1), "inside": _answer(*inside), "after": _answer(*after)}
    steps = [
        {"name": name, "offset_s": offsets[name], "since": since, "approvals": answers[name]}
        for name, since in (("first", 10.0), ("inside", 20.0), ("after", 30.0))
    ]
    rows = [
        [n + 1, "healer", action, '{"playbook": "backlog"}', 10.0 * (n + 1) + 1]
        for n, action in enumerate(audit_actions)
    ]
    return {"before": _answer(), "steps": steps, "audit": {"rows": rows}}


HONEST = ["approval_requested", "duplicate_suppressed", "approval_requested"]


def test_refused_inside_the_window_and_accepted_after_passes() -> None:
    """One approval, the duplicate at +540 s refused and audited, a new one at +660 s: all four checks PASS."""
    judged = judge_duplicates(_policy(), _record((1,), (1, 2), HONEST))
    assert judged is not None
    assert set(judged["checks"].values()) == {"PASS"}, judged["reasons"]
    assert judged["key"] == ["queue", "backlog"]
    assert [row["offset_s"] for row in judged["steps"]] == [0.0, 540.0, 660.0]
    assert [row["new_approvals"] for row in judged["steps"]] == [[[1, None]], [], [[2, None]]]


def test_accepted_duplicate_or_unaudited_refusal_or_no_reacceptance_fails() -> None:
    """A second approval inside the window, a silent refusal, or nothing after the window: FAIL naming it."""
    accepted = judge_duplicates(_policy(), _record((1, 2), (1, 2, 3), ["approval_requested"] * 3))
    assert accepted is not None
    assert accepted["checks"]["H12 duplicate refused"] == "FAIL"
    assert (
        "H12: a second request for service 'queue', diagnosis 'backlog' 540 s after the first was accepted: approval 2"
        in accepted["reasons"]
    )
    silent = judge_duplicates(_policy(), _record((1,), (1, 2), ["approval_requested", "blocked", "approval_requested"]))
    assert silent is not None
    assert silent["checks"]["H12 refusal audited"] == "FAIL"
    assert silent["checks"]["H12 duplicate refused"] == "PASS"
    stuck = judge_duplicates(_policy(), _record((1,), (1,), HONEST))
    assert stuck is not None
    assert stuck["checks"]["H12 accepted after the window"] == "FAIL"
    assert any("660 s after the first (window 600 s)" in reason for reason in stuck["reasons"])


def test_undeclared_unrecorded_interrupted_or_unaudited_is_never_pass() -> None:
    """Not declared: None; no record: NOT_RUN; a missing step: FAIL; no audit log declared: INCONCLUSIVE."""
    assert judge_duplicates(PlaybookPolicy(), None) is None
    missing = judge_duplicates(_policy(), None)
    assert missing is not None
    assert missing["checks"] == {"H12 duplicate guard": "NOT_RUN"}
    cut = _record((1,), (1, 2), HONEST)
    cut["steps"] = cut["steps"][:2]
    interrupted = judge_duplicates(_policy(), cut)
    assert interrupted is not None
    assert interrupted["checks"] == {"H12 duplicate guard": "FAIL"}
    unaudited = judge_duplicates(_policy(audit=False), _record((1,), (1, 2), HONEST))
    assert unaudited is not None
    assert unaudited["checks"] == {"H12 duplicate guard": "INCONCLUSIVE"}


@pytest.mark.integration
def test_target_accepting_duplicates_fails_h12(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """pb-duplicates files a 2nd approval 540 s (governance clock) after the 1st: PB.duplicates FAILs, so does H12."""
    out = tmp_path / "pack"
    verdict = run_pb(run_certify, git_target("pb-duplicates"), out)
    assert verdict["status"] == "FAIL"
    assert verdict["details"]["duplicates"] == {
        "H12 first request accepted": "PASS",
        "H12 duplicate refused": "FAIL",
        "H12 refusal audited": "FAIL",
        "H12 accepted after the window": "PASS",
    }
    assert (
        "H12: a second request for service 'queue', diagnosis 'backlog' 540 s after the first was accepted: approval 2"
        in verdict["reasons"]
    )
    matrix = json.loads((out / "traceability.json").read_text(encoding="utf-8"))
    (h12,) = [row for row in matrix["requirements"] if row["id"] == "H12"]
    assert [(check["id"], check["status"]) for check in h12["checks"]] == [("PB.duplicates", "FAIL")]
