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
        "Recovered = health back **and** every role's process count back to its pre-fault value (new pids where "
        "the fault killed one); the recovery time is the later of the two. Throughput: a burst of work completed "
        "before each fault and after recovery, the ratio of the rates (worst repetition). The verdict of an "
        "experiment is its worst repetition's."
        + (
            f" Seed {policy_facts['seed']}: `[gates.G4] seed = {policy_facts['seed']}` replays these fault moments."
            if policy_facts.get("seed") is not None
            else ""
        ),
        "",
        "| Experiment | Req | Fault | Repetitions | Recovery p50 / p95 / max (s) | Capacity restore p50 / max (s) "
        "| Throughput after / before (min) | Budget (s) | Failed requests "
        "| Accepted | Lost | Not completed | Duplicated | Verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for item in judged:
        rec = item.get("recovery_s") or {}
        cap = item.get("capacity_restore_s") or {}
        ratio = item.get("throughput_ratio_min")
        lines.append(
            f"| {item['id']} | {item['requirement']} | {item['fault']} | {_num(item.get('repetitions'))} "
            f"| {_num(rec.get('median'))} / {_num(rec.get('p95'))} / {_num(rec.get('max'))} "
            f"| {_num(cap.get('median'))} / {_num(cap.get('max'))} | {'-' if ratio is None else f'{ratio:.0%}'} "
            f"| {item['budget_s']:g} "
            f"| {_num(item.get('failed_requests'))} | {_num(item.get('accepted'))} | {_num(item.get('lost'))} "
            f"| {_num(item.get('not_completed'))} | {_num(item.get('duplicated'))} | {item['status']}"
            f"{' (optional)' if item.get('optional') else ''} |"
        )
    lines += ["", "## Findings", ""]
    for item in judged:
        for reason in item["reasons"]:
            lines.append(f"- {reason}")
    lines += ["", "## Repetitions", ""]
    for item in judged:
        for n, rep in enumerate(item.get("per_repetition") or [], start=1):
            lines.append(
                f"- {item['id']} #{n}: {repetition_line(rep)} ([timeline](chaos/{item['id']}/timeline-{n}.svg))"
            )
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


def repetition_line(rep: dict[str, Any]) -> str:
    """One repetition's timeline in words: moment, impact, health and capacity back, throughput."""
    cap = rep.get("capacity") or {}
    before, after = cap.get("rate_before") or {}, cap.get("rate_after") or {}
    parts = [
        f"fault {_num(rep.get('moment_s'))} s after the baseline",
        f"impact {_num(rep.get('impact_s'))} s",
        f"health back {_num(rep.get('recovery_from_removal_s'))} s after removal",
        f"capacity back {_num(cap.get('restore_from_removal_s'))} s",
        f"roles before {_roles(cap.get('before'))}, after {_roles(cap.get('final'))}",
        f"throughput {_num(before.get('rate_per_s'))}/s before, {_num(after.get('rate_per_s'))}/s after",
        f"recovery {_num(rep.get('recovery_s'))} s",
    ]
    return "; ".join(parts)


def _roles(roles: dict[str, list[int]] | None) -> str:
    """Role counts, e.g. 'worker 2, api 1' ('-' when not counted)."""
    if not roles:
        return "-"
    return ", ".join(f"{name} {len(pids)}" for name, pids in sorted(roles.items()))
