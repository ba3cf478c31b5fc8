"""S4 licence review: pip-licenses over the target venv, judged here against an SPDX allow-list.

pip-licenses' own --allow-only passes a package when any one of its licences is allowed and
stops at the first offender; this module instead evaluates each package's licence as an SPDX
expression (OR: any operand allowed; AND: every operand allowed; `X WITH exception` as X) and
reports every offender. Sources, most authoritative first: License-Expression (PEP 639), the
License field when it is a recognisable licence name or expression, then the trove classifiers
(several classifiers are read as AND: the conservative reading when metadata does not say).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gates.security.inventory import INVENTORY, installed_names
from gates.security.policy import EvidenceReader, Finding, ScanResult, SecurityPolicy, Severity, canonical_name
from gates.security.store import EvidenceStore, run_problem
from harness.model import Measurement, Status

NAME = "licences (pip-licenses)"
REPORT = "licences/pip-licenses.json"
RUN = "licences/run.json"
NOT_RUN = "licences/not-run.json"
Decision = Literal["allowed", "denied", "unknown"]

#: Common licence names (classifier texts, free-text License fields) -> SPDX id. Keys are casefolded.
ALIASES: dict[str, str] = {
    "mit": "MIT",
    "mit license": "MIT",
    "the mit license": "MIT",
    "mit-0": "MIT-0",
    "expat": "MIT",
    "bsd": "BSD",
    "bsd license": "BSD",
    "new bsd": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause",
    "modified bsd": "BSD-3-Clause",
    "bsd-3": "BSD-3-Clause",
    "bsd 3-clause": "BSD-3-Clause",
    "3-clause bsd license": "BSD-3-Clause",
    "bsd 3-clause license": "BSD-3-Clause",
    "bsd-2": "BSD-2-Clause",
    "bsd 2-clause": "BSD-2-Clause",
    "simplified bsd": "BSD-2-Clause",
    "2-clause bsd license": "BSD-2-Clause",
    "apache": "Apache-2.0",
    "apache software license": "Apache-2.0",
    "apache 2": "Apache-2.0",
    "apache 2.0": "Apache-2.0",
    "apache-2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "apache license version 2.0": "Apache-2.0",
    "apache software license 2.0": "Apache-2.0",
    "isc": "ISC",
    "isc license": "ISC",
    "isc license (iscl)": "ISC",
    "python software foundation license": "PSF-2.0",
    "psf": "PSF-2.0",
    "psf license": "PSF-2.0",
    "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0",
    "mpl 2.0": "MPL-2.0",
    "mpl-2": "MPL-2.0",
    "the unlicense (unlicense)": "Unlicense",
    "unlicense": "Unlicense",
    "zlib": "Zlib",
    "zlib/libpng license": "Zlib",
    "historical permission notice and disclaimer (hpnd)": "HPND",
    "boost software license 1.0 (bsl-1.0)": "BSL-1.0",
    "cc0 1.0 universal (cc0 1.0) public domain dedication": "CC0-1.0",
    "gpl": "GPL",
    "gnu gpl": "GPL",
    "gnu general public license (gpl)": "GPL",
    "gnu general public license v2 (gplv2)": "GPL-2.0-only",
    "gplv2": "GPL-2.0-only",
    "gnu general public license v2 or later (gplv2+)": "GPL-2.0-or-later",
    "gplv2+": "GPL-2.0-or-later",
    "gnu general public license v3 (gplv3)": "GPL-3.0-only",
    "gplv3": "GPL-3.0-only",
    "gnu general public license v3 or later (gplv3+)": "GPL-3.0-or-later",
    "gplv3+": "GPL-3.0-or-later",
    "lgpl": "LGPL",
    "gnu library or lesser general public license (lgpl)": "LGPL",
    "gnu lesser general public license v2 (lgplv2)": "LGPL-2.0-only",
    "gnu lesser general public license v2 or later (lgplv2+)": "LGPL-2.0-or-later",
    "gnu lesser general public license v3 (lgplv3)": "LGPL-3.0-only",
    "gnu lesser general public license v3 or later (lgplv3+)": "LGPL-3.0-or-later",
    "gnu affero general public license v3": "AGPL-3.0-only",
    "gnu affero general public license v3 or later (agplv3+)": "AGPL-3.0-or-later",
    "eclipse public license 2.0 (epl-2.0)": "EPL-2.0",
    "artistic license": "Artistic-2.0",
}
_SPDX_ID = re.compile(r"^(LicenseRef-[A-Za-z0-9.-]+|[A-Za-z0-9][A-Za-z0-9.]*(-[A-Za-z0-9.]+)*\+?)$")
#: SPDX ids recognised as such when they appear verbatim (common ones; aliases cover the rest).
KNOWN_IDS = frozenset(
    v.casefold()
    for v in (
        *ALIASES.values(),
        "Apache-1.1",
        "BSD-4-Clause",
        "GPL-2.0",
        "GPL-3.0",
        "LGPL-2.1-only",
        "LGPL-2.1-or-later",
        "LGPL-2.1",
        "LGPL-3.0",
        "AGPL-3.0",
        "MPL-1.1",
        "EPL-1.0",
        "CDDL-1.0",
        "0BSD",
        "Python-2.0",
        "PSF-2.0",
        "CC-BY-4.0",
        "Unicode-DFS-2016",
        "MIT-CMU",
        "OpenSSL",
    )
)
_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


class ExpressionError(ValueError):
    """A licence expression that does not parse."""


@dataclass(frozen=True)
class Term:
    """One licence in an expression: the text as written and the SPDX id it maps to (None if unrecognised)."""

    text: str
    spdx: str | None


@dataclass(frozen=True)
class Combined:
    """`AND` / `OR` over two or more sub-expressions."""

    operator: Literal["AND", "OR"]
    operands: tuple[Expression, ...]


Expression = Term | Combined


def normalise(text: str) -> str | None:
    """The SPDX id of one licence name: an alias, a classifier text, or a verbatim known id."""
    cleaned = text.strip().removeprefix("License :: ").removeprefix("OSI Approved :: ").strip()
    folded = cleaned.casefold()
    if folded in ALIASES:
        return ALIASES[folded]
    if folded in KNOWN_IDS or folded.startswith("licenseref-"):
        return next((v for v in (*ALIASES.values(), cleaned) if v.casefold() == folded), cleaned)
    return None


def parse(text: str, *, spdx: bool = False) -> Expression:
    """Parse an SPDX-style expression; operators are case-insensitive, operands may be multi-word names.

    With `spdx`, the text is a PEP 639 License-Expression: any well-formed id counts as recognised.
    """
    tokens = [m.group(1) for m in _TOKEN.finditer(text)]
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def operand() -> Expression:
        if peek() == "(":
            take()
            inner = disjunction()
            if peek() != ")":
                raise ExpressionError(f"unbalanced parentheses in {text!r}")
            take()
            result = inner
        else:
            words = []
            while peek() not in (None, "(", ")") and str(peek()).upper() not in ("AND", "OR", "WITH"):
                words.append(take())
            if not words:
                raise ExpressionError(f"missing licence name in {text!r}")
            phrase = " ".join(words)
            verbatim = phrase if spdx and _SPDX_ID.match(phrase) else None
            result = Term(phrase, normalise(phrase) or verbatim)
        if str(peek()).upper() == "WITH":
            take()
            while peek() not in (None, "(", ")") and str(peek()).upper() not in ("AND", "OR"):
                take()  # the exception only adds permissions: judge the base licence
        return result

    def chain(operator: Literal["AND", "OR"], inner: Any) -> Expression:
        parts = [inner()]
        while str(peek()).upper() == operator:
            take()
            parts.append(inner())
        return parts[0] if len(parts) == 1 else Combined(operator, tuple(parts))

    def disjunction() -> Expression:
        return chain("OR", lambda: chain("AND", operand))

    result = disjunction()
    if peek() is not None:
        raise ExpressionError(f"unexpected {peek()!r} in {text!r}")
    return result


def decide(expression: Expression, allow: tuple[str, ...]) -> Decision:
    """Decide allowed / denied / unknown: OR is allowed if any operand is; AND only if all are."""
    if isinstance(expression, Term):
        if expression.spdx is None:
            return "unknown"
        return "allowed" if expression.spdx.casefold() in {a.casefold() for a in allow} else "denied"
    decisions = [decide(operand, allow) for operand in expression.operands]
    if expression.operator == "OR":
        if "allowed" in decisions:
            return "allowed"
        return "unknown" if "unknown" in decisions else "denied"
    if "denied" in decisions:
        return "denied"
    return "unknown" if "unknown" in decisions else "allowed"


def _recognised(text: str | None) -> Expression | None:
    """The expression a metadata string stands for, if every term in it is a recognised licence."""
    if not text or text.strip().upper() == "UNKNOWN" or "\n" in text or len(text) > 200:
        return None
    try:
        expression = parse(text)
    except ExpressionError:
        return None
    terms = _terms(expression)
    return expression if all(t.spdx for t in terms) else None


def _terms(expression: Expression) -> list[Term]:
    """The licences named in an expression."""
    if isinstance(expression, Term):
        return [expression]
    return [t for operand in expression.operands for t in _terms(operand)]


def render(expression: Expression) -> str:
    """An expression as SPDX text with ids where recognised."""
    if isinstance(expression, Term):
        return expression.spdx or f"'{expression.text}'"
    return "(" + f" {expression.operator} ".join(render(o) for o in expression.operands) + ")"


def package_licence(entry: dict[str, Any]) -> tuple[Expression | None, str]:
    """The licence expression of one pip-licenses entry and where it came from."""
    declared = entry.get("License-Expression")
    if declared and declared != "UNKNOWN":
        try:
            return parse(declared, spdx=True), "License-Expression"
        except ExpressionError:
            return Term(declared, None), "License-Expression (unparsable)"
    metadata = _recognised(entry.get("License-Metadata"))
    if metadata is not None:
        return metadata, "License field"
    classifiers = [
        c for c in str(entry.get("License-Classifier") or "").split(";") if c.strip() and c.strip() != "UNKNOWN"
    ]
    if classifiers:
        terms = tuple(Term(c.strip(), normalise(c)) for c in classifiers)
        if len(terms) == 1:
            return terms[0], "classifier"
        return Combined("AND", terms), "classifiers, read as AND"
    return None, "no licence metadata"


def collect(store: EvidenceStore, policy: SecurityPolicy, python: Path) -> None:
    """List every distribution in the target venv (system packages included) with all licence sources."""
    ctx = store.ctx
    argv = [
        sys.executable,
        "-m",
        "piplicenses",
        "--python",
        str(python),
        "--from",
        "all",
        "-f",
        "json",
        "--with-system",
    ]
    run = ctx.run("pip-licenses", argv, timeout_s=policy.tool_timeout_s)
    store.record_run(RUN, run)
    out = ctx.scratch / "pip-licenses.json"
    out.write_text(run.stdout(), encoding="utf-8")
    if run.returncode == 0:
        store.copy_json(REPORT, out)


def _finding(entry: dict[str, Any], policy: SecurityPolicy) -> tuple[Finding | None, dict[str, Any]]:
    """The finding for one package (None when allowed) and its row for the report."""
    name, version = str(entry["Name"]), str(entry["Version"])
    expression, source = package_licence(entry)
    decision: Decision = "unknown" if expression is None else decide(expression, policy.licence_allow)
    shown = "none declared" if expression is None else render(expression)
    row = {"name": name, "version": version, "licence": shown, "source": source, "decision": decision}
    if decision == "allowed":
        return None, row
    denied = decision == "denied"
    title = (
        f"{name} {version} is licensed {shown} (from {source}), not allowed by licence_allow"
        if denied
        else f"the licence of {name} {version} is not recognised: {shown} (from {source}; metadata "
        f"{entry.get('License-Metadata')!r}, classifiers {entry.get('License-Classifier')!r})"
    )
    finding = Finding(
        scanner="pip-licenses",
        rule="licence-not-allowed" if denied else "licence-unknown",
        id=f"licence:{canonical_name(name)}",
        keys=(f"licence:{canonical_name(name)}:{version}",),
        severity=Severity(policy.licence_denied_severity if denied else policy.licence_unknown_severity),
        title=title,
    )
    return finding, row


def assess(reader: EvidenceReader, policy: SecurityPolicy, context: dict[str, Any]) -> ScanResult:
    """Every installed distribution but the target itself is judged; missing or empty listings are INCONCLUSIVE."""
    if reader.exists(NOT_RUN):
        return ScanResult(NAME, Status.NOT_RUN, "not run", reasons=(reader.read_json(NOT_RUN)["reason"],))
    if not reader.exists(REPORT):
        why = run_problem(reader.read_json(RUN), "pip-licenses") if reader.exists(RUN) else None
        return ScanResult(
            NAME, Status.INCONCLUSIVE, "no listing", reasons=(f"no licence listing: {why or 'output was not JSON'}",)
        )
    own = canonical_name(context["target_project"]) if context.get("target_project") else None
    entries = [e for e in reader.read_json(REPORT) if canonical_name(str(e["Name"])) != own]
    reasons = [] if entries else ["pip-licenses listed no installed package: nothing was reviewed"]
    if reader.exists(INVENTORY):
        listed = {canonical_name(str(e["Name"])) for e in entries}
        unlisted = sorted(set(installed_names(reader.read_json(INVENTORY), context.get("target_project"))) - listed)
        if unlisted:
            reasons.append(
                f"{len(unlisted)} installed distribution(s) missing from the licence listing: "
                + ", ".join(unlisted[:10])
            )
    judged = [_finding(e, policy) for e in entries]
    findings = tuple(f for f, _ in judged if f is not None)
    rows = [row for _, row in judged]
    measurements = (
        Measurement.judged("packages with a licence reviewed", len(entries), ">", 0),
        Measurement(name="packages with a licence not allowed", value=sum(r["decision"] == "denied" for r in rows)),
        Measurement(name="packages with an unknown licence", value=sum(r["decision"] == "unknown" for r in rows)),
    )
    summary = f"{len(entries)} package(s) reviewed; {len(findings)} not allowed or unknown"
    status = Status.INCONCLUSIVE if reasons else Status.PASS
    facts = {"reviewed": len(rows), "denied": sum(r["decision"] == "denied" for r in rows)}
    return ScanResult(NAME, status, summary, tuple(reasons), findings, measurements, facts, tuple(rows))
