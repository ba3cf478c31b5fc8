"""JSON logs: one object per line (time, level, service, logger, message and the request's fields)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

#: Extra fields a record may carry into its line.
FIELDS = ("method", "path", "status", "duration_ms", "request_id", "error")


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        """The line: ts (UTC, ISO 8601), level, service, logger, message, and any request fields present."""
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": "bookshelf",
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, sort_keys=True)


def configure(log_file: str | None) -> None:
    """Send every bookshelf record as JSON to stderr and, when given, to log_file."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    root = logging.getLogger("bookshelf")
    root.setLevel(logging.INFO)
    root.handlers.clear()
    for handler in handlers:
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.propagate = False
