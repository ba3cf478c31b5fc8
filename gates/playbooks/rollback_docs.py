"""H4: every playbook's rollback ran in the gate, and its runbook's rollback section names the same steps.

"Names the same steps" is checked literally: each step certify.toml declares for a playbook's rollback
(`rollback_steps`) must appear, case-insensitively and with whitespace collapsed, in the text of the
runbook section whose heading matches `[gates.PB.rollback_docs] section`. A playbook whose rollback is
`exact` (it has side effects the target undoes) needs at least one declared step, a PASS of the gate's
own rollback comparison, and the steps in its section; one declared `rollback = "none"` needs the
section (saying why nothing is undone). Collect copies each section into the evidence; the judge is
pure over that copy.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

from gates.docs_checks import parse_markdown
from gates.playbooks.config import PlaybookPolicy

if TYPE_CHECKING:
    from pathlib import Path


def _normal(text: str) -> str:
    """Lower case, whitespace collapsed, Markdown code ticks dropped (how steps are compared)."""
    return re.sub(r"\s+", " ", text.replace("`", "")).strip().lower()


def read_section(target_dir: Path, relative: str, section: str) -> dict[str, Any]:
    """A runbook's file facts and the text under its first heading matching `section` (collect side)."""
    path = target_dir / relative
    if not path.is_file():
        return {"path": relative, "exists": False}
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    doc = parse_markdown(text)
    lines = text.splitlines()
    out: dict[str, Any] = {"path": relative, "exists": True, "sha256": hashlib.sha256(raw).hexdigest()}
    for index, heading in enumerate(doc.headings):
        if heading.title.strip().lower() == section.strip().lower():
            later = [h.start for h in doc.headings[index + 1 :] if h.level <= heading.level]
            out["heading"] = heading.title
            out["line"] = heading.start + 1
            out["text"] = "\n".join(lines[heading.end : later[0] if later else len(lines)]).strip()
            return out
    return out


def collect_rollback_docs(policy: PlaybookPolicy, target_dir: Path) -> dict[str, Any]:
    """The rollback section of every declared playbook's runbook, as found in the target's tree."""
    docs = policy.rollback_docs
    if docs is None:
        return {}
    return {
        playbook: read_section(target_dir, docs.runbook.replace("{id}", playbook), docs.section)
        for playbook in sorted(policy.playbooks)
    }


def _judge_one(policy: PlaybookPolicy, playbook: str, row: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """One playbook: rollback run, section present, every declared step named in it."""
    assert policy.rollback_docs is not None  # noqa: S101 - only judged when declared
    check = policy.playbooks[playbook]
    section = policy.rollback_docs.section
    out = {
        "playbook": playbook,
        "runbook": doc.get("path"),
        "rollback": check.rollback,
        "ran": row.get("checks", {}).get("rollback", "NOT_RUN"),
        "steps": list(check.rollback_steps),
        "missing_steps": [],
        "status": "PASS",
        "reasons": [],
    }
    reasons: list[str] = out["reasons"]
    if not doc.get("exists"):
        reasons.append(f"{playbook}: runbook {doc.get('path')} does not exist")
    elif "text" not in doc:
        reasons.append(f"{playbook}: runbook {doc['path']} has no {section!r} section")
    elif not doc["text"]:
        reasons.append(f"{playbook}: runbook {doc['path']} section {section!r} (line {doc['line']}) is empty")
    if check.rollback == "exact":
        if not check.rollback_steps:
            reasons.append(
                f"{playbook}: no rollback_steps declared in [gates.PB.playbooks] although its rollback "
                "is exact: nothing to cross-check with the runbook"
            )
        text = _normal(doc.get("text", ""))
        out["missing_steps"] = [step for step in check.rollback_steps if _normal(step) not in text]
        if out["missing_steps"] and doc.get("text"):
            missing = ", ".join(repr(step) for step in out["missing_steps"])
            reasons.append(
                f"{playbook}: runbook {doc['path']} section {section!r} does not name the rollback step(s) {missing}"
            )
    documented = not reasons
    if check.rollback == "exact" and out["ran"] != "PASS":
        reasons.append(f"{playbook}: its rollback did not PASS in the gate (rollback check {out['ran']})")
    if not documented or out["ran"] == "FAIL":
        out["status"] = "FAIL"
    elif check.rollback == "exact" and out["ran"] != "PASS":
        out["status"] = out["ran"] if out["ran"] in ("NOT_RUN", "INCONCLUSIVE") else "INCONCLUSIVE"
    return out


def judge_rollback_docs(
    policy: PlaybookPolicy, rows: list[dict[str, Any]], docs: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Per listed and declared playbook: its rollback documented and run; None when H4 is not declared."""
    if policy.rollback_docs is None:
        return None
    by_id = {row["id"]: row for row in rows}
    stored = docs or {}
    judged = [
        _judge_one(policy, playbook, by_id[playbook], stored.get(playbook, {"path": None, "exists": False}))
        for playbook in sorted(policy.playbooks)
        if playbook in by_id
    ]
    return {
        "playbooks": judged,
        "checks": {row["playbook"]: row["status"] for row in judged},
        "reasons": [reason for row in judged for reason in row["reasons"]],
    }
