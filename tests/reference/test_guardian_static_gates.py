"""The reference target as a user's clean clone: the static gates really run on it and the pack verifies."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.harness.packs import FIXTURES, REPO, certify_argv, certify_env, guardian_copy

#: The module's pack runs G5, G7 and G8 (a bootstrap from scratch among them): minutes on 2 cores, more
#: than the suite-wide 300 s a single test gets. The run itself is bounded at 1500 s. Guardian's G1 (its
#: whole suite under coverage, ~150 s here) is left to `nox -s ci`, which runs every gate on it, so the
#: suite stays inside CI's time budget; G1 itself is proved on the cov-* fixtures.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A ci-mode run of ID, G5, G7, G8 on a committed copy of examples/guardian's tracked files.

    G5 is pointed at the dated PyPA advisory-database snapshot (or its fixture subset) with an age
    limit that admits it, so the vulnerability audit really audits here, where the online service
    is unreachable.
    """
    base = tmp_path_factory.mktemp("guardian")
    target = base / "guardian"
    guardian_copy(target)
    config = target / "certify.toml"
    shared = REPO.parent / "shared" / "advisory-db"  # the full dated snapshot, beside the clone in CI
    db = shared if shared.is_dir() else FIXTURES / "targets" / "sec-advisory-db"
    text = config.read_text().replace(
        "max_advisory_age_days = 30", f'max_advisory_age_days = 100000\nadvisory_db = "{db}"'
    )
    config.write_text(text)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qam", "db"],
        cwd=target,
        check=True,
        capture_output=True,
    )
    out = base / "pack"
    argv = certify_argv(
        "run",
        "--target",
        str(target),
        "--gates",
        "ID,G5,G7,G8",
        "--mode",
        "ci",
        "--jobs",
        "2",
        "--out",
        str(out),
        "--cache-dir",
        str(base / "venvs"),
    )
    done = subprocess.run(argv, env=certify_env(), capture_output=True, text=True, timeout=1500, check=False)
    return out, done


def test_static_gates_pass_on_the_reference_target(pack: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """Identity, security, bootstrap and docs all PASS on guardian, from evidence of this run."""
    out, done = pack
    assert "Traceback" not in done.stdout + done.stderr
    results = {r["gate"]: r["verdict"] for r in json.loads((out / "results.json").read_text())["results"]}
    for gate in ("ID", "G5", "G7", "G8"):
        assert results[gate]["status"] == "PASS", (gate, results[gate]["reasons"])
    for document in (
        "security_report.md",
        "sbom.json",
        "security.sarif",
        "readme_quickstart.md",
        "merge_gate_report.md",
    ):
        assert (out / document).is_file(), document
    assert not (out / "production_readiness_certificate.md").exists()


def test_reference_pack_verifies(pack: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """certify verify recomputes every verdict of the reference run and finds nothing changed."""
    out, _ = pack
    done = subprocess.run(
        certify_argv("verify", str(out)), env=certify_env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("width", [1280, 390])
def test_reference_index_loads_clean_in_chromium(
    pack: tuple[Path, subprocess.CompletedProcess[str]], width: int
) -> None:
    """The reference pack's index.html loads clean, stays in the pack, has no page scroll and ordered headings."""
    import itertools  # noqa: PLC0415

    from tests.harness.test_index_browser import ARGS, CHROMIUM, _local_targets, _open  # noqa: PLC0415

    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    out, _ = pack
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page, problems = _open(browser, (out / "index.html").as_uri(), width)
            assert problems == []
            assert page.evaluate("document.documentElement.scrollWidth") == width
            for href, path in _local_targets(page, out):
                assert path is not None, href
                assert path.is_relative_to(out.resolve()), href
                assert path.is_file(), href
            sections = page.eval_on_selector_all("section.gate", "els => els.map(e => e.id)")
            assert {f"gate-{gate}" for gate in ("ID", "G5", "G7", "G8")} <= set(sections)
            levels = page.eval_on_selector_all("h1,h2,h3,h4,h5,h6", "els => els.map(e => Number(e.tagName[1]))")
            assert levels.count(1) == 1
            assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), levels
            (out.parent / f"reference-index-{width}.png").write_bytes(page.screenshot(full_page=False))
            page.close()
        finally:
            browser.close()
