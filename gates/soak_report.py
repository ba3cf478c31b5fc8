"""soak_report.md: the soak's hourly figures, with an ABBREVIATED banner when it was not the full soak (R5).

A pure function of the summary the SOAK gate's judge computes, so the report says what the verdict says.
"""

from __future__ import annotations

from typing import Any

KIB_PER_MIB = 1024


def _num(value: Any, unit: str = "", digits: int = 1) -> str:
    """A figure for the table ('-' when absent)."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _mib(kib: Any) -> str:
    """KiB as MiB with one decimal."""
    return "-" if kib is None else f"{float(kib) / KIB_PER_MIB:.1f}"


def _delta(start: Any, end: Any, scale: float = 1.0) -> str:
    """end - start, signed."""
    if start is None or end is None:
        return "-"
    return f"{(float(end) - float(start)) / scale:+.1f}"


def render_report_md(summary: dict[str, Any]) -> bytes:
    """The soak report as Markdown bytes."""
    duration = summary["duration"]
    plan = summary["plan"]
    lines = ["# Soak report (P4 load and the self-healing loop)", ""]
    if duration["abbreviated"]:
        lines += [
            f"> **ABBREVIATED SOAK — not the soak (R5).** {duration['soaked_h']:.2f} h soaked; the P4 soak "
            f"requires {summary['limits']['hours']:g} h and H15's self-healing loop "
            f"{summary['limits']['loop_hours']:g} h. Nothing here is extrapolated.",
            "",
        ]
        lines += [f"> {note}" for note in duration["notes"]] + [""]
    if summary["mode"] == "ci":
        lines += ["> **Shortened soak (ci mode).** Its figures are not release measurements.", ""]
    resumed = plan.get("resumed_from")
    lines += [
        f"- mode: {summary['mode']}; requested {plan['requested_hours']:g} h, soaked {duration['soaked_h']:.3f} h",
        f"- one fault injected every {plan['fault_interval_s']:g} s; heal budget {plan['heal_budget_s']:g} s",
        f"- resumed from: {resumed['pack']} ({resumed['segments']} segment(s), {resumed['soaked_s']:g} s)"
        if resumed
        else "- resumed from: (none; one harness run)",
        f"- checks: {', '.join(f'{k} {v}' for k, v in summary['checks'].items())}",
        "",
        "## Hourly figures",
        "",
        "| Segment | Instance | Wall (s) | Requests | Errors | Error rate | p50 ms | p90 ms | p99 ms | Task p99 ms "
        "| RSS MiB (start→end) | RSS Δ MiB | fds (start→end) | fd Δ | Faults | Healed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for hour in summary["hours"]:
        rate = hour["error_rate"]
        label = f"{hour['index']}{' (carried)' if hour.get('carried') else ''}"
        if not hour["complete"]:
            label += f" (cut short; its last {hour.get('cut_tail_s', 0):g} s left out)"
        lines.append(
            f"| {label} "
            f"| {hour['instance']} | {hour['wall_s']:.0f} | {hour['requests']} | {hour['errors']} "
            f"| {'-' if rate is None else f'{rate:.3%}'} | {_num(hour['p50_ms'])} | {_num(hour['p90_ms'])} "
            f"| {_num(hour['p99_ms'])} | {_num(hour['task_p99_ms'])} "
            f"| {_mib(hour['rss_start_kb'])}→{_mib(hour['rss_end_kb'])} "
            f"| {_delta(hour['rss_start_kb'], hour['rss_end_kb'], KIB_PER_MIB)} "
            f"| {_num(hour['fds_start'], digits=0)}→{_num(hour['fds_end'], digits=0)} "
            f"| {_delta(hour['fds_start'], hour['fds_end'])} | {hour['faults_injected']} | {hour['incidents_healed']} |"
        )
    lines += ["", "## Growth per instance (after the warm-up; median of the last tenth minus the first's)", ""]
    for inst in summary["instances"]:
        parts = []
        for key, label, scale, unit in (
            ("rss_kb", "service RSS", KIB_PER_MIB, " MiB"),
            ("fds", "service open fds", 1, ""),
            ("group_rss_kb", "process group RSS", KIB_PER_MIB, " MiB"),
            ("group_fds", "process group open fds", 1, ""),
        ):
            seen = inst.get(key)
            parts.append(
                f"{label} "
                + (
                    f"{seen['start'] / scale:.1f}→{seen['end'] / scale:.1f} ({seen['delta'] / scale:+.2f}{unit})"
                    if seen
                    else "-"
                )
            )
        lines.append(f"- {inst['instance']}: {inst['span_s'] / 3600:.2f} h; " + "; ".join(parts))
    lines += ["", "## Incidents", ""]
    for hour in summary["hours"]:
        for heal in hour["heals"]:
            outcome = "healed" if heal["healed"] else ("cut short" if heal["cut_short"] else "NOT healed")
            lines.append(
                f"- segment {hour['index']}: {heal['playbook']} — {outcome}"
                + (f" in {heal['heal_s']:g} s" if heal["heal_s"] is not None else "")
                + (f" ({heal['why']})" if heal["why"] else "")
            )
    lines += ["", "## Verdict reasons", ""] + [f"- {reason}" for reason in summary["reasons"]]
    return ("\n".join(lines) + "\n").encode("utf-8")
