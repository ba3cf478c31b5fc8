"""The chaos gate's config model: how work is submitted and read back, and the experiments to run.

Everything here is data read from `[gates.G4]` of certify.toml. An experiment names one fault (its
`type` picks the injector module under chaos/faults/), the unit of work the background stream and the
probes submit, and how long the fault lasts; the gate-wide table gives the recovery budget, the probe
cadence and the repetitions.
"""

from __future__ import annotations

import random
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chaos.rollback_spec import RollbackDrill
from harness.gate import Policy


class Spec(BaseModel):
    """Base of every table: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _default_bodies() -> dict[str, dict[str, Any]]:
    """One empty JSON body named `default`."""
    return {"default": {}}


class TaskApi(Spec):
    """How a unit of work is submitted and how its fate is read back by id."""

    submit_path: str = Field("/api/tasks", description="POST here with a JSON body; 2xx with an id = accepted.")
    status_path: str = Field("/api/tasks/{id}", description="GET here to read one task; {id} is filled.")
    id_field: str = Field("id", description="Field of the submit answer holding the id.")
    status_field: str = Field("status", description="Field of the status answer holding the state.")
    completed: tuple[str, ...] = Field(("completed",), description="States meaning done successfully.")
    failed: tuple[str, ...] = Field(("failed", "cancelled"), description="Terminal states that are not success.")
    completions_field: str = Field(
        "", description="Field of the status answer counting completions of that task (duplicates), if any."
    )
    completions_metric: str = Field(
        "", description="Prometheus counter (summed over labels) of completions, read at [service] metrics."
    )
    submissions_metric: str = Field(
        "",
        description="Prometheus counter of accepted submissions: tasks the target accepted while the client saw "
        "no answer (a timed-out 201) are then not mistaken for duplicate completions.",
    )
    bodies: dict[str, dict[str, Any]] = Field(
        default_factory=_default_bodies, description="Named JSON bodies; experiments pick one by `work`."
    )
    timeout_s: float = Field(2.0, gt=0, le=30, description="Timeout of each HTTP call of the stream and probes.")


class KillFault(Spec):
    """C1: send a signal (SIGKILL by default) to the process named by a pid file under the data dir."""

    type: Literal["kill"]
    pid_file: str = Field(description="Glob relative to the data dir, e.g. pids/worker-*.pid; the first match.")
    signal: str = Field("SIGKILL", description="Signal name.")


class ToxicFault(Spec):
    """C2: a Toxiproxy toxic on the proxy in front of a dependency."""

    type: Literal["toxic"]
    dependency: str = Field(description="Name of a [service.dependencies] entry.")
    toxic: Literal["latency", "bandwidth", "timeout", "reset_peer", "slow_close", "slicer", "limit_data"]
    stream: Literal["upstream", "downstream"] = "downstream"
    toxicity: float = Field(1.0, ge=0, le=1)
    attributes: dict[str, int] = Field(default_factory=dict)


class ProxyDownFault(Spec):
    """C2: the dependency link down (proxy disabled: connections refused and dropped)."""

    type: Literal["proxy_down"]
    dependency: str


class ControlFault(Spec):
    """C2: put the dependency in a failure mode through its own control endpoint (429, 5xx, ...)."""

    type: Literal["http_control"]
    dependency: str
    path: str = Field("/control", description="Control endpoint of the dependency.")
    inject: dict[str, Any] = Field(description="JSON body that turns the failure on.")
    restore: dict[str, Any] = Field(description="JSON body that turns it off again.")


class DependencyKillFault(Spec):
    """C2: a dependency's process group signalled (the database crashes), started again the same way afterwards."""

    type: Literal["dependency_kill"]
    dependency: str = Field(description="Name of a [service.dependencies] entry (any kind).")
    signal: Literal["SIGKILL", "SIGTERM", "SIGQUIT", "SIGINT"] = Field(
        "SIGKILL", description="Sent to the dependency's whole process group (SIGKILL: a crash, no clean-up)."
    )


class PgLockFault(Spec):
    """C2: a PostgreSQL dependency's table locked by a harness session: every query on it waits, pooled ones too."""

    type: Literal["pg_lock"]
    dependency: str = Field(description="Name of a [service.dependencies] entry of kind postgresql.")
    table: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="Table to lock (lower-case SQL identifier).")
    mode: Literal["ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE"] = Field(
        "ACCESS EXCLUSIVE", description="Lock mode held for the window (ACCESS EXCLUSIVE also blocks reads)."
    )


class DnsFault(Spec):
    """C2: the dependency's host name stops resolving, for the target's processes only."""

    type: Literal["dns"]
    dependency: str
    hostname: str = Field("upstream.chaos.invalid", description="Name the target is given (reserved .invalid TLD).")


class DiskFullFault(Spec):
    """C3: the data dir sits on a size-limited tmpfs, filled up for the fault window."""

    type: Literal["disk_full"]
    size_mb: int = Field(64, ge=8, le=4096, description="Size of the tmpfs the instance's data dir lives on.")


class ReadOnlyFault(Spec):
    """C3: write access to the data dir and these files removed for the fault window."""

    type: Literal["read_only"]
    paths: tuple[str, ...] = Field(("",), description="Paths relative to the data dir ('' = the dir itself).")


class FileLockFault(Spec):
    """C3: an exclusive SQLite lock (BEGIN EXCLUSIVE) held on a database under the data dir."""

    type: Literal["file_lock"]
    database: str = Field(description="SQLite file relative to the data dir.")


class MemoryFault(Spec):
    """C4: an address-space limit (RLIMIT_AS) on a target process, restored afterwards."""

    type: Literal["memory_limit"]
    pid_file: str = Field(description="Glob relative to the data dir of the process to limit.")
    headroom_mb: int = Field(0, ge=0, description="Limit = the process's current address space + this.")


class GpuFault(Spec):
    """C4: GPU memory pressure; NOT_APPLICABLE on a machine without a GPU."""

    type: Literal["gpu_pressure"]


Fault = Annotated[
    KillFault
    | ToxicFault
    | ProxyDownFault
    | ControlFault
    | DependencyKillFault
    | PgLockFault
    | DnsFault
    | DiskFullFault
    | ReadOnlyFault
    | FileLockFault
    | MemoryFault
    | GpuFault,
    Field(discriminator="type"),
]


class RoleSpec(Spec):
    """A role of the target's process tree (#25): which of the instance's processes play it, and how many."""

    cmdline: str = Field(
        description="Regular expression searched in each process's command line (arguments joined by spaces), "
        "e.g. 'guardian worker'; processes are the service's process group and descendants."
    )
    count: int | None = Field(
        None,
        ge=0,
        description="Processes of this role in steady state; another count before a fault is "
        "INCONCLUSIVE (default: whatever the harness counts before each fault).",
    )
    metric: str = Field(
        "",
        description="Prometheus gauge (summed over labels) in which the target publishes its own count of this "
        "role, e.g. guardian_workers_alive; before the fault and after recovery it must equal the process tree's.",
    )


class CapacitySpec(Spec):
    """How completed-work throughput is measured before each fault and after recovery (#25)."""

    work: str = Field(
        "", description="Body in [gates.G4.tasks.bodies] of the burst ('' = the experiment's own work body)."
    )
    burst: int = Field(24, ge=2, le=500, description="Units of work submitted at once; the rate they complete at.")
    min_fraction: float = Field(
        0.8,
        gt=0,
        le=1,
        description="After recovery the burst must complete at least this fraction of the pre-fault rate.",
    )
    min_window_s: float = Field(
        1.0,
        gt=0,
        description="A pre-fault burst finishing faster than this measured no capacity (INCONCLUSIVE): "
        "use a heavier body or a bigger burst.",
    )
    timeout_s: float = Field(30.0, gt=0, description="Time allowed for a burst to complete.")


class Experiment(Spec):
    """One chaos experiment: a fault, the work that must survive it, and how long the fault lasts."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Stable id, e.g. C1-worker-kill.")
    title: str = Field(description="What is done to the target, in words.")
    requirement: Literal["C1", "C2", "C3", "C4"] = Field(description="The chaos requirement it evidences.")
    fault: Fault
    work: str = Field("", description="Name of the body in [gates.G4.tasks.bodies] to submit ('' = the first).")
    fault_s: float | None = Field(None, gt=0, description="Fault window (release); default: the gate's fault_s.")
    recovery_budget_s: float | None = Field(None, gt=0, description="Override of the gate's recovery budget.")
    optional: bool = Field(False, description="If it cannot run (NOT_RUN), G4 may still PASS.")
    exclusive: bool = Field(
        False, description="Run with no other experiment at the same time (its fault touches something shared)."
    )
    fresh_instance: bool = Field(
        False,
        description="Start a new instance for every repetition (default: repetitions run back to back on one "
        "instance, each from its own measured steady state).",
    )


class ChaosPolicy(Policy):
    """G4 thresholds and the experiments (Requirement G4: automatic recovery within 60 s, no data loss)."""

    recovery_budget_s: float = Field(60.0, gt=0, description="Requirement G4: recovery within 60 s of fault removal.")
    probe_interval_s: float = Field(
        0.1, ge=0.05, le=0.25, description="Recovery probe cadence (at most 250 ms; each probe submits a task)."
    )
    healthy_latency_s: float = Field(
        3.0, gt=0, description="A probe is healthy when ready and its fresh task completes within this."
    )
    stable_s: float = Field(2.0, ge=0, description="Healthy probes needed for this long to call it recovered.")
    work_rate_per_s: float = Field(4.0, gt=0, le=100, description="Background work submissions per second.")
    baseline_s: float = Field(2.0, ge=0, description="Work and probes before the fault is injected.")
    fault_s: float = Field(10.0, gt=0, description="Fault window in release mode.")
    ci_fault_s: float = Field(3.0, gt=0, description="Fault window in ci mode.")
    repetitions: int = Field(10, ge=1, le=50, description="Repetitions per experiment in release mode.")
    ci_repetitions: int = Field(3, ge=1, le=50, description="Repetitions per experiment in ci mode.")
    seed: int | None = Field(
        None,
        ge=0,
        description="Seed of the fault moments and of which matching process a kill picks (default: a new one per "
        "run, recorded in gates/G4/chaos_run.json; set it to replay a run's moments).",
    )
    moment_jitter_s: float = Field(
        2.0, ge=0, le=60, description="Each fault lands at a seeded random moment up to this long after the baseline."
    )
    roles: dict[str, RoleSpec] = Field(
        default_factory=dict,
        description="Roles of the process tree ([gates.G4.roles]); every count must be back after recovery.",
    )
    capacity: CapacitySpec = Field(CapacitySpec(), description="The throughput measure ([gates.G4.capacity]).")
    drain_s: float = Field(90.0, gt=0, description="After recovery, time allowed for accepted work to finish.")
    steady_probes: int = Field(3, ge=1, description="Consecutive healthy probes that make the steady state.")
    steady_timeout_s: float = Field(30.0, gt=0, description="Time allowed to reach the steady state.")
    concurrency: int = Field(
        2,
        ge=1,
        le=8,
        description="Experiments run at the same time, each on its own instance (1: one after another); those "
        "whose faults share something (the proxy server, the mount table) or marked exclusive never overlap.",
    )
    tasks: TaskApi = Field(TaskApi(), description="How work is submitted and read back.")
    experiments: tuple[Experiment, ...] = Field((), description="The experiments ([[gates.G4.experiments]]).")
    rollback: RollbackDrill | None = Field(
        None, description="C6: the bad-deploy rollback drill ([gates.G4.rollback]); absent: not run."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ChaosPolicy:
        """Experiment ids are unique and every `work` names a body."""
        ids = [exp.id for exp in self.experiments]
        duplicates = sorted({name for name in ids if ids.count(name) > 1})
        if duplicates:
            msg = f"duplicate experiment id(s): {', '.join(duplicates)}"
            raise ValueError(msg)
        for exp in self.experiments:
            if exp.work and exp.work not in self.tasks.bodies:
                msg = f"experiment {exp.id}: work {exp.work!r} is not in tasks.bodies ({', '.join(self.tasks.bodies)})"
                raise ValueError(msg)
        if self.rollback is not None and self.rollback.work and self.rollback.work not in self.tasks.bodies:
            msg = f"rollback.work {self.rollback.work!r} is not in tasks.bodies ({', '.join(self.tasks.bodies)})"
            raise ValueError(msg)
        if self.capacity.work and self.capacity.work not in self.tasks.bodies:
            msg = f"capacity.work {self.capacity.work!r} is not in tasks.bodies ({', '.join(self.tasks.bodies)})"
            raise ValueError(msg)
        for name, role in self.roles.items():
            try:
                re.compile(role.cmdline)
            except re.error as exc:
                msg = f"roles.{name}.cmdline {role.cmdline!r} is not a regular expression: {exc}"
                raise ValueError(msg) from None
        return self

    def fault_window_s(self, experiment: Experiment, mode: str) -> float:
        """The fault window of an experiment in a mode (ci: the shorter of the two)."""
        base = experiment.fault_s or self.fault_s
        return min(base, self.ci_fault_s) if mode == "ci" else base

    def body(self, experiment: Experiment) -> dict[str, Any]:
        """The JSON body an experiment's work stream and probes submit."""
        if experiment.work:
            return self.tasks.bodies[experiment.work]
        return next(iter(self.tasks.bodies.values()), {})

    def capacity_body(self, experiment: Experiment) -> dict[str, Any]:
        """The JSON body of the capacity burst."""
        return self.tasks.bodies[self.capacity.work] if self.capacity.work else self.body(experiment)

    def moment_rng(self, seed: int, experiment: Experiment, repetition: int) -> random.Random:
        """Pure: the random source of one repetition (its fault moment first, then any choice its fault makes)."""
        return random.Random(f"{seed}:{experiment.id}:{repetition}")  # noqa: S311 - replayable, not secret

    def reps(self, mode: str) -> int:
        """Repetitions per experiment in a mode."""
        return self.ci_repetitions if mode == "ci" else self.repetitions

    def budget_s(self, experiment: Experiment) -> float:
        """The experiment's recovery budget."""
        return experiment.recovery_budget_s or self.recovery_budget_s
