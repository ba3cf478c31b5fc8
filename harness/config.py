"""certify.toml: the target's contract with the harness, read with tomllib and checked by pydantic."""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import hashlib
import json
import re
import string
import tomllib
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from harness.errors import ConfigError
from harness.registry import DEFAULT_REQUIRED_GATES, all_gates, catalogue
from harness.requirements import requirement_catalogue

CONFIG_NAME = "certify.toml"
BASE_PLACEHOLDERS = frozenset({"python", "target_dir", "port", "data_dir"})


class Section(BaseModel):
    """Base of every table: frozen, and unknown keys are an error (a misspelt key never passes)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class VersionSource(Section):
    """Where the target's version is declared; checked against what the target reports."""

    file: str = Field("pyproject.toml", description="File holding the version, relative to the target.")
    key: str = Field("project.version", description="Dotted TOML key, used when `file` is TOML.")


class TargetSection(Section):
    """Identity of the service under certification."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Service name.")
    version: VersionSource = VersionSource()
    source_root: str = Field(".", description="Directory holding the source, relative to the target.")
    packages: tuple[str, ...] = Field((), description="Importable packages of the target.")
    critical_modules: tuple[str, ...] = Field(
        (), description="Paths or globs (relative to the target) of the critical modules."
    )


class InstallSection(Section):
    """How to install the target into its own virtual environment."""

    command: tuple[str, ...] = Field(
        ("{python}", "-m", "pip", "install", "-e", "."),
        description="Install argv run in the target dir; empty: a bare venv (stdlib-only targets).",
    )
    hash_files: tuple[str, ...] = Field(
        ("pyproject.toml",), description="Dependency declarations; the venv is reused while they are unchanged."
    )
    timeout_s: float = Field(900.0, gt=0)


class TestsSection(Section):
    """How to run the target's own test suite (in its venv)."""

    command: tuple[str, ...] = ("{python}", "-m", "pytest")
    timeout_s: float = Field(1200.0, gt=0)
    dependencies: tuple[str, ...] = Field(
        (),
        description="[service.dependencies] the harness starts for the test run (e.g. a postgresql one), "
        "stopped after it; their placeholders fill `env`.",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment for the test run; templates of the named dependencies' placeholders, "
        "e.g. BOOKSHELF_DATABASE_URL = '{db_url}'.",
    )


class BootstrapSection(Section):
    """How a developer goes from a clean clone to a running service."""

    command: tuple[str, ...] = Field(description="Bootstrap command, run in a fresh copy of the target.")
    smoke: tuple[str, ...] = Field((), description="Command that must pass after bootstrap.")
    budget_s: float = Field(600.0, gt=0, description="Requirement G7: at most 10 minutes.")


class DependencySection(Section):
    """A process the service depends on, started by the harness so a proxy can sit in between."""

    kind: Literal["process", "postgresql"] = Field(
        "process",
        description="process: `command` on a free port, ready when `readiness` answers 2xx; postgresql: a "
        "throwaway cluster of Debian's postgresql in the instance's data dir (harness/postgres.py), "
        "placeholders {<dep>_url} (postgresql://certify@127.0.0.1:PORT/DATABASE), {<dep>_host}, {<dep>_port}.",
    )
    command: tuple[str, ...] = Field((), description="Argv template (kind process; required there).")
    readiness: str = Field("/", description="HTTP path answering 2xx when ready (kind process).")
    database: str = Field("app", pattern=r"^[a-z_][a-z0-9_]*$", description="Database created (kind postgresql).")
    startup_deadline_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _command_for_a_process(self) -> DependencySection:
        """A process dependency needs its command; a postgresql one is started by the harness."""
        if self.kind == "process" and not self.command:
            raise ValueError("command: required for a dependency of kind process")
        if self.kind == "postgresql" and self.command:
            raise ValueError("command: a postgresql dependency is started by the harness; leave command out")
        return self


class ServiceSection(Section):
    """How to start one isolated instance of the target."""

    command: tuple[str, ...] = Field(description="Argv template: {python} {port} {data_dir} {target_dir} {<dep>_url}.")
    liveness: str = "/healthz"
    readiness: str = "/readyz"
    metrics: str | None = "/metrics"
    log_file: str | None = Field(None, description="Log file template, e.g. {data_dir}/logs/app.log.")
    startup_deadline_s: float = Field(60.0, gt=0)
    stop_grace_s: float = Field(10.0, gt=0)
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment for the service; values are templates like command's, e.g. "
        "DATABASE_URL = '{db_url}' ({{ and }} for a literal brace).",
    )
    dependencies: dict[str, DependencySection] = Field(default_factory=dict)
    user: str | None = Field(
        None,
        pattern=r"^[a-z_][a-z0-9_-]*[$]?$",
        description="Who a root harness starts the service and its process dependencies as (S5); unset: "
        "`nobody`. 'root' declares that the service runs as root (S5 FAILs unless allowed). Ignored when "
        "the harness is not root.",
    )

    @field_validator("dependencies")
    @classmethod
    def _dependency_names(cls, value: dict[str, DependencySection]) -> dict[str, DependencySection]:
        """Dependency names become placeholders, so they must be identifiers."""
        for name in value:
            if not name.isidentifier():
                msg = f"dependency name {name!r} must be an identifier"
                raise ValueError(msg)
        return value


class Waiver(Section):
    """An accepted finding: who accepted it, why, and until when; printed on the certificate."""

    gate: str
    finding: str
    reason: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    expires: dt.date
    rotated: dt.date | None = Field(None, description="G5 secrets: when the credential was rotated.")


class NotifySection(Section):
    """Alert hooks (O8): who hears of a gate turning red or a regression against the previous run."""

    webhooks: tuple[str, ...] = Field((), description="URLs the JSON alert is POSTed to (http or https).")
    command: tuple[str, ...] = Field((), description="Argv run with the JSON alert on its standard input.")
    timeout_s: float = Field(5.0, gt=0, le=60, description="Per attempt.")
    retries: int = Field(2, ge=0, le=5, description="Further attempts after a connection error or a 5xx answer.")

    @field_validator("webhooks")
    @classmethod
    def _http_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Only http and https URLs."""
        bad = [url for url in value if not url.startswith(("http://", "https://"))]
        if bad:
            msg = f"webhook {bad[0]!r} is not an http(s) URL"
            raise ValueError(msg)
        return value


class CertificateSection(Section):
    """What a certificate requires and who signs it."""

    required_gates: tuple[str, ...] = Field(
        DEFAULT_REQUIRED_GATES,
        description="Gates that must PASS for CERTIFIED (default: every catalogue gate but the opt-in SOAK).",
    )
    sign_off: tuple[str, ...] = Field(
        ("Release captain", "Service owner", "Security reviewer"), description="Roles that sign the certificate."
    )
    not_applicable: dict[str, str] = Field(
        default_factory=dict,
        description="Gate or catalogue requirement id -> why it does not apply; honoured only where the policy "
        "allows it on its terms (else a deviation); shown as N/A with the reason on every report.",
    )

    @field_validator("not_applicable")
    @classmethod
    def _known_na_ids(cls, value: dict[str, str]) -> dict[str, str]:
        """Every key names a gate or a catalogue requirement, and every reason says something."""
        known = set(catalogue()) | {r.id for r in requirement_catalogue().requirements}
        unknown = [key for key in value if key not in known]
        if unknown:
            msg = f"not_applicable: {', '.join(unknown)} is neither a gate nor a catalogue requirement"
            raise ValueError(msg)
        empty = [key for key, reason in value.items() if not reason.strip()]
        if empty:
            msg = f"not_applicable.{empty[0]}: give the reason it does not apply"
            raise ValueError(msg)
        return value

    @field_validator("required_gates")
    @classmethod
    def _known_gates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Every required gate must be one the harness defines."""
        known = catalogue()
        unknown = [gate for gate in value if gate not in known]
        if unknown:
            msg = f"unknown gate(s) {', '.join(unknown)}; known: {', '.join(known)}"
            raise ValueError(msg)
        return value


class CertifyConfigBase(Section):
    """Common part of the config model; `gates` is added from the gate registry."""

    target: TargetSection = Field(description="Identity of the service.")
    install: InstallSection = Field(InstallSection(), description="Installing it into its own venv.")
    tests: TestsSection = Field(TestsSection(), description="Running its own test suite.")
    bootstrap: BootstrapSection | None = Field(None, description="Clean clone to running service (gate G7).")
    service: ServiceSection | None = Field(None, description="Starting one isolated instance (service gates).")
    certificate: CertificateSection = Field(CertificateSection(), description="Required gates and sign-off.")
    notify: NotifySection = Field(NotifySection(), description="Alert hooks after a run (never change a verdict).")
    waivers: tuple[Waiver, ...] = Field(
        (), description="Requested waivers: shown on the report, never honoured (waivers come from the policy)."
    )

    @model_validator(mode="after")
    def _test_dependencies(self) -> CertifyConfigBase:
        """[tests] dependencies name declared service dependencies; its env names only their placeholders."""
        declared = self.service.dependencies if self.service is not None else {}
        unknown = [name for name in self.tests.dependencies if name not in declared]
        if unknown:
            names = ", ".join(declared) or "none"
            msg = f"tests.dependencies: {', '.join(unknown)} not among [service.dependencies] ({names})"
            raise ValueError(msg)
        known = {"python", "target_dir"} | {
            f"{d}_{p}" for d in self.tests.dependencies for p in ("url", "port", "host")
        }
        for value in self.tests.env.values():
            for _, field, spec, conversion in string.Formatter().parse(value):
                if field is not None and (spec or conversion or field not in known):
                    msg = f"tests.env: placeholder {{{field}}} in {value!r}; known: {', '.join(sorted(known))}"
                    raise ValueError(msg)
        return self

    def policy(self, gate_id: str) -> Any:
        """Return the validated thresholds table of one gate."""
        return getattr(self.gates, gate_id)  # type: ignore[attr-defined]

    @field_validator("service")
    @classmethod
    def _placeholders(cls, value: ServiceSection | None) -> ServiceSection | None:
        """Reject templates naming placeholders the harness cannot fill."""
        if value is None:
            return value
        known = BASE_PLACEHOLDERS | {f"{dep}_{part}" for dep in value.dependencies for part in ("url", "port", "host")}
        templates = [*value.command, *(value.log_file or "",), *value.env.values()]
        for dep in value.dependencies.values():
            templates.extend(dep.command)
        for template in templates:
            for _, field, spec, conversion in string.Formatter().parse(template):
                if field is not None and (spec or conversion):
                    msg = f"placeholder {{{field}}} in {template!r} must not carry a format spec or conversion"
                    raise ValueError(msg)
                if field is not None and field not in known:
                    msg = f"unknown placeholder {{{field}}} in {template!r}; known: {', '.join(sorted(known))}"
                    raise ValueError(msg)
        return value


@functools.cache
def config_model() -> type[CertifyConfigBase]:
    """Build the config model with one table per registered gate."""
    fields: dict[str, Any] = {gate.spec.id: (gate.policy_model, gate.policy_model()) for gate in all_gates()}
    gates_model = create_model("GatesConfig", __base__=Section, **fields)
    model = create_model(
        "CertifyConfig",
        __base__=CertifyConfigBase,
        gates=(gates_model, Field(gates_model(), description="One thresholds table per gate.")),
    )
    return cast(type[CertifyConfigBase], model)


def format_validation_error(source: str, error: ValidationError) -> str:
    """Render one pydantic error as one line naming file, key path, value and expectation.

    An unknown key is reported before anything else: a misspelt required key also shows up as
    "missing", and the misspelling is what the user needs to see (with a suggestion).
    """
    errors = sorted(error.errors(include_url=False), key=lambda item: item["type"] != "extra_forbidden")
    first = errors[0]
    key = _key_path(first["loc"])
    kind = first["type"]
    if kind == "missing":
        line = f"{source}: {key}: missing required key"
    elif kind == "extra_forbidden":
        line = f"{source}: {key}: unknown key (misspelt?) with value {_short(first['input'])}"
        missing = [
            str(item["loc"][-1])
            for item in errors
            if item["type"] == "missing" and tuple(item["loc"][:-1]) == tuple(first["loc"][:-1])
        ]
        guess = difflib.get_close_matches(str(first["loc"][-1]), missing, n=1)
        if guess:
            line += f"; did you mean {guess[0]!r}?"
    else:
        line = f"{source}: {key}: got {_short(first['input'])}: {first['msg']}"
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return line


def _key_path(loc: tuple[int | str, ...]) -> str:
    """A dotted key path; odd keys (spaces, dots, newlines) are quoted so the line stays one line."""
    parts = []
    for part in loc:
        text = str(part)
        parts.append(text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else json.dumps(text))
    return ".".join(parts) or "(top level)"


def _short(value: Any) -> str:
    """A short, single-line repr of a bad value."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def load_config(target_dir: Path) -> CertifyConfigBase:
    """Read and validate `<target_dir>/certify.toml`; every problem is a ConfigError."""
    path = target_dir / CONFIG_NAME
    raw_bytes = read_settings_file(path, missing_hint="point --target at a directory holding certify.toml")
    return parse_config(parse_toml(raw_bytes, str(path)), str(path))


def read_settings_file(path: Path, missing_hint: str, error: type[ConfigError] = ConfigError) -> bytes:
    """The bytes of a settings file (certify.toml, a policy); missing or unreadable raises `error` naming `path`."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        msg = f"{path}: not found"
        raise error(msg, hint=missing_hint) from None
    except OSError as exc:
        msg = f"{path}: cannot read: {exc.strerror}"
        raise error(msg) from None


def parse_toml(raw: bytes, source: str, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """TOML bytes as data; text that is not UTF-8, not TOML or nested too deeply raises `error` naming `source`."""
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        msg = f"{source}: not UTF-8 text at byte {exc.start}"
        raise error(msg) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"{source}: invalid TOML: {exc}"
        raise error(msg) from None
    except RecursionError:
        msg = f"{source}: invalid TOML: nested too deeply"
        raise error(msg) from None


def parse_config(data: dict[str, Any], source: str) -> CertifyConfigBase:
    """Validate already-parsed config data (from TOML or a pack's stored JSON)."""
    try:
        return config_model().model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def resolved_json(config: CertifyConfigBase) -> dict[str, Any]:
    """The fully resolved config (defaults filled in) as JSON-ready data."""
    return config.model_dump(mode="json")


def canonical_digest(data: Any) -> str:
    """sha256 of the canonical JSON form (sorted keys, no spaces) of data."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of certify.toml, for editors."""
    schema = config_model().model_json_schema()
    schema["title"] = "certify.toml"
    return schema
