"""A real stand-in upstream served from a background thread for in-process tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from guardian import upstream


@contextmanager
def running_upstream() -> Iterator[upstream.UpstreamServer]:
    """Serve the stand-in upstream on a free port for the duration of the block."""
    server = upstream.serve("127.0.0.1", 0)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def url_of(server: upstream.UpstreamServer) -> str:
    """Base URL of a running server."""
    return f"http://127.0.0.1:{server.server_address[1]}"
