"""The certifier's policy (issue #16): deviations of fixture copies of the reference target, bad policies, verify."""

from __future__ import annotations

import datetime as dt
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import load_config, parse_config, resolved_json
from harness.deviations import RunArgs, deviations, effective_config
from harness.errors import ConfigError
from harness.model import Measurement
from harness.policy import load_policy, parse_policy, standard_policy
from harness.requirements import requirement_catalogue
from tests.harness.packs import REPO, committed_copy, guardian_copy

GUARDIAN = REPO / "examples" / "guardian"
STANDARD = (REPO / "harness" / "policies" / "standard.toml").read_text(encoding="utf-8")
TODAY = dt.datetime.now(dt.UTC).date()


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the real `certify` entry point (no test policy injected) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )


def guardian_config_copy(tmp_path: Path, old: str = "", new: str = "", append: str = "") -> Path:
    """A directory holding guardian's certify.toml (and pyproject.toml) with one edit; enough for `policy check`."""
    target = tmp_path / "guardian"
    target.mkdir()
    shutil.copy2(GUARDIAN / "pyproject.toml", target / "pyproject.toml")
    text = (GUARDIAN / "certify.toml").read_text(encoding="utf-8")
    if old:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    (target / "certify.toml").write_text(text + append, encoding="utf-8")
    return target


def org_policy(tmp_path: Path, extra: str) -> Path:
    """The standard policy plus extra TOML (e.g. a [[waivers]] entry), written as an organisation's file."""
    path = tmp_path / "org-policy.toml"
    path.write_text(STANDARD + extra, encoding="utf-8")
    return path


WAIVER_G5 = """
[[waivers]]
gate = "G5"
finding = "PYSEC-2099-1"
reason = "we accept it"
owner = "guardian team"
expires = 2099-01-01
"""

WEAKENED = [
    (
        "required gates dropped",
        'required_gates = ["ID", "G1", "G2", "G3", "G4", "G5", "G6", "G7", "G8", "PB", "E2E"]',
        'required_gates = ["ID", "G8"]',
        "",
        "required-gate:G5",
    ),
    (
        "G1 floor lowered",
        "min_overall_line_pct = 75",
        "min_overall_line_pct = 1",
        "",
        "limit:gates.G1.min_overall_line_pct",
    ),
    (
        "p99 ceiling raised",
        "[gates.G2.profiles.P3]\nmix = { orchestrate = 3, dependency = 1 }\np99_ms = 250",
        "[gates.G2.profiles.P3]\nmix = { orchestrate = 3, dependency = 1 }\np99_ms = 60000",
        "",
        "limit:gates.G2.profiles.P3.p99_ms",
    ),
    (
        "G4 recovery budget raised",
        "recovery_budget_s = 60",
        "recovery_budget_s = 600",
        "",
        "limit:gates.G4.recovery_budget_s",
    ),
    (
        "diff base emptied (diff coverage and changed-line mutants off)",
        "[gates.G1]\n",
        '[gates.G1]\ndiff_base = ""\n',
        "",
        "limit:gates.G1.diff_base",
    ),
    ("self-granted waiver", "", "", WAIVER_G5, "requested-waiver:G5:PYSEC-2099-1"),
    ("N/A where forbidden", "", "", "", "not-applicable:G5"),
]


@pytest.mark.parametrize(("case", "old", "new", "append", "deviation"), WEAKENED, ids=[w[0] for w in WEAKENED])
def test_weakened_copy_is_not_certifiable(  # noqa: PLR0917 - one parameter per column of WEAKENED
    tmp_path: Path, case: str, old: str, new: str, append: str, deviation: str
) -> None:
    """Each weakening of guardian's certify.toml is a blocking deviation named by `certify policy check` (exit 4)."""
    if case == "N/A where forbidden":
        old = 'sign_off = ["Release captain", "Service owner (guardian)", "Security reviewer"]'
        new = old + '\nnot_applicable = { G5 = "we have no dependencies" }'
    target = guardian_config_copy(tmp_path, old, new, append)
    proc = cli("policy", "check", "--target", target)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"BLOCKING {deviation}:" in proc.stdout
    assert proc.stdout.splitlines()[1].startswith("NOT CERTIFIABLE")
    assert "Traceback" not in proc.stderr


def test_unmodified_reference_target_has_no_deviation() -> None:
    """examples/guardian/certify.toml as committed has zero deviations under the standard policy, in under a second."""
    report = deviations(standard_policy(), load_config(GUARDIAN), RunArgs("release", None, TODAY))
    assert report.deviations == ()
    proc = cli("policy", "check", "--target", GUARDIAN)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no deviation" in proc.stdout


LOOSENED = [
    ("G1", "min_diff_pct", 10.0),
    ("G2", "ci_min_arrivals", 50),
    ("G4", "repetitions", 1),
    ("G4", "healthy_latency_s", 30.0),
    ("G4", "stable_s", 0.1),
    ("G4", "steady_probes", 1),
    ("G6", "tolerance", 0.5),
    ("G6", "min_valid_log_share", 0.5),
    ("G8", "min_section_words", 1),
    ("PB", "repetitions", 1),
    ("E2E", "pixel_tolerance", 255),
]


@pytest.mark.parametrize(("gate", "key", "value"), LOOSENED, ids=[f"{g}.{k}" for g, k, _ in LOOSENED])
def test_every_judging_threshold_has_a_limit(gate: str, key: str, value: float) -> None:
    """Loosening any of these G1/G2/G4/G6/G8/PB/E2E thresholds in certify.toml is a blocking deviation."""
    data = load_config(GUARDIAN).model_dump(mode="json", exclude_none=True)
    data["gates"].setdefault(gate, {})[key] = value
    report = deviations(standard_policy(), parse_config(data, "certify.toml"), RunArgs("release", None, TODAY))
    assert f"limit:gates.{gate}.{key}" in [d.id for d in report.blocking]


def test_gates_subset_in_release_mode_is_a_deviation() -> None:
    """`--gates ID,G8` in release mode leaves nine required gates out, each a blocking deviation; in ci mode none."""
    release = cli("policy", "check", "--target", GUARDIAN, "--gates", "ID,G8")
    assert release.returncode == 4
    assert "BLOCKING gates-subset:G1:" in release.stdout
    assert cli("policy", "check", "--target", GUARDIAN, "--gates", "ID,G8", "--mode", "ci").returncode == 0


def test_expired_policy_waiver_is_not_honoured(tmp_path: Path) -> None:
    """A policy waiver past its expiry accepts nothing and says it expired."""
    target = guardian_config_copy(tmp_path, "min_overall_line_pct = 75", "min_overall_line_pct = 70")
    policy = org_policy(
        tmp_path,
        '\n[[waivers]]\ngate = "G1"\ndeviation = "limit:gates.G1.min_overall_line_pct"\nvalue = 70\n'
        'reason = "legacy module"\nowner = "guardian team"\napproved_by = "QA board"\nexpires = 2020-01-01\n',
    )
    proc = cli("policy", "check", "--target", target, "--policy", policy)
    assert proc.returncode == 4
    assert "BLOCKING limit:gates.G1.min_overall_line_pct:" in proc.stdout
    assert "expired on 2020-01-01" in proc.stdout


def test_matching_policy_waiver_makes_it_certifiable(tmp_path: Path) -> None:
    """An unexpired policy waiver naming the exact deviation and value accepts it, printed with owner and expiry."""
    target = guardian_config_copy(tmp_path, "min_overall_line_pct = 75", "min_overall_line_pct = 70")
    policy = org_policy(
        tmp_path,
        '\n[[waivers]]\ngate = "G1"\ndeviation = "limit:gates.G1.min_overall_line_pct"\nvalue = 70\n'
        'reason = "legacy module"\nowner = "guardian team"\napproved_by = "QA board"\nexpires = 2099-06-30\n',
    )
    proc = cli("policy", "check", "--target", target, "--policy", policy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "waived   limit:gates.G1.min_overall_line_pct" in proc.stdout
    assert "owner guardian team" in proc.stdout
    assert "until 2099-06-30" in proc.stdout


def test_waiver_for_another_value_is_not_honoured(tmp_path: Path) -> None:
    """A limit waiver accepting 70 does not accept 60: it says which value it accepts."""
    loaded = parse_policy(
        (
            STANDARD + '\n[[waivers]]\ngate = "G1"\ndeviation = "limit:gates.G1.min_overall_line_pct"\nvalue = 70\n'
            'reason = "r"\nowner = "o"\napproved_by = "a"\nexpires = 2099-01-01\n'
        ).encode(),
        "org.toml",
    )
    config = load_config(guardian_config_copy(tmp_path, "min_overall_line_pct = 75", "min_overall_line_pct = 60"))
    report = deviations(loaded, config, RunArgs("release", None, TODAY))
    assert [d.id for d in report.blocking] == ["limit:gates.G1.min_overall_line_pct"]
    assert "accepts value 70; certify.toml has 60" in report.waivers_not_honoured[0]


def test_effective_config_judges_at_the_policy_bound(tmp_path: Path) -> None:
    """A lowered G1 floor reaches the gate as the policy's 75; required gates (release: + SOAK) come from the policy."""
    config = load_config(
        guardian_config_copy(
            tmp_path,
            'required_gates = ["ID", "G1", "G2", "G3", "G4", "G5", "G6", "G7", "G8", "PB", "E2E"]',
            'required_gates = ["ID"]',
        )
    )
    loaded = standard_policy()
    weak = parse_config(
        {**resolved_json(config), "gates": {**resolved_json(config)["gates"], "G1": {"min_overall_line_pct": 1}}}, "x"
    )
    report = deviations(loaded, weak, RunArgs("release", None, TODAY))
    effective = effective_config(loaded, weak, report)
    assert effective.policy("G1").min_overall_line_pct == 75
    meta = loaded.policy.policy
    assert effective.certificate.required_gates == (*meta.required_gates, *meta.release_gates)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[policy]\nname = 'x'\nversion = '1'\nrequired_gates = []\nbogus = 1\n", "policy.bogus: unknown key"),
        ("[policy\n", "invalid TOML"),
        (
            "[policy]\nname = 'x'\nversion = '1'\nrequired_gates = []\n[limits]\n"
            "'gates.G1.min_critical_pct' = { floor = 'high' }\n",
            "limits.\"gates.G1.min_critical_pct\".floor: got 'high'",
        ),
        (
            "[policy]\nname = 'x'\nversion = '1'\nrequired_gates = []\n[[waivers]]\ngate = 'G5'\nfinding = 'X'\n"
            "reason = 'r'\nowner = 'o'\napproved_by = 'a'\n",
            "waivers.0.expires: missing required key",
        ),
        (
            "[policy]\nname = 'x'\nversion = '1'\nrequired_gates = []\n[[waivers]]\ngate = 'G5'\nfinding = 'X'\n"
            "reason = 'r'\napproved_by = 'a'\nexpires = 2099-01-01\n",
            "waivers.0.owner: missing required key",
        ),
    ],
    ids=["unknown key", "not TOML", "limit of the wrong type", "waiver without expiry", "waiver without owner"],
)
def test_bad_policy_is_one_line_and_exit_2(tmp_path: Path, text: str, expected: str) -> None:
    """A policy that does not parse or validate is one error line naming file and key, exit 2, nothing written."""
    policy = tmp_path / "bad.toml"
    policy.write_text(text, encoding="utf-8")
    out = tmp_path / "pack"
    proc = cli("run", "--target", GUARDIAN, "--policy", policy, "--out", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert str(policy) in line
    assert expected in line
    assert not out.exists()
    assert "Traceback" not in proc.stderr


def test_policy_show_names_the_standard_policy() -> None:
    """`certify policy show` prints name, version, sha256 and the G4 ceiling of the standard policy."""
    proc = cli("policy", "show")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"policy standard 9 (sha256 {standard_policy().sha256})")
    assert "gates.G4.recovery_budget_s <= 60" in proc.stdout


def test_verify_under_another_policy_is_a_mismatch(tmp_path: Path) -> None:
    """A pack judged under one policy verifies under the same file and is a one-line mismatch under another (exit 1)."""
    target = committed_copy("tiny", tmp_path / "tiny")
    fixture_policy = REPO / "tests" / "fixtures" / "policies" / "fixture-targets.toml"
    out = tmp_path / "pack"
    run = cli("run", "--target", target, "--policy", fixture_policy, "--out", out, "--mode", "ci")
    assert "Traceback" not in run.stderr, run.stderr
    same = cli("verify", out, "--policy", fixture_policy)
    assert same.returncode == 0, same.stdout
    assert "judged under policy fixture-targets 1" in same.stdout
    other = cli("verify", out)
    assert other.returncode == 0, other.stdout
    standard = cli("verify", out, "--policy", REPO / "harness" / "policies" / "standard.toml")
    assert standard.returncode == 1
    assert "policy mismatch: the pack was judged under fixture-targets 1" in standard.stdout


@pytest.mark.integration
def test_release_run_with_a_lowered_floor_names_it_on_the_certificate(tmp_path: Path) -> None:
    """A real release run (--gates ID) of guardian with G1's floor lowered exits 4, NOT CERTIFIED, deviations first."""
    target = guardian_copy(tmp_path / "g")
    config = target / "certify.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("min_overall_line_pct = 75", "min_overall_line_pct = 1")
    )
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e.invalid", "commit", "-qam", "weaken"], cwd=target, check=True
    )
    out = tmp_path / "pack"
    proc = cli("run", "--target", target, "--mode", "release", "--gates", "ID", "--out", out)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"NOT CERTIFIABLE under policy standard {standard_policy().version}" in proc.stdout
    assert proc.stdout.index("BLOCKING limit:gates.G1.min_overall_line_pct") < proc.stdout.index("plan (release")
    page = (out / "production_readiness_certificate.md").read_text(encoding="utf-8")
    first_screen = "\n".join(page.splitlines()[:20])
    assert "## Verdict: **NOT CERTIFIED**" in first_screen
    assert f"policy **standard {standard_policy().version}**, sha256 {standard_policy().sha256}" in first_screen
    assert (
        "limit:gates.G1.min\\_overall\\_line\\_pct" in first_screen
        or "limit:gates.G1.min_overall_line_pct" in first_screen
    )
    assert "| **G5** " not in page  # gate table rows use the plain id
    assert "required gate G5 was not run: left out by --gates" in page
    assert 'name="policy_sha256"' in (out / "junit.xml").read_text(encoding="utf-8")
    assert "Deviations from the policy" in (out / "summary.md").read_text(encoding="utf-8")
    assert cli("verify", out).returncode == 0


# ------------------------------------------------------------------ properties of the pure evaluation

LIMIT_KEYS = [
    key
    for key, limit in standard_policy().policy.limits.items()
    if limit.floor is not None or limit.ceiling is not None
]


def _numeric_paths() -> list[tuple[str, float | None, float | None]]:
    """(key, floor, ceiling) of the standard policy's numeric limits without wildcards."""
    limits = standard_policy().policy.limits
    return [(k, limits[k].floor, limits[k].ceiling) for k in LIMIT_KEYS if "*" not in k]


NUMERIC = _numeric_paths()


def _with(data: dict, key: str, value: float) -> dict:  # type: ignore[type-arg]
    """A copy of resolved config data with one dotted key set."""
    import copy  # noqa: PLC0415

    data = copy.deepcopy(data)
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return data


BASE = resolved_json(load_config(GUARDIAN))


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(0, len(NUMERIC) - 1),
    target_value=st.floats(0.001, 100000, allow_nan=False),
    tighter_by=st.floats(0, 1000, allow_nan=False),
    measured=st.floats(0, 100000, allow_nan=False),
)
def test_tightening_a_threshold_never_turns_fail_into_pass(
    index: int, target_value: float, tighter_by: float, measured: float
) -> None:
    """Judged at the effective threshold, a measurement that FAILs still FAILs when certify.toml tightens the value."""
    key, floor, _ = NUMERIC[index]
    comparator = ">=" if floor is not None else "<="
    tighter = target_value + tighter_by if floor is not None else max(target_value - tighter_by, 0.001)
    loaded = standard_policy()

    def effective_threshold(value: float) -> float:
        """The threshold the gate is judged against when certify.toml says `value`."""
        try:
            config = parse_config(_with(BASE, key, value), "x")
        except ConfigError:  # values outside the config model's own range are not a config
            return float("nan")
        report = deviations(loaded, config, RunArgs("release", None, TODAY))
        node = resolved_json(effective_config(loaded, config, report))
        for part in key.split("."):
            node = node[part]
        return float(node)

    loose, tight = effective_threshold(target_value), effective_threshold(tighter)
    if math.isnan(loose) or math.isnan(tight):  # the value is not a valid config at all
        return
    before = Measurement.judged("m", measured, comparator, loose).passed  # type: ignore[arg-type]
    after = Measurement.judged("m", measured, comparator, tight).passed  # type: ignore[arg-type]
    assert before or not after


MUTATIONS = {
    "floor": ("gates.G1.min_overall_line_pct", 10.0),
    "p99": ("gates.G2.profiles.P2.p99_ms", 50000.0),
    "g4": ("gates.G4.recovery_budget_s", 500.0),
    "g3": ("gates.G3.max_error_rate", 0.5),
    "pb": ("gates.PB.expected_count", 3),
    "g7": ("bootstrap.budget_s", 5000.0),
}


@settings(max_examples=40, deadline=None)
@given(
    chosen=st.sets(st.sampled_from(sorted(MUTATIONS))),
    extra=st.sampled_from(sorted(MUTATIONS)),
    drop=st.sets(st.sampled_from(["G1", "G2", "G5", "PB"])),
    subset=st.booleans(),
)
def test_a_deviation_never_disappears_when_another_is_added(
    chosen: set[str], extra: str, drop: set[str], subset: bool
) -> None:
    """Adding one more weakening to certify.toml keeps every deviation the smaller set had."""
    loaded = standard_policy()
    args = RunArgs("release", ("ID", "G8") if subset else None, TODAY)

    def ids(names: set[str]) -> set[str]:
        """Deviation ids of guardian's config with the named mutations and dropped gates."""
        data = BASE
        for name in names:
            data = _with(data, *MUTATIONS[name])
        data = {
            **data,
            "certificate": {
                **data["certificate"],
                "required_gates": [g for g in data["certificate"]["required_gates"] if g not in drop],
            },
        }
        return {d.id for d in deviations(loaded, parse_config(data, "x"), args).deviations}

    assert ids(chosen) <= ids(chosen | {extra})


def test_load_policy_reads_the_same_bytes_it_hashes(tmp_path: Path) -> None:
    """The sha256 a policy is named by is the sha256 of its file's bytes."""
    import hashlib  # noqa: PLC0415

    path = org_policy(tmp_path, "")
    assert load_policy(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_standard_policy_gives_every_catalogue_requirement_a_scope() -> None:
    """Each catalogue id is in the standard policy's scope or out of it with a reason, never neither or both."""
    meta = standard_policy().policy.policy
    ids = set(requirement_catalogue().ids)
    assert set(meta.requirements) | set(meta.out_of_scope) == ids
    assert not set(meta.requirements) & set(meta.out_of_scope)
    assert all(reason.strip() for reason in meta.out_of_scope.values())
