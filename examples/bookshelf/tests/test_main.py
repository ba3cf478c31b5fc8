"""`python -m bookshelf`: its arguments and environment checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bookshelf import db, gunicorn_conf
from bookshelf.__main__ import main


def test_serve_without_a_database_url_exits_2_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No BOOKSHELF_DATABASE_URL: exit 2 and one line naming the variable."""
    monkeypatch.delenv("BOOKSHELF_DATABASE_URL", raising=False)
    assert main(["serve", "--port", "1", "--data-dir", str(tmp_path)]) == 2
    assert "BOOKSHELF_DATABASE_URL is not set" in capsys.readouterr().err


def test_help_names_the_serve_command() -> None:
    """--help lists serve and exits 0."""
    done = subprocess.run([sys.executable, "-m", "bookshelf", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert "serve" in done.stdout


def test_serve_prepares_the_data_dir_and_becomes_gunicorn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """serve makes logs/ and prometheus/ (stale worker files removed) and execs gunicorn bound to 127.0.0.1."""
    monkeypatch.setenv("BOOKSHELF_DATABASE_URL", "postgresql://x@127.0.0.1:1/y")
    monkeypatch.delenv("BOOKSHELF_LOG_FILE", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)  # restored after: serve sets both
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "counter_1.db").write_bytes(b"old")
    seen: list[list[str]] = []
    prepared: list[tuple[str, int]] = []
    monkeypatch.setattr(os, "execv", lambda path, argv: seen.append([path, *argv]))
    monkeypatch.setattr(db, "prepare", lambda url, books: prepared.append((url, books)) or 0)
    main(["serve", "--port", "8123", "--data-dir", str(tmp_path), "--workers", "3"])
    assert prepared == [("postgresql://x@127.0.0.1:1/y", 0)]
    (argv,) = seen
    assert argv[2:4] == ["-m", "gunicorn"]
    assert "127.0.0.1:8123" in argv
    assert argv[argv.index("--workers") + 1] == "3"
    assert argv[-1] == "bookshelf.app:worker_app()"
    assert not list((tmp_path / "prometheus").glob("*.db"))
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "prometheus")
    assert os.environ["BOOKSHELF_LOG_FILE"] == str(tmp_path / "logs" / "bookshelf.log")


def test_a_dead_worker_is_marked_so_its_gauges_stop_counting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn's child_exit hook removes the dead worker's live-gauge files."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"x")

    class Worker:
        pid = 4242

    gunicorn_conf.child_exit(None, Worker())
    assert not (tmp_path / "gauge_livesum_4242.db").exists()


def test_serve_exits_1_naming_the_database_when_it_cannot_be_prepared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database that does not answer: serve exits 1 with one line and never becomes gunicorn."""
    monkeypatch.setenv("BOOKSHELF_DATABASE_URL", "postgresql://x@127.0.0.1:1/y")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("BOOKSHELF_LOG_FILE", str(tmp_path / "log.json"))

    def refuse(url: str, books: int) -> int:
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(db, "prepare", refuse)
    monkeypatch.setattr(os, "execv", lambda path, argv: pytest.fail("exec'd gunicorn"))
    assert main(["serve", "--port", "8123", "--data-dir", str(tmp_path)]) == 1
    assert "the database could not be prepared: OperationalError: connection refused" in capsys.readouterr().err
