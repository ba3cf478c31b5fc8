"""`python -m bookshelf serve`: prepare the data dir, then become gunicorn serving the app.

Exit codes: 0 stopped cleanly; 2 bad arguments or environment (no BOOKSHELF_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and exec gunicorn (the pid stays the server's)."""
    parser = argparse.ArgumentParser(prog="bookshelf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the API with gunicorn")
    serve.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    serve.add_argument("--data-dir", type=Path, required=True, help="logs and worker metrics go here")
    serve.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    serve.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    args = parser.parse_args(argv)
    if not os.environ.get("BOOKSHELF_DATABASE_URL"):
        print("bookshelf: BOOKSHELF_DATABASE_URL is not set (the PostgreSQL database to use)", file=sys.stderr)
        return 2
    prom = args.data_dir / "prometheus"
    (args.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    prom.mkdir(parents=True, exist_ok=True)
    for stale in prom.glob("*.db"):  # series of an earlier run's workers
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    os.environ.setdefault("BOOKSHELF_LOG_FILE", str(args.data_dir / "logs" / "bookshelf.log"))
    gunicorn = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{args.port}"]
    gunicorn += ["--workers", str(args.workers), "--threads", str(args.threads), "--worker-class", "gthread"]
    gunicorn += ["--config", "python:bookshelf.gunicorn_conf", "--graceful-timeout", "10"]
    os.execv(sys.executable, [*gunicorn, "bookshelf.app:create_app()"])  # noqa: S606 - our own interpreter
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
