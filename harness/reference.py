"""The certify.toml reference in Markdown, generated from the JSON Schema so the README cannot drift."""

from __future__ import annotations

from typing import Any

from harness.config import json_schema

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def _type_of(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short type name for a schema property."""
    if "$ref" in prop:
        return "table " + str(prop["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " or ".join(_type_of(option, defs) for option in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"array of {_type_of(prop.get('items', {}), defs)}"
    if kind == "object" and "additionalProperties" in prop and isinstance(prop["additionalProperties"], dict):
        return f"table of {_type_of(prop['additionalProperties'], defs)}"
    return str(kind)


def _cell(value: Any) -> str:
    """A value made safe for a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(title: str, schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    """One Markdown table for one TOML table."""
    lines = [
        f"#### `{title}`",
        "",
        _cell(schema.get("description", "")).strip(),
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    required = set(schema.get("required", []))
    for key, prop in schema.get("properties", {}).items():
        if key in required:
            default = "required"
        elif _ref(prop) is not None:
            default = "its own defaults" if prop.get("default") is not None else "absent"
        else:
            default = f"`{prop['default']!r}`" if "default" in prop else ""
        meaning = _cell(prop.get("description", ""))
        lines.append(f"| `{key}` | {_cell(_type_of(prop, defs))} | {_cell(default)} | {meaning} |")
    lines.append("")
    return lines


def _ref(prop: dict[str, Any]) -> str | None:
    """The definition a property points at, directly, through null-or-table, array or map."""
    for candidate in [prop, *prop.get("anyOf", []), prop.get("items", {}), prop.get("additionalProperties") or {}]:
        if isinstance(candidate, dict) and "$ref" in candidate:
            return str(candidate["$ref"]).rsplit("/", 1)[-1]
    return None


def _walk(path: str, schema: dict[str, Any], defs: dict[str, Any], lines: list[str]) -> None:
    """Emit the table at `path`, then every table nested in it."""
    lines += _table(path, schema, defs)
    for key, prop in schema.get("properties", {}).items():
        name = _ref(prop)
        if name is None:
            continue
        if "items" in prop:
            parent = path.removeprefix("[[").removesuffix("]]")  # an array nested in an array: [[a.b.c]]
            child = f"[[{parent}.{key}]]" if path != "(top level)" else f"[[{key}]]"
        elif isinstance(prop.get("additionalProperties"), dict):
            child = f"{path}.{key}.<name>" if path != "(top level)" else f"{key}.<name>"
        else:
            child = f"{path}.{key}" if path != "(top level)" else key
        _walk(child, defs[name], defs, lines)


def config_reference() -> str:
    """Markdown tables for every TOML table of certify.toml."""
    schema = json_schema()
    defs: dict[str, Any] = schema.get("$defs", {})
    lines = [START, "", "Generated from `certify schema` (a test keeps this section in sync).", ""]
    _walk("(top level)", schema, defs, lines)
    lines.append(END)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
