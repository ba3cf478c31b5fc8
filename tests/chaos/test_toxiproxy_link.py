"""The link machinery in-process: re-piping under heavy churn loses nothing, and removal never hangs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random

import pytest

from chaos.toxiproxy.proxy import Proxy
from chaos.toxiproxy.stream import Chunk, ChunkChannel

pytestmark = pytest.mark.integration

CHURN_CYCLES = 1000


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _proxy_to_echo() -> tuple[Proxy, asyncio.Server]:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = echo.sockets[0].getsockname()[1]
    proxy = Proxy("p", "127.0.0.1:0", f"127.0.0.1:{port}")
    await proxy.start()
    return proxy, echo


async def _shutdown(proxy: Proxy, echo: asyncio.Server, *writers: asyncio.StreamWriter) -> None:
    """Stop everything and let the loop run the transports' close callbacks before asyncio.run ends."""
    for writer in writers:
        writer.close()
    await proxy.stop()
    echo.close()
    await echo.wait_closed()
    await asyncio.sleep(0.1)


def _toxic(kind: str, stream: str, **attributes: int) -> object:
    return json.loads(json.dumps({"type": kind, "stream": stream, "attributes": attributes}))


def test_thousand_add_remove_cycles_keep_every_byte() -> None:
    """1000 add/remove cycles of mixed toxics on both streams during a 2 MB echo leave the stream bit-identical."""

    async def scenario() -> tuple[str, str, int]:
        proxy, echo = await _proxy_to_echo()
        host, port = proxy.listen.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        payload = random.Random(3).randbytes(2 * 1024 * 1024)

        async def send() -> None:
            for offset in range(0, len(payload), 4096):
                writer.write(payload[offset : offset + 4096])
                await writer.drain()
                await asyncio.sleep(0)

        sender = asyncio.create_task(send())
        receiving = asyncio.create_task(reader.readexactly(len(payload)))
        kinds = [("latency", {"latency": 1}), ("slicer", {"average_size": 300, "size_variation": 50}), ("noop", {})]
        cycles = 0
        while cycles < CHURN_CYCLES:
            kind, attributes = kinds[cycles % len(kinds)]
            stream = ("upstream", "downstream")[cycles % 2]
            toxic = await proxy.toxics.add_from_json(_toxic(kind, stream, **attributes))
            await asyncio.sleep(0)
            await proxy.toxics.remove(toxic.name)
            cycles += 1
        async with asyncio.timeout(30):
            received = await receiving
            await sender
        await _shutdown(proxy, echo, writer)
        return hashlib.sha256(payload).hexdigest(), hashlib.sha256(received).hexdigest(), cycles

    sent, received, cycles = asyncio.run(scenario())
    assert cycles == CHURN_CYCLES
    assert received == sent


def test_removing_toxics_from_a_dead_connection_does_not_hang() -> None:
    """After the client vanished mid-stream, removing a latency and a timeout toxic finishes promptly."""

    async def scenario() -> None:
        proxy, echo = await _proxy_to_echo()
        await proxy.toxics.add_from_json(_toxic("latency", "downstream", latency=50))
        await proxy.toxics.add_from_json(_toxic("timeout", "upstream", timeout=0))
        host, port = proxy.listen.rsplit(":", 1)
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"x" * 100_000)
        await writer.drain()
        writer.transport.abort()
        async with asyncio.timeout(5):
            await proxy.toxics.remove("latency_downstream")
            await proxy.toxics.remove("timeout_upstream")
            await _shutdown(proxy, echo)

    asyncio.run(scenario())


def test_channel_close_lets_reader_drain_then_see_none() -> None:
    """A closed channel yields its buffered chunks, then None forever; puts after close are dropped."""

    async def scenario() -> list[bytes | None]:
        channel = ChunkChannel(4)
        await channel.put(Chunk(b"a"))
        await channel.put(Chunk(b"b"))
        channel.close()
        await channel.put(Chunk(b"late"))
        results: list[bytes | None] = []
        for _ in range(4):
            chunk = await channel.get()
            results.append(None if chunk is None else chunk.data)
        return results

    assert asyncio.run(scenario()) == [b"a", b"b", None, None]


def test_limit_data_count_survives_updates() -> None:
    """limit_data's per-connection byte count persists when the toxic is updated (restarted) on a live link."""

    async def scenario() -> bytes:
        proxy, echo = await _proxy_to_echo()
        await proxy.toxics.add_from_json(_toxic("limit_data", "downstream", bytes=10))
        host, port = proxy.listen.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"123456")
        first = await reader.readexactly(6)
        await proxy.toxics.update_from_json("limit_data_downstream", {"attributes": {"bytes": 10}})
        writer.write(b"abcdef")
        async with asyncio.timeout(5):
            rest = await reader.read()
        await _shutdown(proxy, echo, writer)
        return first + rest

    assert asyncio.run(scenario()) == b"123456abcd"
