"""Proxies: a loopback listener, one upstream, and the links of every accepted connection.

Mirrors upstream's `proxy.go` and `proxy_collection.go`: a listen address is reported resolved once
the proxy runs (`localhost:0` becomes `127.0.0.1:43127`) and literally while it is disabled; the
upstream is dialled per accepted client and the client is closed at once when that fails; disabling
a proxy closes its listener and drops every open connection. Unlike upstream, this server only ever
listens on and connects to 127.0.0.0/8: any other address is refused with a 400.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
from dataclasses import dataclass, field

from chaos.toxiproxy.collection import ToxicCollection
from chaos.toxiproxy.link import ToxicLink
from chaos.toxiproxy.toxics import Direction
from chaos.toxiproxy.wire import HTTP_BAD_REQUEST, HTTP_INTERNAL_ERROR, PROXY_ALREADY_EXISTS, PROXY_NOT_FOUND, ApiError

LOG = logging.getLogger("chaos.toxiproxy")
DIAL_TIMEOUT_S = 10.0
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


class ProxyAlreadyStartedError(Exception):
    """`start` on a proxy that is already running (reset ignores it, as upstream does)."""


def split_host_port(address: str) -> tuple[str, int]:
    """`host:port` split as Go's `net.SplitHostPort`, with Go's wording when it is malformed."""
    host, colon, port_text = address.rpartition(":")
    if not colon:
        raise ValueError(f"address {address}: missing port in address")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"address {address}: invalid port")
    return host, int(port_text)


def loopback_host(host: str) -> str | None:
    """The IPv4 literal for a loopback host (`localhost` or an address in 127.0.0.0/8), else None."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return None
    return str(address) if address in LOOPBACK else None


def check_loopback(role: str, address: str, *, malformed_ok: bool) -> None:
    """Refuse (400) an address off the loopback network; no name is ever looked up.

    With `malformed_ok`, an unparsable address is left for the bind to reject with upstream's 500.
    """
    try:
        host, _ = split_host_port(address)
    except ValueError:
        if malformed_ok:
            return
        host = ""
    if loopback_host(host) is None:
        raise ApiError(
            f"{role} address must be on loopback (127.0.0.0/8 or localhost), got {address!r}: "
            "this server only listens on and connects to 127.0.0.1",
            HTTP_BAD_REQUEST,
        )


def resolve_listen(address: str) -> str:
    """The address as Go's `ResolveTCPAddr` prints it (`localhost:0` gives `127.0.0.1:0`); 500 if malformed."""
    try:
        host, port = split_host_port(address)
    except ValueError as exc:
        raise ApiError(str(exc), HTTP_INTERNAL_ERROR) from None
    return f"{loopback_host(host) or host}:{port}"


@dataclass(eq=False)
class ProxyConnection:
    """One accepted client and its upstream connection; done when both links have finished."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    links_running: int = 2
    links: list[ToxicLink] = field(default_factory=list)

    def drop(self) -> None:
        """Close both sockets at once (proxy disabled or deleted)."""
        for link in self.links:
            link.teardown()
        self.client.transport.abort()
        self.upstream.transport.abort()


class Proxy:
    """A named TCP proxy from a loopback listen address to a loopback upstream, with its toxics."""

    def __init__(self, name: str, listen: str, upstream: str) -> None:
        """A stopped proxy; `start` binds it."""
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.toxics = ToxicCollection()
        self._server: asyncio.Server | None = None
        self._connections: set[ProxyConnection] = set()
        self._lock = asyncio.Lock()

    def to_json(self) -> dict[str, object]:
        """The proxy object in upstream's key order (`Logger` is an artefact upstream always prints)."""
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "Logger": {},
            "toxics": [toxic.to_json() for toxic in self.toxics.toxics()],
        }

    async def start(self) -> None:
        """Bind the listener; raises `ProxyAlreadyStartedError`, or a 500 with Go's bind error text."""
        async with self._lock:
            await self._start()

    async def stop(self) -> None:
        """Close the listener and drop every connection; a no-op when stopped."""
        async with self._lock:
            await self._stop()

    async def update(self, listen: str, upstream: str, enabled: bool) -> None:
        """Apply a PATCH: a new listen or upstream restarts the proxy; `enabled` starts or stops it."""
        async with self._lock:
            if resolve_listen(listen) != self.listen or upstream != self.upstream:
                await self._stop()
                self.listen = listen
                self.upstream = upstream
            if enabled != self.enabled:
                if enabled:
                    await self._start()
                else:
                    await self._stop()

    def differs(self, listen: str, upstream: str) -> bool:
        """Whether another definition has a different (resolved) listen address or upstream."""
        return resolve_listen(listen) != self.listen or upstream != self.upstream

    async def _start(self) -> None:
        if self.enabled:
            raise ProxyAlreadyStartedError(self.name)
        try:
            host, port = split_host_port(self.listen)
        except ValueError as exc:
            raise ApiError(f"listen tcp: {exc}", HTTP_INTERNAL_ERROR) from None
        bind_host = loopback_host(host)
        if bind_host is None:  # checked by the API already; never bind elsewhere
            raise ApiError(f"listen tcp {self.listen}: refusing a non-loopback address", HTTP_BAD_REQUEST)
        try:
            self._server = await asyncio.start_server(self._accept, bind_host, port, limit=2 * 65536)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            if exc.errno == errno.EADDRINUSE:
                reason = "address already in use"
            raise ApiError(f"listen tcp {bind_host}:{port}: bind: {reason.lower()}", HTTP_INTERNAL_ERROR) from None
        bound = self._server.sockets[0].getsockname()
        self.listen = f"{bound[0]}:{bound[1]}"
        self.enabled = True
        LOG.info("started proxy %s on %s for %s", self.name, self.listen, self.upstream)

    async def _stop(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for connection in list(self._connections):
            connection.drop()
        self._connections.clear()
        if server is not None:
            await server.wait_closed()
        LOG.info("terminated proxy %s", self.name)

    async def _accept(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        peer = client.get_extra_info("peername")
        host, port = split_host_port(self.upstream)
        upstream_host = loopback_host(host)
        try:
            if upstream_host is None:  # checked by the API already; never connect elsewhere
                raise OSError(f"refusing non-loopback upstream {self.upstream}")
            async with asyncio.timeout(DIAL_TIMEOUT_S):
                upstream_reader, upstream = await asyncio.open_connection(upstream_host, port, limit=2 * 65536)
        except (OSError, TimeoutError) as exc:
            LOG.warning("proxy %s: unable to open connection to upstream %s: %s", self.name, self.upstream, exc)
            client.close()
            return
        if not self.enabled:
            upstream.close()
            client.close()
            return
        connection = ProxyConnection(client, upstream)
        self._connections.add(connection)
        name = f"{peer[0]}:{peer[1]}" if peer else "client"

        def link_finished(_link: ToxicLink) -> None:
            connection.links_running -= 1
            if connection.links_running == 0:
                self._connections.discard(connection)

        for direction, source, source_writer, dest in (
            (Direction.UPSTREAM, client_reader, client, upstream),
            (Direction.DOWNSTREAM, upstream_reader, upstream, client),
        ):
            link = await self.toxics.start_link(
                direction,
                f"{name}{direction.name.lower()}",
                source=source,
                source_writer=source_writer,
                dest=dest,
                on_finished=link_finished,
            )
            connection.links.append(link)


class ProxyCollection:
    """Every proxy by name; guards name uniqueness and implements populate's add-or-replace."""

    def __init__(self) -> None:
        """No proxies."""
        self.proxies: dict[str, Proxy] = {}
        self._lock = asyncio.Lock()

    def get(self, name: str) -> Proxy:
        """The proxy called `name`, or a 404."""
        proxy = self.proxies.get(name)
        if proxy is None:
            raise PROXY_NOT_FOUND
        return proxy

    async def add(self, proxy: Proxy, *, start: bool) -> None:
        """Register a new proxy (409 when the name is taken), starting it first when asked."""
        async with self._lock:
            if proxy.name in self.proxies:
                raise PROXY_ALREADY_EXISTS
            if start:
                await proxy.start()
            self.proxies[proxy.name] = proxy

    async def add_or_replace(self, proxy: Proxy, *, start: bool) -> Proxy:
        """Populate one entry: keep an identical existing proxy untouched, else stop it and use the new one."""
        async with self._lock:
            existing = self.proxies.get(proxy.name)
            if existing is not None:
                if not existing.differs(proxy.listen, proxy.upstream):
                    return existing
                await existing.stop()
            if start:
                await proxy.start()
            self.proxies[proxy.name] = proxy
            return proxy

    async def remove(self, name: str) -> None:
        """Stop and forget a proxy (404 when unknown)."""
        async with self._lock:
            proxy = self.get(name)
            await proxy.stop()
            del self.proxies[name]

    async def clear(self) -> None:
        """Stop and forget every proxy (server shutdown)."""
        async with self._lock:
            for proxy in self.proxies.values():
                await proxy.stop()
            self.proxies.clear()
