"""Structured-log checks for G6: every line one JSON object with the required fields and an ISO-8601 time."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 5


def parse_ts(value: Any) -> float | None:
    """Unix time of an ISO-8601 timestamp string ('Z' accepted; a naive time is read as UTC); else None."""
    if not isinstance(value, str) or ("T" not in value and " " not in value):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


@dataclass
class LogCheck:
    """What the log lines of one run showed."""

    lines: int = 0
    valid: int = 0
    problems: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    #: (unix time, level, message) of every valid line, in file order.
    records: list[tuple[float, str, str]] = field(default_factory=list)

    def invalid(self, line_no: int, why: str, line: str) -> None:
        """Count one invalid line, keeping a few examples."""
        self.problems[why] = self.problems.get(why, 0) + 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"line {line_no}: {why}: {line[:160]!r}")

    @property
    def valid_share(self) -> float:
        """Valid lines over all lines (0 when there is none)."""
        return self.valid / self.lines if self.lines else 0.0

    def at_levels(self, levels: tuple[str, ...], start: float, end: float) -> list[tuple[float, str, str]]:
        """Valid records at one of `levels` whose time falls in [start, end]."""
        wanted = {level.upper() for level in levels}
        return [rec for rec in self.records if start <= rec[0] <= end and rec[1].upper() in wanted]


def check_lines(text: str, required: tuple[str, ...], ts_field: str, level_field: str, msg_field: str) -> LogCheck:
    """Judge every non-empty line of a log text."""
    result = LogCheck()
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        result.lines += 1
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            result.invalid(line_no, "not JSON", line)
            continue
        if not isinstance(entry, dict):
            result.invalid(line_no, "JSON but not an object", line)
            continue
        missing = [name for name in required if entry.get(name) in (None, "")]
        if missing:
            result.invalid(line_no, f"missing {', '.join(missing)}", line)
            continue
        when = parse_ts(entry.get(ts_field))
        if when is None:
            result.invalid(line_no, f"{ts_field} is not ISO-8601", line)
            continue
        result.valid += 1
        result.records.append((when, str(entry.get(level_field, "")), str(entry.get(msg_field, ""))))
    return result
