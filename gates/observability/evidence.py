"""G6 evidence names, and a recorder that writes through the gate context while keeping what it wrote.

The recorder lets `collect` run the very assessment `evaluate` runs (to write the report) on the bytes
the pack holds: it applies the pack's own redaction to its copy.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

from harness.context import GateContext
from harness.errors import PackError
from harness.evidence import dump_json
from harness.redact import Redactor

RUN = "run.json"
PROMTOOL = "promtool.json"
SCRAPES = ("before-load", "after-load", "after-fault")
PROM_CROSS = "prom/crosscheck.json"
PROM_ALERTS = "prom/alerts-range.json"
PROM_UP = "prom/up-range.json"
PROM_RULES = "prom/rules.json"
PROM_DASHBOARDS = "prom/dashboard-queries.json"
FAULTS = "faults.json"


def scrape_name(label: str) -> str:
    """Evidence name of a direct scrape."""
    return f"scrapes/{label}.txt"


def raw_name(phase: str) -> str:
    """Evidence name of a traffic phase's raw per-request CSV."""
    return f"traffic/{phase}/raw.csv"


class EvidenceView(Protocol):
    """What the assessment reads: the pack's Evidence or this run's Recorder."""

    def exists(self, name: str) -> bool:
        """Whether the file was recorded."""

    def read_text(self, name: str) -> str:
        """A file's text."""

    def read_bytes(self, name: str) -> bytes:
        """A file's bytes."""

    def read_json(self, name: str) -> Any:
        """A JSON file's content."""


class Recorder:
    """Writes gates/G6/<name> and keeps the redacted bytes, readable like Evidence."""

    def __init__(self, ctx: GateContext) -> None:
        """Bind to the gate context."""
        self.ctx = ctx
        self._files: dict[str, bytes] = {}
        self._redactor = Redactor(os.environ)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write one evidence file."""
        self.ctx.write_bytes(name, data)
        self._files[name] = self._redactor.data(data)

    def write_text(self, name: str, text: str) -> None:
        """Write one text evidence file."""
        self.write_bytes(name, text.encode("utf-8"))

    def write_json(self, name: str, data: Any) -> None:
        """Write one JSON evidence file in the pack's stable form."""
        self.write_bytes(name, dump_json(data))

    def exists(self, name: str) -> bool:
        """Whether this run wrote the file."""
        return name in self._files

    def read_bytes(self, name: str) -> bytes:
        """The bytes this run wrote (after redaction)."""
        if name not in self._files:
            msg = f"gate G6: evidence file {name!r} was not written"
            raise PackError(msg)
        return self._files[name]

    def read_text(self, name: str) -> str:
        """The text this run wrote (after redaction)."""
        return self.read_bytes(name).decode("utf-8")

    def read_json(self, name: str) -> Any:
        """The JSON this run wrote (after redaction)."""
        return json.loads(self.read_text(name))
