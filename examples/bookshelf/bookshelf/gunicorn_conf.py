"""gunicorn settings: workers share one Prometheus directory; a dead worker's series are marked dead."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:
    """A worker left: its live gauges no longer count (prometheus_client multi-process mode)."""
    del server
    multiprocess.mark_process_dead(worker.pid)
