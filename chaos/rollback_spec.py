"""C6's config model: how a target deploys a second version and rolls it back (`[gates.G4.rollback]`)."""

from __future__ import annotations

import string

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Placeholders a drill command may use ({base_url} is http://127.0.0.1:<port>).
DRILL_PLACEHOLDERS = frozenset({"python", "target_dir", "data_dir", "port", "base_url"})


class RollbackDrill(BaseModel):
    """C6: how the target deploys a second version and rolls it back, and how the harness sees which runs.

    The harness deploys the bad canary (`deploy`) under steady work; its probes and the target's
    alert (`alert_metric`) must both see it; then it runs `rollback` (or, with `automatic`, only waits
    for the target to roll back itself); the version read at `version_path` must be the old one again
    and the probes healthy for `stable_s`, all within `budget_s` of the deploy, nothing accepted lost.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    deploy: tuple[str, ...] = Field(
        min_length=1,
        description="argv deploying the bad canary to the running instance; placeholders {python}, "
        "{target_dir}, {data_dir}, {port}, {base_url}.",
    )
    rollback: tuple[str, ...] = Field(
        (), description="argv rolling the canary back (same placeholders); required unless automatic."
    )
    automatic: bool = Field(
        False,
        description="The target rolls back by itself: the harness runs no rollback command, it waits for the "
        "old version and checks it came back.",
    )
    version_path: str = Field(description="GET here answers JSON naming the running version.")
    version_field: str = Field("version", description="Dotted field of that answer holding the version.")
    alert_metric: str = Field(
        description="The target's alert as a Prometheus gauge at [service] metrics (summed over labels; > 0 is "
        "firing); it must fire after the deploy and be resolved once restored."
    )
    work: str = Field("", description="Body in [gates.G4.tasks.bodies] the work stream and probes submit.")
    budget_s: float = Field(
        120.0,
        gt=0,
        description="C6: from the deploy command's start to service restored (old version, probes "
        "healthy for stable_s), measured by the harness.",
    )
    command_timeout_s: float = Field(30.0, gt=0, le=120, description="Time allowed for each command to exit.")

    @model_validator(mode="after")
    def _commands(self) -> RollbackDrill:
        """A rollback command unless automatic; only the known placeholders."""
        if not self.automatic and not self.rollback:
            msg = "rollback: a command is required unless automatic = true"
            raise ValueError(msg)
        for key in ("deploy", "rollback"):
            for part in getattr(self, key):
                names = {name for _text, name, _spec, _conv in string.Formatter().parse(part) if name is not None}
                unknown = sorted(names - DRILL_PLACEHOLDERS)
                if unknown:
                    msg = f"{key}: unknown placeholder {{{unknown[0]}}} in {part!r} (known: "
                    msg += ", ".join(sorted(DRILL_PLACEHOLDERS)) + ")"
                    raise ValueError(msg)
        return self
