"""The second reference target, examples/bookshelf (REST API over PostgreSQL): its fast gates really run.

ID and G1 run on a committed copy of its tracked files: G1 runs bookshelf's own tests against the
throwaway PostgreSQL cluster the harness starts for them ([tests] dependencies). Then a broken
variant, the author index dropped from the schema, runs the load profiles briefly: every author
lookup scans the million seeded books and G2 FAILs on the p99. The full ci run of bookshelf is
`nox -s bookshelf` (every gate it configures, with the real profile durations of ci mode).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.harness.packs import certify_argv, certify_env, example_copy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

#: Arrivals per minute of the brief profiles: enough author lookups that a scan per lookup queues.
RATE = 6000


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


def test_without_the_author_index_g2_fails_on_the_p99(tmp_path: Path) -> None:
    """The index dropped from the schema: author lookups scan a million books and G2 FAILs naming the profile."""
    target = tmp_path / "bookshelf"
    example_copy(target, "bookshelf")
    db = target / "bookshelf" / "db.py"
    db.write_text(
        db.read_text().replace('    "CREATE INDEX IF NOT EXISTS books_by_author ON books (author, id)",\n', "")
    )
    config = target / "certify.toml"
    text = config.read_text().replace("ci_scale = 0.5", "ci_min_arrivals = 0\nlate_bound_ms = 1000")
    brief = 'ci_duration_s = 6\nci_warmup_s = 1\nshape = { kind = "constant", rate_per_min = RATE }\n'
    text = re.sub(r"(\[gates\.G2\.profiles\.P\d\]\n)", r"\1" + brief.replace("RATE", str(RATE)), text)
    config.write_text(text)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qam", "no index"],
                   cwd=target, check=True, capture_output=True)  # fmt: skip
    done = _run(target, "G2", tmp_path / "pack", tmp_path / "venvs")
    g2 = _results(tmp_path / "pack")["G2"]
    assert g2["status"] == "FAIL", done.stdout + done.stderr + json.dumps(g2)
    over = [reason for reason in g2["reasons"] if re.match(r"P\d: p99 [\d.]+ ms .* vs 100 ms", reason)]
    assert over, g2["reasons"]
    assert "Traceback" not in done.stderr
