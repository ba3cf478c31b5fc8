"""A small HTTP/1.1 server on asyncio streams: keep-alive, Content-Length and chunked bodies, timeouts.

Just enough HTTP for the Toxiproxy API and its clients (requests, httpx, urllib, curl, Go's client).
Timeouts follow upstream's server: 15 s to read a request, 60 s idle between requests, 25 s per handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

LOG = logging.getLogger("chaos.toxiproxy")
READ_TIMEOUT_S = 15.0
IDLE_TIMEOUT_S = 60.0
HANDLER_TIMEOUT_S = 25.0
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Go's `http.TimeoutHandler` default body when the handler overruns.
TIMEOUT_BODY = b"<html><head><title>Timeout</title></head><body><h1>Timeout</h1></body></html>"


class BadRequestError(Exception):
    """The bytes received are not an HTTP/1.x request we can answer."""


@dataclass(frozen=True)
class Request:
    """A parsed request: method, decoded path (no query), lower-cased headers, body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


@dataclass
class Response:
    """A response to write; `content_type` None sends no Content-Type (e.g. 204)."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


async def _read_head(reader: asyncio.StreamReader) -> list[str] | None:
    """The request line and header lines, or None on a clean end of stream before a request."""
    lines: list[str] = []
    size = 0
    while True:
        line = await reader.readline()
        if not line:
            if lines:
                raise BadRequestError("connection closed inside the request head")
            return None
        size += len(line)
        if size > MAX_HEADER_BYTES:
            raise BadRequestError("request head too large")
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            if lines:
                return lines
            continue  # tolerate blank lines before a request line (RFC 9112 §2.2)
        lines.append(text)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = (await reader.readline()).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise BadRequestError("bad chunk size") from None
        if size == 0:
            while (await reader.readline()).strip():
                pass  # trailers are ignored
            return bytes(body)
        if len(body) + size > MAX_BODY_BYTES:
            raise BadRequestError("request body too large")
        body += await reader.readexactly(size)
        await reader.readline()


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    """Read one request; None when the client closed the connection between requests."""
    head = await _read_head(reader)
    if head is None:
        return None
    parts = head[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequestError("malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise BadRequestError("malformed header line")
        headers[name.strip().lower()] = value.strip()
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        length_text = headers.get("content-length", "0") or "0"
        if not length_text.isdigit() or int(length_text) > MAX_BODY_BYTES:
            raise BadRequestError("bad Content-Length")
        body = await reader.readexactly(int(length_text))
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    path = unquote(urlsplit(target).path)
    return Request(method, path, headers, body, keep_alive)


def encode_response(response: Response, keep_alive: bool) -> bytes:
    """The status line, headers and body of `response`."""
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Status"
    lines = [f"HTTP/1.1 {response.status} {reason}", f"Date: {formatdate(usegmt=True)}"]
    if response.content_type is not None:
        lines.append(f"Content-Type: {response.content_type}")
    lines.extend(f"{name}: {value}" for name, value in response.headers.items())
    if response.status != HTTPStatus.NO_CONTENT:
        lines.append(f"Content-Length: {len(response.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


async def _answer(handler: Handler, request: Request) -> Response:
    try:
        async with asyncio.timeout(HANDLER_TIMEOUT_S):
            return await handler(request)
    except TimeoutError:
        return Response(HTTPStatus.SERVICE_UNAVAILABLE, TIMEOUT_BODY, "text/html; charset=utf-8")


async def serve_connection(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer requests on one connection until the client closes it, asks to, or stays idle too long."""
    try:
        first = True
        while True:
            try:
                async with asyncio.timeout(READ_TIMEOUT_S if first else IDLE_TIMEOUT_S):
                    request = await read_request(reader, writer)
            except (BadRequestError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                LOG.debug("bad HTTP request: %s", exc)
                writer.write(encode_response(Response(HTTPStatus.BAD_REQUEST, b"400 Bad Request"), False))
                break
            if request is None:
                break
            first = False
            response = await _answer(handler, request)
            writer.write(encode_response(response, request.keep_alive))
            await writer.drain()
            if not request.keep_alive:
                break
    except (TimeoutError, OSError):
        pass
    finally:
        writer.close()
