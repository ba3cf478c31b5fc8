"""Standard policy 3's limits on the target-side settings that were unbounded (issue #16): one fixture copy each."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from harness.config import load_config
from harness.deviations import RunArgs, deviations, effective_config
from harness.policy import PolicyError, parse_policy, standard_policy
from tests.harness.test_policy import GUARDIAN, STANDARD, cli, guardian_config_copy

TODAY = dt.datetime.now(dt.UTC).date()
RELEASE = RunArgs("release", None, TODAY)
GPU = 'title = "GPU memory pressure"'
#: A task p99 just over each profile's ceiling.
LOOSER_TASK_P99_MS = {"P1": 2001, "P2": 4001, "P3": 8001, "P4": 2001, "P5": 6001}
FAULT = 'expect_alerts = ["GuardianDependencyCircuitOpen", "GuardianWorkerCrashLoop"]'
SHARED = "[gates.G6.shared]"
LATENCY = 'histogram = "guardian_http_request_duration_seconds"\nlabels = { route = "/api/tasks", method = "POST" }\n'
G8 = 'repo_subdir = "examples/guardian"'
G5 = "max_advisory_age_days = 30"


def _task_p99(pid: str, looser: int) -> tuple[str, str]:
    """guardian's [gates.G2.profiles.<pid>] up to its task_p99_ms line, and the same with `looser` there."""
    text = (GUARDIAN / "certify.toml").read_text(encoding="utf-8")
    start = text.index(f"[gates.G2.profiles.{pid}]")
    line = text.index("task_p99_ms = ", start)
    old = text[start : text.index("\n", line)]
    return old, old[: line - start] + f"task_p99_ms = {looser}"


#: (case, text of guardian's certify.toml, the same with a looser value, the deviation it must be).
LOOSER = [
    (
        "G4 experiment optional",
        GPU,
        GPU + "\noptional = true",
        "limit:gates.G4.experiments[C4-gpu].optional",
    ),
    *(
        (f"G2 {pid} task_p99_ms", *_task_p99(pid, looser), f"limit:gates.G2.profiles.{pid}.task_p99_ms")
        for pid, looser in LOOSER_TASK_P99_MS.items()
    ),
    (
        "G6 client_overhead_ms",
        'name = "POST /api/tasks latency"\n' + LATENCY,
        'name = "POST /api/tasks latency"\n' + LATENCY + "client_overhead_ms = 500\n",
        "limit:gates.G6.latency_checks[POST /api/tasks latency].client_overhead_ms",
    ),
    ("G6 fault log_levels", FAULT, FAULT + '\nlog_levels = ["INFO", "WARNING"]', "limit:gates.G6.fault.log_levels"),
    ("G6 shared gates", SHARED, SHARED + "\ngates = []", "limit:gates.G6.shared.gates"),
    ("G6 quiet_during_load", SHARED, SHARED + "\nquiet_during_load = false", "limit:gates.G6.shared.quiet_during_load"),
    ("G6 shared grace_s", SHARED, SHARED + "\ngrace_s = 120", "limit:gates.G6.shared.grace_s"),
    ("G8 quickstart_budget_s", G8, G8 + "\nquickstart_budget_s = 900", "limit:gates.G8.quickstart_budget_s"),
    ("G8 runbook_sections", G8, G8 + '\nrunbook_sections = ["symptoms"]', "limit:gates.G8.runbook_sections"),
    ("G8 required_docs", G8, G8 + "\nrequired_docs = []", "limit:gates.G8.required_docs"),
    ("G8 placeholder_phrases", G8, G8 + '\nplaceholder_phrases = ["TODO"]', "limit:gates.G8.placeholder_phrases"),
    ("G8 D4 words", G8, G8 + "\nmin_troubleshooting_words = 1", "limit:gates.G8.min_troubleshooting_words"),
    ("G5 lock_hashes", G5, G5 + "\nlock_hashes = false", "limit:gates.G5.lock_hashes"),
]


@pytest.mark.parametrize(("case", "old", "new", "deviation"), LOOSER, ids=[row[0] for row in LOOSER])
def test_looser_setting_is_a_named_deviation(tmp_path: Path, case: str, old: str, new: str, deviation: str) -> None:
    """A guardian copy with this one setting looser than standard policy 3 has exactly that blocking deviation."""
    del case
    target = guardian_config_copy(tmp_path, old, new)
    report = deviations(standard_policy(), load_config(target), RELEASE)
    assert [d.id for d in report.blocking] == [deviation]


def test_policy_check_names_an_optional_experiment_and_exits_4(tmp_path: Path) -> None:
    """`certify policy check` on a copy marking C4-gpu optional prints that deviation first and exits 4."""
    proc = cli("policy", "check", "--target", guardian_config_copy(tmp_path, GPU, GPU + "\noptional = true"))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[2].startswith("  BLOCKING limit:gates.G4.experiments[C4-gpu].optional: ")
    assert "Traceback" not in proc.stderr


def test_optional_experiment_is_judged_required_unless_the_policy_exempts_it(tmp_path: Path) -> None:
    """An optional experiment is judged as required under the standard policy; one the policy exempts stays optional."""
    config = load_config(guardian_config_copy(tmp_path, GPU, GPU + "\noptional = true"))
    standard = standard_policy()
    judged = effective_config(standard, config, deviations(standard, config, RELEASE))
    assert {e.id: e.optional for e in judged.policy("G4").experiments}["C4-gpu"] is False
    key = '"gates.G4.experiments.*.optional" = { equals = false, '
    assert STANDARD.count(key) == 1
    exempting = parse_policy(STANDARD.replace(key, key + 'exempt = ["C4-gpu"], ').encode(), "org.toml")
    report = deviations(exempting, config, RELEASE)
    assert report.deviations == ()
    kept = effective_config(exempting, config, report)
    assert {e.id: e.optional for e in kept.policy("G4").experiments}["C4-gpu"] is True
    assert "== false (except C4-gpu)" in exempting.policy.limits["gates.G4.experiments.*.optional"].text()


def test_subset_of_judges_at_the_allowed_levels(tmp_path: Path) -> None:
    """A log_levels list with a level the policy does not allow is judged at its allowed levels only."""
    config = load_config(guardian_config_copy(tmp_path, FAULT, FAULT + '\nlog_levels = ["INFO", "ERROR"]'))
    standard = standard_policy()
    judged = effective_config(standard, config, deviations(standard, config, RELEASE))
    assert judged.policy("G6").fault.log_levels == ("ERROR",)


def test_exempt_on_a_key_without_a_wildcard_is_a_policy_error() -> None:
    """`exempt` on a plain key is rejected when the policy is read, naming the key."""
    key = '"gates.G4.stable_s" = { floor = 2, '
    with pytest.raises(PolicyError, match=r"limit 'gates.G4.stable_s': exempt needs a key with `\*`"):
        parse_policy(STANDARD.replace(key, key + 'exempt = ["x"], ').encode(), "org.toml")
