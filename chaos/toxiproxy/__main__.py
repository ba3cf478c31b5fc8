"""`python -m chaos.toxiproxy [--host 127.0.0.1] [--port 8474] [--config FILE] [--seed N]`.

Flags take one or two dashes, like Go's `flag` package, so the same argv starts this server or a real
`toxiproxy-server`. The log level comes from LOG_LEVEL, as upstream's does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from chaos.toxiproxy.api import VERSION, ToxiproxyServer
from chaos.toxiproxy.stream import RNG
from chaos.toxiproxy.wire import ApiError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The server's command line."""
    parser = argparse.ArgumentParser(prog="python -m chaos.toxiproxy", description=__doc__.splitlines()[0])
    parser.add_argument("-host", "--host", default="127.0.0.1", help="API address: localhost or 127.0.0.0/8")
    parser.add_argument("-port", "--port", type=int, default=8474, help="API port (0: any free port)")
    parser.add_argument("-config", "--config", type=Path, help="JSON file of proxies to create at boot")
    parser.add_argument("-seed", "--seed", type=int, help="seed for toxicity, jitter and slicer draws")
    parser.add_argument("-version", "--version", action="store_true", help="print the version and exit")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run the API until SIGTERM or SIGINT, then stop every proxy."""
    server = ToxiproxyServer()
    port = await server.start(args.host, args.port)
    print(f"toxiproxy (embedded {VERSION}) API listening on {args.host}:{port}", file=sys.stderr, flush=True)
    if args.config is not None:
        await server.populate_file(args.config.read_text(encoding="utf-8"))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point; the exit status is 0 after a signal, 2 when the server cannot start."""
    args = parse_args(argv)
    if args.version:
        print(VERSION)
        return 0
    level = os.environ.get("LOG_LEVEL", "info").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO), format="%(asctime)s %(levelname)s %(message)s")
    if args.seed is not None:
        RNG.seed(args.seed)
    try:
        asyncio.run(serve(args))
    except (ApiError, OSError) as exc:
        print(f"toxiproxy: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
