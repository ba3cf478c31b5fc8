"""Live progress: a rich display on a terminal, plain timestamped lines in CI or when piped."""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
import time
from typing import Protocol, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table


class Reporter(Protocol):
    """What the runner tells the person watching."""

    def line(self, text: str) -> None:
        """Print one line (plan, notices)."""

    def gate_started(self, gate_id: str, planned_s: float) -> None:
        """A gate began collecting."""

    def gate_message(self, gate_id: str, message: str) -> None:
        """A gate reports what it is doing."""

    def gate_finished(self, gate_id: str, status: str, duration_s: float) -> None:
        """A gate has a verdict."""

    def close(self) -> None:
        """Stop any live display."""


def _stamp() -> str:
    """UTC time of day for plain lines."""
    return dt.datetime.now(dt.UTC).strftime("%H:%M:%S")


class PlainReporter:
    """Timestamped lines, one per event; for CI logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        """Write to the given stream (stdout by default)."""
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def _emit(self, text: str) -> None:
        """Write one line and flush, so CI shows it at once."""
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()

    def line(self, text: str) -> None:
        """Print one line."""
        self._emit(text)

    def gate_started(self, gate_id: str, planned_s: float) -> None:
        """Announce a gate."""
        self._emit(f"[{_stamp()}] {gate_id}: started (planned {planned_s:.0f} s)")

    def gate_message(self, gate_id: str, message: str) -> None:
        """Relay a gate's message."""
        self._emit(f"[{_stamp()}] {gate_id}: {message}")

    def gate_finished(self, gate_id: str, status: str, duration_s: float) -> None:
        """Print a gate's verdict."""
        self._emit(f"[{_stamp()}] {gate_id}: {status} after {duration_s:.1f} s")

    def close(self) -> None:
        """Nothing to stop."""


class LiveReporter:
    """A rich table of gates with status, elapsed time and ETA, refreshed in place."""

    def __init__(self) -> None:
        """Prepare the live display (started on first use)."""
        self._console = Console()
        self._rows: dict[str, dict[str, object]] = {}
        self._lock = threading.Lock()
        self._live = Live(self._table(), console=self._console, refresh_per_second=4, transient=False)
        self._live.start()

    def _table(self) -> Table:
        """The current state of every started gate."""
        table = Table(title="certify")
        for column in ("gate", "status", "elapsed", "ETA", "now"):
            table.add_column(column)
        now = time.monotonic()
        for gate_id, row in self._rows.items():
            start = float(str(row["start"]))
            elapsed = float(str(row.get("duration", now - start)))
            planned = float(str(row["planned"]))
            eta = "-" if "duration" in row else f"{max(planned - elapsed, 0):.0f} s"
            table.add_row(gate_id, str(row["status"]), f"{elapsed:.0f} s", eta, str(row.get("message", ""))[:60])
        return table

    def _refresh(self) -> None:
        """Redraw the table."""
        self._live.update(self._table())

    def line(self, text: str) -> None:
        """Print above the live table."""
        self._live.console.print(text, markup=False, highlight=False)

    def gate_started(self, gate_id: str, planned_s: float) -> None:
        """Add a row."""
        with self._lock:
            self._rows[gate_id] = {"status": "running", "start": time.monotonic(), "planned": planned_s}
            self._refresh()

    def gate_message(self, gate_id: str, message: str) -> None:
        """Update a row's message."""
        with self._lock:
            if gate_id in self._rows:
                self._rows[gate_id]["message"] = message
                self._refresh()

    def gate_finished(self, gate_id: str, status: str, duration_s: float) -> None:
        """Mark a row done."""
        with self._lock:
            row = self._rows.setdefault(gate_id, {"start": time.monotonic(), "planned": 0.0})
            row.update(status=status, duration=duration_s, message="")
            self._refresh()

    def close(self) -> None:
        """Stop the live display."""
        self._live.stop()


def make_reporter() -> Reporter:
    """Rich on an interactive terminal; plain lines when piped or when CI=true."""
    if sys.stdout.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return LiveReporter()
    return PlainReporter()
