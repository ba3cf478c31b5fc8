"""A proxy's toxics: one chain per direction behind a hidden noop, and the live links they act on.

Mirrors upstream's `toxic_collection.go`: names are unique across both streams, the API lists the
upstream chain first, and every change is applied to every live link of that direction before the
API answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

from chaos.toxiproxy.link import ToxicLink
from chaos.toxiproxy.toxics import KINDS, Direction, NoopToxic, Toxic
from chaos.toxiproxy.wire import (
    INVALID_STREAM,
    INVALID_TOXIC_TYPE,
    TOXIC_ALREADY_EXISTS,
    TOXIC_NOT_FOUND,
    expect_object,
    read_float,
    read_str,
)

_WRAPPER = "ToxicWrapper"


class ToxicCollection:
    """The toxic chains of one proxy and the links (live connections, one per direction) they apply to."""

    def __init__(self) -> None:
        """Empty chains: just the hidden noop head in each direction."""
        self._chains: dict[Direction, list[Toxic]] = {
            direction: [Toxic("", NoopToxic(), direction.name.lower(), 1.0, direction, 0)] for direction in Direction
        }
        self._links: set[ToxicLink] = set()
        self._lock = asyncio.Lock()

    def chain(self, direction: Direction) -> Sequence[Toxic]:
        """The chain of one direction, hidden noop first (links read it when they start or re-pipe)."""
        return self._chains[direction]

    def toxics(self) -> list[Toxic]:
        """The visible toxics: the upstream chain, then the downstream chain, each in insertion order."""
        return [toxic for direction in Direction for toxic in self._chains[direction][1:]]

    def find(self, name: str) -> Toxic | None:
        """The toxic called `name` in either stream, or None."""
        return next((toxic for toxic in self.toxics() if toxic.name == name), None)

    async def add_from_json(self, body: object) -> Toxic:
        """Create a toxic from an API body, in upstream's order of checks, and apply it to every live link."""
        data = expect_object(body, "toxics.ToxicWrapper")
        stream = read_str(data, "stream", "downstream", _WRAPPER)
        toxicity = read_float(data, "toxicity", 1.0, _WRAPPER)
        type_name = read_str(data, "type", "", _WRAPPER)
        name = read_str(data, "name", "", _WRAPPER)
        direction = Direction.parse(stream)
        if direction is None:
            raise INVALID_STREAM
        name = name or f"{type_name}_{stream}"
        kind_class = KINDS.get(type_name)
        if kind_class is None:
            raise INVALID_TOXIC_TYPE
        async with self._lock:
            if self.find(name) is not None:
                raise TOXIC_ALREADY_EXISTS
            kind = kind_class()
            kind.merge_attributes(expect_object(data.get("attributes"), f"toxics.{kind.go_struct}"))
            toxic = Toxic(name, kind, stream, toxicity, direction)
            chain = self._chains[direction]
            toxic.index = len(chain)
            chain.append(toxic)
            await self._each_link(direction, lambda link: link.add_toxic(toxic))
        return toxic

    async def update_from_json(self, name: str, body: object) -> Toxic:
        """Merge new attributes (and toxicity, if given) into a toxic and restart it on every live link."""
        async with self._lock:
            toxic = self.find(name)
            if toxic is None:
                raise TOXIC_NOT_FOUND
            data: Mapping[str, object] = expect_object(body, "struct { Attributes interface {}; Toxicity float32 }")
            toxicity = read_float(data, "toxicity", toxic.toxicity, _WRAPPER)
            toxic.kind.merge_attributes(expect_object(data.get("attributes"), f"toxics.{toxic.kind.go_struct}"))
            toxic.toxicity = toxicity
            await self._each_link(toxic.direction, lambda link: link.update_toxic(toxic))
        return toxic

    async def remove(self, name: str) -> None:
        """Remove a toxic from its chain and from every live link."""
        async with self._lock:
            toxic = self.find(name)
            if toxic is None:
                raise TOXIC_NOT_FOUND
            await self._remove(toxic)

    async def reset(self) -> None:
        """Remove every toxic from both chains (the hidden noop heads stay)."""
        async with self._lock:
            for direction in Direction:
                while len(self._chains[direction]) > 1:
                    await self._remove(self._chains[direction][1])

    async def _remove(self, toxic: Toxic) -> None:
        chain = self._chains[toxic.direction]
        index = toxic.index
        del chain[index]
        for position in range(index, len(chain)):
            chain[position].index = position
        await self._each_link(toxic.direction, lambda link: link.remove_toxic(toxic, index))
        toxic.index = -1

    async def _each_link(self, direction: Direction, change: Callable[[ToxicLink], Awaitable[None]]) -> None:
        links = [link for link in self._links if link.direction == direction and not link.finished]
        await asyncio.gather(*(change(link) for link in links))

    async def start_link(
        self,
        direction: Direction,
        name: str,
        *,
        source: asyncio.StreamReader,
        source_writer: asyncio.StreamWriter,
        dest: asyncio.StreamWriter,
        on_finished: Callable[[ToxicLink], None],
    ) -> ToxicLink:
        """Create and start a link with the current chain; it leaves the collection when its writer ends."""
        async with self._lock:
            link = ToxicLink(lambda: self._chains[direction], direction, name)

            def finished(done: ToxicLink) -> None:
                self._links.discard(done)
                on_finished(done)

            link.start(source, source_writer, dest, finished)
            self._links.add(link)
        return link
