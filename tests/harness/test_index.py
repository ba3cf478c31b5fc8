"""index.html: deterministic, re-rendered by verify, re-rendered elsewhere by `certify report`, refuses bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.evidence import MANIFEST, dump_json, sha256_file
from harness.model import Measurement
from harness.render import render_reports, render_summary
from harness.render_charts import coverage_chart, inline_svg, threshold_chart
from harness.render_load_chart import latency_chart
from tests.harness.packs import FIXTURES, certify_argv, certify_env, committed_copy

RECORDED = FIXTURES / "packs" / "load-ok-ci"


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete ci-mode pack of the tiny fixture target, written by the real CLI."""
    base = tmp_path_factory.mktemp("index")
    target = committed_copy("tiny", base / "tiny")
    out = base / "pack"
    subprocess.run(
        certify_argv("run", "--target", str(target), "--out", str(out), "--mode", "ci"),
        env=certify_env(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def _certify(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI."""
    return subprocess.run(
        certify_argv(*args), env=certify_env(), capture_output=True, text=True, timeout=120, check=False
    )


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file of a tree with its sha256 and mtime, to prove nothing was written."""
    return {
        p.relative_to(root).as_posix(): (sha256_file(p), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    }


def _digest(root: Path) -> str:
    """sha256 of a pack's manifest."""
    return hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()


def test_the_same_pack_renders_byte_identical_html(tmp_path: Path) -> None:
    """Two renders of one pack (and of a copy of it elsewhere) give the same index bytes."""
    copy = shutil.copytree(RECORDED, tmp_path / "copy")
    first = render_reports(RECORDED, _digest(RECORDED))["index.html"]
    assert render_reports(RECORDED, _digest(RECORDED))["index.html"] == first
    assert render_reports(copy, _digest(copy))["index.html"] == first


def test_a_written_pack_carries_an_index_that_verifies_and_summary_links_it(pack: Path) -> None:
    """The run writes index.html, summary.md links it, and verify re-renders it to the same bytes."""
    assert (pack / "index.html").is_file()
    assert "[index.html](index.html)" in (pack / "summary.md").read_text(encoding="utf-8")
    done = _certify("verify", str(pack))
    assert done.returncode == 0, done.stdout + done.stderr


def test_verify_names_an_edited_or_deleted_index(pack: Path, tmp_path: Path) -> None:
    """One changed byte of index.html, or its absence, fails verify with the file named."""
    edited = shutil.copytree(pack, tmp_path / "edited")
    html = (edited / "index.html").read_text(encoding="utf-8")
    (edited / "index.html").write_text(html.replace("PASS", "PASS!", 1), encoding="utf-8")
    done = _certify("verify", str(edited))
    assert done.returncode == 1
    assert "changed: index.html (differs from a re-render of the pack)" in done.stdout + done.stderr
    deleted = shutil.copytree(pack, tmp_path / "deleted")
    (deleted / "index.html").unlink()
    done = _certify("verify", str(deleted))
    assert done.returncode == 1
    assert "missing: index.html" in done.stdout + done.stderr


def test_a_pack_from_before_the_index_verifies_with_a_note(pack: Path, tmp_path: Path) -> None:
    """A pack as an older harness wrote it (no index, summary without the link) verifies and says so."""
    old = shutil.copytree(pack, tmp_path / "old")
    (old / "index.html").unlink()
    docs = {name: json.loads((old / name).read_text(encoding="utf-8")) for name in ("results.json", "run.json")}
    deviations = json.loads((old / "deviations.json").read_text(encoding="utf-8"))
    (old / "summary.md").write_text(render_summary(docs["results.json"], docs["run.json"], deviations), "utf-8")
    manifest = json.loads((old / MANIFEST).read_text(encoding="utf-8"))
    entry = manifest["files"]["summary.md"]
    entry.update(sha256=sha256_file(old / "summary.md"), size=(old / "summary.md").stat().st_size)
    (old / MANIFEST).write_bytes(dump_json(manifest))
    for name, data in render_reports(old, _digest(old)).items():
        if name != "index.html":
            (old / name).write_bytes(data)
    done = _certify("verify", str(old))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pack predates index.html" in done.stdout


def test_report_renders_a_fresh_index_into_a_new_folder_and_never_touches_the_pack(tmp_path: Path) -> None:
    """`certify report` copies the pack, writes the current index there, and leaves every pack byte alone."""
    before = _tree(RECORDED)
    out = tmp_path / "site"
    done = _certify("report", str(RECORDED), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert _tree(RECORDED) == before
    assert (out / "index.html").read_bytes() == render_reports(RECORDED, _digest(RECORDED))["index.html"]
    assert set(_tree(out)) == set(before) | {"index.html"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("report", "/nonexistent/pack", "--out", "{tmp}/a"), "/nonexistent/pack: not a directory"),
        (("report", "{tmp}", "--out", "{tmp}/../b"), "no manifest.json; not an evidence pack"),
        (("report", str(RECORDED), "--out", str(RECORDED / "inside")), "lies inside the pack"),
        (("report", str(RECORDED), "--out", "{tmp}"), "exists and is not an empty directory"),
    ],
)
def test_report_refuses_bad_input_with_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    """A missing pack, a non-pack, an --out inside the pack or a non-empty --out: one line, exit 2, no traceback."""
    (tmp_path / "stray.txt").write_text("x", encoding="utf-8")
    done = _certify(*(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert done.returncode == 2
    assert expected in done.stderr
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert not (RECORDED / "inside").exists()


def test_an_svg_with_script_or_outside_links_is_linked_not_inlined(tmp_path: Path) -> None:
    """A gate SVG carrying a script, an event handler or an outside href is never inlined."""
    ns = 'xmlns="http://www.w3.org/2000/svg"'
    cases = {
        "script.svg": f"<svg {ns}><script>alert(1)</script></svg>",
        "onload.svg": f'<svg {ns} onload="alert(1)"><rect/></svg>',
        "href.svg": f'<svg {ns} xmlns:x="http://www.w3.org/1999/xlink"><a x:href="https://example.com"/></svg>',
        "broken.svg": "<svg",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert inline_svg(tmp_path / name, name) is None, name
    (tmp_path / "ok.svg").write_text(f'<svg {ns} viewBox="0 0 1 1"><rect width="1" height="1"/></svg>', "utf-8")
    inlined = inline_svg(tmp_path / "ok.svg", "G2: ok.svg")
    assert inlined is not None
    assert "<title>G2: ok.svg</title>" in inlined
    assert 'aria-label="G2: ok.svg"' in inlined


def test_threshold_chart_draws_each_numeric_measurement_with_its_limit() -> None:
    """One bar and one dashed limit line per judged number, the value and limit in words beside it."""
    svg = threshold_chart(
        "G2 <limits>",
        [Measurement.judged("p99", 6.0, "<=", 500.0, "ms"), Measurement(name="note", value="text")],
    )
    assert svg is not None
    assert svg.count("<rect") == 1
    assert svg.count("stroke-dasharray") == 1
    assert "<title>G2 &lt;limits&gt;</title>" in svg
    assert "6 ms (limit &lt;= 500 ms)" in svg
    assert threshold_chart("none", [Measurement(name="note", value="text")]) is None


def test_latency_chart_draws_percentiles_the_p99_limit_and_arrivals(tmp_path: Path) -> None:
    """A profile's chart has p50/p99 lines, the limit drawn when near the data (named when far), arrival bars."""
    rows = ["kind,seq,request,planned_s,sent_s,end_s,status,ok,error,end_by"]
    rows += [f"arrival,{i},page,{i / 10:.3f},{i / 10:.3f},{i / 10 + 0.2:.3f},200,1,,socket" for i in range(40)]
    (tmp_path / "raw.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    summary = {"raw_evidence": "raw.csv", "duration_s": 4.0, "warmup_s_excluded": 0.5, "profile": "P1", "title": "t"}
    for limit, drawn in ((250.0, True), (5000.0, False)):
        (tmp_path / "P1.json").write_text(json.dumps({**summary, "thresholds": {"p99_ms": limit}}), encoding="utf-8")
        svg = latency_chart(tmp_path, "P1.json")
        assert svg is not None
        assert svg.count("<polyline") == 2
        assert svg.count('fill="#6e7781"') == 4
        assert ("stroke-dasharray" in svg) is drawn
        assert f"p99 limit {limit:g} ms" in svg
    (tmp_path / "raw.csv").unlink()
    assert latency_chart(tmp_path, "P1.json") is None


def test_coverage_chart_draws_each_module_against_the_threshold_least_covered_first(tmp_path: Path) -> None:
    """Modules from coverage.py's JSON, floored like the gate, least covered first, each against the threshold."""

    def entry(covered: int, statements: int) -> dict[str, dict[str, int]]:
        return {"summary": {"covered_lines": covered, "num_statements": statements}}

    files = {"pkg/a.py": entry(9, 10), "pkg/b.py": entry(2, 3), "pkg/c.py": entry(0, 0)}
    (tmp_path / "coverage.json").write_text(json.dumps({"files": files}), encoding="utf-8")
    svg = coverage_chart(tmp_path / "coverage.json", 75.0)
    assert svg is not None
    assert svg.index("pkg/b.py") < svg.index("pkg/a.py") < svg.index("pkg/c.py")
    assert "pkg/b.py: 66.66 % &gt;= 75" in svg
    assert 'fill="#cf222e"' in svg
    (tmp_path / "coverage.json").write_text("{}", encoding="utf-8")
    assert coverage_chart(tmp_path / "coverage.json", 75.0) is None
