"""Auto-regression detection after a run and its alert hooks (harness/watch.py, harness/notify.py)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.config import NotifySection
from harness.notify import post
from harness.watch import turned_red
from tests.conftest import GitTarget, RunCertify, commit_all


class Receiver:
    """A local webhook receiver answering with the given statuses in turn (then 200), keeping every body."""

    def __init__(self, statuses: list[int]) -> None:
        """Start serving on 127.0.0.1 on a free port."""
        self.statuses, self.bodies = list(statuses), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                del args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving and join the thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """A receiver whose statuses come from the test's `statuses` parameter (default: always 200)."""
    hook = Receiver(getattr(request, "param", []))
    yield hook
    hook.close()


@pytest.mark.parametrize("receiver", [[500]], indirect=True)
def test_a_500_is_retried_and_then_delivered(receiver: Receiver) -> None:
    """The receiver answers 500 once: the second attempt delivers the same payload."""
    outcome = post(receiver.url, {"hello": 1}, NotifySection(timeout_s=2, retries=2))
    assert outcome.delivered
    assert outcome.attempts == 2
    assert receiver.bodies == [{"hello": 1}, {"hello": 1}]


@pytest.mark.parametrize("receiver", [[404]], indirect=True)
def test_a_4xx_is_not_retried_and_a_dead_receiver_is_reported(receiver: Receiver) -> None:
    """A 404 is one attempt, not delivered; a port nobody listens on fails after every retry."""
    refused = post(receiver.url, {}, NotifySection(timeout_s=2, retries=2))
    assert (refused.delivered, refused.attempts, refused.detail) == (False, 1, "HTTP 404")
    receiver.close()
    dead = post(receiver.url, {}, NotifySection(timeout_s=1, retries=1))
    assert (dead.delivered, dead.attempts) == (False, 2)
    assert "FAILED after 2 attempt(s)" in dead.line()


def test_only_pass_to_fail_or_error_is_turning_red() -> None:
    """PASS -> FAIL and PASS -> ERROR turn red; FAIL -> FAIL, PASS -> INCONCLUSIVE and a new gate do not."""
    before = {"G1": "PASS", "G2": "PASS", "G3": "FAIL", "G4": "PASS"}
    now = {"G1": "FAIL", "G2": "ERROR", "G3": "FAIL", "G4": "INCONCLUSIVE", "G5": "FAIL"}
    assert [r["gate"] for r in turned_red(before, now)] == ["G1", "G2"]


def test_a_gate_turning_red_alerts_the_webhook_and_the_command(
    git_target: GitTarget, run_certify: RunCertify, receiver: Receiver, tmp_path: Path
) -> None:
    """Run 1 PASSes ID, run 2 (dirty tree, release) FAILs it: both hooks get the alert; the exit code stays 1."""
    target = git_target("tiny")
    heard = tmp_path / "heard.json"
    command = [sys.executable, "-c", f"import sys, pathlib; pathlib.Path({str(heard)!r}).write_text(sys.stdin.read())"]
    with (target / "certify.toml").open("a", encoding="utf-8") as toml:
        toml.write(f"\n[notify]\nwebhooks = [{json.dumps(receiver.url)}]\ncommand = {json.dumps(command)}\n")
    commit_all(target, "hooks")
    first = run_certify("run", "--target", target, "--gates", "ID", "--out", tmp_path / "packs" / "one")
    assert first.returncode == 0, first.stderr
    assert "regression watch: no earlier complete release run of tiny recorded" in first.stdout
    (target / "tiny" / "__init__.py").write_text('"""Changed."""\n\n__version__ = "1.2.3"\n', encoding="utf-8")
    second = run_certify("run", "--target", target, "--gates", "ID", "--out", tmp_path / "packs" / "two")
    assert second.returncode == 1, second.stderr
    assert "1 gate(s) turned red (ID), 0 regression(s)" in second.stdout
    assert f"notify: {receiver.url}: delivered after 1 attempt(s) (HTTP 200)" in second.stdout
    (alert,) = receiver.bodies
    assert alert["events"] == ["gate_red"]
    assert alert["gates_turned_red"] == [{"gate": "ID", "was": "PASS", "now": "FAIL"}]
    assert Path(alert["baseline"]["pack"]).name == "one"
    assert json.loads(heard.read_text(encoding="utf-8")) == alert
    assert second.stdout.strip().splitlines()[-1].startswith("NOT CERTIFIED")
    receiver.close()
    third = run_certify("run", "--target", target, "--gates", "ID", "--out", tmp_path / "packs" / "three")
    assert third.returncode == 1
    assert "0 gate(s) turned red" in third.stdout  # it was already red in run two
