"""Writing G5 evidence while keeping a parsed copy, so collect can render the report with evaluate's own logic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.context import GateContext
from harness.errors import PackError
from harness.failures import failed_run
from harness.procs import ToolRun

STDERR_TAIL_CHARS = 1500


class EvidenceStore:
    """Writes through the gate context and remembers what it wrote (an EvidenceReader over this run)."""

    def __init__(self, ctx: GateContext) -> None:
        """Bind to the gate's context."""
        self.ctx = ctx
        self._json: dict[str, Any] = {}

    def write_json(self, name: str, data: Any) -> None:
        """Write gates/G5/<name> and keep its parsed form."""
        self.ctx.write_json(name, data)
        self._json[name] = json.loads(json.dumps(data))

    def copy_json(self, name: str, source: Path) -> bool:
        """Copy a tool's JSON output in as <name>; if it is missing or not JSON, keep it as <name>.invalid.txt."""
        if not source.is_file():
            return False
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.ctx.copy_in(f"{name}.invalid.txt", source)
            return False
        self.ctx.copy_in(name, source)
        self._json[name] = data
        return True

    def write_document(self, name: str, data: bytes, parsed: Any | None) -> None:
        """Write a pack-root document (sbom.json, security.sarif, ...) and keep its parsed form if any."""
        self.ctx.write_document(name, data)
        if parsed is not None:
            self._json[name] = parsed

    def record_run(self, name: str, run: ToolRun) -> None:
        """Keep the facts of a tool run that the pure assessment needs (exit code, timeout, stderr tail and file)."""
        self.write_json(
            name,
            {
                "argv": list(run.argv),
                "returncode": run.returncode,
                "timed_out": run.timed_out,
                "cancelled": run.cancelled,
                "stderr_tail": run.stderr()[-STDERR_TAIL_CHARS:],
                "stderr_file": self.stderr_file(run),
            },
        )

    def stderr_file(self, run: ToolRun) -> str:
        """The pack path of a run's full stderr (GateContext.run copies it to gates/<id>/runs/)."""
        return f"gates/{self.ctx.spec.id}/runs/{run.stderr_path.name}"

    def exists(self, name: str) -> bool:
        """Whether this run wrote a JSON file of that name."""
        return name in self._json

    def read_json(self, name: str) -> Any:
        """The parsed content of a JSON file written in this run."""
        if name not in self._json:
            msg = f"gate G5: evidence file {name!r} was not written"
            raise PackError(msg)
        return self._json[name]


def run_problem(run: dict[str, Any], tool: str, ok_codes: tuple[int, ...] = (0,)) -> str | None:
    """A sentence saying why a recorded tool run cannot be trusted, or None when it ended normally.

    The sentence names the evidence file holding the tool's output; it never quotes that output.
    """
    if not run.get("timed_out") and not run.get("cancelled") and run.get("returncode") in ok_codes:
        return None
    return failed_run(
        tool,
        returncode=run.get("returncode"),
        timed_out=bool(run.get("timed_out")),
        cancelled=bool(run.get("cancelled")),
        output=str(run.get("stderr_tail") or ""),
        evidence_file=run.get("stderr_file"),
    )
