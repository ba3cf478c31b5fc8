"""chaos_report.md: one row per experiment, then what each row means and where its evidence is."""

from __future__ import annotations

from typing import Any


def _num(value: Any) -> str:
    """A figure for the table ('-' when absent)."""
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def render_report(judged: list[dict[str, Any]], mode: str, policy_facts: dict[str, Any], gate_status: str) -> str:
    """The Markdown report."""
    lines = [
        "# Chaos recovery report (gate G4)",
        "",
        f"Gate status: **{gate_status}**. Mode: {mode}"
        + (
            f" (ci: {policy_facts['repetitions']} repetition(s) per experiment and a {policy_facts['ci_fault_s']:g} s "
            "fault window instead of the release settings)."
            if mode == "ci"
            else f" ({policy_facts['repetitions']} repetition(s) per experiment)."
        ),
        "",
        f"Probes every {policy_facts['probe_interval_s']:g} s: readiness 2xx **and** a fresh task completing within "
        f"{policy_facts['healthy_latency_s']:g} s. Recovered = the first probe of a healthy streak lasting "
        f"{policy_facts['stable_s']:g} s; recovery is measured from the fault's removal (for a kill, from the kill). "
        f"Background work: {policy_facts['work_rate_per_s']:g} submissions/s; every accepted id is read back after "
        "recovery (lost = unknown to the target; not completed = failed or unfinished after the drain; duplicated = "
        "completions beyond one, from the target's per-task count and/or its completion counter). "
        f"Each experiment ran on its own instance, up to {policy_facts.get('concurrency', 1)} at a time; experiments "
        "whose faults share something (the proxy server, the mount table) or marked exclusive never overlapped "
        "(when each ran: gates/G4/schedule.json).",
        "",
        "| Experiment | Req | Fault | Repetitions | Recovery max / median (s) | Budget (s) | Failed requests "
        "| Accepted | Lost | Not completed | Duplicated | Verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for item in judged:
        rec = item.get("recovery_s") or {}
        lines.append(
            f"| {item['id']} | {item['requirement']} | {item['fault']} | {_num(item.get('repetitions'))} "
            f"| {_num(rec.get('max'))} / {_num(rec.get('median'))} | {item['budget_s']:g} "
            f"| {_num(item.get('failed_requests'))} | {_num(item.get('accepted'))} | {_num(item.get('lost'))} "
            f"| {_num(item.get('not_completed'))} | {_num(item.get('duplicated'))} | {item['status']}"
            f"{' (optional)' if item.get('optional') else ''} |"
        )
    lines += ["", "## Findings", ""]
    for item in judged:
        for reason in item["reasons"]:
            lines.append(f"- {reason}")
    lines += [
        "",
        "## Evidence",
        "",
        "- `chaos/<experiment>/journal-<n>.json`: Chaos Toolkit-shaped journal of each repetition.",
        "- `chaos/<experiment>/timeline-<n>.svg`: probes and work over time, fault window shaded.",
        "- `gates/G4/experiments/<experiment>/rep-<n>.json`: every probe sample, every work submission, the fault's "
        "facts and the read-back of every accepted id; `certify verify` recomputes each verdict from them.",
        "",
    ]
    return "\n".join(lines)
