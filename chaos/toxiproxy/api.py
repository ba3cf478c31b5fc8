"""The Toxiproxy HTTP API: upstream's routes, status codes, error strings and JSON shapes (`api.go`).

Every response carries `X-Toxiproxy-Request-Id`; a `Mozilla/` user agent gets 403; an unknown path
404 (`404 page not found`), a known path with the wrong method 405. Errors are
`{"error": "...", "status": N}` plus a newline, served as text/plain like Go's `http.Error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus

from chaos.toxiproxy.http import Request, Response, serve_connection
from chaos.toxiproxy.proxy import Proxy, ProxyAlreadyStartedError, ProxyCollection, check_loopback
from chaos.toxiproxy.wire import (
    BAD_REQUEST_BODY,
    HTTP_INTERNAL_ERROR,
    MISSING_FIELD,
    TOXIC_NOT_FOUND,
    ApiError,
    decode_body,
    expect_object,
    read_bool,
    read_str,
)

LOG = logging.getLogger("chaos.toxiproxy")
#: The upstream release whose API this server reproduces; `+embedded` marks this implementation.
VERSION = "2.12.0+embedded"
JSON = "application/json"
_PROXY = "Proxy"

Route = Callable[[Request, Mapping[str, str]], Awaitable[Response]]


def json_response(value: object, status: int = HTTPStatus.OK) -> Response:
    """A compact JSON body, as Go's `json.Marshal` writes it."""
    return Response(status, json.dumps(value, separators=(",", ":")).encode(), JSON)


def error_response(error: ApiError) -> Response:
    """An API error the way upstream sends it through `http.Error`."""
    body = json.dumps(error.to_json(), separators=(",", ":")).encode() + b"\n"
    return Response(error.status, body, "text/plain; charset=utf-8", {"X-Content-Type-Options": "nosniff"})


class ToxiproxyApi:
    """Routes API requests to the proxy collection."""

    def __init__(self) -> None:
        """An API with no proxies."""
        self.collection = ProxyCollection()
        self._routes: list[tuple[re.Pattern[str], dict[str, Route]]] = [
            (re.compile(r"/reset"), {"POST": self.reset}),
            (re.compile(r"/proxies"), {"GET": self.proxy_index, "POST": self.proxy_create}),
            (re.compile(r"/populate"), {"POST": self.populate}),
            (
                re.compile(r"/proxies/(?P<proxy>[^/]+)"),
                {
                    "GET": self.proxy_show,
                    "POST": self.proxy_update,
                    "PATCH": self.proxy_update,
                    "DELETE": self.proxy_delete,
                },
            ),
            (re.compile(r"/proxies/(?P<proxy>[^/]+)/toxics"), {"GET": self.toxic_index, "POST": self.toxic_create}),
            (
                re.compile(r"/proxies/(?P<proxy>[^/]+)/toxics/(?P<toxic>[^/]+)"),
                {
                    "GET": self.toxic_show,
                    "POST": self.toxic_update,
                    "PATCH": self.toxic_update,
                    "DELETE": self.toxic_delete,
                },
            ),
            (re.compile(r"/version"), {"GET": self.version}),
        ]

    async def handle(self, request: Request) -> Response:
        """Answer one request, with the request id header on every response."""
        try:
            response = await self._dispatch(request)
        except Exception as exc:
            # The server's request boundary: a bug in one handler answers 500, as Go's server would, and
            # is logged with its traceback instead of dropping the client's connection without a reply.
            LOG.exception("unexpected error answering %s %s", request.method, request.path)
            response = error_response(ApiError(str(exc), HTTP_INTERNAL_ERROR))
        response.headers["X-Toxiproxy-Request-Id"] = secrets.token_hex(10)
        return response

    async def _dispatch(self, request: Request) -> Response:
        if request.headers.get("user-agent", "").startswith("Mozilla/"):
            return Response(HTTPStatus.FORBIDDEN, b"User agent not allowed\n", "text/plain; charset=utf-8")
        path_matched = False
        for pattern, methods in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            path_matched = True
            route = methods.get(request.method)
            if route is not None:
                try:
                    return await route(request, match.groupdict())
                except ApiError as error:
                    return error_response(error)
        if path_matched:
            return Response(HTTPStatus.METHOD_NOT_ALLOWED)
        return Response(HTTPStatus.NOT_FOUND, b"404 page not found\n", "text/plain; charset=utf-8")

    async def version(self, _request: Request, _params: Mapping[str, str]) -> Response:
        """`GET /version`: exactly `{"version": "<v>"}` and a newline."""
        return Response(HTTPStatus.OK, f'{{"version": "{VERSION}"}}\n'.encode(), "application/json;charset=utf-8")

    async def reset(self, _request: Request, _params: Mapping[str, str]) -> Response:
        """`POST /reset`: re-enable every proxy and remove every toxic."""
        for proxy in list(self.collection.proxies.values()):
            with contextlib.suppress(ProxyAlreadyStartedError):
                await proxy.start()
            await proxy.toxics.reset()
        return Response(HTTPStatus.NO_CONTENT)

    async def proxy_index(self, _request: Request, _params: Mapping[str, str]) -> Response:
        """`GET /proxies`: every proxy by name."""
        return json_response({name: proxy.to_json() for name, proxy in self.collection.proxies.items()})

    async def proxy_create(self, request: Request, _params: Mapping[str, str]) -> Response:
        """`POST /proxies`: create (and by default start) a proxy; 201."""
        data = expect_object(decode_body(request.body), "toxiproxy.Proxy")
        name = read_str(data, "name", "", _PROXY)
        listen = read_str(data, "listen", "", _PROXY)
        upstream = read_str(data, "upstream", "", _PROXY)
        enabled = read_bool(data, "enabled", True, _PROXY)
        if not name:
            raise MISSING_FIELD.wrapped("name")
        if not upstream:
            raise MISSING_FIELD.wrapped("upstream")
        check_loopback("listen", listen, malformed_ok=True)
        check_loopback("upstream", upstream, malformed_ok=False)
        proxy = Proxy(name, listen, upstream)
        await self.collection.add(proxy, start=enabled)
        return json_response(proxy.to_json(), HTTPStatus.CREATED)

    async def populate(self, request: Request, _params: Mapping[str, str]) -> Response:
        """`POST /populate`: validate every entry, then add or replace them in order; stop at the first failure."""
        created: list[Proxy] = []
        try:
            entries = self._populate_entries(decode_body(request.body))
            for name, listen, upstream, enabled in entries:
                created.append(await self.collection.add_or_replace(Proxy(name, listen, upstream), start=enabled))
        except ApiError as error:
            return json_response({**error.to_json(), "proxies": self._proxy_list(created)}, error.status)
        return json_response({"proxies": self._proxy_list(created)}, HTTPStatus.CREATED)

    @staticmethod
    def _proxy_list(proxies: list[Proxy]) -> list[dict[str, object]] | None:
        # Go marshals the nil slice of an empty result as null.
        return [proxy.to_json() for proxy in proxies] or None

    @staticmethod
    def _populate_entries(body: object) -> list[tuple[str, str, str, bool]]:
        if not isinstance(body, list):
            if body is None:
                return []
            raise BAD_REQUEST_BODY.wrapped(
                f"json: cannot unmarshal {'object' if isinstance(body, dict) else 'value'} "
                "into Go value of type []toxiproxy.Proxy"
            )
        entries = []
        for position, raw in enumerate(body, start=1):
            data = expect_object(raw, "toxiproxy.Proxy")
            name = read_str(data, "name", "", _PROXY)
            listen = read_str(data, "listen", "", _PROXY)
            upstream = read_str(data, "upstream", "", _PROXY)
            enabled = read_bool(data, "enabled", True, _PROXY)
            if not name:
                raise MISSING_FIELD.wrapped(f"name at proxy {position}")
            if not upstream:
                raise MISSING_FIELD.wrapped(f"upstream at proxy {position}")
            try:
                check_loopback("listen", listen, malformed_ok=True)
                check_loopback("upstream", upstream, malformed_ok=False)
            except ApiError as error:
                raise ApiError(f"{error.message} at proxy {position}", error.status) from None
            entries.append((name, listen, upstream, enabled))
        return entries

    async def proxy_show(self, _request: Request, params: Mapping[str, str]) -> Response:
        """`GET /proxies/{proxy}`."""
        return json_response(self.collection.get(params["proxy"]).to_json())

    async def proxy_update(self, request: Request, params: Mapping[str, str]) -> Response:
        """`POST`/`PATCH /proxies/{proxy}`: change listen, upstream or enabled; omitted fields keep their value."""
        proxy = self.collection.get(params["proxy"])
        data = expect_object(decode_body(request.body), "toxiproxy.Proxy")
        listen = read_str(data, "listen", proxy.listen, _PROXY)
        upstream = read_str(data, "upstream", proxy.upstream, _PROXY)
        enabled = read_bool(data, "enabled", proxy.enabled, _PROXY)
        check_loopback("listen", listen, malformed_ok=True)
        check_loopback("upstream", upstream, malformed_ok=False)
        await proxy.update(listen, upstream, enabled)
        return json_response(proxy.to_json())

    async def proxy_delete(self, _request: Request, params: Mapping[str, str]) -> Response:
        """`DELETE /proxies/{proxy}`: stop it and drop its connections; 204."""
        await self.collection.remove(params["proxy"])
        return Response(HTTPStatus.NO_CONTENT)

    async def toxic_index(self, _request: Request, params: Mapping[str, str]) -> Response:
        """`GET /proxies/{proxy}/toxics`: upstream chain first."""
        proxy = self.collection.get(params["proxy"])
        return json_response([toxic.to_json() for toxic in proxy.toxics.toxics()])

    async def toxic_create(self, request: Request, params: Mapping[str, str]) -> Response:
        """`POST /proxies/{proxy}/toxics`: add a toxic to every live connection; 200 (not 201, as upstream)."""
        proxy = self.collection.get(params["proxy"])
        toxic = await proxy.toxics.add_from_json(decode_body(request.body))
        return json_response(toxic.to_json())

    async def toxic_show(self, _request: Request, params: Mapping[str, str]) -> Response:
        """`GET /proxies/{proxy}/toxics/{toxic}`."""
        toxic = self.collection.get(params["proxy"]).toxics.find(params["toxic"])
        if toxic is None:
            raise TOXIC_NOT_FOUND
        return json_response(toxic.to_json())

    async def toxic_update(self, request: Request, params: Mapping[str, str]) -> Response:
        """`POST`/`PATCH /proxies/{proxy}/toxics/{toxic}`: merge attributes; toxicity kept unless given."""
        proxy = self.collection.get(params["proxy"])
        if proxy.toxics.find(params["toxic"]) is None:
            raise TOXIC_NOT_FOUND
        toxic = await proxy.toxics.update_from_json(params["toxic"], decode_body(request.body))
        return json_response(toxic.to_json())

    async def toxic_delete(self, _request: Request, params: Mapping[str, str]) -> Response:
        """`DELETE /proxies/{proxy}/toxics/{toxic}`: 204."""
        await self.collection.get(params["proxy"]).toxics.remove(params["toxic"])
        return Response(HTTPStatus.NO_CONTENT)


class ToxiproxyServer:
    """The API on a loopback port, plus shutdown that stops every proxy."""

    def __init__(self, api: ToxiproxyApi | None = None) -> None:
        """A server for `api` (a fresh one by default); `start` binds it."""
        self.api = api or ToxiproxyApi()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Bind the API on `host:port` (loopback only) and return the bound port."""
        check_loopback("API listen", f"{host}:{port}", malformed_ok=False)
        self._server = await asyncio.start_server(
            lambda reader, writer: serve_connection(self.api.handle, reader, writer), host, port
        )
        bound_port: int = self._server.sockets[0].getsockname()[1]
        LOG.info("Starting Toxiproxy HTTP server on %s:%d", host, bound_port)
        return bound_port

    async def populate_file(self, config_text: str) -> None:
        """Load a `-config` file (the /populate format) at boot; errors are logged, as upstream does."""
        response = await self.api.populate(Request("POST", "/populate", {}, config_text.encode(), True), {})
        if response.status != HTTPStatus.CREATED:
            LOG.error("Failed to populate proxies from file: %s", response.body.decode(errors="replace"))
        else:
            LOG.info("Populated proxies from file")

    async def close(self) -> None:
        """Stop answering the API and stop every proxy."""
        if self._server is not None:
            self._server.close()
        await self.api.collection.clear()
        if self._server is not None:
            await self._server.wait_closed()
