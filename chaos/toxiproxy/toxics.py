"""The toxic types and their semantics, matching upstream's `toxics/*.go`.

A `ToxicKind` holds a toxic's attributes and its `pipe`, the coroutine that moves chunks from a
stub's input to its output. Every pipe follows the same contract: on `None` from the input it closes
the stub (ending the stream) unless its semantics say otherwise; when cancelled (an interrupt while
the chain is re-piped) it first hands on any chunk it holds, so no byte is lost or reordered.
`Toxic` is the API object: name, stream, toxicity and the kind.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from chaos.toxiproxy.stream import RNG, Chunk, ToxicStub, pass_through
from chaos.toxiproxy.wire import go_float, read_int


class Direction(enum.IntEnum):
    """Which way a chain of toxics acts: upstream is client to server, downstream is server to client."""

    UPSTREAM = 0
    DOWNSTREAM = 1

    @classmethod
    def parse(cls, value: str) -> Direction | None:
        """The direction named by `value` (any case), or None."""
        return {"upstream": cls.UPSTREAM, "downstream": cls.DOWNSTREAM}.get(value.lower())


class ToxicKind:
    """A toxic type: its integer attributes (zero by default), its channel buffer size, and its pipe."""

    type_name: ClassVar[str] = ""
    #: The Go struct name upstream uses in decode errors.
    go_struct: ClassVar[str] = ""
    #: Attribute names in upstream's JSON order, with their Go integer type.
    fields: ClassVar[tuple[tuple[str, str], ...]] = ()
    buffer_size: ClassVar[int] = 0
    has_cleanup: ClassVar[bool] = False

    def __init__(self) -> None:
        """A toxic with every attribute at its zero value."""
        self.attributes: dict[str, int] = {name: 0 for name, _ in self.fields}

    def merge_attributes(self, raw: Mapping[str, object]) -> None:
        """Decode attributes into this toxic; omitted or null ones keep their value, unknown keys are ignored."""
        decoded = {
            name: read_int(raw, name, self.attributes[name], f"{self.go_struct}.attributes", go_type)
            for name, go_type in self.fields
        }
        self.attributes.update(decoded)

    def new_state(self) -> object | None:
        """Per-connection state that survives restarts of the toxic on one link (None: stateless)."""
        return None

    async def pipe(self, stub: ToxicStub) -> None:
        """Move chunks through this toxic until the stream ends or the stub is interrupted."""
        await pass_through(stub)

    def cleanup(self, stub: ToxicStub) -> None:
        """What removing the toxic does to a link (only toxics with `has_cleanup`)."""


async def _hand_on(stub: ToxicStub, chunk: Chunk) -> None:
    """On an interrupt, deliver the held chunk before stopping: upstream never drops data on the floor."""
    await stub.output.put(chunk)


class NoopToxic(ToxicKind):
    """Pass-through; accepted by the API and used as the hidden head of every chain."""

    type_name = "noop"
    go_struct = "NoopToxic"


class LatencyToxic(ToxicKind):
    """Delay each chunk to `received + latency ± jitter` ms; pipelined, so throughput is not throttled."""

    type_name = "latency"
    go_struct = "LatencyToxic"
    fields = (("latency", "int64"), ("jitter", "int64"))
    buffer_size = 1024

    def delay_s(self) -> float:
        """This chunk's delay: latency plus a uniform draw in [-jitter, +jitter) ms."""
        delay_ms = self.attributes["latency"]
        jitter_ms = self.attributes["jitter"]
        if jitter_ms > 0:
            delay_ms += RNG.randrange(2 * jitter_ms) - jitter_ms
        return delay_ms / 1000.0

    async def pipe(self, stub: ToxicStub) -> None:
        """Sleep until each chunk is due, then pass it on; its timestamp moves by the sleep, so chains add up."""
        while True:
            chunk = await stub.input.get()
            if chunk is None:
                stub.close()
                return
            sleep_s = self.delay_s() - (time.monotonic() - chunk.received_at_s)
            if sleep_s > 0:
                try:
                    await asyncio.sleep(sleep_s)
                except asyncio.CancelledError:
                    await _hand_on(stub, chunk)
                    raise
            chunk.received_at_s += sleep_s
            await stub.send(chunk)


class BandwidthToxic(ToxicKind):
    """Limit throughput to `rate` KB/s (1 KB = 1000 B), carrying timing error over; `rate <= 0` is unlimited."""

    type_name = "bandwidth"
    go_struct = "BandwidthToxic"
    fields = (("rate", "int64"),)

    async def pipe(self, stub: ToxicStub) -> None:
        """Sleep `len/rate` per chunk; a chunk over `rate*100` bytes goes out in such pieces every 100 ms."""
        debt_s = 0.0
        while True:
            chunk = await stub.input.get()
            if chunk is None:
                stub.close()
                return
            rate = self.attributes["rate"]
            # Upstream loops forever on rate 0 (pieces of rate*100 = 0 bytes); we treat it as unlimited.
            if rate <= 0:
                await stub.send(chunk)
                debt_s = 0.0
                continue
            debt_s += len(chunk.data) / (rate * 1000.0)
            piece_bytes = rate * 100
            data = chunk.data
            try:
                while len(data) > piece_bytes:
                    await asyncio.sleep(0.1)
                    await stub.send(Chunk(data[:piece_bytes], chunk.received_at_s))
                    data = data[piece_bytes:]
                    debt_s -= 0.1
                started_s = time.monotonic()
                await asyncio.sleep(max(debt_s, 0.0))
                debt_s -= time.monotonic() - started_s
            except asyncio.CancelledError:
                await _hand_on(stub, Chunk(data, chunk.received_at_s))
                raise
            await stub.send(Chunk(data, chunk.received_at_s))


class SlowCloseToxic(ToxicKind):
    """Pass data; when the source closes, delay closing the other side by `delay` ms."""

    type_name = "slow_close"
    go_struct = "SlowCloseToxic"
    fields = (("delay", "int64"),)

    async def pipe(self, stub: ToxicStub) -> None:
        """Forward chunks; on end of stream wait `delay`, then close (an interrupt during the wait just stops)."""
        while True:
            chunk = await stub.input.get()
            if chunk is None:
                await asyncio.sleep(self.attributes["delay"] / 1000.0)
                stub.close()
                return
            await stub.send(chunk)


class TimeoutToxic(ToxicKind):
    """Drop all data; close after `timeout` ms without incoming data (0: never). Removing it closes the link."""

    type_name = "timeout"
    go_struct = "TimeoutToxic"
    fields = (("timeout", "int64"),)
    has_cleanup = True

    async def pipe(self, stub: ToxicStub) -> None:
        """Discard chunks; the timer restarts on every chunk, as upstream's `time.After` inside the loop does."""
        timeout_ms = self.attributes["timeout"]
        while True:
            try:
                if timeout_ms > 0:
                    async with asyncio.timeout(timeout_ms / 1000.0):
                        chunk = await stub.input.get()
                else:
                    chunk = await stub.input.get()
            except TimeoutError:
                stub.close()
                return
            if chunk is None:
                stub.close()
                return

    def cleanup(self, stub: ToxicStub) -> None:
        """Close the stream: a connection that was black-holed is not silently revived."""
        stub.close()


class ResetPeerToxic(ToxicKind):
    """On the first chunk, drop it, wait `timeout` ms, then close; the link set SO_LINGER=0, so peers get RST."""

    type_name = "reset_peer"
    go_struct = "ResetToxic"
    fields = (("timeout", "int64"),)

    async def pipe(self, stub: ToxicStub) -> None:
        """Wait for any input (end of stream included, as upstream), then sleep out the timeout and close."""
        await stub.input.get()
        deadline_s = time.monotonic() + self.attributes["timeout"] / 1000.0
        interrupted = False
        # Upstream's wait here does not watch the interrupt channel: the reset happens regardless.
        while (remaining_s := deadline_s - time.monotonic()) > 0:
            try:
                await asyncio.sleep(remaining_s)
            except asyncio.CancelledError:
                interrupted = True
        stub.close()
        if interrupted:
            raise asyncio.CancelledError


class SlicerToxic(ToxicKind):
    """Split each chunk into pieces of about `average_size` ± `size_variation` bytes, `delay` µs apart."""

    type_name = "slicer"
    go_struct = "SlicerToxic"
    fields = (("average_size", "int"), ("size_variation", "int"), ("delay", "int"))

    def cut_points(self, start: int, end: int) -> list[int]:
        """Boundaries [s0, e0, s1, e1, ...] by recursive halving, as upstream's `chunk`.

        Upstream recurses forever on `average_size` 0 and can cut outside the chunk when
        `size_variation` is large; pieces here are at least one byte and stay inside the chunk.
        """
        average = self.attributes["average_size"]
        variation = self.attributes["size_variation"]
        if (end - start) - average <= variation or end - start <= 1:
            return [start, end]
        middle = start + (end - start) // 2
        if variation > 0:
            middle += RNG.randrange(2 * variation) - variation
        middle = min(max(middle, start + 1), end - 1)
        return self.cut_points(start, middle) + self.cut_points(middle, end)

    async def pipe(self, stub: ToxicStub) -> None:
        """Send the pieces one by one with the delay between them; on interrupt send the rest at once."""
        while True:
            chunk = await stub.input.get()
            if chunk is None:
                stub.close()
                return
            points = self.cut_points(0, len(chunk.data))
            for index in range(1, len(points), 2):
                await stub.send(Chunk(chunk.data[points[index - 1] : points[index]], chunk.received_at_s))
                try:
                    await asyncio.sleep(self.attributes["delay"] / 1_000_000.0)
                except asyncio.CancelledError:
                    rest = chunk.data[points[index] :]
                    if rest:
                        await _hand_on(stub, Chunk(rest, chunk.received_at_s))
                    raise


@dataclass
class LimitDataState:
    """Bytes a limit_data toxic has let through on one link; kept across restarts and updates."""

    transmitted_bytes: int = 0


class LimitDataToxic(ToxicKind):
    """Pass at most `bytes` in this direction (truncating the last chunk), then close; 0 closes at once."""

    type_name = "limit_data"
    go_struct = "LimitDataToxic"
    fields = (("bytes", "int64"),)

    def new_state(self) -> object | None:
        """A fresh byte count for a new link."""
        return LimitDataState()

    async def pipe(self, stub: ToxicStub) -> None:
        """Forward until the limit is reached, counting in the link's state."""
        state = stub.state if isinstance(stub.state, LimitDataState) else LimitDataState()
        stub.state = state
        while True:
            chunk = await stub.input.get()
            if chunk is None:
                stub.close()
                return
            remaining = max(self.attributes["bytes"] - state.transmitted_bytes, 0)
            if remaining < len(chunk.data):
                chunk = Chunk(chunk.data[:remaining], chunk.received_at_s)
            if chunk.data:
                # Counted before the hand-off: `send` completes it even when an interrupt arrives.
                state.transmitted_bytes += len(chunk.data)
                await stub.send(chunk)
            if self.attributes["bytes"] - state.transmitted_bytes <= 0:
                stub.close()
                return


KINDS: dict[str, type[ToxicKind]] = {
    kind.type_name: kind
    for kind in (
        NoopToxic,
        LatencyToxic,
        BandwidthToxic,
        SlowCloseToxic,
        TimeoutToxic,
        ResetPeerToxic,
        SlicerToxic,
        LimitDataToxic,
    )
}


@dataclass(eq=False)
class Toxic:
    """A toxic as the API sees it: its name, stream, toxicity and kind, and its place in its chain."""

    name: str
    kind: ToxicKind
    stream: str
    toxicity: float
    direction: Direction
    index: int = field(default=-1)

    @property
    def type_name(self) -> str:
        """The toxic type, e.g. `latency`."""
        return self.kind.type_name

    def to_json(self) -> dict[str, object]:
        """The toxic object in upstream's key order."""
        return {
            "attributes": dict(self.kind.attributes),
            "name": self.name,
            "type": self.type_name,
            "stream": self.stream,
            "toxicity": go_float(self.toxicity),
        }
