"""Pure checks of G8 for D3 (the configuration matrix lists this run) and D4 (a troubleshooting guide).

D3's row: a Markdown table row of the matrix with a cell naming this run's OS (its os-release
PRETTY_NAME, or its ID or NAME with its VERSION_ID: "Debian 12" names Debian GNU/Linux 12 (bookworm);
case-insensitive) and a cell with this run's Python version (exact, or its major.minor: a row for
"3.11" covers 3.11.7). The run's OS and Python are recorded by `collect` in docs_inputs.json
(`run_configuration`), so `evaluate` judges only stored evidence.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass

from harness.model import Measurement

VERSION = re.compile(r"\b\d+\.\d+(?:\.\d+)?\b")
WORD = re.compile(r"[^\W_]+")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def run_configuration() -> dict[str, str]:
    """This machine's configuration as the matrix must list it: OS (os-release PRETTY_NAME), Python, arch."""
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    return {
        "os": release.get("PRETTY_NAME") or platform.system(),
        "os_id": release.get("ID", ""),
        "os_name": release.get("NAME", ""),
        "os_version": release.get("VERSION_ID", ""),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


@dataclass(frozen=True)
class DocCheck:
    """A judged measurement and, when it is not met, the sentence saying why (naming the file and value)."""

    measurement: Measurement
    reason: str | None


def _table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row outside code fences (separator rows left out)."""
    rows = []
    for line in FENCE.sub("", text).splitlines():
        stripped = line.strip()
        if stripped.startswith("|") and not set(stripped) <= set("|-: "):
            rows.append([cell.strip() for cell in stripped.strip("|").split("|")])
    return rows


def _os_matches(cell: str, run: dict[str, str]) -> bool:
    """Whether a cell names this OS: its pretty name, or its id or name together with its version id."""
    text = cell.lower()
    if run["os"].lower() in text:
        return True
    names = [name.lower() for name in (run.get("os_id", ""), run.get("os_name", "")) if name]
    version = run.get("os_version", "")
    return bool(version) and any(n in text for n in names) and version in re.findall(r"[\d.]+", text)


def _python_matches(cell: str, python: str) -> bool:
    """Whether a cell names this Python: the exact version or its major.minor."""
    short = ".".join(python.split(".")[:2])
    return any(token in (python, short) for token in VERSION.findall(cell))


def judge_configuration_matrix(path: str, text: str | None, run: dict[str, str] | None) -> DocCheck | None:
    """D3: the matrix exists and has this run's row; None when the run's configuration was not recorded."""
    if run is None:
        return None
    what = f"OS {run['os']!r}, Python {run['python']}"
    if text is None:
        return DocCheck(
            Measurement.judged("configuration matrix rows for this run", 0, ">=", 1),
            f"{path}: the known-good configuration matrix (D3) is not a tracked file",
        )
    rows = [
        row
        for row in _table_rows(text)
        if any(_os_matches(cell, run) for cell in row) and any(_python_matches(c, run["python"]) for c in row)
    ]
    measurement = Measurement.judged("configuration matrix rows for this run", len(rows), ">=", 1)
    reason = None if rows else f"{path}: no row of the known-good configuration matrix (D3) names this run's {what}"
    return DocCheck(measurement, reason)


def judge_troubleshooting(path: str, text: str | None, min_words: int) -> DocCheck:
    """D4: the troubleshooting guide exists and holds at least `min_words` words outside code blocks."""
    words = len(WORD.findall(FENCE.sub("", text))) if text is not None else 0
    measurement = Measurement.judged("troubleshooting guide words", words, ">=", min_words)
    if text is None:
        return DocCheck(measurement, f"{path}: the troubleshooting guide (D4) is not a tracked file")
    if words < min_words:
        return DocCheck(
            measurement, f"{path}: the troubleshooting guide (D4) has {words} words, fewer than {min_words}"
        )
    return DocCheck(measurement, None)
