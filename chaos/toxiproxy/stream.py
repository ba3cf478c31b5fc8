"""The data path between toxics: chunks, bounded channels that can be closed, and the stub each toxic runs in.

A chunk is one read from a socket, stamped with the time it arrived. Stages of a link hand chunks to each
other through `ChunkChannel`s (a bounded FIFO that behaves like a Go channel: `close()` makes the reader
see `None` once the buffered chunks are gone). A `ToxicStub` owns one stage: its input and output
channels, the per-connection state of a stateful toxic, and the task running the toxic. Interrupting a
stub cancels that task; toxics catch the cancellation only to hand on the chunk they hold, so no byte is
lost when the chain is re-piped.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

#: One generator for every chaos draw (toxicity, jitter, slice sizes); `--seed` seeds it.
RNG = random.Random()  # noqa: S311 -- fault-injection draws, not cryptography


@dataclass(slots=True)
class Chunk:
    """One read from a socket and the monotonic time (seconds) it was received."""

    data: bytes
    received_at_s: float = field(default_factory=time.monotonic)


class ChunkChannel:
    """A bounded FIFO of chunks; after `close()` the reader gets the buffered chunks, then `None` forever."""

    def __init__(self, capacity: int = 1) -> None:
        """An empty open channel holding at most `capacity` chunks (at least one)."""
        self._items: deque[Chunk] = deque()
        self._capacity = max(1, capacity)
        self._closed = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def __len__(self) -> int:
        """The number of buffered chunks."""
        return len(self._items)

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    async def get(self) -> Chunk | None:
        """The next chunk, waiting for one; `None` once the channel is closed and empty. Cancel-safe."""
        while not self._items:
            if self._closed:
                return None
            self._readable.clear()
            await self._readable.wait()
        return self._take()

    def get_nowait(self) -> Chunk | None:
        """The next buffered chunk without waiting; `None` when there is none."""
        return self._take() if self._items else None

    def _take(self) -> Chunk:
        item = self._items.popleft()
        self._writable.set()
        return item

    async def put(self, chunk: Chunk) -> None:
        """Append a chunk, waiting while the channel is full; dropped if the channel is closed. Cancel-safe."""
        while len(self._items) >= self._capacity and not self._closed:
            self._writable.clear()
            await self._writable.wait()
        if self._closed:
            return
        self._items.append(chunk)
        self._readable.set()

    def close(self) -> None:
        """End the channel: wake the reader (it drains, then sees `None`) and any blocked writer."""
        self._closed = True
        self._readable.set()
        self._writable.set()


class PipeFunction(Protocol):
    """What a toxic provides: move chunks from the stub's input to its output until closed or cancelled."""

    def __call__(self, stub: ToxicStub) -> Coroutine[Any, Any, None]:
        """Run the toxic on `stub`."""
        ...


class ToxicStub:
    """One stage of a link: input and output channels, per-connection state, and the task running a toxic."""

    def __init__(self, input_channel: ChunkChannel, output_channel: ChunkChannel) -> None:
        """A stage reading `input_channel` and writing `output_channel`; not running yet."""
        self.input = input_channel
        self.output = output_channel
        self.state: object | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether this stage closed its output (the toxic ended the stream)."""
        return self._closed

    def close(self) -> None:
        """Close the output channel once, which ends the stream for every later stage."""
        if not self._closed:
            self._closed = True
            self.output.close()

    def run(self, pipe: PipeFunction, toxicity: float, draw: Callable[[], float] = RNG.random) -> None:
        """Start the stage: the toxic's `pipe` with probability `toxicity`, else a pass-through.

        The draw happens on every (re)start, as upstream does: adding or updating a toxic re-rolls it.
        """
        chosen: PipeFunction = pipe if draw() < toxicity else pass_through
        self._task = asyncio.get_running_loop().create_task(chosen(self))

    async def interrupt(self) -> bool:
        """Stop the running toxic without losing data; False when the stage had already closed."""
        if self._closed:
            return False
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        return not self._closed

    def cancel(self) -> None:
        """Tear the stage down for good (the connection is gone); buffered data is discarded."""
        if self._task is not None:
            self._task.cancel()

    async def send(self, chunk: Chunk) -> None:
        """Hand `chunk` to the next stage; an interrupt arriving meanwhile is honoured only after the hand-off."""
        try:
            await self.output.put(chunk)
        except asyncio.CancelledError:
            await self.output.put(chunk)
            raise

    async def send_within(self, chunk: Chunk, timeout_s: float) -> bool:
        """Hand `chunk` on, giving up after `timeout_s` (used while re-piping); False when it timed out."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.output.put(chunk)
        except TimeoutError:
            return False
        return True


async def pass_through(stub: ToxicStub) -> None:
    """The noop toxic: forward every chunk unchanged; close the output when the input ends."""
    while True:
        chunk = await stub.input.get()
        if chunk is None:
            stub.close()
            return
        await stub.send(chunk)
