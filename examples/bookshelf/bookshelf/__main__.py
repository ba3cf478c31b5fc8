"""`python -m bookshelf serve`: prepare the data dir, then become gunicorn serving the app.

Exit codes: 0 stopped cleanly; 1 the database could not be prepared (schema, seed); 2 bad arguments or
environment (no BOOKSHELF_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import psycopg
from psycopg_pool import PoolTimeout

from bookshelf import db, logs


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and exec gunicorn (the pid stays the server's)."""
    parser = argparse.ArgumentParser(prog="bookshelf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the API with gunicorn")
    serve.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    serve.add_argument("--data-dir", type=Path, required=True, help="logs and worker metrics go here")
    serve.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    # Twice the pool's connections: while the database hangs, the threads beyond the pool answer 503 after
    # the pool timeout instead of every request queueing unseen behind the hung ones.
    serve.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
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
    # Schema and seed once, here, before any worker: a worker's boot then never waits on or fails for them.
    logs.configure(os.environ["BOOKSHELF_LOG_FILE"])
    try:
        seeded = db.prepare(os.environ["BOOKSHELF_DATABASE_URL"], int(os.environ.get("BOOKSHELF_SEED_BOOKS", "0")))
    except (PoolTimeout, psycopg.Error) as exc:
        print(f"bookshelf: the database could not be prepared: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if seeded:
        logging.getLogger("bookshelf").info("seeded %d generated books", seeded)
    gunicorn = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{args.port}"]
    gunicorn += ["--workers", str(args.workers), "--threads", str(args.threads), "--worker-class", "gthread"]
    gunicorn += ["--config", "python:bookshelf.gunicorn_conf", "--graceful-timeout", "10"]
    os.execv(sys.executable, [*gunicorn, "bookshelf.app:worker_app()"])  # noqa: S606 - our own interpreter
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
