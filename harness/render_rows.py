"""Formatting for the rendered documents: safe Markdown/XML text, measurement lines, gate rows, run facts.

Pure functions of the pack's JSON, shared by the certificate, the merge-gate report, the job summary
and the JUnit XML (harness/render.py decides; this module only formats).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from typing import Any

from harness.errors import PackError
from harness.model import GateResult, Measurement, compare

VERIFY_COMMAND = "certify verify <pack>"
MISSING = "missing"

# Characters XML 1.0 cannot carry at all; tool output sometimes holds them (ANSI escapes, NUL).
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Markdown: backslash-escape what would split a table cell or start emphasis or code; an `_`
# between two letters or digits cannot start emphasis, so `p99_ms` stays readable.
_MD_PUNCTUATION = re.compile(r"([\\|*`]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
# Only a `<` that could open raw HTML (tag, closing tag, comment) is neutralised; `<=` stays.
_MD_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_MD_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
_NEWLINES = re.compile(r"\r\n|\r|\n")


class InconsistentResultsError(PackError, ValueError):
    """results.json claims more than its own gate results support; nothing is rendered."""


@dataclasses.dataclass(frozen=True)
class MeasurementLine:
    """One measurement as printed: `name: value unit comparator threshold unit` and its mark."""

    text: str
    mark: str


@dataclasses.dataclass(frozen=True)
class GateRow:
    """One row of the per-gate table, every cell already formatted."""

    gate: str
    title: str
    requirements: tuple[str, ...]
    required: bool
    status: str
    duration_s: str
    measurements: tuple[MeasurementLine, ...]
    reasons: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class WaiverLine:
    """A waiver from the resolved config, and whether it was in force on the run date."""

    gate: str
    finding: str
    reason: str
    owner: str
    expires: str
    active: bool


def format_number(value: object) -> str:
    """Format a number the same way everywhere: at most 4 decimals, no trailing zeros, no `-0`."""
    if value is None:
        return MISSING
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    if text in {"0", "-0"}:
        # Keep tiny non-zero values visible instead of printing a false zero.
        return "0" if value == 0 else f"{value:.4g}"
    return text


def markdown_text(value: object) -> str:
    """Make text safe anywhere in Markdown: one line, no table-cell split, no raw HTML."""
    text = _MD_PUNCTUATION.sub(r"\\\1", str(value))
    text = _MD_ENTITY.sub("&amp;", text)
    text = _MD_TAG_START.sub("&lt;", text)
    return _NEWLINES.sub("<br>", text)


def xml_text(text: str) -> str:
    """Replace characters XML 1.0 cannot represent with a visible backslash-x escape."""
    return _XML_INVALID.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _recomputed_pass(measurement: Measurement) -> bool | None:
    """Re-judge a numeric measurement against its threshold; None when it cannot be judged."""
    value, threshold, comparator = measurement.value, measurement.threshold, measurement.comparator
    if isinstance(value, float) and isinstance(threshold, float) and comparator is not None:
        return compare(value, comparator, threshold)
    return None


def measurement_line(gate_id: str, measurement: Measurement) -> MeasurementLine:
    """Format one measurement, refusing a pass/fail mark its own numbers contradict."""
    value, threshold, comparator = measurement.value, measurement.threshold, measurement.comparator
    unit = f" {measurement.unit}" if measurement.unit else ""
    text = f"{measurement.name}: {MISSING if value is None else format_number(value) + unit}"
    if comparator is not None and threshold is not None:
        text += f" {comparator} {format_number(threshold)}{unit}"
    recomputed = _recomputed_pass(measurement)
    contradicted = recomputed is not None and measurement.passed not in {None, recomputed}
    if contradicted or (measurement.passed and value is None):
        msg = f"gate {gate_id}: measurement {text!r} is marked passed={measurement.passed}"
        raise InconsistentResultsError(msg, hint=f"run `{VERIFY_COMMAND}` to recompute the verdicts")
    mark = {True: "pass", False: "fail", None: "not judged"}[measurement.passed]
    return MeasurementLine(text=text, mark=mark)


def gate_row(result: GateResult) -> GateRow:
    """Format one gate result for the tables."""
    return GateRow(
        gate=result.gate,
        title=result.title,
        requirements=result.requirements,
        required=result.required,
        status=result.verdict.status.value,
        duration_s=format_number(result.duration_s),
        measurements=tuple(measurement_line(result.gate, m) for m in result.verdict.measurements),
        reasons=result.verdict.reasons,
    )


def waivers(config_doc: dict[str, Any], run_day: dt.date) -> tuple[WaiverLine, ...]:
    """Waivers from the resolved config, marked active when unexpired on the run's start date."""
    lines = []
    for raw in config_doc.get("waivers") or ():
        try:
            expires = dt.date.fromisoformat(str(raw["expires"]))
            lines.append(
                WaiverLine(
                    gate=str(raw["gate"]),
                    finding=str(raw["finding"]),
                    reason=str(raw["reason"]),
                    owner=str(raw["owner"]),
                    expires=expires.isoformat(),
                    active=expires >= run_day,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"config.resolved.json: a waiver is malformed: {exc}"
            raise PackError(msg) from exc
    return tuple(sorted(lines, key=lambda w: (w.gate, w.finding, w.expires, w.owner, w.reason)))


def run_day(run_doc: dict[str, Any]) -> dt.date:
    """Return the UTC date the run started: waivers are judged against it, never today."""
    try:
        started = dt.datetime.fromisoformat(str(run_doc["started_at"]))
    except (KeyError, ValueError) as exc:
        msg = f"run.json: started_at is missing or not ISO-8601: {exc}"
        raise PackError(msg) from exc
    if started.tzinfo is not None:
        started = started.astimezone(dt.UTC)
    return started.date()


def fact_text(value: object) -> str:
    """Format a run fact; an absent fact reads `missing`, never a plausible default."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    return format_number(value)


def target_facts(run_doc: dict[str, Any]) -> dict[str, str]:
    """Return the target identity block; `dirty` is `yes`, `no` or `missing`."""
    target = run_doc.get("target") or {}
    dirty = target.get("dirty")
    return {
        "name": fact_text(target.get("name")),
        "version": fact_text(target.get("version")),
        "commit": fact_text(target.get("commit")),
        "dirty": MISSING if not isinstance(dirty, bool) else ("yes" if dirty else "no"),
    }


def host_summary(run_doc: dict[str, Any]) -> str:
    """One line describing the machine the run measured on."""
    host = run_doc.get("host") or {}
    memory_bytes = host.get("memory_bytes")
    memory = (
        f"{format_number(memory_bytes / 2**30)} GiB"
        if isinstance(memory_bytes, int) and not isinstance(memory_bytes, bool)
        else MISSING
    )
    return (
        f"{fact_text(host.get('os'))} (kernel {fact_text(host.get('kernel'))}), "
        f"Python {fact_text(host.get('python'))}, CPU {fact_text(host.get('cpu_model'))} "
        f"x {fact_text(host.get('cpu_count'))}, memory {memory}, GPU {fact_text(host.get('gpu'))}"
    )
