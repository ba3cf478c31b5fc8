"""Fixtures shared by the runner tests that drive the sleepy fixture target through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.packs import committed_copy


@pytest.fixture(scope="module")
def sleepy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed copy of the sleepy fixture target."""
    return committed_copy("sleepy", tmp_path_factory.mktemp("target") / "sleepy")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv cache for the module, so the bare venv is created once."""
    return tmp_path_factory.mktemp("venvs")
