"""The books API over a real PostgreSQL database."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import psycopg
import pytest
from flask.testing import FlaskClient

from bookshelf import db
from bookshelf.app import ConfigError, create_app
from bookshelf.logs import JsonFormatter, configure


def test_a_stored_book_is_read_back_by_id(client: FlaskClient) -> None:
    """POST stores the book (201 with its id); GET by id returns the same fields."""
    created = client.post("/api/books", json={"title": "Dune", "author": "Frank Herbert", "year": 1965})
    assert created.status_code == 201
    book = created.get_json()
    assert book == {"id": 1, "title": "Dune", "author": "Frank Herbert", "year": 1965}
    assert client.get(f"/api/books/{book['id']}").get_json() == book


def test_a_missing_book_is_404(client: FlaskClient) -> None:
    """An unknown id answers 404 naming it."""
    response = client.get("/api/books/999")
    assert response.status_code == 404
    assert response.get_json() == {"error": "no book 999"}


def test_listing_by_author_returns_only_theirs_newest_first(client: FlaskClient) -> None:
    """?author= filters exactly; the newest book comes first; limit bounds the page."""
    for title, author in [("A", "Le Guin"), ("B", "Herbert"), ("C", "Le Guin"), ("D", "Le Guin")]:
        client.post("/api/books", json={"title": title, "author": author})
    books = client.get("/api/books?author=Le Guin&limit=2").get_json()["books"]
    assert [b["title"] for b in books] == ["D", "C"]
    assert {b["author"] for b in client.get("/api/books").get_json()["books"]} == {"Le Guin", "Herbert"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "the body must be a JSON object"),
        ({"author": "x"}, "title: a string of 1 to 300 characters is required"),
        ({"title": "x" * 301, "author": "x"}, "title: a string of 1 to 300 characters is required"),
        ({"title": "x"}, "author: a string of 1 to 200 characters is required"),
        ({"title": "x", "author": "y", "year": True}, "year: an integer from 0 to 3000, or absent"),
        ({"title": "x", "author": "y", "year": 3001}, "year: an integer from 0 to 3000, or absent"),
    ],
)
def test_an_invalid_book_is_422_saying_what_is_wrong(client: FlaskClient, body: object, message: str) -> None:
    """Each malformed body is refused with the field and the rule; nothing is stored."""
    response = client.post("/api/books", json=body)
    assert response.status_code == 422
    assert response.get_json() == {"error": message}
    assert client.get("/api/books").get_json() == {"books": []}


@pytest.mark.parametrize(
    ("query", "message"), [("limit=abc", "limit: an integer"), ("limit=0", "limit: from 1 to 100")]
)
def test_a_bad_limit_is_422(client: FlaskClient, query: str, message: str) -> None:
    """limit must be an integer from 1 to 100."""
    response = client.get(f"/api/books?{query}")
    assert response.status_code == 422
    assert response.get_json()["error"] == message


def test_health_and_readiness_answer_and_metrics_count_requests(client: FlaskClient) -> None:
    """/healthz and /readyz answer 200; /metrics counts the requests by route and status."""
    assert client.get("/healthz").get_json()["status"] == "ok"
    assert client.get("/readyz").get_json() == {"status": "ready"}
    client.get("/api/books/5")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'bookshelf_http_requests_total{method="GET",route="/api/books/<int:book_id>",status="404"}' in text
    assert "bookshelf_http_request_duration_seconds_bucket" in text


def test_a_database_failure_is_503_counted_and_logged(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An OperationalError from the database answers 503, increments the error counter and logs a warning."""

    def down(*_: object) -> None:
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(db, "get_book", down)
    with caplog.at_level(logging.WARNING, logger="bookshelf.http"):
        response = client.get("/api/books/1")
    assert response.status_code == 503
    assert response.get_json() == {"error": "the database is unavailable", "kind": "operational"}
    assert 'bookshelf_db_errors_total{kind="operational"}' in client.get("/metrics").get_data(as_text=True)
    assert any(r.levelname == "WARNING" and r.getMessage() == "database unavailable" for r in caplog.records)


def test_every_log_line_is_a_json_object_with_the_request_fields(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A request leaves one record whose JSON line has ts, level, method, path, status, duration and request id."""
    with caplog.at_level(logging.INFO, logger="bookshelf.http"):
        client.get("/healthz", headers={"X-Request-Id": "req-1"})
    mine = [r for r in caplog.records if getattr(r, "request_id", None) == "req-1"]
    assert len(mine) == 1
    line = json.loads(JsonFormatter().format(mine[0]))
    assert line["path"] == "/healthz"
    assert line["status"] == 200
    assert line["ts"].endswith("Z")
    assert {"level", "logger", "message", "duration_ms", "method"} <= line.keys()
    assert line["service"] == "bookshelf"


def test_the_log_file_gets_the_same_json_lines(tmp_path: Path) -> None:
    """configure(log_file) writes each record as one JSON object to the file too, an exception included."""
    target = tmp_path / "bookshelf.log"
    try:
        configure(str(target))
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("bookshelf.test").exception("failed")
    finally:
        configure(None)
    (line,) = [json.loads(text) for text in target.read_text(encoding="utf-8").splitlines()]
    assert line["level"] == "ERROR"
    assert "ValueError: boom" in line["error"]


def test_metrics_add_up_worker_files_in_multiprocess_mode(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set, /metrics is built from the workers' files (200, text format)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"


def test_without_a_database_url_the_app_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """No URL given and no BOOKSHELF_DATABASE_URL: ConfigError naming the variable."""
    monkeypatch.delenv("BOOKSHELF_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="BOOKSHELF_DATABASE_URL is not set"):
        create_app()
