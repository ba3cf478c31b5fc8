"""traceability.md: the matrix as a Markdown page an auditor reads (traceability.json is the record)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.render_rows import markdown_text

#: Evidence files listed per check before the rest are counted (traceability.json lists them all).
FILES_SHOWN = 5


def completeness_line(facts: Mapping[str, Any]) -> str:
    """One line: `traceability: 45 of 47 in-scope requirements evidenced and PASS (95.7 %)`."""
    return (
        f"traceability: {facts['passed']} of {facts['in_scope']} in-scope requirements evidenced and PASS "
        f"({facts['percent']} %)"
    )


def _files(check: Mapping[str, Any]) -> str:
    """A check's evidence files with a short sha256 each, the first few of them."""
    files = check["evidence"]
    shown = [f"`{markdown_text(f['path'])}` ({f['sha256'][:12]})" for f in files[:FILES_SHOWN]]
    if len(files) > FILES_SHOWN:
        shown.append(f"+{len(files) - FILES_SHOWN} more in traceability.json")
    return "<br>".join(shown) or "-"


def render_matrix_md(matrix: Mapping[str, Any]) -> str:
    """The whole matrix: completeness, then one table row per check of every requirement."""
    done = matrix["completeness"]
    policy = matrix.get("policy")
    lines = [
        "# Traceability matrix",
        "",
        f"Requirement catalogue version {matrix['catalogue_version']}; scope from "
        + (f"policy {policy['name']} {policy['version']} (sha256 {policy['sha256']})." if policy else "no policy."),
        "",
        f"**{completeness_line(done)}.**",
    ]
    if done["not_passed"]:
        lines.append(f"Not PASS: {', '.join(done['not_passed'])}.")
    if done["unevidenced"]:
        lines.append(f"UNEVIDENCED (no check in this harness version): {', '.join(done['unevidenced'])}.")
    if matrix.get("without_check"):
        lines.append(f"No check in this harness version, whatever the scope: {', '.join(matrix['without_check'])}.")
    lines += ["", "| Requirement | Status | Check | Check status | Evidence (sha256) |", "|---|---|---|---|---|"]
    for row in matrix["requirements"]:
        head = f"**{row['id']}** {markdown_text(row['text'])}" + (
            f" ({markdown_text(row['figure'])})" if row["figure"] else ""
        )
        status = f"**{row['status']}**: {markdown_text(row['reason'])}"
        if not row["checks"]:
            lines.append(f"| {head} | {status} | - | - | - |")
        for check in row["checks"]:
            lines.append(
                f"| {head} | {status} | {check['gate']} `{check['id']}` {markdown_text(check['title'])} | "
                f"{check['status']}: {markdown_text(check['reason'])} | {_files(check)} |"
            )
            head = status = '"'
    return "\n".join(lines) + "\n"


def traceability_context(results_doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the front pages print of the matrix, from results.json's decision (None in packs without one)."""
    facts = (results_doc.get("overall") or {}).get("traceability")
    if not isinstance(facts, Mapping):
        return None
    return {
        "line": completeness_line(facts),
        "not_passed": [str(item) for item in facts.get("not_passed") or ()],
        "required": bool(facts.get("scope_listed")),
    }
