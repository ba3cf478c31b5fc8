"""An embedded, API-compatible Toxiproxy server (asyncio, loopback only) for the chaos gate.

Reimplements the HTTP API and toxic semantics of Shopify/toxiproxy v2.12 so the harness can inject
network faults where no `toxiproxy-server` binary is installed. Run it with
`python -m chaos.toxiproxy --port 8474`; it listens on, and proxies to, 127.0.0.0/8 only.
"""

from chaos.toxiproxy.api import VERSION, ToxiproxyApi, ToxiproxyServer

__all__ = ["VERSION", "ToxiproxyApi", "ToxiproxyServer"]
