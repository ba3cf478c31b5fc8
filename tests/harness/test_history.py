"""The run history: `certify run` records each finished pack, `certify history` lists them (harness/history.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from harness.history import HistoryError, flaky_gates, read_record, record
from tests.conftest import GitTarget, RunCertify, commit_all


def run_id_gate(run_certify: RunCertify, target: Path, out: Path, *extra: str) -> str:
    """Run the ID gate of target into out (ci mode); return stdout after asserting a clean exit."""
    proc = run_certify("run", "--target", target, "--gates", "ID", "--mode", "ci", "--out", out, *extra)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc.stdout


def test_each_run_is_recorded_next_to_its_pack_and_listed_newest_first(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """Two runs append two records to packs/history.sqlite; `certify history` lists the newer first."""
    target = git_target("tiny")
    first = run_id_gate(run_certify, target, tmp_path / "packs" / "one")
    (target / "note.txt").write_text("a second commit\n", encoding="utf-8")
    commit_all(target, "second")
    run_id_gate(run_certify, target, tmp_path / "packs" / "two")
    store = tmp_path / "packs" / "history.sqlite"
    assert f"recorded in {store}" in first
    listed = run_certify("history", "--history", store)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2
    assert all("tiny  ci" in line and "all gates PASS" in line for line in lines)
    runs = json.loads(run_certify("history", "--history", store, "--json").stdout)
    assert [Path(run["pack"]).name for run in runs] == ["two", "one"]
    assert runs[0]["gates"] == {"ID": "PASS"}
    assert runs[0]["commit_sha"] != runs[1]["commit_sha"]
    with sqlite3.connect(store) as db:
        figures = db.execute("SELECT gate, name FROM figures WHERE manifest_sha256 = ?", (runs[0]["manifest_sha256"],))
        assert ("ID", "distinct declared versions") in figures.fetchall()


def test_recording_the_same_pack_twice_keeps_one_record(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """`certify history add` of a pack the run already recorded says so and adds nothing."""
    pack = tmp_path / "packs" / "one"
    run_id_gate(run_certify, git_target("tiny"), pack)
    store = tmp_path / "packs" / "history.sqlite"
    again = run_certify("history", "add", pack, "--history", store)
    assert again.returncode == 0
    assert again.stdout.startswith("already recorded: ")
    assert len(json.loads(run_certify("history", "--history", store, "--json").stdout)) == 1


def test_an_unwritable_history_is_one_line_and_keeps_the_verdict(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """A --history that is a directory is reported on stderr; the run's exit code and pack stand."""
    blocked = tmp_path / "not-a-file"
    blocked.mkdir()
    proc = run_certify(
        "run", "--target", git_target("tiny"), "--gates", "ID", "--mode", "ci", "--out", tmp_path / "p",
        "--history", blocked,
    )  # fmt: skip
    assert proc.returncode == 0
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("history:")]
    assert str(blocked) in line
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "p" / "manifest.json").is_file()


@pytest.mark.parametrize(("content", "expected"), [(None, "no run history there"), (b"junk", "not a usable")])
def test_a_missing_or_foreign_store_is_one_line_and_exit_2(
    run_certify: RunCertify, tmp_path: Path, content: bytes | None, expected: str
) -> None:
    """`certify history` on a path with no store, or a file that is no SQLite store, exits 2 naming it."""
    store = tmp_path / "history.sqlite"
    if content is not None:
        store.write_bytes(content)
    proc = run_certify("history", "--history", store)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"certify: error: {store}: {expected}")
    assert "Traceback" not in proc.stderr


def test_a_pack_still_running_is_not_recorded(tmp_path: Path) -> None:
    """A pack whose run.json still says RUNNING is refused, naming the file."""
    (tmp_path / "run.json").write_text(json.dumps({"state": "RUNNING"}), encoding="utf-8")
    with pytest.raises(HistoryError, match="has not finished"):
        read_record(tmp_path)
    with pytest.raises(HistoryError, match=r"run\.json: missing"):
        record(tmp_path / "h.sqlite", tmp_path / "elsewhere")


def test_a_gate_with_two_statuses_on_one_clean_commit_is_flaky() -> None:
    """Flaky: more than one status on the same commit; runs of a dirty tree do not count."""
    runs = [
        {"commit_sha": "a" * 40, "dirty": False, "gates": {"G2": "PASS", "G1": "PASS"}},
        {"commit_sha": "a" * 40, "dirty": False, "gates": {"G2": "FAIL", "G1": "PASS"}},
        {"commit_sha": "b" * 40, "dirty": True, "gates": {"G1": "FAIL"}},
        {"commit_sha": "b" * 40, "dirty": False, "gates": {"G1": "PASS"}},
    ]
    assert flaky_gates(runs) == {"G2": ["aaaaaaaaaa"]}


def test_health_report_of_ten_runs_gives_pass_rates_and_the_gate_that_turned_red(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """Ten release runs of tiny, the sixth on a dirty tree: ID passes 9 of 10 and its turn to red is reported."""
    target = git_target("tiny")
    init = target / "tiny" / "__init__.py"
    for index in range(10):
        if index == 5:
            init.write_text(init.read_text(encoding="utf-8") + "EXTRA = 1\n", encoding="utf-8")
        if index == 6:
            commit_all(target, "extra")
        run_certify("run", "--target", target, "--gates", "ID", "--out", tmp_path / "packs" / f"run{index}")
    store = tmp_path / "packs" / "history.sqlite"
    proc = run_certify("health-report", "--history", store, "--out", tmp_path / "health")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("health report: 10 run(s) in 7 day(s), 1 gate(s) turned red, 0 regression(s)")
    report = json.loads((tmp_path / "health" / "health_report.json").read_text(encoding="utf-8"))
    (gate,) = report["gates"]
    assert (gate["gate"], gate["runs"], gate["passed"], gate["pass_rate_pct"]) == ("ID", 10, 9, 90.0)
    assert [(e["kind"], e["subject"], e["detail"]) for e in report["events"]] == [("gate_red", "ID", "PASS -> FAIL")]
    trend = next(t for t in report["trends"] if t["name"] == "uncommitted changes")
    assert trend["points"] == 10
    assert trend["max"] == 1
    md = (tmp_path / "health" / "health_report.md").read_text(encoding="utf-8")
    assert "| ID | 10 | 9 | 90 % | PASS |" in md
    html = (tmp_path / "health" / "health_report.html").read_text(encoding="utf-8")
    assert html.count("<svg") == len(report["trends"]) >= 1  # a trend chart per judged figure
    assert 'aria-label="ID uncommitted changes over 10 run(s)' in html
    page = tmp_path / "history.html"
    listed = run_certify("history", "--history", store, "--last", "4", "--html", page)
    assert listed.returncode == 0, listed.stderr
    history_html = page.read_text(encoding="utf-8")
    assert "<h1>Run history: the last 4 run(s)</h1>" in history_html
    assert 'aria-label="ID uncommitted changes over 4 run(s)' in history_html
