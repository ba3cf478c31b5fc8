"""Fixtures for the embedded Toxiproxy server: one server process per session, loopback echo servers, raw HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaos.toxiproxy_client import ToxiproxyClient, free_loopback_port, stop_toxiproxy

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RawResponse:
    """What the server answered, byte for byte."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        """The body parsed as JSON."""
        return json.loads(self.body)


RawCall = Callable[..., RawResponse]


def start_embedded_server(log_path: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """`python -m chaos.toxiproxy` on a free loopback port, once /version answers."""
    port = free_loopback_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "chaos.toxiproxy", "--port", str(port), "--seed", "7"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    client = ToxiproxyClient(url, timeout_s=2.0)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            client.version()
        except OSError:
            time.sleep(0.05)
        else:
            return url, process
    stop_toxiproxy(process)
    raise RuntimeError(f"embedded toxiproxy did not start; log: {log_path.read_text()}")


@pytest.fixture(scope="session")
def toxiproxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of one embedded server shared by the session (tests clean up their proxies)."""
    url, process = start_embedded_server(tmp_path_factory.mktemp("toxiproxy") / "server.log")
    yield url
    stop_toxiproxy(process)


@pytest.fixture
def api(toxiproxy_url: str) -> Iterator[ToxiproxyClient]:
    """A typed client; every proxy is deleted after the test."""
    client = ToxiproxyClient(toxiproxy_url, timeout_s=10.0)
    for name in client.proxies():
        client.delete_proxy(name)
    yield client
    for name in client.proxies():
        client.delete_proxy(name)


@pytest.fixture
def raw(toxiproxy_url: str, api: ToxiproxyClient) -> RawCall:
    """`raw(method, path, body=None, headers=None)`: one HTTP request with the bytes given, no client logic."""
    port = int(toxiproxy_url.rsplit(":", 1)[1])

    def call(
        method: str, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None
    ) -> RawResponse:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            payload = body.encode() if isinstance(body, str) else body
            connection.request(method, path, body=payload, headers=headers or {})
            response = connection.getresponse()
            return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    return call


class EchoServer:
    """A threaded TCP server on 127.0.0.1 that writes back whatever it reads, one thread per client."""

    def __init__(self) -> None:
        """Bind and start accepting."""
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._stopped = threading.Event()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(client,), daemon=True).start()

    @staticmethod
    def _echo(client: socket.socket) -> None:
        with client:
            try:
                while data := client.recv(65536):
                    client.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        """Stop accepting."""
        self._stopped.set()
        self._socket.close()


@pytest.fixture(scope="session")
def echo() -> Iterator[EchoServer]:
    """One loopback echo server for the session."""
    server = EchoServer()
    yield server
    server.close()


def connect(listen: str, timeout_s: float = 10.0) -> socket.socket:
    """A client socket to a proxy's `host:port`."""
    host, port = listen.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout_s)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read `size` bytes or fail when the peer closes first."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(1 << 20, size - len(data)))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def refuses_connections(listen: str) -> bool:
    """Whether a TCP connect to `listen` is refused."""
    try:
        connect(listen, timeout_s=2.0).close()
    except ConnectionRefusedError:
        return True
    return False
