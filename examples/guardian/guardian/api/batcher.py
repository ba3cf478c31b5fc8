"""Group commit for task submissions.

Request handlers hand their validated task to one writer thread, which inserts everything that
queued up meanwhile in a single ``synchronous=FULL`` transaction and then wakes each waiting
handler. One fsync covers a whole batch, and API threads never contend with each other for the
SQLite write lock. A handler only sees its record (and answers 201) after the COMMIT returned.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from guardian.errors import StoreError
from guardian.store import NewTask, Store, TaskRecord

log = logging.getLogger("guardian.api.batcher")
MAX_BATCH = 256


@dataclass
class _Pending:
    """A submission waiting for its batch to commit."""

    task: NewTask
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[TaskRecord]


def _resolve(
    future: asyncio.Future[TaskRecord], record: TaskRecord | None, error: BaseException | None
) -> None:
    """Complete ``future`` on its loop unless the waiting request already went away."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert record is not None
        future.set_result(record)


class SubmitBatcher:
    """A writer thread that commits queued submissions in batches."""

    def __init__(self, store_factory: Callable[[], Store]) -> None:
        """Create the batcher; ``start()`` launches the writer thread."""
        self.store_factory = store_factory
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.committed = 0

    def start(self) -> None:
        """Launch the writer thread."""
        self._thread = threading.Thread(target=self._run, name="submit-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Commit what is queued, then stop the writer thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._thread = None

    async def submit(self, task: NewTask) -> TaskRecord:
        """Queue ``task`` and wait until it is durably committed."""
        if self._thread is None:
            raise StoreError("submission writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[TaskRecord] = loop.create_future()
        self._queue.put(_Pending(task, loop, future))
        return await future

    def _run(self) -> None:
        """Writer loop: take one item, drain up to MAX_BATCH more, commit, resolve."""
        store = self.store_factory()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(store, batch)

    def _commit(self, store: Store, batch: list[_Pending]) -> None:
        """Insert one batch and hand each request its record (or the store error)."""
        try:
            records = store.submit_many([pending.task for pending in batch])
        except StoreError as exc:
            log.exception("batch insert failed", extra={"batch_size": len(batch)})
            for pending in batch:
                pending.loop.call_soon_threadsafe(_resolve, pending.future, None, exc)
            return
        self.batches += 1
        self.committed += len(records)
        for pending, record in zip(batch, records, strict=True):
            pending.loop.call_soon_threadsafe(_resolve, pending.future, record, None)
