"""A loopback HTTP/1.1 endpoint that answers after exactly D ms, for benchmarks/load_fidelity.py.

One thread, one epoll loop, keep-alive, TCP_NODELAY, a fixed 2-byte answer. A request's clock (t0)
starts when the last bytes of its head arrived at the server's socket (the kernel's receive stamp,
SO_TIMESTAMPNS; the server's clock when it read them if there is none), so the server's own wake-up
is not part of D; its answer is written at t0 + D. The loop waits in epoll (whole milliseconds)
until 0.3-1.3 ms before the earliest deadline, then polls without blocking until it. Measured on
the 2-core VM: answers written 0.01-0.07 ms after the deadline (p50); timing from the read instead
of the arrival, a raw-socket client saw D + ~0.15-0.2 ms (through the stdlib ThreadingHTTPServer
D + ~1 ms). An event loop rather than a thread per connection: it timed as tightly and served wrk
faster (85-94k/s vs 35-54k/s).
Requests are GETs without bodies and are not pipelined (http.client, geventhttpclient and wrk wait
for each answer). Paths:

    /delay?ms=D      "ok" after D ms (D may be 0)
    /stall-once      "ok" at once, except one request 5 s after start, which blocks the whole server 1 s
    /server-errors   the server's own lateness (answered - t0 - D, in us) of every /delay?ms=D>0 so far,
                     comma-separated; the list is then cleared

Usage: python benchmarks/_delay_server.py PORT   (stdlib only: it never imports the harness)
"""

from __future__ import annotations

import heapq
import itertools
import math
import select
import socket
import struct
import sys
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
SPIN_S = 0.0003
"""How long before a deadline the loop stops sleeping in epoll and polls instead."""
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("@qq")
STALL_AFTER_S = 5.0
STALL_S = 1.0


def _answer(body: bytes) -> bytes:
    """A 200 response carrying body."""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def _arrived(ancillary: list[tuple[int, int, bytes]], read_at: float) -> float:
    """When the data just read arrived, on perf_counter's clock: its kernel stamp, else read_at."""
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = TIMESPEC.unpack_from(payload)
            arrived = read_at - (time.time() - (seconds + nanoseconds / 1e9))
            if 0 <= read_at - arrived < 1:
                return arrived
    return read_at


class DelayServer:
    """The epoll loop: accepts, reads request heads, and writes each answer at its deadline."""

    def __init__(self, port: int) -> None:
        """Listen on 127.0.0.1:port."""
        self.listener = socket.create_server(("127.0.0.1", port), backlog=4096)
        self.listener.setblocking(False)
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), select.EPOLLIN)
        self.conns: dict[int, socket.socket] = {}
        self.buffers: dict[int, bytes] = {}
        self.pending: list[tuple[float, int, socket.socket, bytes]] = []
        self.order = itertools.count()
        self.lateness_us: list[int] = []
        self.started = time.perf_counter()
        self.stalled = False

    def serve(self) -> None:
        """Run until killed."""
        while True:
            for fd, _ in self.epoll.poll(self._wait_s()):
                if fd == self.listener.fileno():
                    self._accept()
                else:
                    self._read(fd)
            self._answer_due()

    def _wait_s(self) -> float:
        """How long epoll may block: whole ms ending >= SPIN_S before the next deadline; 0 to poll; -1 forever."""
        if not self.pending:
            return -1
        whole_ms = math.floor((self.pending[0][0] - time.perf_counter() - SPIN_S) * 1000)
        # epoll rounds a timeout up to whole ms: pass a bit less than whole_ms so it is not rounded past it.
        return (whole_ms - 0.5) / 1000 if whole_ms >= 1 else 0

    def _accept(self) -> None:
        """Accept every waiting connection."""
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.conns[conn.fileno()] = conn
            self.buffers[conn.fileno()] = b""
            self.epoll.register(conn.fileno(), select.EPOLLIN)

    def _read(self, fd: int) -> None:
        """Read what arrived; every complete head is a request whose clock starts when it arrived."""
        conn = self.conns[fd]
        try:
            data, ancillary, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(TIMESPEC.size))
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        head_done = _arrived(ancillary, time.perf_counter())
        if not data:
            self._close(fd)
            return
        buffer = self.buffers[fd] + data
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            self._request(conn, buffer[:end], head_done)
            buffer = buffer[end + 4 :]
        self.buffers[fd] = buffer

    def _request(self, conn: socket.socket, head: bytes, t0: float) -> None:
        """Route one request: schedule a /delay answer, or answer the others at once."""
        request_line = head.split(b"\r\n", 1)[0].split(b" ")
        target = request_line[1] if len(request_line) == 3 else b""
        path, _, query = target.partition(b"?")
        if path == b"/delay":
            params = dict(item.partition(b"=")[::2] for item in query.split(b"&"))
            delay_s = float(params.get(b"ms", b"0")) / 1000
            if delay_s > 0:
                heapq.heappush(self.pending, (t0 + delay_s, next(self.order), conn, OK))
                return
            self._send(conn, OK)
        elif path == b"/stall-once":
            if not self.stalled and t0 - self.started > STALL_AFTER_S:
                self.stalled = True
                time.sleep(STALL_S)
            self._send(conn, OK)
        elif path == b"/server-errors":
            body = ",".join(map(str, self.lateness_us)).encode()
            self.lateness_us.clear()
            self._send(conn, _answer(body))
        else:
            self._send(conn, NOT_FOUND)

    def _answer_due(self) -> None:
        """Write every answer whose deadline has come; record how late each one was written."""
        while self.pending and self.pending[0][0] <= time.perf_counter():
            deadline, _, conn, response = heapq.heappop(self.pending)
            self._send(conn, response)
            self.lateness_us.append(round((time.perf_counter() - deadline) * 1e6))

    def _send(self, conn: socket.socket, response: bytes) -> None:
        """Write a (small) response; a connection the client already closed is dropped."""
        try:
            conn.sendall(response)
        except OSError:
            if conn.fileno() >= 0:
                self._close(conn.fileno())

    def _close(self, fd: int) -> None:
        """Forget and close a connection."""
        self.epoll.unregister(fd)
        self.buffers.pop(fd, None)
        self.conns.pop(fd).close()


if __name__ == "__main__":
    DelayServer(int(sys.argv[1])).serve()
