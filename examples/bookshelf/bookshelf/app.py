"""The Flask application: health, readiness, metrics and the books API.

Configuration comes from the environment: BOOKSHELF_DATABASE_URL (required), BOOKSHELF_POOL_SIZE
(connections per process, default 4), BOOKSHELF_SEED_BOOKS (generated books for an empty
catalogue, default 0), BOOKSHELF_LOG_FILE (JSON log file besides stderr), PROMETHEUS_MULTIPROC_DIR
(set under gunicorn's several workers so /metrics adds up every worker).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

import psycopg
from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from psycopg_pool import PoolTimeout

from bookshelf import __version__, db, logs

LOG = logging.getLogger("bookshelf.http")
REQUESTS = Counter("bookshelf_http_requests", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "bookshelf_http_request_duration_seconds",
    "Time to answer a request",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BOOKS_ADDED = Counter("bookshelf_books_added", "Books stored (rows inserted)")
BOOKS_ACKNOWLEDGED = Counter("bookshelf_books_acknowledged", "POST /api/books answered 201 (the book is stored)")
DB_ERRORS = Counter("bookshelf_db_errors", "Requests that failed on the database", ["kind"])
for _kind in ("operational", "pool_timeout"):  # exposed at 0 from the start, so a rate over them is defined
    DB_ERRORS.labels(_kind)
MAX_LIMIT = 100


class ConfigError(RuntimeError):
    """The environment does not say how to reach the database."""


def _metrics() -> Response:
    """Prometheus text format: every worker's series when running multi-process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


def _book_from(body: Any) -> tuple[str, str, int | None] | str:
    """(title, author, year) from a JSON body, or what is wrong with it."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    title, author, year = body.get("title"), body.get("author"), body.get("year")
    if not isinstance(title, str) or not 1 <= len(title) <= 300:
        return "title: a string of 1 to 300 characters is required"
    if not isinstance(author, str) or not 1 <= len(author) <= 200:
        return "author: a string of 1 to 200 characters is required"
    if year is not None and (not isinstance(year, int) or isinstance(year, bool) or not 0 <= year <= 3000):
        return "year: an integer from 0 to 3000, or absent"
    return title, author, year


def database_url(url: str | None = None) -> str:
    """url, else BOOKSHELF_DATABASE_URL; ConfigError when neither names the database."""
    url = url or os.environ.get("BOOKSHELF_DATABASE_URL")
    if not url:
        raise ConfigError("BOOKSHELF_DATABASE_URL is not set: it names the PostgreSQL database to use")
    return url


def worker_app() -> Flask:
    """gunicorn's factory: `serve` applied the schema already, and a database down now does not stop the worker.

    The pool connects in the background; until the database answers, requests (and /readyz) are 503.
    A worker that failed to boot would make gunicorn's master shut the whole server down.
    """
    return create_app(prepare=False)


def create_app(url: str | None = None, *, prepare: bool = True) -> Flask:
    """The application bound to the database at url (default: BOOKSHELF_DATABASE_URL).

    With `prepare` the database must answer now: the schema is applied and an empty catalogue seeded.
    """
    url = database_url(url)
    logs.configure(os.environ.get("BOOKSHELF_LOG_FILE"))
    pool = db.open_pool(url, int(os.environ.get("BOOKSHELF_POOL_SIZE", "4")), wait=prepare)
    if prepare:
        db.apply_schema(pool)
        seeded = db.seed(pool, int(os.environ.get("BOOKSHELF_SEED_BOOKS", "0")))
        if seeded:
            logging.getLogger("bookshelf").info("seeded %d generated books", seeded)
    app = Flask("bookshelf")
    app.config["pool"] = pool

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex

    @app.after_request
    def _finish(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        elapsed = time.perf_counter() - g.started
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        LATENCY.labels(route).observe(elapsed)
        level = logging.ERROR if response.status_code >= 500 else logging.INFO
        fields = {"method": request.method, "path": request.path, "status": response.status_code}
        LOG.log(level, "request", extra={**fields, "duration_ms": round(elapsed * 1000, 3), "request_id": g.request_id})
        response.headers["X-Request-Id"] = g.request_id
        return response

    @app.errorhandler(psycopg.OperationalError)
    @app.errorhandler(PoolTimeout)
    def _database_down(exc: Exception) -> tuple[Response, int]:
        kind = "pool_timeout" if isinstance(exc, PoolTimeout) else "operational"
        DB_ERRORS.labels(kind).inc()
        LOG.warning("database unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
        return jsonify(error="the database is unavailable", kind=kind), 503

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", version=__version__)

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        db.ping(pool)
        return jsonify(status="ready"), 200

    @app.get("/metrics")
    def metrics() -> Response:
        return _metrics()

    @app.post("/api/books")
    def add_book() -> tuple[Response, int]:
        parsed = _book_from(request.get_json(silent=True))
        if isinstance(parsed, str):
            return jsonify(error=parsed), 422
        book = db.add_book(pool, *parsed)
        BOOKS_ADDED.inc()
        BOOKS_ACKNOWLEDGED.inc()
        return jsonify(book), 201

    @app.get("/api/books/<int:book_id>")
    def get_book(book_id: int) -> tuple[Response, int]:
        book = db.get_book(pool, book_id)
        if book is None:
            return jsonify(error=f"no book {book_id}"), 404
        return jsonify(book), 200

    @app.get("/api/books")
    def list_books() -> tuple[Response, int]:
        try:
            limit = int(request.args.get("limit", "20"))
        except ValueError:
            return jsonify(error="limit: an integer"), 422
        if not 1 <= limit <= MAX_LIMIT:
            return jsonify(error=f"limit: from 1 to {MAX_LIMIT}"), 422
        return jsonify(books=db.list_books(pool, request.args.get("author"), limit)), 200

    return app
