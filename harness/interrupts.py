"""SIGINT/SIGTERM while the CLI starts, and the process's last step (stdlib only: imported first).

Two CPython 3.11 facts shape this module:
- A KeyboardInterrupt raised inside a class body, a descriptor's ``__set_name__`` or pydantic's schema
  building comes out as another error (RuntimeError, SchemaError), so a signal arriving while modules
  import or the config is read must only be noted, and raised once that code is done.
- A KeyboardInterrupt raised inside ``exec(source)`` (dataclasses and namedtuple create their methods
  that way) sets the interpreter's "unhandled KeyboardInterrupt" flag even when the exception is
  caught later, and the interpreter then ends the process with SIGINT instead of its exit code.
  ``exit_now`` ends the process with the code the CLI chose, after flushing what it printed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

#: The signals the CLI treats as an interruption (exit 130).
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred() -> Iterator[list[int]]:
    """Inside the block SIGINT and SIGTERM are only noted; when it ends, a noted one raises KeyboardInterrupt.

    The handlers in place before the block are put back first. Outside the main thread (an in-process
    caller's worker thread) no handler can be installed and the block runs unguarded.
    """
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, frame: FrameType | None) -> None:
        del frame
        noted.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in INTERRUPTS}
    try:
        yield noted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if noted:
        raise KeyboardInterrupt


def exit_now(code: int) -> None:
    """End the process with `code` once stdout and stderr are flushed, whatever flag a caught interrupt left.

    Called only when the outcome is decided and written: nothing the interpreter's shutdown would
    still do (no atexit handler, no non-daemon thread) belongs to the harness.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
