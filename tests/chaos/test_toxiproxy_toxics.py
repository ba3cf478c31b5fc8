"""Traffic through the embedded server: integrity under toxic churn and each toxic's semantics and timing."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from chaos.toxiproxy_client import ToxiproxyClient, free_loopback_port
from tests.chaos.conftest import EchoServer, connect, recv_exactly, refuses_connections

pytestmark = pytest.mark.integration

#: Upstream's latency tests allow jitter + 10 ms per direction.
LATENCY_SLACK_S = 0.010
# A delay is never shorter than the toxics' sum minus the slack; it may be later by the time a
# loaded 2-core machine takes to schedule the proxy's threads (110 ms for 100 ms was seen under
# .ci/run's load). Every wrong sum the tests guard against (one toxic dropped, one counted twice,
# the other direction's applied) is off by 50 ms or more.
SCHEDULING_S = 0.030


def delayed(measured_s: float, expected_s: float, jitter_s: float = 0.0) -> bool:
    """Whether a measured one-way delay is the expected one: not early, late by scheduling at most."""
    slack = jitter_s + LATENCY_SLACK_S
    return expected_s - slack <= measured_s <= expected_s + slack + SCHEDULING_S


class OneShotServer:
    """A loopback server for one connection, running `behaviour(conn)` in a thread; records when it ran."""

    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        """Bind and accept one connection in the background."""
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self.events: queue.Queue[tuple[str, float]] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, args=(behaviour,), daemon=True)
        self._thread.start()

    def _serve(self, behaviour: Callable[[socket.socket], None]) -> None:
        self._socket.settimeout(20)
        try:
            conn, _ = self._socket.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(20)
            try:
                behaviour(conn)
            except OSError as exc:
                self.events.put((f"error {exc}", time.monotonic()))

    def close(self) -> None:
        """Wait for the behaviour to finish, then stop listening."""
        self._thread.join(timeout=20)
        self._socket.close()


@pytest.fixture
def one_shot() -> Iterator[Callable[[Callable[[socket.socket], None]], OneShotServer]]:
    """Factory for one-connection servers, closed after the test."""
    servers: list[OneShotServer] = []

    def make(behaviour: Callable[[socket.socket], None]) -> OneShotServer:
        server = OneShotServer(behaviour)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def line_echo(server_events: Callable[[], OneShotServer]) -> Callable[[socket.socket], None]:
    """Behaviour: read one newline-terminated message, note the time, send it back."""

    def behaviour(conn: socket.socket) -> None:
        data = bytearray()
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        server_events().events.put(("read", time.monotonic()))
        conn.sendall(bytes(data))
        conn.recv(1)  # hold the connection until the client closes

    return behaviour


def latency_round_trip(
    api: ToxiproxyClient, one_shot: Callable[..., OneShotServer], up_ms: list[int], down_ms: list[int], jitter: int = 0
) -> tuple[float, float]:
    """(server-read delay, client-read delay) of a 32 KB message with latency toxics chained per direction."""
    holder: list[OneShotServer] = []
    server = one_shot(line_echo(lambda: holder[0]))
    holder.append(server)
    proxy = api.create_proxy("lat", server.address)
    for stream, latencies in (("upstream", up_ms), ("downstream", down_ms)):
        for index, latency in enumerate(latencies):
            attributes = {"latency": latency, "jitter": jitter}
            api.add_toxic("lat", "latency", stream=stream, name=f"{stream}{index}", attributes=attributes)
    message = b"hello world " + b"a" * 32 * 1024 + b"\n"
    with connect(proxy.listen) as client:
        started = time.monotonic()
        client.sendall(message)
        _, server_read_at = server.events.get(timeout=10)
        echoed = recv_exactly(client, len(message))
        client_read_at = time.monotonic()
    assert echoed == message
    return server_read_at - started, client_read_at - server_read_at


@pytest.mark.parametrize(
    ("up_ms", "down_ms"),
    [([100], []), ([], [100]), ([100], [100]), ([300], [100]), ([0], [0]), ([50, 100], [])],
    ids=["upstream", "downstream", "both", "biased", "zero", "chained-sum"],
)
def test_latency_within_upstream_tolerance(
    api: ToxiproxyClient, one_shot: Callable[..., OneShotServer], up_ms: list[int], down_ms: list[int]
) -> None:
    """Each direction is delayed by the sum of its latency toxics: upstream's ±10 ms, plus scheduling when late."""
    to_server_s, to_client_s = latency_round_trip(api, one_shot, up_ms, down_ms)
    assert delayed(to_server_s, sum(up_ms) / 1000), to_server_s
    assert delayed(to_client_s, sum(down_ms) / 1000), to_client_s


def test_latency_jitter_stays_in_range(api: ToxiproxyClient, one_shot: Callable[..., OneShotServer]) -> None:
    """With jitter, each direction's delay stays within latency ± (jitter + 10 ms), plus scheduling when late."""
    to_server_s, to_client_s = latency_round_trip(api, one_shot, [100], [100], jitter=30)
    assert delayed(to_server_s, 0.100, jitter_s=0.030), to_server_s
    assert delayed(to_client_s, 0.100, jitter_s=0.030), to_client_s


def test_latency_does_not_throttle_throughput(api: ToxiproxyClient, echo: EchoServer) -> None:
    """Latency is pipelined: 8 MB round trip through 50 ms each way takes far less than per-chunk delays would."""
    proxy = api.create_proxy("fast", echo.address)
    api.add_toxic("fast", "latency", stream="upstream", attributes={"latency": 50})
    api.add_toxic("fast", "latency", stream="downstream", attributes={"latency": 50})
    payload = random.Random(1).randbytes(8 * 1024 * 1024)
    with connect(proxy.listen) as client:
        started = time.monotonic()
        sender = threading.Thread(target=client.sendall, args=(payload,), daemon=True)
        sender.start()
        received = recv_exactly(client, len(payload))
        elapsed_s = time.monotonic() - started
        sender.join(timeout=10)
    assert received == payload
    # 8 MB is 256 reads of 32 KB; serialised 100 ms delays would take 25 s.
    assert elapsed_s < 3.0


def test_bandwidth_rate_within_tolerance(api: ToxiproxyClient, one_shot: Callable[..., OneShotServer]) -> None:
    """480 KB at rate 1000 KB/s reaches the server in 480 ms (upstream allows ±10 ms; we allow ±25 ms)."""
    payload = b"hello world " * 40000
    finished: queue.Queue[float] = queue.Queue()

    def sink(conn: socket.socket) -> None:
        recv_exactly(conn, len(payload))
        finished.put(time.monotonic())

    server = one_shot(sink)
    proxy = api.create_proxy("bw", server.address)
    api.add_toxic("bw", "bandwidth", stream="upstream", attributes={"rate": 1000})
    with connect(proxy.listen) as client:
        started = time.monotonic()
        client.sendall(payload)
        elapsed_s = finished.get(timeout=10) - started
    assert elapsed_s == pytest.approx(len(payload) / 1_000_000, abs=0.025)


def test_no_byte_lost_or_reordered_while_toxics_churn(api: ToxiproxyClient, echo: EchoServer) -> None:
    """4 MB of random bytes echo back bit-identical while latency, bandwidth and slicer toxics come and go."""
    proxy = api.create_proxy("churn", echo.address)
    payload = random.Random(2).randbytes(4 * 1024 * 1024)
    received = bytearray()
    with connect(proxy.listen, timeout_s=30) as client:

        def send() -> None:
            # Paced to last about a second, so the toxics change many times under traffic.
            for offset in range(0, len(payload), 8192):
                client.sendall(payload[offset : offset + 8192])
                time.sleep(0.002)

        def receive() -> None:
            received.extend(recv_exactly(client, len(payload)))

        threads = [threading.Thread(target=send, daemon=True), threading.Thread(target=receive, daemon=True)]
        for thread in threads:
            thread.start()
        toxics = [
            ("latency", {"latency": 3, "jitter": 2}),
            ("bandwidth", {"rate": 50_000}),
            ("slicer", {"average_size": 512, "size_variation": 100, "delay": 10}),
        ]
        changes = 0
        deadline = time.monotonic() + 30
        while threads[1].is_alive() and time.monotonic() < deadline:
            for kind, attributes in toxics:
                for stream in ("upstream", "downstream"):
                    api.add_toxic("churn", kind, stream=stream, attributes=attributes)
                    changes += 1
            time.sleep(0.02)
            for kind, _ in reversed(toxics):
                for stream in ("downstream", "upstream"):
                    api.delete_toxic("churn", f"{kind}_{stream}")
                    changes += 1
        for thread in threads:
            thread.join(timeout=30)
    assert changes >= 100
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_timeout_closes_after_silence(api: ToxiproxyClient, echo: EchoServer) -> None:
    """A timeout toxic drops the data and closes the connection after `timeout` ms without incoming data."""
    proxy = api.create_proxy("to", echo.address)
    api.add_toxic("to", "timeout", stream="upstream", attributes={"timeout": 200})
    with connect(proxy.listen) as client:
        started = time.monotonic()
        client.sendall(b"lost")
        assert client.recv(16) == b""
        elapsed_s = time.monotonic() - started
    assert 0.19 <= elapsed_s < 0.5


def test_timeout_zero_blackholes_until_removed(api: ToxiproxyClient, echo: EchoServer) -> None:
    """Timeout 0 holds the connection open and silent; removing the toxic closes the connection."""
    proxy = api.create_proxy("hole", echo.address)
    with connect(proxy.listen) as client:
        client.sendall(b"ping")
        assert recv_exactly(client, 4) == b"ping"
        api.add_toxic("hole", "timeout", stream="upstream", attributes={"timeout": 0})
        client.sendall(b"lost")
        client.settimeout(0.3)
        with pytest.raises(TimeoutError):
            client.recv(16)
        client.settimeout(2)
        api.delete_toxic("hole", "timeout_upstream")
        assert client.recv(16) == b""


@pytest.mark.parametrize(("stream", "timeout_ms"), [("upstream", 0), ("upstream", 100), ("downstream", 100)])
def test_reset_peer_sends_rst_after_timeout(
    api: ToxiproxyClient, echo: EchoServer, stream: str, timeout_ms: int
) -> None:
    """reset_peer drops the first chunk, waits `timeout` ms, then resets: ECONNRESET, then EOF."""
    proxy = api.create_proxy("rst", echo.address)
    api.add_toxic("rst", "reset_peer", stream=stream, attributes={"timeout": timeout_ms})
    with connect(proxy.listen) as client:
        started = time.monotonic()
        client.sendall(b"reset toxic payload\n")
        with pytest.raises(ConnectionResetError):
            client.recv(1000)
        elapsed_s = time.monotonic() - started
        assert client.recv(1000) == b""
    assert elapsed_s == pytest.approx(timeout_ms / 1000, abs=timeout_ms / 1000 + 0.010)


@pytest.mark.parametrize(("stream", "limit"), [("downstream", 100), ("upstream", 100), ("downstream", 0)])
def test_limit_data_closes_after_n_bytes(
    api: ToxiproxyClient, one_shot: Callable[..., OneShotServer], stream: str, limit: int
) -> None:
    """limit_data lets exactly `bytes` through in its direction (truncating a chunk), then closes both ends."""
    upstream_got = bytearray()

    def collect_then_echo(conn: socket.socket) -> None:
        while chunk := conn.recv(65536):
            upstream_got.extend(chunk)
            conn.sendall(chunk)

    server = one_shot(collect_then_echo)
    proxy = api.create_proxy("limit", server.address)
    api.add_toxic("limit", "limit_data", stream=stream, attributes={"bytes": limit})
    payload = bytes(range(256)) * 4
    client_got = bytearray()
    with connect(proxy.listen, timeout_s=5) as client:
        client.sendall(payload)
        try:
            while chunk := client.recv(65536):
                client_got.extend(chunk)
        except ConnectionResetError:
            pass
    server.close()
    limited, other = (client_got, upstream_got) if stream == "downstream" else (upstream_got, client_got)
    assert bytes(limited) == payload[:limit]
    assert len(other) <= len(payload)


def test_disabled_proxy_drops_connections_and_refuses_new_ones(api: ToxiproxyClient, echo: EchoServer) -> None:
    """enabled=false closes the listener and drops open connections; enabling again accepts on the same port."""
    proxy = api.create_proxy("down", echo.address)
    with connect(proxy.listen) as client:
        client.sendall(b"hi")
        assert recv_exactly(client, 2) == b"hi"
        api.set_enabled("down", False)
        with contextlib.suppress(ConnectionResetError):
            assert client.recv(16) == b""
    assert refuses_connections(proxy.listen)
    assert api.set_enabled("down", True).listen == proxy.listen
    with connect(proxy.listen) as client:
        client.sendall(b"back")
        assert recv_exactly(client, 4) == b"back"


def test_toxicity_zero_never_applies(api: ToxiproxyClient, echo: EchoServer) -> None:
    """A toxic with toxicity 0 is a no-op on every connection; updating it to 1 applies it to live links."""
    proxy = api.create_proxy("dice", echo.address)
    api.add_toxic("dice", "timeout", stream="downstream", toxicity=0.0, attributes={"timeout": 100})
    for _ in range(20):
        with connect(proxy.listen, timeout_s=2) as client:
            client.sendall(b"ok")
            assert recv_exactly(client, 2) == b"ok"
    with connect(proxy.listen, timeout_s=2) as client:
        api.update_toxic("dice", "timeout_downstream", toxicity=1.0)
        started = time.monotonic()
        client.sendall(b"gone")
        assert client.recv(16) == b""
        assert time.monotonic() - started < 0.3


def test_toxicity_is_drawn_per_connection(api: ToxiproxyClient, echo: EchoServer) -> None:
    """With toxicity 0.5, some connections get the toxic and others do not (one draw per connection).

    60 connections: a fair draw falls outside 12..48 delayed with probability under 1e-6 (with 20 and
    3..17 it was 4e-4, and the seeded server's shared draw sequence once gave 18 of 20 in CI).
    """
    proxy = api.create_proxy("half", echo.address)
    api.add_toxic("half", "latency", stream="downstream", toxicity=0.5, attributes={"latency": 60})
    delayed = 0
    for _ in range(60):
        with connect(proxy.listen) as client:
            started = time.monotonic()
            client.sendall(b"x")
            recv_exactly(client, 1)
            first_s = time.monotonic() - started
            started = time.monotonic()
            client.sendall(b"y")
            recv_exactly(client, 1)
            second_s = time.monotonic() - started
        assert (first_s > 0.04) == (second_s > 0.04)
        delayed += first_s > 0.04
    assert 12 <= delayed <= 48


def test_slicer_splits_into_delayed_pieces(api: ToxiproxyClient, one_shot: Callable[..., OneShotServer]) -> None:
    """Slicer with 1-byte pieces and 20 ms between them delivers every byte, in order, over at least 4 x 20 ms."""
    reads: list[bytes] = []

    def record(conn: socket.socket) -> None:
        while len(b"".join(reads)) < 5 and (chunk := conn.recv(100)):
            reads.append(chunk)

    server = one_shot(record)
    proxy = api.create_proxy("slice", server.address)
    api.add_toxic("slice", "slicer", stream="upstream", attributes={"average_size": 1, "delay": 20_000})
    with connect(proxy.listen) as client:
        started = time.monotonic()
        client.sendall(b"abcde")
        server.close()
        elapsed_s = time.monotonic() - started
    assert b"".join(reads) == b"abcde"
    assert len(reads) >= 4
    assert elapsed_s >= 0.08


def test_slow_close_delays_the_close(api: ToxiproxyClient, one_shot: Callable[..., OneShotServer]) -> None:
    """slow_close passes data but delays the close of the other side by `delay` ms."""
    server = one_shot(lambda conn: conn.sendall(b"bye"))
    proxy = api.create_proxy("slow", server.address)
    api.add_toxic("slow", "slow_close", stream="downstream", attributes={"delay": 300})
    with connect(proxy.listen) as client:
        assert recv_exactly(client, 3) == b"bye"
        started = time.monotonic()
        assert client.recv(16) == b""
        elapsed_s = time.monotonic() - started
    assert 0.25 <= elapsed_s < 0.6


def test_upstream_down_closes_client_at_once(api: ToxiproxyClient) -> None:
    """When the upstream refuses the dial, the client reads EOF within 500 ms."""
    proxy = api.create_proxy("nowhere", f"127.0.0.1:{free_loopback_port()}")
    with connect(proxy.listen) as client:
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            assert client.recv(16) == b""
        assert time.monotonic() - started < 0.5
