"""Pure parts of gate G5: licence expressions, OSV range matching, CVSS, severities, waivers and coverage rules."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from packaging.version import Version

from gates.security import SecurityGate, assess_all, cvss, licences, osv, sast, sbom, secret_scan, vulns
from gates.security.policy import (
    Finding,
    GrantedWaiver,
    JudgedSecurityPolicy,
    ScanResult,
    SecurityPolicy,
    Severity,
    apply_waivers,
    judge,
    severity_of,
    severity_of_score,
)
from harness.config import parse_config
from harness.model import Status
from tests.conftest import FIXTURE_TARGETS, DictView

ALLOW = SecurityPolicy().licence_allow
RUN_DATE = dt.date(2026, 11, 21)


# --- licences -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "decision"),
    [
        ("MIT", "allowed"),
        ("MIT OR GPL-3.0-only", "allowed"),
        ("MIT AND GPL-3.0-only", "denied"),
        ("(MIT OR Apache-2.0) AND BSD-3-Clause", "allowed"),
        ("(MIT OR GPL-2.0-only) AND (GPL-3.0-only OR LGPL-3.0-only)", "denied"),
        ("GPL-2.0-or-later WITH Classpath-exception-2.0", "denied"),
        ("Apache-2.0 WITH LLVM-exception", "allowed"),
        ("mit or apache license 2.0", "allowed"),
        ("Some Custom License", "unknown"),
        ("MIT OR Some Custom License", "allowed"),
        ("GPL OR Some Custom License", "unknown"),
        ("MIT AND Some Custom License", "unknown"),
        ("GPL AND Some Custom License", "denied"),
    ],
)
def test_licence_expressions_follow_or_any_and_all(expression: str, decision: str) -> None:
    """OR passes if any operand is allowed, AND only if all are; unrecognised names are unknown, not allowed."""
    assert licences.decide(licences.parse(expression), ALLOW) == decision


def test_and_binds_tighter_than_or() -> None:
    """`A OR B AND C` reads as `A OR (B AND C)`, as in SPDX."""
    parsed = licences.parse("GPL-3.0-only OR MIT AND Apache-2.0")
    assert licences.render(parsed) == "(GPL-3.0-only OR (MIT AND Apache-2.0))"
    assert licences.decide(parsed, ALLOW) == "allowed"
    assert licences.decide(licences.parse("MIT OR GPL-3.0-only AND Apache-2.0"), ("GPL-3.0-only",)) == "denied"


@pytest.mark.parametrize("broken", ["(MIT OR Apache-2.0", "MIT OR", "MIT )"])
def test_malformed_expressions_raise(broken: str) -> None:
    """Unbalanced parentheses and dangling operators are parse errors, not silently accepted."""
    with pytest.raises(licences.ExpressionError):
        licences.parse(broken)


@pytest.mark.parametrize(
    ("entry", "rendered", "source", "decision"),
    [
        (
            {"License-Expression": "Apache-2.0 OR BSD-2-Clause", "License-Metadata": "GPL", "License-Classifier": ""},
            "(Apache-2.0 OR BSD-2-Clause)",
            "License-Expression",
            "allowed",
        ),
        (
            {"License-Expression": "UNKNOWN", "License-Metadata": "GPL", "License-Classifier": "GNU GPL v2+"},
            "GPL",
            "License field",
            "denied",
        ),
        (
            {"License-Expression": "UNKNOWN", "License-Metadata": "UNKNOWN", "License-Classifier": "MIT License"},
            "MIT",
            "classifier",
            "allowed",
        ),
        (
            {
                "License-Expression": "UNKNOWN",
                "License-Metadata": "Dual License",
                "License-Classifier": "MIT License; GNU General Public License v3 (GPLv3)",
            },
            "(MIT AND GPL-3.0-only)",
            "classifiers, read as AND",
            "denied",
        ),
        (
            {"License-Expression": "BlueOak-1.0.0", "License-Metadata": "UNKNOWN", "License-Classifier": ""},
            "BlueOak-1.0.0",
            "License-Expression",
            "denied",
        ),
    ],
)
def test_package_licence_prefers_expression_then_field_then_classifiers(
    entry: dict[str, str], rendered: str, source: str, decision: str
) -> None:
    """PEP 639 expressions win, then a recognisable License field, then classifiers (several read as AND)."""
    expression, found = licences.package_licence(entry)
    assert expression is not None
    assert (licences.render(expression), found, licences.decide(expression, ALLOW)) == (rendered, source, decision)


def test_package_without_licence_metadata_is_unknown_at_the_policy_severity() -> None:
    """No licence anywhere is an unknown-licence finding at licence_unknown_severity (medium by default)."""
    entry = {"Name": "mystery", "Version": "1.0", "License-Expression": "UNKNOWN", "License-Metadata": "UNKNOWN"}
    finding, row = licences._finding({**entry, "License-Classifier": "UNKNOWN"}, SecurityPolicy())
    assert finding is not None
    assert (finding.id, finding.severity, row["decision"]) == ("licence:mystery", Severity.MEDIUM, "unknown")


def test_classifier_texts_normalise_to_spdx() -> None:
    """Trove classifier names (with or without their prefix) map onto SPDX ids."""
    assert licences.normalise("License :: OSI Approved :: MIT License") == "MIT"
    assert licences.normalise("Apache Software License") == "Apache-2.0"
    assert licences.normalise("GNU Lesser General Public License v3 or later (LGPLv3+)") == "LGPL-3.0-or-later"
    assert licences.normalise("Other/Proprietary License") is None


# --- OSV matching ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "version", "affected"),
    [
        ([{"introduced": "0"}, {"fixed": "2.0"}], "1.9", True),
        ([{"introduced": "0"}, {"fixed": "2.0"}], "2.0", False),
        ([{"introduced": "1.0"}, {"last_affected": "1.5"}], "1.5", True),
        ([{"introduced": "1.0"}, {"last_affected": "1.5"}], "1.5.1", False),
        ([{"introduced": "1.0"}, {"last_affected": "1.5"}], "0.9", False),
        ([{"introduced": "3.0"}], "4.0", True),
        ([{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"fixed": "2.1"}], "1.5", False),
        ([{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"fixed": "2.1"}], "2.0.5", True),
        ([{"fixed": "2.1"}, {"introduced": "2.0"}, {"fixed": "1.2"}, {"introduced": "1.0"}], "1.1", True),
        ([{"introduced": "0"}, {"fixed": "1.26.5"}], "1.26.5rc1", True),
    ],
)
def test_ecosystem_ranges(events: list[dict[str, str]], version: str, affected: bool) -> None:
    """Introduced opens, fixed closes (exclusive), last_affected closes (inclusive); events sorted first."""
    assert osv.in_ranges(Version(version), events) is affected


def test_affects_uses_versions_list_package_name_and_withdrawn() -> None:
    """An explicit versions list matches; another package, another ecosystem or a withdrawn record never does."""
    record: dict[str, Any] = {
        "id": "PYSEC-1",
        "affected": [{"package": {"name": "Some_Pkg", "ecosystem": "PyPI"}, "versions": ["1.0", "1.1"]}],
    }
    assert osv.affects(record, "some-pkg", "1.0.0")
    assert not osv.affects(record, "some-pkg", "1.2")
    assert not osv.affects(record, "other", "1.0")
    assert not osv.affects({**record, "withdrawn": "2024-01-01T00:00:00Z"}, "some-pkg", "1.0")
    npm = {"id": "X", "affected": [{"package": {"name": "some-pkg", "ecosystem": "npm"}, "versions": ["1.0"]}]}
    assert not osv.affects(npm, "some-pkg", "1.0")


def test_fixture_database_finds_urllib3_advisories_and_its_date() -> None:
    """The shipped subset finds urllib3 1.26.0's advisories, not 1.26.18's, and dates itself from SNAPSHOT.txt."""
    db = osv.AdvisoryDatabase.load(FIXTURE_TARGETS / "sec-advisory-db")
    hits = {r["id"] for r in db.query("URLLib3", "1.26.0")}
    assert {"PYSEC-2021-59", "PYSEC-2023-192"} <= hits
    assert "PYSEC-2023-212" in hits
    assert not {r["id"] for r in db.query("urllib3", "1.26.19")} & {"PYSEC-2023-192", "PYSEC-2021-59"}
    described = db.describe()
    assert (described["date"], described["date_source"]) == ("2024-10-10", "SNAPSHOT.txt")
    assert described["commit"] == "3ccb612573e2511ab5cad7dafecd838605c80cda"
    assert all(isinstance(r.get("published", ""), str) for r in db.query("urllib3", "1.26.0"))


def test_local_service_answers_pip_audits_query_shape() -> None:
    """POST /v1/query gets {"vulns": [...]} or {}; the query is logged; other paths are refused."""
    db = osv.AdvisoryDatabase.load(FIXTURE_TARGETS / "sec-advisory-db")
    log = osv.QueryLog()

    def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")  # noqa: S310 - loopback
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    with osv.serve(db, log) as url:
        assert url.startswith("http://127.0.0.1:")
        found = post(url, {"package": {"name": "urllib3", "ecosystem": "PyPI"}, "version": "1.26.0"})
        assert "PYSEC-2023-192" in {v["id"] for v in found["vulns"]}
        assert post(url, {"package": {"name": "urllib3", "ecosystem": "PyPI"}, "version": "2.5.0"}) == {}
        with pytest.raises(urllib.error.HTTPError):
            post(
                url.replace("/v1/query", "/v1/querybatch"),
                {"package": {"name": "x", "ecosystem": "PyPI"}, "version": "1"},
            )
    assert [entry["version"] for entry in log.entries[:2]] == ["1.26.0", "2.5.0"]


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),
        ("CVSS:3.0/AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:N/A:N", 5.3),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:L/A:N", 3.3),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ("CVSS:3.1/AV:N/AC:L", None),
        ("AV:N/AC:L/Au:N/C:P/I:P/A:P", None),
    ],
)
def test_cvss3_base_scores(vector: str, score: float | None) -> None:
    """CVSS v3.x base scores match the specification's calculator; malformed or v2 vectors give None."""
    assert cvss.cvss3_base_score(vector) == score


# --- severities, waivers, merge --------------------------------------------------------------


def finding(fid: str, severity: Severity, *keys: str) -> Finding:
    """A finding for policy tests."""
    return Finding(scanner="bandit", rule="R", id=fid, severity=severity, title=f"title of {fid}", keys=keys)


def waiver(name: str, expires: str) -> dict[str, Any]:
    """A G5 waiver as stored in context.json."""
    return {"gate": "G5", "finding": name, "reason": "accepted", "owner": "owner@example.invalid", "expires": expires}


def test_severity_words_and_scores_map_onto_four_levels() -> None:
    """Tool words and CVSS scores map onto critical/high/medium/low; unknown words take the default."""
    assert severity_of("MEDIUM", Severity.HIGH) is Severity.MEDIUM
    assert severity_of("Moderate", Severity.HIGH) is Severity.MEDIUM
    assert severity_of("UNDEFINED", Severity.HIGH) is Severity.HIGH
    assert [severity_of_score(s) for s in (9.0, 8.9, 4.0, 3.9)] == [
        Severity.CRITICAL,
        Severity.HIGH,
        Severity.MEDIUM,
        Severity.LOW,
    ]


def test_active_waiver_waives_by_alias_and_expired_one_does_not() -> None:
    """An unexpired waiver naming an alias waives the finding; an expired one leaves it counted and adds a finding."""
    findings = [finding("vuln:a:PYSEC-1", Severity.HIGH, "CVE-1"), finding("bandit:B602:x.py:3", Severity.HIGH)]
    waivers = [waiver("cve-1", "2026-11-21"), waiver("bandit:B602:x.py:3", "2026-11-20")]
    judgement = apply_waivers(findings, waivers, RUN_DATE)
    assert [(f.id, u.finding) for f, u in judgement.waived] == [("vuln:a:PYSEC-1", "cve-1")]
    assert [f.id for f in judgement.unwaived] == ["bandit:B602:x.py:3", "waiver:bandit:B602:x.py:3"]
    assert judgement.unwaived[1].severity is Severity.MEDIUM
    verdict = judge([], judgement, SecurityPolicy())
    assert verdict.status is Status.FAIL
    assert verdict.details["waivers"][0]["matched"] == ["vuln:a:PYSEC-1"]
    assert verdict.details["expired_waivers"][0]["expires"] == "2026-11-20"


def scan(status: Status, *findings: Finding) -> ScanResult:
    """A scanner result for merge tests."""
    return ScanResult(
        "fake (bandit)",
        status,
        "covered something",
        reasons=() if status is Status.PASS else ("why",),
        findings=findings,
    )


def test_merge_needs_every_scanner_and_no_blocking_finding() -> None:
    """PASS only with every scanner PASS and nothing at or above fail_on; FAIL beats INCONCLUSIVE; fail_on moves."""
    medium = finding("m", Severity.MEDIUM)
    high = finding("h", Severity.HIGH)

    def status(results: list[ScanResult], policy: SecurityPolicy) -> Status:
        everything = [f for r in results for f in r.findings]
        return judge(results, apply_waivers(everything, [], RUN_DATE), policy).status

    assert status([scan(Status.PASS, medium)], SecurityPolicy()) is Status.PASS
    assert status([scan(Status.PASS, medium)], SecurityPolicy(fail_on="medium")) is Status.FAIL
    assert status([scan(Status.PASS), scan(Status.INCONCLUSIVE)], SecurityPolicy()) is Status.INCONCLUSIVE
    assert status([scan(Status.PASS), scan(Status.NOT_RUN)], SecurityPolicy()) is Status.NOT_RUN
    assert status([scan(Status.INCONCLUSIVE, high)], SecurityPolicy()) is Status.FAIL


# --- scanner coverage rules on crafted evidence ----------------------------------------------


def audit_evidence(dependencies: list[dict[str, Any]], stderr: str = "", report: bool = True) -> DictView:
    """Evidence of a pip-audit run without advisory_db (pip-audit's default service)."""
    files: dict[str, Any] = {
        vulns.RUN: {"returncode": 0 if report else 1, "timed_out": False, "cancelled": False, "stderr_tail": stderr},
        "inventory.json": {"distributions": [{"name": d["name"], "version": "1"} for d in dependencies]},
    }
    if report:
        files[vulns.REPORT] = {"dependencies": dependencies, "fixes": []}
    return DictView(files)


CONTEXT = {"run_date": "2026-11-21", "target_project": "svc", "dependency_file": "pyproject.toml"}


def test_pip_audit_that_skipped_everything_is_inconclusive_not_clean() -> None:
    """Exit 0 with every dependency skipped ("not found on PyPI") is INCONCLUSIVE with a hint, never PASS."""
    skip = "Dependency not found on PyPI and could not be audited: certifi (2026.1.1)"
    reader = audit_evidence([{"name": "certifi", "skip_reason": skip}, {"name": "svc", "skip_reason": "not on PyPI"}])
    result = vulns.assess(reader, SecurityPolicy(), CONTEXT)
    assert result.status is Status.INCONCLUSIVE
    assert "1 of 2 dependencies were not audited (certifi: Dependency not found" in result.reasons[0]
    assert "set advisory_db for an offline audit" in result.reasons[0]
    assert "pip-audit audited no dependency" in result.reasons[1]


#: stderr of real pip-audit runs that wrote no report (see its README.md).
PIP_AUDIT_STDERR = FIXTURE_TARGETS.parent / "pip-audit"
STDERR_FILE = "gates/G5/runs/04-pip-audit.stderr.txt"


def failed_audit(fixture: str, **database: Any) -> DictView:
    """Evidence of a pip-audit run that wrote no report, its stderr tail taken from a captured fixture."""
    stderr = (PIP_AUDIT_STDERR / f"{fixture}.stderr.txt").read_text(encoding="utf-8")
    files = dict(audit_evidence([], stderr[-1500:], report=False).files)
    files[vulns.RUN] = {**files[vulns.RUN], "stderr_file": STDERR_FILE}
    if database:
        files[vulns.DATABASE] = database
    return DictView(files)


def assert_readable(reason: str) -> None:
    """A reason quotes no raw tool output: no traceback frames, paths into site-packages or cut-off words."""
    for fragment in ("site-packages", 'File "', "Traceback", "^^^", "HTTPConnectionPool", "line 7"):
        assert fragment not in reason, reason


@pytest.mark.parametrize(
    ("fixture", "kind", "what"),
    [
        ("dns", "dns", "the host name api.osv.dev did not resolve"),
        ("refused", "unreachable", "the connection to 127.0.0.1 was refused or found no route"),
        ("read-timeout", "timeout", "the connection to 127.0.0.1 timed out"),
        ("connect-timeout", "timeout", "the connection to OSV's vulnerability feed timed out"),
    ],
)
def test_unreachable_vulnerability_service_gives_a_readable_reason(fixture: str, kind: str, what: str) -> None:
    """pip-audit failing to reach its service (DNS, refused, timeout) says so and what to do, quoting no stderr."""
    result = vulns.assess(failed_audit(fixture), SecurityPolicy(), CONTEXT)
    assert result.status is Status.INCONCLUSIVE
    (reason,) = result.reasons
    assert reason.startswith(f"pip-audit could not reach its vulnerability service ({what}), so no dependency")
    assert "Point `[gates.G5] advisory_db` at a local copy of the PyPA advisory database" in reason
    assert "run `certify advisory-db update` where the network allows" in reason
    assert f"its full output is in {STDERR_FILE}" in reason
    assert result.facts["failure"] == kind
    assert_readable(reason)


def test_other_pip_audit_failure_names_the_exception_and_the_output_file() -> None:
    """Another pip-audit failure (a service error) names the exception and the file, with no offline advice."""
    result = vulns.assess(failed_audit("service-error"), SecurityPolicy(), CONTEXT)
    (reason,) = result.reasons
    assert reason == (
        "pip-audit exited 1 with a Python traceback ending in pip_audit._service.interface.ServiceError; "
        f"its full output is in {STDERR_FILE}; it wrote no report, so no dependency was audited"
    )
    assert result.facts["failure"] == "tool"


def test_unreachable_local_service_is_called_a_harness_fault() -> None:
    """With a local database the only service is the harness's own on 127.0.0.1: no advice to configure one."""
    database = {
        "path": "/db",
        "source": "advisory_db",
        "records": 3,
        "date": "2026-11-20",
        "date_source": "SNAPSHOT.txt",
    }
    result = vulns.assess(failed_audit("refused", **database), SecurityPolicy(advisory_db="/db"), CONTEXT)
    (reason,) = result.reasons
    assert reason.startswith("pip-audit could not reach the harness's own advisory service on 127.0.0.1")
    assert "harness fault" in reason
    assert "advisory_db" not in reason
    assert_readable(reason)


@pytest.mark.parametrize(
    ("module", "run_file", "tool"),
    [(sast, sast.RUN, "bandit"), (sbom, sbom.RUN, "cyclonedx-py"), (licences, licences.RUN, "pip-licenses")],
)
def test_crashed_scanner_reason_names_the_exception_and_file_not_its_stderr(
    module: Any, run_file: str, tool: str
) -> None:
    """bandit, cyclonedx-py and pip-licenses crashing give one readable sentence naming the evidence file."""
    stderr = (PIP_AUDIT_STDERR / "dns.stderr.txt").read_text(encoding="utf-8")[-1500:]
    run = {"returncode": 2, "timed_out": False, "cancelled": False, "stderr_tail": stderr, "stderr_file": "f.txt"}
    files: dict[str, Any] = {run_file: run, sast.TARGETS: {"targets": ["pkg"]}}
    args = (SecurityPolicy(), CONTEXT) if module is not sast else (SecurityPolicy(),)
    (reason,) = module.assess(DictView(files), *args).reasons
    assert f"{tool} exited 2 with a Python traceback ending in requests.exceptions.ConnectionError" in reason
    assert reason.endswith("its full output is in f.txt")
    assert_readable(reason)


def test_failed_detect_secrets_batch_and_git_listing_quote_no_output() -> None:
    """A detect-secrets batch that exited non-zero with a plain message is named with its file, not quoted."""
    run = {"returncode": 1, "stderr_tail": "usage: detect-secrets\nerror: bad", "stderr_file": "b.txt", "files": 3}
    files = {secret_scan.FILES: {"tracked": 3, "scanned": ["a", "b", "c"]}, secret_scan.RUNS: [run]}
    (reason, *_) = secret_scan.assess(DictView(files), SecurityPolicy()).reasons
    assert reason == (
        "a detect-secrets batch of 3 files failed: detect-secrets exited 1 with an error message; "
        "its full output is in b.txt"
    )


def test_g5_waivers_come_from_the_policy_given_not_from_the_evidence() -> None:
    """A finding is waived under a policy granting it, counted under one that does not, whatever context.json says."""
    dep = {"name": "Req", "version": "1", "vulns": [{"id": "PYSEC-9", "aliases": ["CVE-9"], "fix_versions": ["2"]}]}
    view = audit_evidence([dep])
    view.files["context.json"] = {**CONTEXT, "waivers": [waiver("CVE-9", "2099-01-01")]}  # an older pack's copy
    granted = GrantedWaiver(finding="CVE-9", reason="accepted", owner="o@example.invalid", expires=dt.date(2099, 1, 1))
    _, waived = assess_all(view, JudgedSecurityPolicy(waivers=(granted,)))
    _, counted = assess_all(view, JudgedSecurityPolicy())
    assert [f.id for f, _ in waived.waived] == ["vuln:req:PYSEC-9"]
    assert [f.id for f in counted.unwaived] == ["vuln:req:PYSEC-9"]
    expired = granted.model_copy(update={"expires": dt.date(2026, 11, 20)})
    _, late = assess_all(view, JudgedSecurityPolicy(waivers=(expired,)))
    assert "vuln:req:PYSEC-9" in [f.id for f in late.unwaived]


def test_g5_policy_for_carries_the_configs_g5_waivers_only() -> None:
    """SecurityGate.policy_for adds the (effective) config's G5 waivers to [gates.G5], leaving other gates' out."""
    data = {
        "target": {"name": "svc"},
        "gates": {"G5": {"fail_on": "medium"}},
        "waivers": [{**waiver("CVE-9", "2099-01-01"), "gate": "G5"}, {**waiver("X-1", "2099-01-01"), "gate": "G1"}],
    }
    policy = SecurityGate().policy_for(parse_config(data, "certify.toml"))
    assert isinstance(policy, JudgedSecurityPolicy)
    assert policy.fail_on == "medium"
    assert [w.finding for w in policy.waivers] == ["CVE-9"]


def test_pip_audit_vulnerability_becomes_a_default_severity_finding() -> None:
    """A vulnerability without a CVSS vector takes vuln_default_severity and is waivable by its aliases."""
    dep = {"name": "Req", "version": "1", "vulns": [{"id": "PYSEC-9", "aliases": ["CVE-9"], "fix_versions": ["2"]}]}
    result = vulns.assess(audit_evidence([dep]), SecurityPolicy(), CONTEXT)
    assert result.status is Status.PASS
    (found,) = result.findings
    assert (found.id, found.severity, found.location) == ("vuln:req:PYSEC-9", Severity.HIGH, "pyproject.toml")
    assert "cve-9" in found.waiver_keys()


def test_bandit_output_is_sanitised_and_coverage_checked() -> None:
    """Snippets and quoted password values are dropped; zero lines or parse errors make SAST INCONCLUSIVE."""
    raw = {
        "errors": [],
        "metrics": {"_totals": {"loc": 0, "nosec": 0}},
        "results": [
            {
                "code": "3 password = 'hunter2hunter2'\n",
                "filename": "./pkg/a.py",
                "issue_text": "Possible hardcoded password: 'hunter2hunter2'",
                "issue_severity": "LOW",
                "issue_confidence": "MEDIUM",
                "line_number": 3,
                "test_id": "B105",
                "test_name": "hardcoded_password_string",
            }
        ],
    }
    clean = sast.sanitise(raw)
    assert "hunter2" not in json.dumps(clean)
    assert clean["results"][0]["filename"] == "pkg/a.py"
    reader = DictView({sast.TARGETS: {"targets": ["pkg"]}, sast.RUN: {"returncode": 1}, sast.REPORT: clean})
    result = sast.assess(reader, SecurityPolicy())
    assert result.status is Status.INCONCLUSIVE
    assert result.reasons == ("bandit scanned 0 lines of code in pkg: nothing was analysed",)
    assert result.findings[0].id == "bandit:B105:pkg/a.py:3"


def test_missing_scanner_is_not_run() -> None:
    """A scanner whose tool is not installed reports NOT_RUN with the install hint, and so does the gate."""
    reader = DictView({sast.NOT_RUN: {"reason": "bandit is not installed; pip install bandit"}})
    result = sast.assess(reader, SecurityPolicy())
    assert (result.status, result.reasons) == (Status.NOT_RUN, ("bandit is not installed; pip install bandit",))
    assert judge([result], apply_waivers([], [], RUN_DATE), SecurityPolicy()).status is Status.NOT_RUN


def test_scanners_without_evidence_are_inconclusive() -> None:
    """A scanner that never ran (e.g. the run was cancelled first) is INCONCLUSIVE with a reason, never PASS."""
    empty = DictView({})
    results = [
        sast.assess(empty, SecurityPolicy()),
        vulns.assess(empty, SecurityPolicy(), CONTEXT),
        sbom.assess(empty, SecurityPolicy(), CONTEXT),
        secret_scan.assess(empty, SecurityPolicy()),
        licences.assess(empty, SecurityPolicy(), CONTEXT),
    ]
    assert [r.status for r in results] == [Status.INCONCLUSIVE] * 5
    assert all(r.reasons for r in results)
