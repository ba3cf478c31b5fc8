"""The embedded server driven by toxiproxy-python 0.1.1, the published Python client (a test dependency)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import toxiproxy  # toxiproxy-python>=0.1.1, a test dependency: a missing install fails here, never skips
from toxiproxy import exceptions

from chaos.toxiproxy_client import ToxiproxyClient
from tests.chaos.conftest import EchoServer, connect, recv_exactly, refuses_connections

pytestmark = pytest.mark.integration


@pytest.fixture
def server(toxiproxy_url: str, api: ToxiproxyClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[toxiproxy.Toxiproxy]:
    """A toxiproxy-python `Toxiproxy` pointed at the embedded server (its host/port are class globals)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    host, port = toxiproxy_url.removeprefix("http://").rsplit(":", 1)
    instance = toxiproxy.Toxiproxy()
    previous = (toxiproxy.api.APIConsumer.host, toxiproxy.api.APIConsumer.port)
    instance.update_api_consumer(host, int(port))
    yield instance
    instance.update_api_consumer(*previous)


def test_version_running_and_create(server: toxiproxy.Toxiproxy, echo: EchoServer) -> None:
    """The client sees the server running, reads its version and creates a proxy that carries traffic."""
    assert server.running()
    assert server.version() == b'{"version": "2.12.0+embedded"}\n'
    proxy = server.create(upstream=echo.address, name="py")
    assert proxy.listen.startswith("127.0.0.1:")
    assert proxy.enabled is True
    with connect(proxy.listen) as client:
        client.sendall(b"hello")
        assert recv_exactly(client, 5) == b"hello"
    assert list(server.proxies()) == ["py"]
    assert server.get_proxy("py").upstream == echo.address


def test_duplicate_and_missing_raise_client_errors(server: toxiproxy.Toxiproxy, echo: EchoServer) -> None:
    """409 and 404 answers surface as the client's ProxyExists and NotFound; 400 as InvalidToxic."""
    proxy = server.create(upstream=echo.address, name="dup")
    with pytest.raises(exceptions.ProxyExists):
        server.create(upstream=echo.address, name="dup")
    proxy.add_toxic(type="latency", attributes={"latency": 10})
    with pytest.raises(exceptions.ProxyExists):
        proxy.add_toxic(type="latency", attributes={"latency": 10})
    with pytest.raises(exceptions.InvalidToxic):
        proxy.add_toxic(type="teleport")
    with pytest.raises(exceptions.NotFound):
        proxy.destroy_toxic("nothing")
    proxy.destroy()
    with pytest.raises(exceptions.NotFound):
        proxy.destroy()


def test_toxics_listing_and_removal(server: toxiproxy.Toxiproxy, echo: EchoServer) -> None:
    """Toxics added through the client are listed with their attributes and removed by name."""
    proxy = server.create(upstream=echo.address, name="tox")
    proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 100, "jitter": 10})
    proxy.add_toxic(type="bandwidth", name="slow", toxicity=0.5, attributes={"rate": 100})
    toxics = proxy.toxics()
    assert sorted(toxics) == ["latency_upstream", "slow"]
    assert toxics["latency_upstream"].attributes == {"latency": 100, "jitter": 10}
    assert toxics["slow"].toxicity == 0.5
    assert proxy.destroy_toxic("slow") is True
    assert list(proxy.toxics()) == ["latency_upstream"]


def test_down_context_disables_then_enables(server: toxiproxy.Toxiproxy, echo: EchoServer) -> None:
    """`with proxy.down()` refuses connections inside the block and serves again after it."""
    proxy = server.create(upstream=echo.address, name="flap")
    with proxy.down():
        assert refuses_connections(proxy.listen)
        assert server.get_proxy("flap").enabled is False
    with connect(proxy.listen) as client:
        client.sendall(b"up")
        assert recv_exactly(client, 2) == b"up"


def test_populate_reset_and_destroy_all(server: toxiproxy.Toxiproxy, echo: EchoServer) -> None:
    """Client-side populate creates proxies; reset clears toxics; destroy_all removes every proxy."""
    created = server.populate(
        [
            {"name": "a", "upstream": echo.address, "listen": "127.0.0.1:0"},
            {"name": "b", "upstream": echo.address, "listen": "127.0.0.1:0"},
        ]
    )
    assert sorted(proxy.name for proxy in created) == ["a", "b"]
    created[0].add_toxic(type="timeout", attributes={"timeout": 0})
    assert server.reset() is True
    assert server.get_proxy("a").toxics() == {}
    server.destroy_all()
    assert server.proxies() == {}
