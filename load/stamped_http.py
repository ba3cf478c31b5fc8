"""The load driver's HTTP client: geventhttpclient, timing each answer by the kernel's receive stamp.

Runs only inside the Locust process, imported by load/locustfile.py (it imports gevent; the harness
never imports it). A driver that reads the clock after its own event loop has woken up, switched to
the waiting greenlet and parsed the answer charges its own lateness to the target: on the 2-core VM
that was 0.4-0.6 ms per request at a few requests a second, and more when many are in flight. So
every plain-HTTP socket asks the kernel for the time each segment arrived (SO_TIMESTAMPNS) and the
client reports when the answer's last bytes arrived ("socket"). Where the kernel gives no stamp
(TLS: OpenSSL reads the socket itself) or the stamp is not between the send and the driver's own
reading (a clock step), the driver's clock after reading is used instead ("driver"); every result
says which.

Requests are sent as they are: redirects are not followed, and no compression is asked for.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import gevent.local
import gevent.socket
from geventhttpclient import HTTPClient

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux's option for a nanosecond CLOCK_REALTIME receive stamp on every read (ancillary data)."""
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
_last_rx = gevent.local.local()
"""Per greenlet: the kernel's receive stamp (CLOCK_REALTIME ns) of the latest read with data."""


class StampedSocket(gevent.socket.socket):
    """A gevent TCP socket whose recv also keeps the kernel's receive stamp of what it read."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Like socket.recv; the stamp of the data read is kept for the calling greenlet."""
        data, ancillary, _, _ = self.recvmsg(bufsize, _ANCILLARY_SPACE, flags)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
                _last_rx.ns = seconds * 1_000_000_000 + nanoseconds
        return bytes(data)


def _stamped_tcp_socket(family: int, socktype: int, protocol: int) -> StampedSocket:
    """The connection pool's socket factory: a StampedSocket with receive stamps on."""
    sock = StampedSocket(family, socktype, protocol)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


@dataclass(frozen=True)
class Exchange:
    """One request's outcome: status (0 when none), body, the error (empty when none), and when it ended.

    end is on time.perf_counter()'s clock: when the answer's last bytes arrived ("socket") or when the
    driver had read them ("driver"), as end_by says; on an error, when the driver saw it.
    """

    status: int
    body: bytes
    error: str
    end: float
    end_by: str


class StampedClient:
    """Keep-alive HTTP/1.1 to one base URL, up to `concurrency` connections, with socket receive stamps."""

    def __init__(self, base_url: str, *, concurrency: int, timeout_s: float) -> None:
        """A client for base_url (http or https); plain-HTTP connections carry receive stamps."""
        self.http = HTTPClient.from_url(
            base_url, concurrency=concurrency, connection_timeout=timeout_s, network_timeout=timeout_s
        )
        self.stamped = not self.http.ssl
        if self.stamped:
            # geventhttpclient's pool builds each TCP socket with this factory ("might be overridden").
            self.http._connection_pool._create_tcp_socket = _stamped_tcp_socket

    def exchange(self, method: str, path: str, json_body: Any, sent: float) -> Exchange:
        """Send one request (sent: the caller's perf_counter just before) and read its whole answer.

        Any failure of this one exchange (refused, reset, timed out, unparsable) is its error, not the driver's.
        """
        headers = {"Accept": "application/json"}
        body = b""
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        _last_rx.ns = None
        try:
            response = self.http.request(method, path, body=body, headers=headers)
            data = response.read()
            status = int(response.status_code)
        except Exception as exc:  # any failure is recorded as this request's error
            return Exchange(0, b"", repr(exc), time.perf_counter(), "driver")
        end, end_by = self._end(sent)
        return Exchange(status, data, "", end, end_by)

    def _end(self, sent: float) -> tuple[float, str]:
        """When the answer ended: its last bytes' kernel stamp if there is one between sent and now."""
        read_ns = time.perf_counter_ns()
        rx_ns = getattr(_last_rx, "ns", None)
        if rx_ns is None:
            return read_ns / 1e9, "driver"
        # CLOCK_REALTIME -> perf_counter's clock, by the offset between the two now (a request lasts
        # too short a time for NTP slewing to matter; a step is caught by the range check).
        rx_perf_ns = rx_ns - _realtime_offset_ns()
        if not sent * 1e9 <= rx_perf_ns <= read_ns:
            return read_ns / 1e9, "driver"
        return rx_perf_ns / 1e9, "socket"

    def close(self) -> None:
        """Close every connection."""
        self.http.close()


def _realtime_offset_ns(tries: int = 3) -> int:
    """CLOCK_REALTIME minus perf_counter, from the tightest of a few bracketed readings.

    A reading preempted between its two perf_counter calls (a loaded host) would misplace the
    answer's stamp by half the preemption and push it out of [sent, read]: the answer would then be
    timed by the driver's clock (seen: 1 of 580 answers under .ci/run's load). The narrowest bracket
    bounds the error by half its own width.
    """
    best_width: int | None = None
    best_offset = 0
    for _ in range(tries):
        before = time.perf_counter_ns()
        real = time.time_ns()
        after = time.perf_counter_ns()
        if best_width is None or after - before < best_width:
            best_width, best_offset = after - before, real - (before + after) // 2
    return best_offset
