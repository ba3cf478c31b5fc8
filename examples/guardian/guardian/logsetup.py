"""JSON-lines logging shared by every guardian process.

Each record becomes one JSON object on one line, written with a single ``os.write`` to a file
opened with ``O_APPEND`` — so lines from concurrent processes never interleave — and to stderr.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

SERVICE = "guardian"
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "guardian_request_id", default=None
)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Attributes every LogRecord has; anything else arrived through ``extra=`` and is emitted.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """Render a LogRecord as one JSON object: ts, level, logger, msg, service, role, pid, extras."""

    def __init__(self, role: str) -> None:
        """Remember the process role (keeper, supervisor, api, worker, upstream, cli)."""
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        """Return the JSON line (without trailing newline) for ``record``."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "service": SERVICE,
            "role": self.role,
            "pid": record.process,
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class AppendFileHandler(logging.Handler):
    """Append each formatted record to a file with one ``os.write`` call on an O_APPEND fd."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the log file for appending."""
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.dropped_lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record; on failure (e.g. disk full) count it as dropped instead of crashing."""
        try:
            os.write(self._fd, (self.format(record) + "\n").encode("utf-8", "replace"))
        except OSError:
            # A full disk must degrade logging, not kill the worker holding a task lease.
            self.dropped_lines += 1

    def close(self) -> None:
        """Close the file descriptor."""
        with contextlib.suppress(OSError):
            os.close(self._fd)
        super().close()

    def reopen(self) -> None:
        """Point the descriptor at ``path`` again (after the file was deleted or moved away).

        ``dup2`` swaps the open file under the same descriptor number atomically, so a line
        written by another thread at that moment lands in the old file or the new one, never
        nowhere.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.dup2(fresh, self._fd)
        finally:
            os.close(fresh)


class JsonStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stderr handler whose write errors (closed pipe) are counted, not printed as tracebacks."""

    dropped_lines = 0

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging API name
        """Count the lost line; a tracebacks-to-stderr fallback would break the JSON-only rule."""
        del record
        self.dropped_lines += 1


_lock = threading.Lock()


def reopen_log_files() -> int:
    """Reopen every log file this process appends to; return how many were reopened."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, AppendFileHandler)]
    for handler in handlers:
        handler.reopen()
    return len(handlers)


def _reopen_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGUSR2 handler: reopen the log file (the healer sends it after the log was deleted).

    Not SIGHUP: a closed terminal must still stop a foreground instance; SIGUSR1 is taken by the
    supervisor (back-off reset) and the workers (pool recycle).
    """
    del frame
    count = reopen_log_files()
    logging.getLogger("guardian.log").info(
        "log file reopened", extra={"signal": signum, "files": count}
    )


def configure(role: str, log_path: Path | None, level: str = "INFO") -> None:
    """Install JSON handlers on the root logger for this process (idempotent)."""
    with _lock:
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        formatter = JsonFormatter(role)
        stream = JsonStreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        root.addHandler(stream)
        if log_path is not None:
            file_handler = AppendFileHandler(log_path)
            file_handler.setFormatter(formatter)
            root.addHandler(file_handler)
            if hasattr(signal, "SIGUSR2") and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGUSR2, _reopen_on_signal)
        set_level(level)
        logging.captureWarnings(True)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore"):
            named = logging.getLogger(name)
            named.handlers.clear()
            named.propagate = True
        # httpx logs every request at INFO; that would double the volume of our own logs.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("httpcore").setLevel(logging.WARNING)
        sys.excepthook = _log_uncaught


def set_level(level: str) -> None:
    """Apply a log level name (from settings) to the root logger."""
    name = level.upper()
    if name not in LEVELS:
        name = "INFO"
    logging.getLogger().setLevel(name)


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """Log an uncaught exception as a JSON record instead of a bare traceback."""
    logging.getLogger("guardian.crash").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def tail_lines(path: Path, max_lines: int = 200, max_bytes: int = 256 * 1024) -> list[str]:
    """Return up to ``max_lines`` last lines of ``path`` reading at most ``max_bytes``."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            chunk = handle.read()
    except FileNotFoundError:
        return []
    lines = chunk.decode("utf-8", "replace").splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # first line is probably cut in the middle
    return lines[-max_lines:]
