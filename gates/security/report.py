"""security_report.md: the G5 verdict, each scanner's coverage, every finding, waiver and licence, in Markdown."""

from __future__ import annotations

from typing import Any

from gates.security.policy import Finding, Judgement, ScanResult, SecurityPolicy, Severity, WaiverUse
from harness.model import Verdict

DOCUMENT = "security_report.md"


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _number(value: object) -> str:
    """A measured value without a spurious `.0`."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


#: Why a finding of each scanner matters, in one line (the reviewer's first question).
WHY = {
    "detect-secrets": "a committed credential stays in every clone and fork until it is rotated; deleting it does not",
    "bandit": "a code pattern that is a common source of vulnerabilities; confirm it is safe here or fix it",
    "ruff": "a code pattern that is a common source of vulnerabilities; confirm it is safe here or fix it",
    "mypy": "a type error is a latent crash or wrong value on a path the tests may not reach",
    "pip-audit": "an installed version has a published vulnerability; upgrade to a fixed version",
    "pip-licenses": "the licence may not allow shipping the package under the project's terms",
    "waivers": "an expired or incomplete waiver no longer accepts the risk it was granted for",
}


def _location(finding: Finding) -> str:
    """Where the finding is: file:line, with the commit for a history finding."""
    if not finding.location:
        return "-"
    place = f"{finding.location}:{finding.line}" if finding.line else finding.location
    return f"commit `{finding.commit[:12]}` {place}" if finding.commit else place


def _waiver_cell(use: WaiverUse | None) -> str:
    """The waiver that accepts a finding, or a dash."""
    if use is None:
        return "-"
    rotated = f", rotated {use.rotated}" if use.rotated else ""
    return f"`{_cell(use.finding)}` ({_cell(use.owner)}, until {use.expires}{rotated})"


def _findings_table(findings: list[tuple[Finding, WaiverUse | None]]) -> list[str]:
    """Findings grouped by severity: tool, rule, location, what, why it matters and the accepting waiver."""
    if not findings:
        return ["None.", ""]
    lines: list[str] = []
    for level in Severity:
        group = sorted((item for item in findings if item[0].severity is level), key=lambda item: item[0].id)
        if not group:
            continue
        lines += [f"### {level.value} ({len(group)})", ""]
        lines += ["| tool | rule | location | what | why it matters | waiver |", "|---|---|---|---|---|---|"]
        for finding, use in group:
            rule = f"[{_cell(finding.rule)}]({finding.help_uri})" if finding.help_uri else _cell(finding.rule)
            why = WHY.get(finding.scanner, "-")
            cells = [finding.scanner, rule, _location(finding), _cell(finding.title), why, _waiver_cell(use)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _waivers(judgement: Judgement) -> list[str]:
    """The G5 waivers the policy grants and what each matched in this run (certify.toml's own are never honoured)."""
    if not judgement.waivers:
        return ["No G5 waiver granted by the policy.", ""]
    lines = ["| finding | owner | expires | rotated | state | matched | reason |", "|---|---|---|---|---|---|---|"]
    for use in judgement.waivers:
        state = "EXPIRED" if use.expired else ("active" if use.matched else "active, unused")
        matched = ", ".join(f"`{m}`" for m in use.matched) or "nothing"
        rotated = use.rotated or "-"
        cells = [f"`{_cell(use.finding)}`", _cell(use.owner), use.expires, rotated, state, matched, _cell(use.reason)]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _licences(results: list[ScanResult]) -> list[str]:
    """The licence of every reviewed package."""
    rows = next((list(r.table) for r in results if r.tool == "pip-licenses"), [])
    if not rows:
        return []
    lines = ["## Licences", "", "| package | version | licence | from | decision |", "|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r["decision"] == "allowed", r["name"].lower())):
        lines.append(
            f"| {_cell(row['name'])} | {_cell(row['version'])} | {_cell(row['licence'])} | {_cell(row['source'])} "
            f"| {row['decision']} |"
        )
    return [*lines, ""]


def render(
    verdict: Verdict,
    results: list[ScanResult],
    judgement: Judgement,
    *,
    policy: SecurityPolicy,
    context: dict[str, Any],
    outputs: dict[str, str],
) -> str:
    """The whole report; it names secrets by file, line and hash only."""
    lines = [
        f"# Security report (G5): {verdict.status.value}",
        "",
        f"Target `{context.get('target_project') or '?'}`, run date {context['run_date']} ({context['mode']} mode). "
        f"Findings at or above **{policy.fail_on}** block unless waived. "
        "This report was written when the evidence was collected; `certify verify` recomputes the verdict.",
        "",
        "## Verdict",
        "",
        *(f"- {_cell(reason)}" for reason in verdict.reasons),
        "",
        "## Scanners",
        "",
        "| scanner | status | what it covered |",
        "|---|---|---|",
        *(f"| {r.scanner} | {r.status.value} | {_cell(r.summary)} |" for r in results),
        "",
    ]
    database = next((r.facts.get("advisory_db") for r in results if r.facts.get("advisory_db")), None)
    if database:
        lines += [
            "## Advisory database",
            "",
            f"`{database.get('path')}`: {database.get('records')} records for {database.get('packages')} packages, "
            f"dated {database.get('date')} ({database.get('date_source')}), "
            f"commit {database.get('commit') or 'unknown'}, "
            f"{database.get('age_days', '?')} days old on the run date (limit {policy.max_advisory_age_days}); "
            f"sha256 of its files `{database.get('sha256')}`.",
            "",
        ]
    blocking = [f for f in judgement.unwaived if f.severity.rank >= policy.threshold.rank]
    below = [f for f in judgement.unwaived if f.severity.rank < policy.threshold.rank]
    lines += ["## Blocking findings", "", *_findings_table([(f, None) for f in blocking])]
    lines += [f"## Findings below {policy.fail_on}", "", *_findings_table([(f, None) for f in below])]
    lines += ["## Waived findings", "", *_findings_table(list(judgement.waived))]
    lines += ["## Waivers", "", *_waivers(judgement)]
    lines += _licences(results)
    lines += ["## Measurements", "", "| measurement | value | threshold |", "|---|---|---|"]
    for m in verdict.measurements:
        threshold = f"{m.comparator} {_number(m.threshold)}" if m.comparator else ""
        lines.append(f"| {_cell(m.name)} | {_number(m.value)} {m.unit} | {threshold} |")
    lines += ["", "## Tools and outputs", ""]
    lines += [f"- {name} {version}" for name, version in sorted(context.get("tools", {}).items())]
    lines += [f"- `{name}`: {note}" for name, note in outputs.items()]
    counts = {level.value: sum(1 for f in judgement.unwaived if f.severity is level) for level in Severity}
    lines += ["", "Unwaived findings by severity: " + ", ".join(f"{k} {v}" for k, v in counts.items()), ""]
    return "\n".join(lines)
