"""The playbook gate's config model: how the target lists, injects, heals and reports, and the harness's own probes.

Everything the gate does to a target is declared here as data in `[gates.PB]` of certify.toml: HTTP
request templates (`{id}`, `{incident_id}`, `{approval_id}`, `{request_id}` are filled), JSON field paths
(dotted, e.g. `checks.store.ok`), and probes the harness runs itself (HTTP, files in the data dir, a
process named by a pid file, a read-only SQLite query). The harness never imports target code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.errors import ConfigError
from harness.gate import Policy


class Spec(BaseModel):
    """Base of every table: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Request(Spec):
    """One HTTP request template sent to the instance on 127.0.0.1."""

    method: Literal["GET", "POST", "PUT", "DELETE"] = "GET"
    path: str = Field(description="Path with placeholders such as {id}, {incident_id}, {approval_id}, {request_id}.")
    body: dict[str, Any] | None = Field(None, description="JSON body (playbook options are merged into inject).")
    timeout_s: float = Field(5.0, gt=0, le=120, description="Seconds to wait for the answer before recording an error.")


class TargetApi(Spec):
    """How the harness talks to the target's self-healing interface; no target's paths are assumed.

    The three requests every run needs (list, inject, incidents) are required. Every other request is an
    optional capability: left undeclared, the checks that need it report NOT_RUN (or n/a, for a cross-check
    of the target's own claims) with a reason naming the key, never PASS.
    """

    list_playbooks: Request = Field(description="Lists the playbooks (their ids and tiers).")
    list_items: str = Field("playbooks", description="Field of the list answer holding the playbooks.")
    id_field: str = "id"
    tier_field: str = "tier"
    fault_field: str = Field("fault", description="Field describing the injected fault (reported only).")
    inject: Request = Field(
        description="Causes playbook {id}'s fault. An injector that waits for the target to be quiet enough "
        "to plant its fault answers later than an ordinary call: give it a timeout_s of its own."
    )
    dry_run: Request | None = Field(
        None, description="Dry-run of playbook {id}; none: the dry-run and the parameter cases are NOT_RUN."
    )
    incidents: Request = Field(description="Lists the incidents (every one the run may have caused).")
    incidents_items: str = "incidents"
    incident_id_field: str = "id"
    incident_playbook_field: str = "playbook_id"
    incident_status_field: str = "status"
    incident_recovery_field: str = Field("recovery_s", description="The target's own recovery figure (reported).")
    healed: tuple[str, ...] = ("healed",)
    final: tuple[str, ...] = ("healed", "rolled_back", "failed", "timed_out", "rejected", "cleared")
    approvals: Request | None = Field(
        None, description="Pending approval requests; none (or no approve): tier 2/3 playbooks are NOT_RUN."
    )
    approvals_items: str = "approvals"
    approval_id_field: str = "id"
    approval_playbook_field: str = "playbook_id"
    approve: Request | None = Field(None, description="Approves {approval_id}; none: tier 2/3 playbooks are NOT_RUN.")
    rollback: Request | None = Field(None, description="Rolls back {incident_id}; none: each rollback is NOT_RUN.")
    rollback_request_field: str = "request_id"
    rollback_status: Request | None = Field(
        None, description="State of rollback {request_id}; none: each rollback is NOT_RUN (its end cannot be seen)."
    )
    rollback_status_field: str = "status"
    rollback_done: tuple[str, ...] = ("done",)
    rollback_failed: tuple[str, ...] = ("failed",)
    clock: Request | None = Field(
        None,
        description="Sets the governance clock; body {<clock_field>: epoch} (null clears). None: the change-window "
        "refusal is NOT_RUN, and H12 (which must move the clock) FAILs naming the key.",
    )
    clock_field: str = "epoch"
    incident_detected_field: str = Field("detected_at", description="Epoch seconds of detection; empty: unknown.")
    incident_resolved_field: str = Field("resolved_at", description="Epoch seconds of resolution; empty: unknown.")
    stats: Request | None = Field(
        None,
        description="The target's healing statistics, cross-checked against its incident list; none: n/a (H6).",
    )
    stats_incidents_field: str = Field("incidents", description="Stats field: total incidents (empty: unchecked).")
    stats_outcomes_field: str = Field("outcomes", description="Stats field: {status: count} (empty: unchecked).")
    stats_recovery_count_field: str = Field("mttr_s.count", description="Stats field: healed recoveries counted.")
    stats_recovery_max_field: str = Field("mttr_s.max", description="Stats field: the largest recovery (s).")
    audit_verify: Request | None = Field(
        None, description="The target's own audit-chain verification; none: not read (S6 is the harness's own)."
    )
    audit_intact_field: str = "intact"
    learning: Request | None = Field(
        None, description="H14: the learning aggregates (outcomes per window), recomputed from the incident list."
    )
    learning_windows: dict[str, float] = Field(
        {"24h": 86_400.0, "7d": 604_800.0, "all": 0.0},
        description="Learning answer key -> window length in seconds (0: all time).",
    )
    learning_outcomes_field: str = Field("outcomes", description="Field of a window holding {status: count}.")
    scheduler_counters: Request | None = Field(
        None, description="H14: the scheduler counters, recomputed from the audit log ([gates.PB] audit)."
    )
    counter_audit_actions: dict[str, str] = Field(
        default_factory=dict, description="Counter name -> the audit action each increment writes."
    )


def undeclared_notes(api: TargetApi) -> list[str]:
    """One line per optional cross-check left undeclared whose checks say n/a or are not made (pure).

    The capabilities whose absence makes a check NOT_RUN say so in that check's own reason.
    """
    notes = []
    if api.stats is None:
        notes.append("[gates.PB.api] stats not declared: the healer stats (H6) are not cross-checked (n/a)")
    if api.learning is None and api.scheduler_counters is None:
        notes.append("[gates.PB.api] learning and scheduler_counters not declared: H14 is not cross-checked (n/a)")
    if api.audit_verify is None:
        notes.append("[gates.PB.api] audit_verify not declared: the target's own audit-chain verification is not read")
    return notes


class HttpProbe(Spec):
    """Healthy when GET path answers an expected status (and a JSON field holds a value)."""

    kind: Literal["http"]
    path: str
    status: tuple[int, ...] = (200,)
    field: str = Field("", description="Dotted JSON field to read; empty: status only.")
    equals: Any = None


class FileProbe(Spec):
    """Healthy when files under the data dir (a glob; newest match) satisfy every given check."""

    kind: Literal["file"]
    path: str = Field(description="Glob relative to the data dir; '.' is the data dir itself.")
    absent: bool = Field(False, description="Healthy only when nothing matches.")
    max_bytes: int | None = Field(None, description="Newest match at most this size (no match counts as healthy).")
    max_age_s: float | None = Field(None, description="Newest match modified at most this long ago (needs a match).")
    mode_forbid: int | None = Field(None, description="Permission bits that must be clear, e.g. 18 (0o022).")


class ProcessProbe(Spec):
    """Healthy when the pid a pid file names is alive, not stopped, and within a memory bound."""

    kind: Literal["process"]
    pid_file: str = Field(description="Pid file relative to the data dir (glob; first match).")
    max_rss_mb: float | None = None


class SqliteProbe(Spec):
    """Healthy when a read-only query's first value meets the expectation; `write` probes the write lock."""

    kind: Literal["sqlite"]
    database: str = Field(description="Database relative to the data dir (glob; newest match).")
    query: str = ""
    equals: Any = None
    max: float | None = None
    write: bool = Field(False, description="Instead: can BEGIN IMMEDIATE within write_timeout_ms.")
    write_timeout_ms: int = Field(300, ge=10, le=5000)


Probe = Annotated[HttpProbe | FileProbe | ProcessProbe | SqliteProbe, Field(discriminator="kind")]


class PlaybookCheck(Spec):
    """How one playbook is exercised: injector options, the probes that see its fault, rollback meaning."""

    probes: tuple[str, ...] = Field(min_length=1, description="Probe names: unhealthy after injection, healthy after.")
    options: dict[str, Any] = Field(default_factory=dict, description="Injector options sent with inject.")
    dry_run_params: dict[str, Any] | None = Field(
        None, description="Parameters of the dry-run request (none: defaults)."
    )
    observe_s: float = Field(10.0, gt=0, le=120, description="How long the fault may take to become observable.")
    rollback: Literal["exact", "none"] = Field(
        "exact", description="exact: state after rollback must equal the snapshot before execute."
    )
    rollback_ignore: tuple[str, ...] = Field((), description="Extra volatile globs for the rollback comparison.")
    rollback_probes: tuple[str, ...] = Field(
        (), description="Probes whose health after rollback must equal their health before execute; default: probes."
    )
    recovery_budget_s: float | None = Field(None, gt=0, description="Override of the gate's recovery budget.")
    rollback_steps: tuple[str, ...] = Field(
        (),
        description="H4: the steps of its rollback; each must appear in its runbook's rollback section "
        "(needed when rollback = exact and [gates.PB.rollback_docs] is set).",
    )


class SqliteSnapshot(Spec):
    """One read-only query whose rows are part of the observable state."""

    database: str
    query: str
    rollback: bool = Field(False, description="Also compared after rollback with the state before execute.")


class AuditChain(Spec):
    """How to read and recompute the target's audit chain."""

    database: str
    query: str = Field(description="Rows of (seq, prev_hash, hash, material...) in chain order.")
    material: tuple[Literal["text", "repr"], ...] = Field(
        min_length=1, description="How each material column is written."
    )
    encoding: Literal["sha256-json-array"] = "sha256-json-array"
    genesis: str = Field("0" * 64, description="prev_hash of the first entry.")


class WatchdogCheck(Spec):
    """A run forced past the target's watchdog on a separate instance, and the outcome expected."""

    playbook: str
    instance_env: dict[str, str] = Field(default_factory=dict, description="Environment that shortens the watchdog.")
    options: dict[str, Any] = Field(default_factory=dict, description="Injector options that make the run overrun.")
    expect_status: tuple[str, ...] = ("timed_out",)
    audit_action: str = "timed_out"
    timeout_s: float = Field(90.0, gt=0)


class ParamsCheck(Spec):
    """Out-of-bounds parameters sent with a dry-run request; a 4xx answer is a rejection."""

    playbook: str
    params: dict[str, Any]
    audit_action: str = Field("", description="Audit action recording the refusal; empty: the target declares none.")


class WorkStream(Spec):
    """The ledger's unit of work, submitted throughout each playbook run and reconciled by id.

    No target's requests are assumed: submit and status are required once [gates.PB.work] is declared.
    """

    submit: Request = Field(description="Submits one unit of work; its answer names the unit's id (id_field).")
    id_field: str = "id"
    status: Request = Field(description="Reads unit {id}; its answer holds the state (status_field).")
    status_field: str = "status"
    completed: tuple[str, ...] = ("completed",)
    failed: tuple[str, ...] = ("failed", "cancelled")
    rate_per_s: float = Field(4.0, gt=0, le=50)
    drain_s: float = Field(60.0, gt=0, le=600)


#: The privileged actions a playbook may declare (the standard policy allows each of them).
ACTIONS = (
    "signal", "restart", "file-delete", "file-write", "file-mode", "sqlite-write", "config-write", "process-limit",
)  # fmt: skip


class SandboxCheck(Spec):
    """S5: what the harness measures on the running governance instance, and the bounds it holds it to."""

    allow_root: bool = Field(False, description="The service may run as root (policy: never); needs root_reason.")
    root_reason: str = Field("", description="Why the service must run as root (printed with the check).")
    listen_hosts: tuple[str, ...] = Field(
        ("127.0.0.1",), description="The only addresses the instance's processes may listen on."
    )
    secret_files: tuple[str, ...] = Field(
        (), description="Globs (data dir) of secret files that must be 0600 or stricter, besides *.pem/*.key found."
    )
    actions_field: str = Field(
        "actions", description="Field of each listed playbook naming the privileged actions it may take."
    )
    allowed_actions: tuple[str, ...] = Field(
        ACTIONS,
        description="Privileged actions a playbook may declare (policy: a subset of these; process-limit: "
        "changing a process's resource limits, e.g. RLIMIT_FSIZE).",
    )


class AtRestStore(Spec):
    """S7: one store of the target, how a canary reaches it through the API, and whether it is sensitive."""

    name: str = Field(description="The store's name in its check, 'S7 <name> canary not in plaintext'.")
    paths: tuple[str, ...] = Field(min_length=1, description="Globs (data dir) of the store's files.")
    write: Request = Field(description="Request carrying the canary: every '{canary}' in its body is replaced.")
    id_field: str = Field("id", description="Field of the write answer naming the record (fills {id} in read).")
    read: Request = Field(description="Read-back request; its answer must hold the canary (it was stored).")
    sensitive: bool = Field(True, description="False: the canary may be in plaintext (policy: needs a reason).")
    reason: str = Field("", description="Why a store is not sensitive.")


class AtRestCheck(Spec):
    """S7: the stores searched for a canary written through the API."""

    stores: tuple[AtRestStore, ...] = Field(min_length=1, description="The stores, one canary each.")
    settle_s: float = Field(1.0, ge=0, le=60, description="Wait after the read-back before searching the files.")
    max_file_bytes: int = Field(512 * 1024 * 1024, gt=0, description="Larger files are not searched (INCONCLUSIVE).")


class FailureMode(Spec):
    """H3: one of the target's most likely failure modes and the playbook that handles it."""

    id: str = Field(min_length=1, description="Stable name of the failure mode.")
    title: str = Field("", description="What goes wrong, in a sentence (shown in the report).")
    playbook: str = Field(min_length=1, description="Id of the playbook that detects, heals and verifies it.")


class RollbackDocs(Spec):
    """H4: where each playbook's runbook lives and which section documents its rollback."""

    runbook: str = Field(
        "docs/playbooks/{id}.md", description="Runbook path relative to the target dir; {id} is the playbook id."
    )
    section: str = Field("Rollback", min_length=1, description="Heading (case-insensitive) of the rollback section.")


class CanaryFault(Spec):
    """H7: a fault at the layer one canary watches, caused on the canary instance."""

    layer: str = Field(min_length=1, description="The layer label whose canary must move, e.g. L4.")
    title: str = Field("", description="What the fault is, e.g. 'upstream port closed'.")
    stop_dependency: str = Field("", description="Stop this dependency of the instance (its port closes).")
    inject: str = Field("", description="Or: inject this playbook's fault through [gates.PB.api] inject.")
    toxic: str = Field(
        "",
        description="Or: add this Toxiproxy toxic (e.g. limit_data) to the harness's proxy in front of the API, "
        "which the canaries reach it through ([gates.PB.canaries] front_env); removed after the reaction.",
    )
    stream: Literal["upstream", "downstream"] = Field("downstream", description="The toxic's direction.")
    attributes: dict[str, int] = Field(default_factory=dict, description="The toxic's attributes, e.g. bytes.")


class CanaryCheck(Spec):
    """H7: the target's canary metrics per layer, how often they run, and the faults that must move them."""

    layers: tuple[str, ...] = Field(
        ("L2", "L3", "L4", "L5", "L6", "L7"), min_length=1, description="The layer label values, one canary each."
    )
    layer_label: str = Field("layer", description="Label of the canary metrics naming the layer.")
    up_metric: str = Field(min_length=1, description="Gauge per layer: 1 passed, 0 failed (the target's name).")
    last_check_metric: str = Field(
        min_length=1, description="Gauge per layer: when its probe last ran (the target's name)."
    )
    interval_s: float = Field(5.0, gt=0, le=300, description="How often each canary runs (the target's figure).")
    slack_s: float = Field(3.0, ge=0, le=60, description="Allowed beyond interval_s: one probe's run and a scrape.")
    scrape_interval_s: float = Field(0.5, gt=0, le=10, description="How often the harness scrapes the metrics.")
    unobservable: dict[str, str] = Field(
        default_factory=dict, description="Layers no fault can be caused at on this host, each with the reason."
    )
    faults: tuple[CanaryFault, ...] = Field((), description="One fault per layer the harness can cause.")
    must_react: tuple[str, ...] = Field(
        ("L4", "L5", "L6", "L7"),
        description="Layers whose canary must be shown moving under a fault of its own: one of them (among "
        "`layers`) with no fault declared is NOT_RUN, never PASS. Layers left out (policy: at most L2 and L3, "
        "where a loopback host cannot be faulted without touching its real interfaces) are reported unobservable.",
    )
    front_env: str = Field(
        "",
        description="Environment variable (host:port) naming the address the target's canaries reach the API "
        "through; the harness's Toxiproxy-compatible proxy listens there for the toxic faults. Empty: none.",
    )


class DuplicateGuardCheck(Spec):
    """H12: one approval-needing fault caused three times on an instance of its own, the governance clock moved.

    The first request must be accepted, a second for the same service and diagnosis `window_s - margin_s`
    later refused and audited, a third `window_s + margin_s` after the first accepted again.
    """

    playbook: str = Field(
        min_length=1, description="A tier 2/3 playbook whose fault clears by itself (its incident closes unapproved)."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Injector options sent with each injection.")
    window_s: float = Field(600.0, gt=0, description="The guard's window (requirement H12: 10 minutes).")
    margin_s: float = Field(60.0, gt=0, description="How far inside and past the window the 2nd and 3rd requests are.")
    approvals: Request = Field(description="Lists every approval request, whatever its status.")
    service_field: str = Field("service", description="Field of an approval naming its service.")
    diagnosis_field: str = Field("diagnosis", description="Field of an approval naming its diagnosis.")
    requested_at_field: str = Field("requested_at", description="Epoch of the request (reported); empty: none.")
    accepted_audit_action: str = Field("approval_requested", description="Audit action of an accepted request.")
    refused_audit_action: str = Field("duplicate_suppressed", description="Audit action of a refused duplicate.")
    step_timeout_s: float = Field(
        45.0, gt=0, le=600, description="How long to wait for each decision, and for each incident to close."
    )


class PlaybookPolicy(Policy):
    """Thresholds and the target's declarations for the playbook gate (requirements H1, H2, H5, H8-H11, H13)."""

    expected_count: int = Field(31, ge=0, description="Playbooks the target must list (requirement H1: 31).")
    parallel: int = Field(2, ge=1, le=16, description="Playbooks verified at once, each on its own instance.")
    repetitions: int = Field(3, ge=1, le=20, description="Runs per playbook in release mode.")
    repetitions_ci: int = Field(1, ge=1, le=20, description="Runs per playbook in ci mode.")
    recovery_budget_s: float = Field(120.0, gt=0, description="Requirement H5: recovery within 2 minutes.")
    refusal_observe_s: float = Field(4.0, gt=0, le=120, description="How long a refused action must stay refused.")
    settle_s: float = Field(30.0, gt=0, description="Wait for start-up incidents to close before injecting.")
    service_args: tuple[str, ...] = Field((), description="Arguments appended to the [service] command.")
    service_env: dict[str, str] = Field(default_factory=dict, description="Environment added for the instances.")
    hold_pid_file: str = Field(
        "",
        description="Pid file (glob) of the process that executes playbooks; SIGSTOPped while the harness "
        "takes the pre-execute snapshot and runs the dry-run. Empty: those checks cannot run.",
    )
    volatile: tuple[str, ...] = Field((), description="Globs (data dir) left out of file snapshots: live logs, db.")
    rollback_ignore: tuple[str, ...] = Field((), description="Globs left out of every rollback comparison.")
    audit: SqliteSnapshot | None = Field(None, description="Query listing the audit log: (seq, actor, action, detail).")
    audit_chain: AuditChain | None = Field(
        None, description="S6: the hash-chained audit log and how to recompute it; unset: S6 is not judged."
    )
    window_tier: int = Field(3, ge=1, description="Lowest tier the change window applies to.")
    in_window_epoch: float | None = Field(None, description="Governance time inside the window; default: Monday 10:00.")
    out_of_window_epoch: float | None = Field(None, description="Outside the window; default: Saturday 12:00.")
    audit_actions: dict[str, str] = Field(
        default_factory=lambda: {"needs_approval": "blocked", "outside_window": "blocked"},
        description="Audit action expected for each refusal.",
    )
    api: TargetApi | None = Field(
        None,
        description="The target's self-healing interface; required as soon as [gates.PB] sets anything "
        "(none only when PB is not configured).",
    )
    work: WorkStream | None = Field(
        None,
        description="The work ledger: work submitted throughout each playbook run, reconciled by id (nothing "
        "lost or duplicated). None: the ledger check of every run is NOT_RUN naming [gates.PB.work], never PASS.",
    )
    probes: dict[str, Probe] = Field(default_factory=dict, description="The harness's own probes, by name.")
    health: tuple[str, ...] = Field((), description="Probes that must be healthy for any playbook to count healed.")
    snapshot_sqlite: tuple[SqliteSnapshot, ...] = Field((), description="Queries part of the dry-run snapshot.")
    snapshot_api: tuple[Request, ...] = Field((), description="GET requests whose answers are part of the snapshot.")
    playbooks: dict[str, PlaybookCheck] = Field(default_factory=dict, description="Per-playbook declarations.")
    watchdog: WatchdogCheck | None = Field(None, description="How to force a run past the watchdog; none: NOT_RUN.")
    params: tuple[ParamsCheck, ...] = Field((), description="Out-of-bounds parameter cases.")
    sandbox: SandboxCheck | None = Field(None, description="S5 on the governance instance; unset: S5 is not judged.")
    at_rest: AtRestCheck | None = Field(None, description="S7 canary search; unset: S7 is not judged.")
    failure_modes: tuple[FailureMode, ...] = Field(
        (), description="H3: the target's most likely failure modes, most likely first, each with its playbook."
    )
    min_failure_modes: int = Field(10, ge=1, description="H3: failure modes that must be declared (the top 10).")
    rollback_docs: RollbackDocs | None = Field(
        None, description="H4: runbook of each playbook, its rollback section cross-checked; unset: H4 not judged."
    )
    canaries: CanaryCheck | None = Field(
        None, description="H7: canary metrics live per layer, faults moving them; unset: H7 not judged."
    )
    duplicates: DuplicateGuardCheck | None = Field(
        None, description="H12: the duplicate approval-request guard, with the clock moved; unset: H12 not judged."
    )

    @model_validator(mode="before")
    @classmethod
    def _api_once_configured(cls, data: Any) -> Any:
        """A [gates.PB] table that sets anything must declare [gates.PB.api] (its required requests show missing)."""
        if isinstance(data, dict) and data and "api" not in data:
            return {**data, "api": {}}
        return data

    @property
    def target_api(self) -> TargetApi:
        """[gates.PB.api]; a ConfigError when PB is not configured (the gate and the soak check before use)."""
        if self.api is None:
            msg = "[gates.PB.api] is not declared: the harness has no request to list, inject or read incidents with"
            raise ConfigError(msg)
        return self.api
