"""The second reference target, examples/bookshelf (REST API over PostgreSQL): its fast gates really run.

ID and G1 run on a committed copy of its tracked files: G1 runs bookshelf's own tests against the
throwaway PostgreSQL cluster the harness starts for them ([tests] dependencies), and a broken
variant (the author filter lost) FAILs G1 on those tests. Its load profiles (G2/G3, several
minutes) are not run here: test_bookshelf_load.py runs G2 on a variant without the author index
under a nox session.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.harness.packs import certify_argv, certify_env, example_copy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def _run(target: Path, gates: str, out: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """A ci run of the gates on target into out (judged under the fixture targets' policy)."""
    argv = certify_argv("run", "--target", str(target), "--gates", gates, "--mode", "ci", "--out", str(out))
    argv += ["--cache-dir", str(cache)]
    return subprocess.run(argv, env=certify_env(), capture_output=True, text=True, timeout=840, check=False)


def _results(pack: Path) -> dict[str, dict]:
    """The pack's verdicts by gate."""
    return {r["gate"]: r["verdict"] for r in json.loads((pack / "results.json").read_text())["results"]}


def test_id_and_g1_pass_with_the_suite_run_against_a_real_database(tmp_path: Path) -> None:
    """ID and G1 PASS on bookshelf; its tests ran against the harness's PostgreSQL, which left its log in the pack."""
    target = example_copy(tmp_path / "bookshelf", "bookshelf")
    done = _run(target, "ID,G1", tmp_path / "pack", tmp_path / "venvs")
    verdicts = _results(tmp_path / "pack")
    assert verdicts["ID"]["status"] == "PASS", done.stdout + done.stderr
    assert verdicts["G1"]["status"] == "PASS", verdicts["G1"]["reasons"]
    assert re.match(r"\d+ tests passed", verdicts["G1"]["reasons"][0])
    logs = list((tmp_path / "pack" / "gates" / "G1" / "instances").glob("G1-tests-*/db.stderr.txt"))
    assert logs, "the test run's PostgreSQL log is in the pack"
    assert "database system is ready to accept connections" in logs[0].read_text()


def test_a_variant_whose_author_filter_is_lost_fails_g1_on_its_own_tests(tmp_path: Path) -> None:
    """list_books ignoring the author: bookshelf's own test against the real database catches it and G1 FAILs."""
    target = tmp_path / "bookshelf"
    example_copy(target, "bookshelf")
    db = target / "bookshelf" / "db.py"
    wrong = "if author is None:"
    assert wrong in db.read_text()
    db.write_text(db.read_text().replace(wrong, "if True:"))
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qam", "bug"],
                   cwd=target, check=True, capture_output=True)  # fmt: skip
    done = _run(target, "G1", tmp_path / "pack", tmp_path / "venvs")
    g1 = _results(tmp_path / "pack")["G1"]
    assert g1["status"] == "FAIL", done.stdout + done.stderr
    assert any(re.match(r"\d+ failing and 0 erroring of \d+ tests: tests\.test_", r) for r in g1["reasons"]), g1
    assert "Traceback" not in done.stderr
