"""The embedded server's HTTP API over raw HTTP: routes, status codes, error strings and JSON shapes as upstream."""

from __future__ import annotations

import json

import pytest

from chaos.toxiproxy_client import ToxiproxyClient, free_loopback_port
from tests.chaos.conftest import EchoServer, RawCall, RawResponse, connect, refuses_connections

pytestmark = pytest.mark.integration


def post_json(raw: RawCall, path: str, body: object, method: str = "POST") -> RawResponse:
    """POST (or another method) a JSON body."""
    return raw(method, path, json.dumps(body), {"Content-Type": "application/json"})


def error_of(response: RawResponse) -> tuple[int, str]:
    """The (status, error message) pair of an error response, checking the body's own status agrees."""
    body = response.json()
    assert body["status"] == response.status
    return response.status, body["error"]


def test_version_body_is_exact_json_line(raw: RawCall) -> None:
    """GET /version answers `{"version": "..."}` plus a newline with upstream's content type."""
    response = raw("GET", "/version")
    assert response.status == 200
    assert response.body == b'{"version": "2.12.0+embedded"}\n'
    assert response.headers["content-type"] == "application/json;charset=utf-8"


def test_every_response_has_a_request_id(raw: RawCall) -> None:
    """Success, error and 404 responses all carry X-Toxiproxy-Request-Id."""
    for method, path in (("GET", "/proxies"), ("GET", "/proxies/missing"), ("GET", "/nowhere")):
        assert raw(method, path).headers.get("x-toxiproxy-request-id")


def test_browser_user_agent_is_forbidden(raw: RawCall) -> None:
    """A Mozilla/ user agent gets 403 `User agent not allowed`; others are served."""
    forbidden = raw("GET", "/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert (forbidden.status, forbidden.body) == (403, b"User agent not allowed\n")
    assert raw("GET", "/proxies", headers={"User-Agent": "curl/8.0"}).status == 200


def test_unknown_path_is_404_and_wrong_method_405(raw: RawCall) -> None:
    """Routing errors look like gorilla/mux's: 404 with Go's text, 405 for a known path."""
    missing = raw("GET", "/nowhere")
    assert (missing.status, missing.body) == (404, b"404 page not found\n")
    assert raw("PUT", "/proxies").status == 405
    assert raw("GET", "/reset").status == 405


def test_empty_index_is_empty_object(raw: RawCall) -> None:
    """GET /proxies with no proxies is `{}`."""
    response = raw("GET", "/proxies")
    assert (response.status, response.json()) == (200, {})


def test_create_returns_201_with_resolved_listen_and_upstream_shape(raw: RawCall, echo: EchoServer) -> None:
    """POST /proxies answers 201 with the proxy in upstream's key order and `localhost:0` resolved."""
    response = post_json(raw, "/proxies", {"name": "db", "listen": "localhost:0", "upstream": f"localhost:{echo.port}"})
    assert response.status == 201
    body = response.json()
    assert list(body) == ["name", "listen", "upstream", "enabled", "Logger", "toxics"]
    assert body["listen"].startswith("127.0.0.1:")
    assert body["listen"] != "127.0.0.1:0"
    assert body["upstream"] == f"localhost:{echo.port}"
    assert (body["enabled"], body["toxics"]) == (True, [])
    assert raw("GET", "/proxies/db").json() == body
    assert raw("GET", "/proxies").json() == {"db": body}


def test_create_errors_use_upstream_codes_and_strings(raw: RawCall, echo: EchoServer) -> None:
    """Blank name/upstream, bad JSON, wrong types and duplicates give upstream's statuses and messages."""
    assert error_of(post_json(raw, "/proxies", {"name": "", "upstream": echo.address})) == (
        400,
        "missing required field: name",
    )
    assert error_of(post_json(raw, "/proxies", {"name": "a", "upstream": ""})) == (
        400,
        "missing required field: upstream",
    )
    assert error_of(raw("POST", "/proxies", "")) == (400, "bad request body: EOF")
    status, message = error_of(raw("POST", "/proxies", "{not json"))
    assert status == 400
    assert message.startswith("bad request body: ")
    status, message = error_of(post_json(raw, "/proxies", {"name": 5, "upstream": echo.address}))
    assert status == 400
    assert "cannot unmarshal number into Go struct field Proxy.name of type string" in message
    created = {"name": "a", "listen": "127.0.0.1:0", "upstream": echo.address}
    assert post_json(raw, "/proxies", created).status == 201
    assert error_of(post_json(raw, "/proxies", created)) == (409, "proxy already exists")


def test_error_body_is_plain_text_json_line(raw: RawCall) -> None:
    """Errors are written like Go's http.Error: JSON plus newline, text/plain content type."""
    response = raw("GET", "/proxies/missing")
    assert response.body == b'{"error":"proxy not found","status":404}\n'
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_port_conflict_is_500_with_go_bind_error(raw: RawCall, echo: EchoServer) -> None:
    """A listen port already in use is a 500 `listen tcp ...: bind: address already in use`; free again after delete."""
    listen = post_json(raw, "/proxies", {"name": "one", "listen": "127.0.0.1:0", "upstream": echo.address}).json()[
        "listen"
    ]
    conflict = post_json(raw, "/proxies", {"name": "two", "listen": listen, "upstream": echo.address})
    assert error_of(conflict) == (500, f"listen tcp {listen}: bind: address already in use")
    assert raw("DELETE", "/proxies/one").status == 204
    assert post_json(raw, "/proxies", {"name": "two", "listen": listen, "upstream": echo.address}).status == 201


def test_non_loopback_addresses_are_refused(raw: RawCall, echo: EchoServer) -> None:
    """Listen and upstream addresses off 127.0.0.0/8 (or names other than localhost) get a 400 and create nothing."""
    for listen, upstream in (
        ("0.0.0.0:0", echo.address),
        (":0", echo.address),
        ("127.0.0.1:0", "10.1.2.3:80"),
        ("127.0.0.1:0", "example.com:80"),
        ("127.0.0.1:0", "[::1]:80"),
    ):
        status, message = error_of(post_json(raw, "/proxies", {"name": "x", "listen": listen, "upstream": upstream}))
        assert status == 400
        assert "must be on loopback" in message
    assert raw("GET", "/proxies").json() == {}
    assert post_json(raw, "/proxies", {"name": "x", "listen": "127.0.0.1:0", "upstream": echo.address}).status == 201
    status, message = error_of(post_json(raw, "/proxies/x", {"upstream": "192.168.0.1:80"}, "PATCH"))
    assert status == 400
    assert "must be on loopback" in message


def test_disabled_proxy_keeps_literal_listen_and_toggles_port(raw: RawCall, echo: EchoServer) -> None:
    """A proxy created disabled reports its literal listen and refuses connections until enabled, and again after."""
    port = free_loopback_port()
    body = {"name": "d", "listen": f"localhost:{port}", "upstream": echo.address, "enabled": False}
    created = post_json(raw, "/proxies", body).json()
    assert (created["listen"], created["enabled"]) == (f"localhost:{port}", False)
    assert refuses_connections(f"127.0.0.1:{port}")
    enabled = post_json(raw, "/proxies/d", {"enabled": True}, "PATCH").json()
    assert (enabled["listen"], enabled["enabled"]) == (f"127.0.0.1:{port}", True)
    connect(enabled["listen"]).close()
    assert post_json(raw, "/proxies/d", {"enabled": False}).json()["enabled"] is False
    assert refuses_connections(f"127.0.0.1:{port}")


def test_update_moves_listen_and_keeps_omitted_fields(raw: RawCall, echo: EchoServer) -> None:
    """PATCH with a new listen re-binds there; upstream and enabled keep their values."""
    old = post_json(raw, "/proxies", {"name": "m", "listen": "127.0.0.1:0", "upstream": echo.address}).json()
    new_port = free_loopback_port()
    moved = post_json(raw, "/proxies/m", {"listen": f"127.0.0.1:{new_port}"}, "PATCH").json()
    assert (moved["listen"], moved["upstream"], moved["enabled"]) == (f"127.0.0.1:{new_port}", echo.address, True)
    assert refuses_connections(old["listen"])
    connect(moved["listen"]).close()
    assert error_of(post_json(raw, "/proxies/missing", {"enabled": False}, "PATCH")) == (404, "proxy not found")


def test_delete_closes_port_and_second_delete_is_404(raw: RawCall, echo: EchoServer) -> None:
    """DELETE answers 204 and closes the listener; deleting again is 404 `proxy not found`."""
    listen = post_json(raw, "/proxies", {"name": "gone", "listen": "127.0.0.1:0", "upstream": echo.address}).json()[
        "listen"
    ]
    response = raw("DELETE", "/proxies/gone")
    assert (response.status, response.body) == (204, b"")
    assert refuses_connections(listen)
    assert error_of(raw("DELETE", "/proxies/gone")) == (404, "proxy not found")


def test_populate_creates_in_order_and_keeps_unchanged_proxies(raw: RawCall, echo: EchoServer) -> None:
    """/populate answers 201 in input order; an unchanged proxy keeps its toxics, a changed one is replaced."""
    ports = [free_loopback_port(), free_loopback_port()]
    first = [
        {"name": "one", "listen": f"localhost:{ports[0]}", "upstream": echo.address},
        {"name": "two", "listen": f"127.0.0.1:{ports[1]}", "upstream": echo.address},
    ]
    response = post_json(raw, "/populate", first)
    assert response.status == 201
    proxies = response.json()["proxies"]
    assert [p["name"] for p in proxies] == ["one", "two"]
    assert [p["listen"] for p in proxies] == [f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"]
    for proxy in proxies:
        connect(proxy["listen"]).close()
    post_json(raw, "/proxies/one/toxics", {"type": "latency", "attributes": {"latency": 5}})
    second = [first[0], {"name": "two", "listen": f"127.0.0.1:{ports[1]}", "upstream": f"localhost:{echo.port}"}]
    again = post_json(raw, "/populate", second).json()["proxies"]
    assert [len(p["toxics"]) for p in again] == [1, 0]
    assert again[0]["listen"] == f"127.0.0.1:{ports[0]}"
    assert again[1]["upstream"] == f"localhost:{echo.port}"


def test_populate_disabled_and_default_enabled(raw: RawCall, echo: EchoServer) -> None:
    """/populate defaults enabled to true and honours enabled=false (port closed)."""
    ports = [free_loopback_port(), free_loopback_port()]
    entries = [
        {"name": "on", "listen": f"127.0.0.1:{ports[0]}", "upstream": echo.address},
        {"name": "off", "listen": f"127.0.0.1:{ports[1]}", "upstream": echo.address, "enabled": False},
    ]
    proxies = post_json(raw, "/populate", entries).json()["proxies"]
    assert [p["enabled"] for p in proxies] == [True, False]
    connect(f"127.0.0.1:{ports[0]}").close()
    assert refuses_connections(f"127.0.0.1:{ports[1]}")


def test_populate_validates_everything_before_creating(raw: RawCall, echo: EchoServer) -> None:
    """A blank name at entry 2 is a 400 naming the entry, with `proxies: null` and nothing created."""
    entries = [{"name": "one", "listen": "127.0.0.1:0", "upstream": echo.address}, {"name": "", "listen": ""}]
    response = post_json(raw, "/populate", entries)
    assert response.json() == {"error": "missing required field: name at proxy 2", "status": 400, "proxies": None}
    off_loopback = [entries[0], {"name": "two", "listen": "127.0.0.1:0", "upstream": "8.8.8.8:53"}]
    status, message = error_of(post_json(raw, "/populate", off_loopback))
    assert status == 400
    assert message.endswith("at proxy 2")
    assert raw("GET", "/proxies").json() == {}


def test_populate_stops_at_first_bind_failure(raw: RawCall, echo: EchoServer) -> None:
    """A malformed listen aborts populate with a 500 after creating the earlier entries only."""
    entries = [
        {"name": "one", "listen": "127.0.0.1:0", "upstream": echo.address},
        {"name": "two", "listen": "local373", "upstream": echo.address},
        {"name": "three", "listen": "127.0.0.1:0", "upstream": echo.address},
    ]
    response = post_json(raw, "/populate", entries)
    assert response.status == 500
    assert response.json()["error"] == "listen tcp: address local373: missing port in address"
    assert [p["name"] for p in response.json()["proxies"]] == ["one"]
    assert sorted(raw("GET", "/proxies").json()) == ["one"]


def test_toxic_create_echoes_attributes_and_defaults(raw: RawCall, echo: EchoServer) -> None:
    """Adding a toxic answers 200 with upstream's shape: zero-value attributes, default name, stream and toxicity."""
    post_json(raw, "/proxies", {"name": "p", "listen": "127.0.0.1:0", "upstream": echo.address})
    response = post_json(raw, "/proxies/p/toxics", {"type": "latency", "attributes": {"latency": 100, "jitter": 10}})
    assert response.status == 200
    assert response.json() == {
        "attributes": {"latency": 100, "jitter": 10},
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1,
    }
    bare = post_json(raw, "/proxies/p/toxics", {"type": "slicer", "stream": "upstream"}).json()
    assert bare["attributes"] == {"average_size": 0, "size_variation": 0, "delay": 0}
    noop = post_json(raw, "/proxies/p/toxics", {"type": "noop", "name": "foobar"}).json()
    assert (noop["stream"], noop["toxicity"], noop["attributes"]) == ("downstream", 1, {})
    shares = post_json(raw, "/proxies/p/toxics", {"type": "latency", "name": "lossy", "toxicity": 0.2}).json()
    assert shares["toxicity"] == 0.2
    listed = raw("GET", "/proxies/p/toxics").json()
    assert [t["name"] for t in listed] == ["slicer_upstream", "latency_downstream", "foobar", "lossy"]
    assert raw("GET", "/proxies/p/toxics/lossy").json() == shares


def test_toxic_errors_use_upstream_codes_and_strings(raw: RawCall, echo: EchoServer) -> None:
    """Missing proxy/toxic, bad stream/type/body and name clashes across streams give upstream's errors."""
    assert error_of(post_json(raw, "/proxies/none/toxics", {"type": "latency"})) == (404, "proxy not found")
    post_json(raw, "/proxies", {"name": "p", "listen": "127.0.0.1:0", "upstream": echo.address})
    assert error_of(post_json(raw, "/proxies/p/toxics", {"type": "latency", "stream": "walrus"})) == (
        400,
        "stream was invalid, can be either upstream or downstream",
    )
    assert error_of(post_json(raw, "/proxies/p/toxics", {"type": "latency", "stream": ""}))[0] == 400
    assert error_of(post_json(raw, "/proxies/p/toxics", {"type": "teleport"})) == (400, "invalid toxic type")
    assert error_of(raw("POST", "/proxies/p/toxics", "["))[0] == 400
    bad_type = post_json(raw, "/proxies/p/toxics", {"type": "latency", "attributes": {"latency": "slow"}})
    status, message = error_of(bad_type)
    assert status == 400
    assert "cannot unmarshal string" in message
    assert "latency of type int64" in message
    assert post_json(raw, "/proxies/p/toxics", {"type": "latency", "name": "x", "stream": "upstream"}).status == 200
    assert error_of(post_json(raw, "/proxies/p/toxics", {"type": "latency", "name": "x"})) == (
        409,
        "toxic already exists",
    )
    assert post_json(raw, "/proxies/p/toxics", {"type": "latency", "stream": "upstream"}).status == 200
    assert post_json(raw, "/proxies/p/toxics", {"type": "latency", "stream": "downstream"}).status == 200
    assert error_of(raw("GET", "/proxies/p/toxics/none")) == (404, "toxic not found")
    assert error_of(post_json(raw, "/proxies/p/toxics/none", {}, "PATCH")) == (404, "toxic not found")
    assert error_of(raw("DELETE", "/proxies/p/toxics/none")) == (404, "toxic not found")


def test_toxic_update_merges_attributes_and_keeps_toxicity(raw: RawCall, echo: EchoServer) -> None:
    """PATCH merges into the existing attributes; an omitted toxicity keeps its value; POST is an alias."""
    post_json(raw, "/proxies", {"name": "p", "listen": "127.0.0.1:0", "upstream": echo.address})
    body = {"type": "latency", "toxicity": 0.5, "attributes": {"latency": 100, "jitter": 10}}
    post_json(raw, "/proxies/p/toxics", body)
    updated = post_json(raw, "/proxies/p/toxics/latency_downstream", {"attributes": {"latency": 500}}, "PATCH")
    assert updated.json()["attributes"] == {"latency": 500, "jitter": 10}
    assert updated.json()["toxicity"] == 0.5
    again = post_json(raw, "/proxies/p/toxics/latency_downstream", {"toxicity": 1})
    assert again.json()["toxicity"] == 1


def test_toxic_delete_is_204(raw: RawCall, echo: EchoServer) -> None:
    """DELETE of a toxic answers 204 and the toxic is gone."""
    post_json(raw, "/proxies", {"name": "p", "listen": "127.0.0.1:0", "upstream": echo.address})
    post_json(raw, "/proxies/p/toxics", {"type": "bandwidth", "attributes": {"rate": 10}})
    response = raw("DELETE", "/proxies/p/toxics/bandwidth_downstream")
    assert (response.status, response.body) == (204, b"")
    assert raw("GET", "/proxies/p/toxics").json() == []


def test_reset_removes_toxics_and_reenables(raw: RawCall, api: ToxiproxyClient, echo: EchoServer) -> None:
    """POST /reset answers 204, removes every toxic and re-enables disabled proxies on their port."""
    proxy = api.create_proxy("r", echo.address)
    api.add_toxic("r", "latency", attributes={"latency": 10})
    api.set_enabled("r", False)
    assert refuses_connections(proxy.listen)
    response = raw("POST", "/reset")
    assert (response.status, response.body) == (204, b"")
    after = api.get_proxy("r")
    assert (after.enabled, after.toxics, after.listen) == (True, (), proxy.listen)
    connect(proxy.listen).close()


def test_chunked_request_body_is_accepted(raw: RawCall, echo: EchoServer) -> None:
    """A chunked request body (as some clients send) is decoded like a Content-Length one."""
    payload = json.dumps({"name": "c", "listen": "127.0.0.1:0", "upstream": echo.address}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    response = raw("POST", "/proxies", chunked, {"Transfer-Encoding": "chunked"})
    assert response.status == 201
