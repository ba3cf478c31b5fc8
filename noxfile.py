"""Sessions for release-harness: the single source of truth for CI, the README and release captains.

nox -s ci         quick merge-gate run of the reference target (ci mode, scaled durations);
                  `-- --target examples/bookshelf` for the second reference target
nox -s certify    full release run of the reference target; `-- --target DIR` for another
nox -s tests      the test suite (what .ci/run runs)
nox -s lint       ruff and mypy
nox -s verify     re-check an evidence pack: `nox -s verify -- PACK` (default: the newest)
nox -s identity   the identity gate alone
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

REPO = Path(__file__).parent
ARTIFACTS = REPO / "release" / "artifacts"
#: The target `certify run` certifies when no --target is given (from the repository root).
REFERENCE_TARGET = (REPO / "examples" / "guardian").resolve()
#: System tools some gates need, with the command that installs them on Debian.
SYSTEM_TOOLS = {
    "git": "apt-get install -y git",
    "chromium": "apt-get install -y chromium",
    "prometheus": "apt-get install -y prometheus",
    "promtool": "apt-get install -y prometheus",
    "dot": "apt-get install -y graphviz",
    "initdb": "apt-get install -y postgresql",
}


def require_system(session: nox.Session, *tools: str) -> None:
    """Stop the session with the install command when a system tool is missing."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        hints = "; ".join(f"{tool}: {SYSTEM_TOOLS.get(tool, 'install it')}" for tool in missing)
        session.error(f"missing system tool(s): {hints}")


def _certify(session: nox.Session, mode: str, *gates: str, sign_keys: Path | None = None) -> None:
    """Install the harness and run `certify run` with the session's extra arguments (signed if sign_keys)."""
    require_system(session, "git")
    session.install("-e", ".")
    env = {}
    if sign_keys is not None:  # a throwaway pair: it proves signing and verifying work, not who ran the session
        shutil.rmtree(sign_keys, ignore_errors=True)
        session.run("certify", "keygen", "--out", str(sign_keys))
        env["CERTIFY_SIGN_KEY"] = str(sign_keys / "certify-signing.key")
    args = ["certify", "run", "--mode", mode]
    if gates:
        args += ["--gates", ",".join(gates)]
    session.run(*args, *session.posargs, env=env)


@nox.session
def certify(session: nox.Session) -> None:
    """Release-mode run (full durations) of the reference target, or `-- --target DIR`."""
    _certify(session, "release")


def _target_of(posargs: list[str]) -> Path:
    """The target directory `certify run` gets from the session's arguments (default: the reference target)."""
    for i, arg in enumerate(posargs):
        if arg == "--target" and i + 1 < len(posargs):
            return Path(posargs[i + 1]).resolve()
        if arg.startswith("--target="):
            return Path(arg.split("=", 1)[1]).resolve()
    return REFERENCE_TARGET


@nox.session
def ci(session: nox.Session) -> None:
    """Quick merge gate: ci mode, scaled durations, a merge-gate report; signed with a throwaway key, then verified.

    `nox -s ci -- --target examples/bookshelf` runs the same for another target (here the second
    reference target). For the reference target, examples/guardian, the pack's index.html is then
    opened in Debian's Chromium (tests/reference/test_ci_pack_index.py, whose baselines are
    guardian's): every gate's section loads clean, every link is a file of the pack, no page scroll
    at 1280 and 390 px, basic accessibility; the first screens are kept beside the pack.
    """
    index_check = _target_of(session.posargs) == REFERENCE_TARGET
    keys = Path(session.create_tmp()) / "throwaway-signing-key"
    before = set(ARTIFACTS.glob("*/manifest.json"))
    session.install("-e", ".[test]")
    try:
        _certify(session, "ci", sign_keys=keys)
    finally:  # a BLOCKED merge gate still has a pack to verify; the session fails as before
        for manifest in sorted(set(ARTIFACTS.glob("*/manifest.json")) - before):
            session.run("certify", "verify", str(manifest.parent), "--key", str(keys / "certify-signing.pub.pem"))
            if index_check and (manifest.parent / "index.html").is_file():
                require_system(session, "chromium")
                index_test = str(REPO / "tests" / "reference" / "test_ci_pack_index.py")
                session.run(
                    "pytest", "-q", "-p", "no:cacheprovider", index_test,
                    env={"CERTIFY_REFERENCE_PACK": str(manifest.parent)},
                )  # fmt: skip


@nox.session
def identity(session: nox.Session) -> None:
    """The identity gate alone (commit, clean tree, version consistency)."""
    _certify(session, "ci", "ID")


@nox.session
def coverage(session: nox.Session) -> None:
    """Gate G1 alone: the target's tests under pytest-cov; overall, critical and (ci) changed-line coverage."""
    _certify(session, "ci", "G1")


@nox.session
def load(session: nox.Session) -> None:
    """Gates G2/G3 alone: load profiles P1-P5 with Locust (ci mode; `-- --mode release` for full durations)."""
    _certify(session, "ci", "G2", "G3")


@nox.session
def chaos(session: nox.Session) -> None:
    """Gate G4 alone: fault experiments C1-C4, recovery time and the no-data-loss ledger (root for DNS/disk-full)."""
    _certify(session, "ci", "G4")


@nox.session
def playbooks(session: nox.Session) -> None:
    """Gate PB alone: every playbook injected, dry-run, governed, healed, rolled back, on its own instance."""
    _certify(session, "ci", "PB")


@nox.session
def e2e(session: nox.Session) -> None:
    """Gate E2E alone: browser and CLI journeys in headless Chromium; screenshots, traces, visual diffs."""
    require_system(session, "chromium")
    _certify(session, "ci", "E2E")


@nox.session
def observability(session: nox.Session) -> None:
    """Gate G6 alone: a real Prometheus scrapes the target under load and fault; cross-check, alerts, dashboards."""
    require_system(session, "prometheus", "promtool")
    _certify(session, "ci", "G6")


@nox.session
def security(session: nox.Session) -> None:
    """Gate G5 alone: bandit, pip-audit (offline advisory db), SBOM, secrets, licences."""
    _certify(session, "ci", "G5")


@nox.session
def bootstrap(session: nox.Session) -> None:
    """Gate G7 alone: clean copy -> bootstrap -> smoke, timed against the budget."""
    _certify(session, "ci", "G7")


@nox.session
def docs(session: nox.Session) -> None:
    """Gate G8 alone: required docs, runbook sections, links, alert runbooks, the quickstart run for real."""
    _certify(session, "ci", "G8")


@nox.session
def tests(session: nox.Session) -> None:
    """The harness's test suite, integration tests included."""
    require_system(session, "git")
    session.install("-e", ".[test]")
    # Most tests wait on real processes (targets, Locust, Prometheus, Chromium), so three workers
    # fit 2 cores; a file stays on one worker (module fixtures, shared targets). The slowest tests
    # are listed so a slow CI run says where its time went.
    session.run("pytest", "-n", "3", "--dist", "loadfile", "--durations=25", *session.posargs)


@nox.session
def variants(session: nox.Session) -> None:
    """Reference-target variants too slow for the test suite: bookshelf without its author index FAILs G2."""
    require_system(session, "git")
    session.install("-e", ".[test]")
    variant_tests = str(REPO / "tests" / "reference" / "test_bookshelf_load.py")
    session.run("pytest", "-q", "-p", "no:cacheprovider", variant_tests, env={"CERTIFY_REFERENCE_LOAD": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint and format check) and mypy --strict on harness/ and gates/."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "harness", "gates")
    session.run("mypy")


@nox.session
def verify(session: nox.Session) -> None:
    """Re-check an evidence pack offline: `nox -s verify -- PACK` (default: the newest pack)."""
    session.install("-e", ".")
    if session.posargs:
        pack = session.posargs[0]
    else:
        packs = sorted(ARTIFACTS.glob("*/manifest.json"))
        if not packs:
            session.error(f"no pack under {ARTIFACTS}; pass one: nox -s verify -- PACK")
        pack = str(packs[-1].parent)
    session.run("certify", "verify", pack)
