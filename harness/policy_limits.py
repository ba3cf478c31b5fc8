"""Where a policy limit lands in a resolved certify.toml, whether the target's value meets it, and the strict value.

A limit's key is dotted (`gates.G1.min_critical_pct`) and may use `*` for every item of a list or
table (`gates.G4.experiments.*.recovery_budget_s`), less the items its `exempt` names.
`limit_misses` lists every target value looser than its limit, with its concrete path and the
value the gate is judged at instead; pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.policy import Limit, LoadedPolicy, PolicyError


@dataclass(frozen=True)
class LimitMiss:
    """One target value looser than its policy limit: where it is, what it is, and the policy's bound instead."""

    key: str
    limit: Limit
    gate: str | None
    shown: str
    path: tuple[Any, ...]
    value: Any
    strict: Any


def gate_of(key: str, limit: Limit) -> str | None:
    """The gate a limit key belongs to: explicit, `gates.<id>.`, or G7 for bootstrap.*."""
    if limit.gate is not None:
        return limit.gate
    parts = key.split(".")
    if parts[0] == "gates" and len(parts) > 1:
        return parts[1]
    return "G7" if parts[0] == "bootstrap" else None


def _expand(data: Any, parts: list[str], key: str, shown: str = "") -> list[tuple[str, tuple[Any, ...], Any]]:
    """(shown key, concrete path, value) for every match of a dotted key with `*` wildcards."""
    if not parts:
        return [(shown, (), data)]
    head, rest = parts[0], parts[1:]
    if data is None:
        return []  # an optional section left out (e.g. no [bootstrap]): nothing to bound
    items: list[tuple[Any, str]]
    if head == "*":
        if isinstance(data, dict):
            items = [(name, str(name)) for name in data]
        elif isinstance(data, list):
            items = [
                (i, str(item.get("id") or item.get("name") or i)) if isinstance(item, dict) else (i, str(i))
                for i, item in enumerate(data)
            ]
        else:
            return []
    else:
        if not isinstance(data, dict) or head not in data:
            msg = f"policy limit {key!r}: certify.toml has no key {head!r} there"
            raise PolicyError(msg, hint="`certify schema` lists every key of certify.toml")
        items = [(head, head)]
    found = []
    for step, label in items:
        label_text = f"[{label}]" if head == "*" else (f".{label}" if shown else label)
        for text, path, value in _expand(data[step], rest, key, shown + label_text):
            found.append((text, (step, *path), value))
    return found


def number(value: Any) -> bool:
    """A JSON number that is not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def same(value: Any, wanted: Any) -> bool:
    """Equality that keeps booleans apart from numbers."""
    return isinstance(value, bool) == isinstance(wanted, bool) and value == wanted


def same_value(accepted: Any, value: Any) -> bool:
    """Waiver value equality (a TOML array against a JSON list)."""
    if isinstance(accepted, tuple | list) and isinstance(value, list):
        return len(accepted) == len(value) and all(same(a, b) for a, b in zip(accepted, value, strict=True))
    return same(value, accepted) or (number(accepted) and number(value) and accepted == value)


def _meets(limit: Limit, value: Any, key: str) -> bool:
    """Whether a target value is within the limit; a limit of the wrong type for the key is a PolicyError."""
    if limit.floor is not None or limit.ceiling is not None:
        if not number(value):
            msg = f"policy limit {key!r}: a {limit.kind} needs a numeric key, certify.toml has {value!r}"
            raise PolicyError(msg)
        bound = float(value)
        return bound >= limit.floor if limit.floor is not None else bound <= float(limit.ceiling or 0)
    if limit.equals is not None:
        return same(value, limit.equals)
    if limit.not_empty:
        return not (isinstance(value, str | list | dict) and not (value.strip() if isinstance(value, str) else value))
    if limit.one_of is not None:
        return any(same(value, option) for option in limit.one_of)
    if not isinstance(value, list):
        msg = f"policy limit {key!r}: `{limit.kind}` needs a list key, certify.toml has {value!r}"
        raise PolicyError(msg)
    if limit.subset_of is not None:
        return all(any(same(item, allowed) for allowed in limit.subset_of) for item in value)
    return all(any(same(item, wanted) for item in value) for wanted in limit.includes or ())


def _strict_value(limit: Limit, value: Any) -> Any:
    """The value a gate is judged against when the target's is looser: the policy's bound."""
    if limit.floor is not None or limit.ceiling is not None:
        bound = limit.floor if limit.floor is not None else limit.ceiling
        return int(bound) if isinstance(value, int) and float(bound).is_integer() else bound  # type: ignore[arg-type]
    if limit.equals is not None:
        return limit.equals
    if limit.not_empty:
        return value  # no bound to judge at: the deviation blocks and the run keeps the value
    if limit.one_of is not None:
        return limit.one_of[-1]
    if limit.subset_of is not None:
        kept = [item for item in value if any(same(item, allowed) for allowed in limit.subset_of)]
        return kept or list(limit.subset_of)
    return [*value, *(w for w in limit.includes or () if not any(same(i, w) for i in value))]


def value_text(value: Any) -> str:
    """A target value as printed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(map(value_text, value)) + "]"
    return str(value)


def _exempt(limit: Limit, shown: str) -> bool:
    """Whether a matched item is one the limit exempts (its id or name in the shown key's brackets)."""
    return any(f"[{item}]" in shown for item in limit.exempt)


def limit_misses(loaded: LoadedPolicy, data: dict[str, Any]) -> list[LimitMiss]:
    """Every value of a resolved certify.toml looser than its policy limit (unset values are not bounded)."""
    found = []
    for key, limit in loaded.policy.limits.items():
        gate = gate_of(key, limit)
        for shown, path, value in _expand(data, key.split("."), key):
            if value is None or _exempt(limit, shown) or _meets(limit, value, key):
                continue
            found.append(LimitMiss(key, limit, gate, shown, path, value, _strict_value(limit, value)))
    return found
