"""The schema and the seed, against a real PostgreSQL database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bookshelf import db, logs
from bookshelf.app import create_app, worker_app


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


def test_an_app_started_on_an_empty_catalogue_seeds_it_and_says_so(
    app: Flask, client: FlaskClient, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """BOOKSHELF_SEED_BOOKS fills an empty catalogue when the app starts, and its JSON log says how many."""
    del client
    monkeypatch.setenv("BOOKSHELF_SEED_BOOKS", "120")
    monkeypatch.setenv("BOOKSHELF_LOG_FILE", str(tmp_path / "start.log"))
    seeded = create_app(database_url)
    try:
        lines = [json.loads(line) for line in (tmp_path / "start.log").read_text(encoding="utf-8").splitlines()]
        assert [line["message"] for line in lines] == ["seeded 120 generated books"]
        with app.config["pool"].connection() as conn:
            assert conn.execute("SELECT count(*) AS n FROM books").fetchall()[0]["n"] == 120
    finally:
        seeded.config["pool"].close()
        logs.configure(None)


def test_prepare_applies_the_schema_and_seeds_once(database_url: str, client: FlaskClient) -> None:
    """prepare (what `serve` runs before its workers) seeds an empty catalogue once and leaves a full one alone."""
    assert db.prepare(database_url, 30) == 30
    assert db.prepare(database_url, 30) == 0


def test_a_worker_app_starts_while_the_database_is_down_and_answers_503(monkeypatch: pytest.MonkeyPatch) -> None:
    """worker_app never waits for the database: with none listening it starts, and /readyz is 503."""
    monkeypatch.setenv("BOOKSHELF_DATABASE_URL", "postgresql://certify@127.0.0.1:1/none")
    monkeypatch.delenv("BOOKSHELF_LOG_FILE", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app = worker_app()
    try:
        answer = app.test_client().get("/readyz")
        assert answer.status_code == 503
        assert answer.get_json()["kind"] == "pool_timeout"
    finally:
        app.config["pool"].close()
