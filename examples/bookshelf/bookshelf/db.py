"""The database: a connection pool per process and the schema, applied once under an advisory lock."""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

#: Taken while the schema is applied, so two gunicorn workers starting at once do not race.
SCHEMA_LOCK = 4_242_001
SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS books (
        id BIGSERIAL PRIMARY KEY,
        title TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
        author TEXT NOT NULL CHECK (length(author) BETWEEN 1 AND 200),
        year INTEGER CHECK (year BETWEEN 0 AND 3000),
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    # Listing by author is the hot query (GET /api/books?author=...): without this index it scans.
    "CREATE INDEX IF NOT EXISTS books_by_author ON books (author, id)",
)


#: Per connection: give up connecting after 2 s, waiting for a lock after 2 s, any statement after 5 s, so a
#: database that is down, locked or slow answers 503 soon instead of tying a worker thread up; and a
#: commit is acknowledged only once its WAL is written (synchronous_commit on, whatever the server's
#: default), so a crash of the database server loses no book a client was told is stored.
CONNECTION_KWARGS: dict[str, Any] = {
    "row_factory": dict_row,
    "connect_timeout": 2,
    "options": "-c lock_timeout=2000 -c statement_timeout=5000 -c synchronous_commit=on",
}
#: How long a request waits for a pooled connection before it answers 503 (kind pool_timeout): short, so
#: requests queued while the database is away fail fast instead of piling up behind the worker threads.
POOL_TIMEOUT_S = 1.0


def open_pool(url: str, size: int = 4, *, wait: bool = True) -> ConnectionPool:
    """A fixed pool of `size` connections to url, refilled after an outage; opened (and with `wait`, checked).

    With `wait` it raises if the database is unreachable. Without, the pool connects in the background,
    so a process can start while the database is down and serve 503s until it is back. Every
    connection is checked when it is taken from the pool: after the database restarted, a pooled
    connection to the old server is dropped and replaced instead of failing a request.
    """
    pool = ConnectionPool(
        url,
        min_size=size,
        max_size=size,
        kwargs=CONNECTION_KWARGS,
        timeout=POOL_TIMEOUT_S,
        check=ConnectionPool.check_connection,
        open=False,
    )
    pool.open(wait=wait, timeout=10)
    return pool


def prepare(url: str, seed_books: int = 0) -> int:
    """Apply the schema and seed an empty catalogue once, before any worker starts; how many books were seeded."""
    with ConnectionPool(url, min_size=1, max_size=1, kwargs=CONNECTION_KWARGS, open=False) as pool:
        pool.wait(timeout=10)
        apply_schema(pool, with_index=False)
        seeded = seed(pool, seed_books)
        apply_schema(pool)  # the author index built once over the seeded rows: faster than row by row
        return seeded


def _no_timeouts(conn: Connection[Any]) -> None:
    """Lift the request timeouts for this transaction: start-up work (schema, seeding) may wait and take long."""
    conn.execute("SET LOCAL lock_timeout = 0")
    conn.execute("SET LOCAL statement_timeout = 0")


def apply_schema(pool: ConnectionPool, with_index: bool = True) -> None:
    """Create the tables (and, unless told otherwise, the author index) if they are missing."""
    with pool.connection() as conn, conn.transaction():
        _no_timeouts(conn)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        for statement in SCHEMA if with_index else SCHEMA[:1]:
            conn.execute(statement)


def add_book(pool: ConnectionPool, title: str, author: str, year: int | None) -> dict[str, Any]:
    """Insert one book; the stored row."""
    with pool.connection() as conn:
        (row,) = conn.execute(  # INSERT ... RETURNING gives exactly the one row
            "INSERT INTO books (title, author, year) VALUES (%s, %s, %s) RETURNING id, title, author, year",
            (title, author, year),
        ).fetchall()
    return dict(row)


def seed(pool: ConnectionPool, count: int, authors: int = 100_000) -> int:
    """Fill an empty catalogue with `count` generated books by `authors` authors; how many were added."""
    with pool.connection() as conn, conn.transaction():
        _no_timeouts(conn)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        (present,) = conn.execute("SELECT count(*) AS n FROM books").fetchall()
        if dict(present)["n"] > 0 or count <= 0:  # rows are dicts (dict_row); the pool type says tuples
            return 0
        conn.execute(
            "INSERT INTO books (title, author, year) SELECT 'Volume ' || g, 'author-' || (g %% %s), 1900 + g %% 120 "
            "FROM generate_series(1, %s) AS g",
            (authors, count),
        )
        conn.execute("ANALYZE books")
    return count


def get_book(pool: ConnectionPool, book_id: int) -> dict[str, Any] | None:
    """One book by id, or None."""
    with pool.connection() as conn:
        row = conn.execute("SELECT id, title, author, year FROM books WHERE id = %s", (book_id,)).fetchone()
    return None if row is None else dict(row)


def list_books(pool: ConnectionPool, author: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest books (of one author, when given), at most `limit`."""
    with pool.connection() as conn:
        if author is None:
            rows = conn.execute("SELECT id, title, author, year FROM books ORDER BY id DESC LIMIT %s", (limit,))
        else:
            rows = conn.execute(
                "SELECT id, title, author, year FROM books WHERE author = %s ORDER BY id DESC LIMIT %s",
                (author, limit),
            )
        return [dict(row) for row in rows.fetchall()]


def ping(pool: ConnectionPool) -> None:
    """Raise unless the database answers a query."""
    with pool.connection(timeout=1) as conn:
        conn.execute("SELECT 1")
