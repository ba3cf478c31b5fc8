"""The schema and the seed, against a real PostgreSQL database."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from bookshelf import db


def test_the_author_index_exists_and_the_planner_uses_it(app: Flask, client: FlaskClient) -> None:
    """books_by_author is created with the schema, and a lookup by author is an index scan."""
    del client
    pool = app.config["pool"]
    db.apply_schema(pool)  # idempotent
    with pool.connection() as conn:
        names = {r["indexname"] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'books'")}
        conn.execute("SET enable_seqscan = off")
        plan = " ".join(r["QUERY PLAN"] for r in conn.execute("EXPLAIN SELECT id FROM books WHERE author = 'x'"))
    assert "books_by_author" in names
    assert "books_by_author" in plan


def test_seed_fills_an_empty_catalogue_once(app: Flask, client: FlaskClient) -> None:
    """seed adds the generated books to an empty table, spread over the authors, and never to a full one."""
    pool = app.config["pool"]
    assert db.seed(pool, 0) == 0
    assert db.seed(pool, 500, authors=50) == 500
    assert db.seed(pool, 500, authors=50) == 0
    page = client.get("/api/books?author=author-7&limit=100").get_json()["books"]
    assert len(page) == 10
    assert all(book["author"] == "author-7" for book in page)
