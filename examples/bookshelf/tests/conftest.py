"""The app bound to a real PostgreSQL database: BOOKSHELF_TEST_DATABASE_URL names it.

release-harness starts a throwaway cluster for the test run ([tests] dependencies in certify.toml)
and sets the variable; a developer points it at any scratch database. The tests empty the books
table, so never point it at data you keep.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bookshelf.app import create_app


@pytest.fixture(scope="session")
def database_url() -> str:
    """The scratch database's URL; the run stops with a usage error when none is given."""
    url = os.environ.get("BOOKSHELF_TEST_DATABASE_URL")
    if not url:
        raise pytest.UsageError("BOOKSHELF_TEST_DATABASE_URL is not set: the tests need a scratch PostgreSQL database")
    return url


@pytest.fixture(scope="session")
def app(database_url: str) -> Iterator[Flask]:
    """One application for the session, its pool closed at the end."""
    application = create_app(database_url)
    yield application
    application.config["pool"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client over an empty catalogue."""
    with app.config["pool"].connection() as conn:
        conn.execute("TRUNCATE books RESTART IDENTITY")
    return app.test_client()
