"""Gate G8: the docs exist, are complete, their links resolve, and the quickstart really works (D1-D4).

What is checked, on the target's tracked files only (a clean clone has nothing else):
- the quickstart and every `required_docs` path exist; the runbooks dir holds at least one runbook and
  every `required_runbooks` name;
- every runbook (each `*.md` under `runbooks_dir` except README.md/index.md) has a heading naming each of
  `runbook_sections` (case-insensitive, word-bounded) whose section holds at least `min_section_words`;
- no checked document (quickstart, required docs, runbooks, `checked_docs` globs) contains a placeholder
  phrase outside code (word-bounded, case-insensitive; HTML comments are scanned too);
- every relative link and image resolves to a tracked file or directory, and every `#fragment` names a
  heading (GitHub-style slug) or an HTML id/name in the target Markdown file; external links
  (http, https, mailto, ...) are listed in the evidence, never fetched;
- every alert rule (`groups[].rules[].alert` in the `alert_rules` YAML files) has an `annotations.runbook`
  or `annotations.runbook_url` naming a runbook that exists (a path, a runbook name, or a URL whose last
  path part is a runbook's file name);
- the quickstart's runnable shell blocks succeed. Runnable: fenced with ```` ```sh ````, ```` ```bash ```` or
  ```` ```shell ````. Opt out with ```` ```sh no-run ```` or an HTML comment `<!-- no-run -->` on the line
  right before the fence. The blocks run in order as one bash script with `set -e` (so `cd` and
  variables carry over) from the root of a sandboxed copy of the tracked files (or from above it, when
  `repo_subdir` says where the target sits in its repository), with an empty HOME and a minimal
  environment (as gate G7), each block bounded by `block_timeout_s`; whatever they leave running is
  stopped and recorded. Each block is a step of the stamped log (`==> step: block N (FILE:LINE)`).

Evidence: `snapshot/` (every tracked Markdown file and rules file, as read), `docs_inputs.json` (tracked
files, how the quickstart run ended), `quickstart.sh` and its stamped log under `runs/`, and
`docs_findings.json` (every finding with file, line, kind, message; the links inventory; the alerts).
`evaluate` recomputes every finding from the snapshot, so `certify verify` re-derives them.
"""

from __future__ import annotations

import fnmatch
import functools
import posixpath
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from gates.bootstrap import (
    copy_tracked,
    kill_leftovers,
    leftover_note,
    new_sandbox,
    output_tail,
    parse_steps,
    run_record,
    sandbox_env,
    stamped_argv,
)
from harness.context import GateContext
from harness.errors import ToolMissingError
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.model import Measurement, Status, Verdict

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


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
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
        globbed = {p for p in self.parsed if _matches(p, self.policy.checked_docs)}
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


class DocsGate(Gate):
    """Checks quickstart, runbooks, configuration matrix and troubleshooting docs, and runs the quickstart."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="G8", title="Docs", requirements=("G8", "D1", "D2", "D3", "D4"), timeout_s=1800, documents=(QUICKSTART_DOC,)
    )
    policy_model: ClassVar[type[Policy]] = DocsPolicy

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """Static checks take a second; the quickstart run takes what it takes (bounded by its budget)."""
        del mode
        return 30.0 if not isinstance(policy, DocsPolicy) else min(60.0, policy.quickstart_budget_s)

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Snapshot the tracked docs, run the quickstart in a sandbox, and write the findings."""
        assert isinstance(policy, DocsPolicy)  # noqa: S101 - the registry pairs gate and policy
        markdown_parser()
        ctx.record_tool("markdown-it-py", metadata.version("markdown-it-py"))
        if policy.alert_rules:
            try:
                ctx.record_tool("PyYAML", metadata.version("PyYAML"))
            except metadata.PackageNotFoundError:
                raise ToolMissingError(
                    "PyYAML is not installed: alert rules cannot be read", hint="pip install 'PyYAML>=6'"
                ) from None
        box = new_sandbox(ctx)
        copy = copy_tracked(ctx, box.copy / policy.repo_subdir)
        inputs: dict[str, Any] = {"mode": ctx.mode, "copy": {k: v for k, v in copy.items() if k != "tracked"}}
        inputs.update(tracked=copy["tracked"], snapshot=[], quickstart_run=None, leftovers=[])
        texts: dict[str, str] = {}
        if copy["git_error"] is None:
            for path in copy["tracked"]:
                if path.endswith(".md") or _matches(path, policy.alert_rules):
                    data = (box.copy / policy.repo_subdir / path).read_bytes()
                    ctx.write_bytes(f"snapshot/{path}", data)
                    texts[f"snapshot/{path}"] = data.decode("utf-8", errors="replace")
                    inputs["snapshot"].append(path)
            if policy.quickstart in inputs["snapshot"]:
                ctx.write_document(QUICKSTART_DOC, (box.copy / policy.repo_subdir / policy.quickstart).read_bytes())
                blocks = runnable_blocks(parse_markdown(texts[f"snapshot/{policy.quickstart}"]))
                if blocks:
                    inputs.update(self._run_quickstart(ctx, box, blocks, policy, texts))
        ctx.write_json(INPUTS, inputs)
        ctx.write_json(FINDINGS, assess(inputs, texts.__getitem__, policy).report())

    @staticmethod
    def _run_quickstart(
        ctx: GateContext, box: Any, blocks: list[Fence], policy: DocsPolicy, texts: dict[str, str]
    ) -> dict[str, Any]:
        """Run the runnable blocks as one script in the sandbox; keep the stamped log readable for assess."""
        env, env_record = sandbox_env(box, ctx.mode, policy.pass_env)
        if shutil.which("bash", path=env["PATH"]) is None:
            raise ToolMissingError("bash is not installed: the quickstart cannot be run", hint="apt-get install bash")
        script = quickstart_script(blocks, policy.quickstart)
        ctx.write_text("quickstart.sh", script)
        (box.root / "quickstart.sh").write_text(script, encoding="utf-8")
        ctx.progress(f"running {len(blocks)} quickstart block(s) from {policy.quickstart}")
        timeout_s = policy.block_timeout_s * len(blocks) + 30
        argv = stamped_argv(["bash", "--noprofile", "--norc", str(box.root / "quickstart.sh")], policy.block_timeout_s)
        run = ctx.run("quickstart", argv, cwd=box.copy, env=env, timeout_s=timeout_s)
        record = run_record(run, box, timeout_s)
        texts[record["log"]] = run.stdout()
        return {"quickstart_run": record, "leftovers": kill_leftovers(box), "environment": env_record}

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """FAIL on any finding; INCONCLUSIVE when nothing could be checked or the quickstart has nothing to run."""
        assert isinstance(policy, DocsPolicy)  # noqa: S101 - the registry pairs gate and policy
        inputs = evidence.read_json(INPUTS)
        if inputs["copy"]["git_error"] is not None:
            why = inputs["copy"]["git_error"]
            return Verdict.of(
                Status.INCONCLUSIVE,
                f"the target is not a git work tree ({why}): cannot know which docs a clean clone has",
            )
        result = assess(inputs, lambda name: evidence.read_bytes(name).decode("utf-8", errors="replace"), policy)
        external = sum(1 for link in result.links if link["kind"] == "external")
        measurements = [
            Measurement.judged("docs findings", len(result.findings), "<=", 0),
            Measurement(name="documents checked", value=len(result.checked)),
            Measurement(name="runbooks", value=len(result.runbooks)),
            Measurement(name="relative links and anchors checked", value=len(result.links) - external),
            Measurement(name="external links listed, not fetched", value=external),
            Measurement(name="alert rules checked", value=len(result.alerts)),
            Measurement(name="runnable quickstart blocks", value=len(result.quickstart["blocks"])),
        ]
        if "total_s" in result.quickstart:
            measurements.append(
                Measurement.judged(
                    "quickstart duration", result.quickstart["total_s"], "<=", policy.quickstart_budget_s, "s"
                )
            )
        reasons = [f.sentence() for f in result.findings[:MAX_REASONS]]
        if len(result.findings) > MAX_REASONS:
            reasons.append(f"... and {len(result.findings) - MAX_REASONS} more finding(s) in {FINDINGS}")
        note = leftover_note(
            "the quickstart", (inputs.get("quickstart_run") or {}).get("left_running", []) + inputs["leftovers"]
        )
        details = {"findings": len(result.findings), "runbooks": result.runbooks, "quickstart": result.quickstart}
        if result.findings:
            status = Status.FAIL
        elif not result.quickstart["blocks"]:
            status = Status.INCONCLUSIVE
            reasons.append(f"{policy.quickstart} has no runnable sh/bash block: nothing shows the quickstart works")
        elif not result.quickstart.get("steps"):
            status = Status.INCONCLUSIVE
            reasons.append("the quickstart run was cancelled before it finished")
        else:
            status = Status.PASS
            reasons.insert(0, self._summary(result, external))
        reasons += [note] if note else []
        return Verdict(status=status, reasons=tuple(reasons), measurements=tuple(measurements), details=details)

    @staticmethod
    def _summary(result: Assessment, external: int) -> str:
        """One sentence saying what a PASS covered."""
        return (
            f"{len(result.checked)} document(s) and {len(result.runbooks)} runbook(s) complete; "
            f"{len(result.links) - external} relative link(s) resolve ({external} external listed, not fetched); "
            f"{len(result.alerts)} alert(s) name existing runbooks; "
            f"{len(result.quickstart['blocks'])} quickstart block(s) ran in {result.quickstart['total_s']:.1f} s"
        )
