"""The report section on the run-wide Prometheus: G2's profiles and G4's faults as Prometheus saw them."""

from __future__ import annotations

from gates.observability.check import Check

NAMES = ("shared Prometheus", "shared scrape", "shared cross-check", "shared latency", "shared alerts")


def shared_section(checks: list[Check]) -> list[str]:
    """Markdown for the shared checks; empty when G6 ran without a watched gate before it."""
    by_name = {c.name: c for c in checks if c.name in NAMES}
    if not by_name:
        return []
    lines = ["", "## During G2's load profiles and G4's chaos experiments (run-wide Prometheus)", ""]
    if "shared Prometheus" in by_name:
        return [*lines, by_name["shared Prometheus"].summary]
    if "shared cross-check" in by_name:
        lines += _counters(by_name["shared cross-check"]) + _latency(by_name["shared latency"])
    lines += _alerts(by_name["shared alerts"])
    return lines + (_scrapes(by_name["shared scrape"]) if "shared scrape" in by_name else [])


def _counters(check: Check) -> list[str]:
    """Per profile: the generator's count next to the counter's increase in Prometheus."""
    lines = ["### Counters per load profile", ""]
    lines.append("| profile | counter | load generator | Prometheus increase | status |")
    lines.append("|---|---|---|---|---|")
    for r in check.rows:
        prom = "no answer" if r["prometheus"] is None else f"{r['prometheus']:g}"
        lines.append(f"| {r['window']} | {r['name']} | {r['harness']} | {prom} | {r['status']} |")
    return lines + [""] + [f"- {item}" for item in check.findings]


def _latency(check: Check) -> list[str]:
    """Per profile: the measured quantile against the histogram bucket Prometheus holds."""
    lines = ["", "### Latency histogram per load profile", "", "| profile | histogram | measured | bucket | status |"]
    lines.append("|---|---|---|---|---|")
    for r in check.rows:
        measured = f"{r['harness_s'] * 1000:.2f} ms" if "harness_s" in r else "-"
        bucket = f"({r['bucket'][0] * 1000:g}, {r['bucket'][1] * 1000:g}] ms" if "bucket" in r else "-"
        lines.append(f"| {r['window']} | {r['name']} | {measured} | {bucket} | {r['status']} |")
    return lines


def _alerts(check: Check) -> list[str]:
    """Per window: alerts firing (seconds after the window's start), expected ones, status."""
    lines = ["", "### Alerts per window (seconds from the injection or the profile's start)", ""]
    lines.append("| window | kind | fired | expected | not checkable (for: too long) | status |")
    lines.append("|---|---|---|---|---|---|")
    for r in check.rows:
        fired = ", ".join(f"{name} at {at:+g} s" for name, at in r["fired"].items()) or "none"
        expected = ", ".join(r["expected"]) or "-"
        lines.append(
            f"| {r['window']} | {r['kind']} | {fired} | {expected} | {', '.join(r['not_checkable']) or '-'} "
            f"| {r['status']} |"
        )
    return lines + [""] + [f"- {item}" for item in check.findings]


def _scrapes(check: Check) -> list[str]:
    """Per load profile: how often Prometheus scraped its instance."""
    lines = ["", "### Scrapes per load profile", "", "| profile | up samples | expected | down | status |"]
    lines.append("|---|---|---|---|---|")
    for r in check.rows:
        lines.append(f"| {r['window']} | {r['up_samples']} | {r['expected']} | {r['down']} | {r['status']} |")
    return lines
