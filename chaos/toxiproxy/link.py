"""One direction of one proxied connection: socket reader, a chain of toxic stubs, socket writer.

Mirrors upstream's `link.go`. The chain always starts with a hidden noop stub; toxics are appended at
the end and removed from anywhere. Adding, updating or removing a toxic interrupts only the stubs
around it and re-pipes their channels; the chunks held or buffered meanwhile are handed on, so a
stream under changing toxics arrives complete and in order.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

from chaos.toxiproxy.stream import Chunk, ChunkChannel, ToxicStub
from chaos.toxiproxy.toxics import Direction, ResetPeerToxic, Toxic

LOG = logging.getLogger("chaos.toxiproxy")
#: Bytes per socket read, as Go's io.Copy buffer.
READ_SIZE_BYTES = 32 * 1024
#: How long a chunk flushed during re-piping may wait for the next stage (upstream: 5 s, then dropped).
REPIPE_SEND_TIMEOUT_S = 5.0
_LINGER_RESET = struct.pack("ii", 1, 0)


def set_reset_on_close(writer: asyncio.StreamWriter) -> None:
    """SO_LINGER 0: closing the socket sends RST instead of FIN, so the peer reads ECONNRESET."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError as exc:
            LOG.warning("could not set SO_LINGER=0 for reset_peer: %s", exc)


class ToxicLink:
    """A one-way pipeline from `source` to `dest` through the proxy's toxics for one direction."""

    def __init__(self, chain_of: Callable[[], Sequence[Toxic]], direction: Direction, name: str) -> None:
        """Stubs for every toxic currently in the chain; nothing runs until `start`."""
        self.direction = direction
        self.name = name
        self._chain_of = chain_of
        self.finished = False
        chain = chain_of()
        self.input = ChunkChannel(1)
        self.stubs: list[ToxicStub] = []
        last = self.input
        for index in range(len(chain)):
            following = ChunkChannel(chain[index + 1].kind.buffer_size) if index + 1 < len(chain) else ChunkChannel(1)
            self.stubs.append(ToxicStub(last, following))
            last = following
        self.output = last
        self._tasks: list[asyncio.Task[None]] = []

    def start(
        self,
        source: asyncio.StreamReader,
        source_writer: asyncio.StreamWriter,
        dest: asyncio.StreamWriter,
        on_finished: Callable[[ToxicLink], None],
    ) -> None:
        """Run the reader, every stub and the writer; `on_finished` is called once the writer has closed `dest`."""
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._read(source)))
        for index, toxic in enumerate(self._chain_of()):
            self.stubs[index].state = toxic.kind.new_state()
            if isinstance(toxic.kind, ResetPeerToxic):
                # Like upstream, only links started while a reset_peer toxic exists reset their peers.
                set_reset_on_close(source_writer)
                set_reset_on_close(dest)
            self._run_stub(index)
        self._tasks.append(loop.create_task(self._write(dest, on_finished)))

    def _run_stub(self, index: int) -> None:
        if self.finished:
            return
        toxic = self._chain_of()[index]
        self.stubs[index].run(toxic.kind.pipe, toxic.toxicity)

    async def _read(self, source: asyncio.StreamReader) -> None:
        try:
            while data := await source.read(READ_SIZE_BYTES):
                await self.input.put(Chunk(data))
        except OSError as exc:
            LOG.debug("link %s: source terminated: %s", self.name, exc)
        finally:
            self.input.close()

    async def _write(self, dest: asyncio.StreamWriter, on_finished: Callable[[ToxicLink], None]) -> None:
        try:
            while (chunk := await self.output.get()) is not None:
                dest.write(chunk.data)
                await dest.drain()
        except OSError as exc:
            LOG.debug("link %s: could not write to destination: %s", self.name, exc)
        finally:
            dest.close()
            self.teardown()
            on_finished(self)

    def teardown(self) -> None:
        """Stop every task of this link and close its channels, so no waiter (a re-pipe included) hangs."""
        self.finished = True
        for task in self._tasks:
            task.cancel()
        for stub in self.stubs:
            stub.cancel()
            stub.input.close()
            stub.output.close()

    async def add_toxic(self, toxic: Toxic) -> None:
        """Append a stub for `toxic` (already appended to the chain) behind the current last stub."""
        index = len(self.stubs)
        new_input = ChunkChannel(toxic.kind.buffer_size)
        new_stub = ToxicStub(new_input, self.stubs[index - 1].output)
        self.stubs.append(new_stub)
        if await self.stubs[index - 1].interrupt():
            self.stubs[index - 1].output = new_input
            new_stub.state = toxic.kind.new_state()
            self._run_stub(index)
            self._run_stub(index - 1)
        else:
            # The link already ended: close the new stage too, as upstream does.
            new_stub.output = new_input
            new_stub.close()

    async def update_toxic(self, toxic: Toxic) -> None:
        """Restart the stub of `toxic` so it picks up new attributes (the toxicity draw is re-rolled)."""
        if await self.stubs[toxic.index].interrupt():
            self._run_stub(toxic.index)

    async def remove_toxic(self, toxic: Toxic, index: int) -> None:
        """Take the stub at `index` out of the chain, handing on everything it held or had buffered."""
        stub = self.stubs[index]
        if not await stub.interrupt():
            return
        if toxic.kind.has_cleanup:
            toxic.kind.cleanup(stub)
            if stub.closed:
                return
        previous = self.stubs[index - 1]
        stopping = asyncio.get_running_loop().create_task(previous.interrupt())
        if not await self._drain_while_stopping(stub, stopping):
            return
        while (chunk := stub.input.get_nowait()) is not None:
            if not await stub.send_within(chunk, REPIPE_SEND_TIMEOUT_S):
                LOG.error("link %s: could not write last packets after interrupt to output", self.name)
        previous.output = stub.output
        del self.stubs[index]
        self._run_stub(index - 1)

    async def _drain_while_stopping(self, stub: ToxicStub, stopping: asyncio.Task[bool]) -> bool:
        """Forward `stub`'s input while the previous stub is interrupted (it may be blocked writing to us).

        False when the stream ended meanwhile (the stub is then closed and nothing is left to re-pipe).
        """
        while True:
            getter = asyncio.get_running_loop().create_task(stub.input.get())
            waiting: set[asyncio.Future[Any]] = {getter} if stopping.done() else {getter, stopping}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                await asyncio.wait([getter])
            if not getter.cancelled():
                chunk = getter.result()
                if chunk is None:
                    stub.close()
                    await stopping
                    return False
                if not await stub.send_within(chunk, REPIPE_SEND_TIMEOUT_S):
                    LOG.error("link %s: could not write last packets after interrupt to output", self.name)
            if stopping.done() and stopping.result():
                return True
