"""Extension points for the self-healing layer that will be built on top of guardian.

Nothing here heals anything yet, on purpose: there are no playbooks registered and no stats
endpoint. What exists are the seams the later layer plugs into, each a small interface:

* :mod:`guardian.healing.playbooks` — the ``Playbook`` protocol (dry-run, execute, verify,
  rollback) and a ``PlaybookRegistry`` that starts empty;
* :mod:`guardian.healing.faults` — a ``FaultHookRegistry`` where a playbook's matching fault
  injector is registered, so every playbook can be exercised against the fault it heals;
* :mod:`guardian.healing.audit` — an append-only, hash-chained audit log stored in the
  ``audit_log`` table of the instance database, for governance decisions.
"""
