"""Pure checks of gate G8: parse the stored docs snapshot and judge it against the policy.

Split from gates/docs.py (which collects the snapshot and runs the quickstart) so each reads on its
own; `assess` reads only what it is handed.
"""

from __future__ import annotations

import fnmatch
import functools
import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from gates.bootstrap import (
    output_tail,
    parse_steps,
)
from harness.errors import ToolMissingError
from harness.gate import Policy

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

INPUTS = "docs_inputs.json"
FINDINGS = "docs_findings.json"
QUICKSTART_DOC = "readme_quickstart.md"
RUNNABLE = frozenset({"sh", "bash", "shell"})
NO_RUN_COMMENT = re.compile(r"^\s*<!--\s*no-run\s*-->\s*$")
HTML_ANCHOR = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""")
INLINE_CODE = re.compile(r"(`+).+?\1")
WORD = re.compile(r"[^\W_]+(?:['\u2019.-][^\W_]+)*")
BLOCK_STEP = re.compile(r"^block (\d+) ")
#: A literal /tmp path (not `${TMPDIR:-/tmp}`, not /var/tmp): what a block leaves there outlives the run.
REAL_TMP = re.compile(r"(?<!:-)(?<![\w./-])/tmp(?![\w.-])")
INDEX_NAMES = frozenset({"readme.md", "index.md"})
MAX_REASONS = 15


class DocsPolicy(Policy):
    """Thresholds of the docs gate: which documents must exist and what complete means."""

    quickstart: str = Field("docs/quickstart.md", description="The quickstart (D1), relative to the target.")
    runbooks_dir: str = Field("docs/runbooks", description="Directory of the incident runbooks (D2).")
    required_runbooks: tuple[str, ...] = Field((), description="Runbook names (file stems) that must exist.")
    required_docs: tuple[str, ...] = Field(
        ("docs/configuration-matrix.md", "docs/troubleshooting.md"),
        description="Other documents that must exist: configuration matrix (D3), troubleshooting guide (D4).",
    )
    configuration_matrix: str = Field(
        "docs/configuration-matrix.md", description="D3: the known-good configuration matrix; must list this run's row."
    )
    troubleshooting: str = Field("docs/troubleshooting.md", description="D4: the troubleshooting guide.")
    min_troubleshooting_words: int = Field(50, ge=1, description="D4: fewest words the guide may hold outside code.")
    checked_docs: tuple[str, ...] = Field(
        ("README.md", "docs/*.md"), description="Globs (`*` crosses directories) of more docs to link- and text-check."
    )
    runbook_sections: tuple[str, ...] = Field(
        ("symptoms", "diagnosis", "remediation", "rollback", "verification"),
        description="Sections every runbook needs, matched case-insensitively against its headings.",
    )
    min_section_words: int = Field(15, ge=1, description="Fewest words a required runbook section may hold.")
    placeholder_phrases: tuple[str, ...] = Field(
        ("TODO", "TBD", "FIXME", "placeholder", "lorem ipsum", "coming soon", "to be written"),
        description="Phrases (not regexes) that mark unfinished text; word-bounded, case-insensitive.",
    )
    alert_rules: tuple[str, ...] = Field(
        (), description="Globs of Prometheus rule files whose alerts must each name an existing runbook."
    )
    block_timeout_s: float = Field(300.0, gt=0, description="Time one quickstart block may take.")
    quickstart_budget_s: float = Field(300.0, gt=0, description="D1: the whole quickstart runs in five minutes.")
    pass_env: tuple[str, ...] = Field((), description="Extra environment variable names passed to the quickstart.")
    repo_subdir: str = Field(
        "",
        description="Where the target sits in its repository when the quickstart runs from the repository root "
        "(e.g. examples/guardian): the sandboxed copy is placed at that path and the blocks run from above it.",
    )

    @field_validator("repo_subdir")
    @classmethod
    def _relative_inside(cls, value: str) -> str:
        """The subdir is a plain relative path: no leading slash, no `..`."""
        if value.startswith("/") or ".." in value.split("/"):
            msg = f"repo_subdir {value!r} must be a relative path without '..'"
            raise ValueError(msg)
        return value.strip("/")


@dataclass(frozen=True)
class Finding:
    """One problem in the docs, where it is and what is wrong."""

    file: str
    line: int
    kind: str
    message: str

    def sentence(self) -> str:
        """file:line: message."""
        return f"{self.file}{f':{self.line}' if self.line else ''}: {self.message}"


@dataclass(frozen=True)
class Heading:
    """A heading: level, text, GitHub-style anchor, and its line span (0-based, end exclusive)."""

    level: int
    title: str
    slug: str
    start: int
    end: int


@dataclass(frozen=True)
class Fence:
    """A fenced code block: info string, content, 1-based first line, and an opt-out comment before it."""

    info: str
    content: str
    line: int
    no_run_comment: bool


@dataclass
class ParsedDoc:
    """What the checks need from one Markdown file."""

    headings: list[Heading] = field(default_factory=list)
    links: list[tuple[str, int]] = field(default_factory=list)
    fences: list[Fence] = field(default_factory=list)
    anchors: set[str] = field(default_factory=set)
    code_lines: set[int] = field(default_factory=set)


@functools.cache
def markdown_parser() -> MarkdownIt:
    """CommonMark with tables and strikethrough (as GitHub renders them)."""
    try:
        from markdown_it import MarkdownIt  # noqa: PLC0415 - optional dependency, reported as NOT_RUN
    except ImportError:
        msg = "markdown-it-py is not installed: the docs cannot be parsed"
        raise ToolMissingError(msg, hint="pip install 'markdown-it-py>=3'") from None
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def github_slug(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _inline(token: Token, doc: ParsedDoc) -> None:
    """Collect links, images and HTML anchors of an inline token, with their lines."""
    line = (token.map[0] + 1) if token.map else 0
    for child in token.children or []:
        if child.type in ("softbreak", "hardbreak"):
            line += 1
        elif child.type in {"link_open", "image"}:
            target = child.attrGet("href" if child.type == "link_open" else "src")
            doc.links.append((str(target or ""), line))
        elif child.type == "html_inline":
            doc.anchors.update(HTML_ANCHOR.findall(child.content))


def parse_markdown(text: str) -> ParsedDoc:
    """Headings (with unique GitHub slugs), links, fences, anchors and code lines of a document."""
    tokens = markdown_parser().parse(text)
    doc, seen = ParsedDoc(), dict[str, int]()
    for index, token in enumerate(tokens):
        span = token.map or [0, 0]
        if token.type == "heading_open":
            title = "".join(c.content for c in tokens[index + 1].children or [] if c.type in ("text", "code_inline"))
            slug = base = github_slug(title.strip())
            while slug in seen:
                seen[base] += 1
                slug = f"{base}-{seen[base]}"
            seen[slug] = 0
            doc.headings.append(Heading(int(token.tag[1:]), title.strip(), slug, span[0], span[1]))
            doc.anchors.add(slug)
        elif token.type == "inline":
            _inline(token, doc)
        elif token.type == "html_block":
            doc.anchors.update(HTML_ANCHOR.findall(token.content))
        elif token.type in ("fence", "code_block"):
            doc.code_lines.update(range(span[0] + 1, span[1] + 1))
            if token.type == "fence":
                before = tokens[index - 1] if index else None
                opted_out = (
                    before is not None and before.type == "html_block" and bool(NO_RUN_COMMENT.match(before.content))
                )
                doc.fences.append(Fence(token.info.strip(), token.content, span[0] + 1, opted_out))
    return doc


def runnable_blocks(doc: ParsedDoc) -> list[Fence]:
    """The quickstart's shell blocks that are to be run (see the module docstring for the convention)."""
    blocks = []
    for fence in doc.fences:
        words = fence.info.split()
        if words and words[0] in RUNNABLE and "no-run" not in words[1:] and not fence.no_run_comment:
            blocks.append(fence)
    return blocks


def quickstart_script(blocks: list[Fence], source: str) -> str:
    """One bash script running the blocks in order under `set -e`, each announced as a step."""
    lines = ["set -e"]
    for number, block in enumerate(blocks, 1):
        lines.append("echo " + shlex.quote(f"==> step: block {number} ({source}:{block.line})"))
        lines.append(block.content.rstrip("\n"))
    return "\n".join(lines) + "\n"


def matches_any(path: str, patterns: tuple[str, ...]) -> bool:
    """Whether a path matches one of the globs (fnmatch: `*` crosses directories)."""
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


@dataclass
class Assessment:
    """Every finding of the docs checks and what was looked at; built purely from the snapshot."""

    policy: DocsPolicy
    texts: dict[str, str]
    tracked: frozenset[str]
    findings: list[Finding] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    quickstart: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def parsed(self) -> dict[str, ParsedDoc]:
        """Every Markdown file of the snapshot, parsed."""
        return {path: parse_markdown(text) for path, text in self.texts.items() if path.endswith(".md")}

    @functools.cached_property
    def directories(self) -> frozenset[str]:
        """Every directory holding a tracked file."""
        dirs = {""}
        for path in self.tracked:
            parent = path
            while "/" in parent:
                parent = parent.rsplit("/", 1)[0]
                dirs.add(parent)
        return frozenset(dirs)

    @functools.cached_property
    def runbooks(self) -> list[str]:
        """The runbooks: tracked Markdown files under runbooks_dir, index pages excluded."""
        prefix = self.policy.runbooks_dir.strip("/") + "/"
        return sorted(
            p
            for p in self.tracked
            if p.startswith(prefix) and p.endswith(".md") and p.rsplit("/", 1)[-1].lower() not in INDEX_NAMES
        )

    @functools.cached_property
    def checked(self) -> list[str]:
        """Documents that are link- and text-checked."""
        named = {self.policy.quickstart, *self.policy.required_docs, *self.runbooks}
        globbed = {p for p in self.parsed if matches_any(p, self.policy.checked_docs)}
        return sorted(p for p in named | globbed if p in self.parsed)

    def add(self, file: str, line: int, kind: str, message: str) -> None:
        """Record one finding."""
        self.findings.append(Finding(file, line, kind, message))

    def run_static_checks(self) -> None:
        """Existence, runbooks, placeholders, links and alerts."""
        for path in (self.policy.quickstart, *self.policy.required_docs):
            if path not in self.tracked:
                self.add(path, 0, "missing_document", "required document is missing (not among the tracked files)")
        self._check_runbooks()
        for path in self.checked:
            self._check_placeholders(path)
            self._check_links(path)
        self._check_alerts()

    def _check_runbooks(self) -> None:
        """Runbooks exist and each has every required section with real content."""
        directory = self.policy.runbooks_dir.strip("/")
        if not self.runbooks:
            self.add(directory, 0, "no_runbooks", "no runbook (*.md) in the runbooks directory")
        for name in self.policy.required_runbooks:
            if not {f"{directory}/{name}", f"{directory}/{name}.md"} & self.tracked:
                self.add(f"{directory}/{name}.md", 0, "missing_runbook", f"required runbook {name!r} is missing")
        for path in self.runbooks:
            lines, doc = self.texts[path].splitlines(), self.parsed[path]
            for section in self.policy.runbook_sections:
                pattern = re.compile(rf"(?<!\w){re.escape(section)}(?!\w)", re.IGNORECASE)
                found = [(i, h) for i, h in enumerate(doc.headings) if pattern.search(h.title)]
                if not found:
                    self.add(path, 0, "missing_section", f"runbook has no {section!r} section (no heading names it)")
                    continue
                words, heading = max(
                    ((self._section_words(doc, i, lines), h) for i, h in found), key=lambda pair: pair[0]
                )
                if words < self.policy.min_section_words:
                    self.add(
                        path,
                        heading.start + 1,
                        "thin_section",
                        f"section {heading.title!r} has {words} word(s), fewer than {self.policy.min_section_words}",
                    )

    @staticmethod
    def _section_words(doc: ParsedDoc, index: int, lines: list[str]) -> int:
        """Words under a heading up to the next heading of the same or a higher level (HTML comments excluded)."""
        heading = doc.headings[index]
        later = [h.start for h in doc.headings[index + 1 :] if h.level <= heading.level]
        body = "\n".join(lines[heading.end : later[0] if later else len(lines)])
        return len(WORD.findall(re.sub(r"<!--.*?-->", " ", body, flags=re.DOTALL)))

    def _check_placeholders(self, path: str) -> None:
        """Placeholder phrases outside code blocks and code spans."""
        code = self.parsed[path].code_lines
        patterns = [
            (p, re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, p.split())) + r"(?!\w)", re.IGNORECASE))
            for p in self.policy.placeholder_phrases
        ]
        for number, line in enumerate(self.texts[path].splitlines(), 1):
            if number in code:
                continue
            prose = INLINE_CODE.sub(" ", line)
            for phrase, pattern in patterns:
                if pattern.search(prose):
                    self.add(path, number, "placeholder", f"placeholder text {phrase!r}: {line.strip()[:120]}")

    def _check_links(self, path: str) -> None:
        """Every relative link and anchor of a document resolves; external ones are listed."""
        for href, line in self.parsed[path].links:
            status = self._resolve(path, href)
            kind = (
                "external" if status == "external, not fetched" else ("anchor" if href.startswith("#") else "relative")
            )
            self.links.append({"file": path, "line": line, "href": href, "kind": kind, "status": status})
            if status.startswith("dead") or status.startswith("outside"):
                self.add(path, line, "dead_link", f"link {href!r}: {status}")

    def _resolve(self, source: str, href: str) -> str:
        """ok, dead (why), outside the target, or external, not fetched."""
        parts = urlsplit(href)
        if parts.scheme or href.startswith("//"):
            return "external, not fetched"
        path, fragment = unquote(parts.path), unquote(parts.fragment)
        base = "" if path.startswith("/") else posixpath.dirname(source)
        target = posixpath.normpath(posixpath.join(base, path.lstrip("/"))) if path else source
        if target == ".." or target.startswith("../"):
            return "outside the target directory: a clean clone of the target would not have it"
        target = "" if target == "." else target
        if target not in self.tracked and target not in self.directories:
            return f"dead: {target or '.'} is not a tracked file or directory"
        if not fragment or target not in self.parsed:
            return "ok" if not fragment or target in self.directories else "ok (anchor not checked: not Markdown)"
        anchors = {anchor.lower() for anchor in self.parsed[target].anchors}
        return "ok" if fragment.lower() in anchors else f"dead anchor: no heading or id {fragment!r} in {target}"

    def _check_alerts(self) -> None:
        """Every alert rule names a runbook that exists."""
        for pattern in self.policy.alert_rules:
            files = sorted(p for p in self.tracked if fnmatch.fnmatchcase(p, pattern))
            if not files:
                self.add(pattern, 0, "alert_rules_missing", "no tracked file matches this alert rules path")
            for path in files:
                for name, runbook in self._alerts_of(path):
                    self._check_alert(path, name, runbook)

    def _alerts_of(self, path: str) -> list[tuple[str, str | None]]:
        """(alert name, runbook annotation) of every alerting rule in a rules file."""
        import yaml  # noqa: PLC0415 - only needed when alert rules are configured

        try:
            data = yaml.safe_load(self.texts.get(path, ""))
        except yaml.YAMLError as exc:
            self.add(path, 0, "alert_rules_unreadable", f"not valid YAML: {str(exc).splitlines()[0]}")
            return []
        groups = data.get("groups") if isinstance(data, dict) else None
        if not isinstance(groups, list):
            self.add(path, 0, "alert_rules_unreadable", "no `groups:` list: not a Prometheus rules file")
            return []
        found = []
        for group in groups:
            for rule in (group.get("rules") or []) if isinstance(group, dict) else []:
                if isinstance(rule, dict) and "alert" in rule:
                    notes = rule.get("annotations") or {}
                    found.append((str(rule["alert"]), notes.get("runbook") or notes.get("runbook_url")))
        return found

    def _check_alert(self, path: str, name: str, runbook: str | None) -> None:
        """One alert's runbook annotation resolves to an existing runbook (and anchor)."""
        match = re.search(
            rf"^\s*-?\s*alert:\s*['\"]?{re.escape(name)}['\"]?\s*$", self.texts.get(path, ""), re.MULTILINE
        )
        line = self.texts[path].count("\n", 0, match.start()) + 1 if match else 0
        entry: dict[str, Any] = {"file": path, "line": line, "alert": name, "runbook": runbook, "resolved": None}
        self.alerts.append(entry)
        if not runbook:
            self.add(path, line, "alert_without_runbook", f"alert {name!r} has no annotations.runbook or runbook_url")
            return
        parts = urlsplit(str(runbook))
        ref = unquote(parts.path)
        directory = self.policy.runbooks_dir.strip("/")
        stem = posixpath.basename(ref)
        candidates = (
            []
            if parts.scheme
            else [posixpath.normpath(posixpath.join(posixpath.dirname(path), ref)), posixpath.normpath(ref)]
        )
        candidates += [f"{directory}/{stem}", f"{directory}/{stem}.md"]
        entry["resolved"] = next((c for c in candidates if c in self.runbooks), None)
        if entry["resolved"] is None:
            self.add(
                path, line, "alert_runbook_missing", f"alert {name!r} names runbook {runbook!r}, which does not exist"
            )
        elif parts.fragment and parts.fragment.lower() not in {
            a.lower() for a in self.parsed[entry["resolved"]].anchors
        }:
            self.add(
                path,
                line,
                "alert_runbook_missing",
                f"alert {name!r}: runbook {entry['resolved']} has no #{parts.fragment}",
            )

    def judge_quickstart(self, inputs: dict[str, Any], read: Callable[[str], str]) -> None:
        """Findings from the quickstart run: a failed or slow block, or a run over the budget."""
        source = self.policy.quickstart
        blocks = runnable_blocks(self.parsed[source]) if source in self.parsed else []
        run = inputs.get("quickstart_run")
        self.quickstart = {"blocks": [{"line": b.line, "info": b.info} for b in blocks], "ran": run is not None}
        self._check_real_tmp(source, blocks)
        if not blocks or run is None or run["cancelled"]:
            return
        log = read(run["log"])
        total_s = float(run["elapsed_s"] if run["elapsed_s"] is not None else run["duration_s"])
        steps = parse_steps(log, total_s)
        number = BLOCK_STEP.match(steps[-1].name)
        index = int(number.group(1)) if number else 1
        failing, what = blocks[index - 1], f"quickstart block {index} of {len(blocks)}"
        self.quickstart.update(total_s=round(total_s, 3), steps=[asdict(s) for s in steps], log=run["log"])
        if run["step_timed_out"] or run["timed_out"]:
            self.add(
                source,
                failing.line,
                "quickstart_timeout",
                f"{what} did not finish within {self.policy.block_timeout_s:g} s",
            )
        elif run["spawn_error"] or run["returncode"] != 0:
            why = run["spawn_error"] or f"exit code {run['returncode']}"
            self.add(
                source,
                failing.line,
                "quickstart_failed",
                f"{what} failed ({why}); last output: {output_tail(log)}",
            )
        elif total_s > self.policy.quickstart_budget_s:
            self.add(
                source,
                0,
                "quickstart_slow",
                f"quickstart took {total_s:.1f} s, more than {self.policy.quickstart_budget_s:g} s",
            )

    def _check_real_tmp(self, source: str, blocks: list[Fence]) -> None:
        """A runnable block naming the real /tmp: the gate gives blocks a private TMPDIR, a literal path escapes it."""
        for block in blocks:
            for offset, line in enumerate(block.content.splitlines(), 1):
                if REAL_TMP.search(line):
                    self.add(
                        source,
                        block.line + offset,
                        "quickstart_real_tmp",
                        'writes under the real /tmp, where it outlives the run; use "${TMPDIR:-/tmp}": '
                        + line.strip()[:120],
                    )

    def report(self) -> dict[str, Any]:
        """docs_findings.json."""
        return {
            "findings": [asdict(f) for f in self.findings],
            "documents_checked": self.checked,
            "runbooks": self.runbooks,
            "links": self.links,
            "alerts": self.alerts,
            "quickstart": self.quickstart,
        }


def assess(inputs: dict[str, Any], read: Callable[[str], str], policy: DocsPolicy) -> Assessment:
    """Every check, from the stored inputs and snapshot (read by evidence name)."""
    texts = {path: read(f"snapshot/{path}") for path in inputs["snapshot"]}
    result = Assessment(policy=policy, texts=texts, tracked=frozenset(inputs["tracked"]))
    result.run_static_checks()
    result.judge_quickstart(inputs, read)
    return result
